// Entry point: state, protocol handling, URL hash, theme, render scheduling.

import { connect, wsUrl, bearerProtocols } from './ws.js';
import { applyMergePatch } from './mergepatch.js';
import { createWallboard } from './wallboard.js';
import { createConsole, parseRoute } from './console.js';
import { createPages } from './pages.js';
import { createSignin } from './signin.js';
import { incidentsOfEvent, incidentOfAlert, pushIncident } from './incidents.js';

const WINDOWS = ['1m', '5m', '1h', '24h'];
const DEFAULT_WINDOW = '5m';
const MAX_EVENTS = 50;
const TOKEN_KEY = 'ingestwatch.token';
const THEME_KEY = 'ingestwatch.theme';

const state = {
  window: DEFAULT_WINDOW,
  conn: 'connecting', // connecting | open | waiting | signed-out | forbidden
  live: false,        // socket open AND a kpis snapshot arrived on it
  retryAt: null,
  dataAt: null,       // when the last frame of live data arrived (epoch ms)
  seq: null,
  kpis: null,         // { "1m": K, "5m": K, "1h": K, "24h": K }
  events: [],         // newest first, at most MAX_EVENTS
  incidents: [],      // newest first (incidents.js)
  feedRaw: false,     // the feed shows every event instead of the incidents
  toast: null,        // { text, until }
};
let lastEventSeq = null; // highest event seq shown (dedupe + resume)
let baseSeq = null;      // seq of the first subscription, resume point before any event

const store = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* private mode */ } },
};

// ---- rendering: at most once per animation frame --------------------------
const render = createWallboard(document);
let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(state, Date.now()); });
}

// ---- URL hash: #window=5m (wallboard) or #/runs?source=crm (console) -----
// token / access_token are taken out of it.
let currentRoute = parseRoute(location.hash);
function readHash() {
  currentRoute = parseRoute(location.hash);
  const p = currentRoute.params;
  const token = p.get('access_token') || p.get('token');
  const w = p.get('window');
  if (currentRoute.route.length === 0) state.window = WINDOWS.includes(w) ? w : DEFAULT_WINDOW;
  // kiosk / TV mode (#window=5m&kiosk=1): no navigation, bigger type, readable across a room
  document.body.toggleAttribute('data-kiosk', p.has('kiosk') && p.get('kiosk') !== '0');
  writeHash();
  return token;
}
function writeHash() {
  const { route, params } = currentRoute;
  const p = new URLSearchParams(params);
  p.delete('token');
  p.delete('access_token');
  let hash;
  if (route.length === 0) {
    p.set('window', state.window);
    hash = `#${p}`;
  } else {
    hash = `#/${route.join('/')}${p.toString() ? `?${p}` : ''}`;
  }
  if (location.hash !== hash) history.replaceState(history.state, '', hash);
}
function selectWindow(w) {
  if (!WINDOWS.includes(w) || w === state.window) return;
  state.window = w;
  writeHash();
  schedule();
}

// ---- theme: dark default, prefers-color-scheme, explicit toggle persisted --
const root = document.documentElement;
const savedTheme = store.get(THEME_KEY);
if (savedTheme === 'light' || savedTheme === 'dark') root.dataset.theme = savedTheme;
function toggleTheme() {
  const current = root.dataset.theme
    || (matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark');
  const next = current === 'light' ? 'dark' : 'light';
  root.dataset.theme = next;
  store.set(THEME_KEY, next);
}

// ---- protocol ---------------------------------------------------------------
function toast(text) {
  state.toast = { text, until: Date.now() + 8000 };
  setTimeout(schedule, 8050);
}

function onFrame(msg) {
  pages.onFrame(msg, state); // alerts, export jobs, charts (pages.js)
  if (Number.isSafeInteger(msg.seq) && (state.seq === null || msg.seq > state.seq)) state.seq = msg.seq;
  if (signin.onFrame(msg)) { schedule(); return; }
  switch (msg.type) {
    case 'hello':
      if (msg.protocol !== 1) console.warn(`ingestwatch: server speaks protocol ${msg.protocol}, client expects 1`);
      break;
    case 'subscribed':
      if (baseSeq === null && Number.isSafeInteger(msg.seq)) baseSeq = msg.seq;
      break;
    case 'snapshot':
      // data may be null while the server has not computed its first tick yet
      if (msg.topic === 'kpis') {
        state.kpis = msg.data && typeof msg.data === 'object' ? msg.data : null;
        state.live = state.conn === 'open';
      }
      break;
    case 'delta':
      if (msg.topic !== 'kpis') break;
      if (!state.live) { console.warn('ingestwatch: delta before snapshot ignored'); break; }
      state.kpis = applyMergePatch(state.kpis, msg.data);
      break;
    case 'event':
      if (!Number.isSafeInteger(msg.seq) || (lastEventSeq !== null && msg.seq <= lastEventSeq)) break;
      lastEventSeq = msg.seq;
      state.events.unshift(msg);
      for (const inc of incidentsOfEvent(msg)) pushIncident(state.incidents, inc);
      if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
      document.dispatchEvent(new CustomEvent('ingestwatch:event', { detail: msg })); // live console lists
      break;
    case 'resync':
      console.info(`ingestwatch: resync (${msg.reason}) since ${msg.since}`, msg.topics);
      break;
    case 'pong':
      break;
    case 'alert': {
      const inc = incidentOfAlert(msg);
      if (inc) pushIncident(state.incidents, inc);
      break;
    }
    case 'error':
      console.warn(`ingestwatch: server error ${msg.code}: ${msg.message}`);
      toast(`Server error: ${msg.message || msg.code || 'unknown'}`);
      break;
    default:
      console.debug('ingestwatch: unknown frame', msg);
  }
  if (state.live) state.dataAt = Date.now();
  schedule();
}

function onState(conn, info = {}) {
  state.conn = conn;
  state.retryAt = info.retryAt ?? null;
  if (conn !== 'open') state.live = false;
  if (conn === 'open') signin.confirm();
  if (conn === 'signed-out' || conn === 'forbidden') {
    toast(conn === 'signed-out' ? 'Session ended: sign in with a fresh token.' : 'Not allowed to view this monitor.');
  }
  schedule();
}

function subscribeMessage() {
  const msg = { op: 'subscribe', topics: ['kpis', 'events', 'alerts', 'exports'] };
  const since = lastEventSeq ?? baseSeq;
  if (since !== null) msg.since = since;
  return msg;
}

// ---- wiring: the token comes from the link, sessionStorage or the sign-in dialog
const hashToken = readHash();
let socket = null;
const signin = createSignin({
  doc: document,
  button: document.getElementById('who'),
  storageKey: TOKEN_KEY,
  socket: () => socket,
  notify: (text) => { toast(text); schedule(); },
  onChange: (t, how) => {
    if (how === 'signed-out') {
      socket?.stop();
      state.conn = 'signed-out';
      state.live = false;
      schedule();
    } else if (how === 'reconnect') {
      if (socket) socket.restart();
      else startSocket();
      route(); // reload the console view with the new token
    }
  },
});
if (hashToken) signin.adopt(hashToken);

// ---- views: wallboard (no route) or an ops console route -------------------
const wall = document.getElementById('app');
const consoleRoot = document.getElementById('console');
const showConsole = createConsole({
  root: consoleRoot,
  getToken: () => signin.token(),
  onAuthError: (status) => {
    toast(status === 401 ? 'Session refused: sign in with a fresh token.' : 'Not allowed (operator role required).');
    schedule();
  },
});
const pages = createPages({ root: document.getElementById('views'), getToken: () => signin.token() });
pages.onFrame({ type: 'init' }, state); // pages see the connection state (no REST polling while signed out)
function route() {
  const focused = document.activeElement?.id; // a filter that re-rendered its view keeps the focus
  const isView = pages.route(currentRoute); // #/sources, #/trends, #/alerts, #/exports
  const isConsole = isView || (currentRoute.route.length > 0 && showConsole(currentRoute));
  if (focused && document.activeElement === document.body) document.getElementById(focused)?.focus();
  wall.hidden = isConsole;
  consoleRoot.hidden = !isConsole || isView;
  document.body.dataset.view = isConsole ? 'console' : 'wall';
  const here = isConsole ? currentRoute.route[0] : 'wall';
  for (const a of document.querySelectorAll('.views a')) {
    const section = { record: 'records', run: 'runs' }[here] || here;
    if (a.dataset.view === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}
addEventListener('hashchange', () => {
  const t = readHash();
  if (t) signin.supply(t, 'link');
  route();
  schedule();
});
route();
document.querySelector('.windows').addEventListener('click', (e) => {
  const b = e.target.closest('[data-window]');
  if (b) selectWindow(b.dataset.window);
});
document.getElementById('theme').addEventListener('click', toggleTheme);
document.getElementById('feed-toggle').addEventListener('click', () => { state.feedRaw = !state.feedRaw; schedule(); });
document.querySelector('[data-skip]').addEventListener('click', (e) => {
  e.preventDefault(); // the hash is the route: focus the visible view instead
  const target = wall.hidden ? consoleRoot : wall;
  target.tabIndex = -1;
  target.focus();
});
setInterval(schedule, 1000); // "12 s ago" and retry countdown

function startSocket() {
  socket = connect({ url: wsUrl(location), protocols: () => bearerProtocols(signin.token()), subscribe: subscribeMessage, onFrame, onState });
}
if (signin.token()) startSocket();
else { state.conn = 'signed-out'; signin.open(); }
schedule();
