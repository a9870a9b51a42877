// Sign-in: the bearer token, who it says is signed in, and its expiry.
//
// A token arrives from a link (`#access_token=…`, taken out of the URL by
// main.js), from sessionStorage, or pasted into the sign-in dialog. A pasted
// token is checked with the server before anything changes: a REST call
// (401/403 → a message, the old token stays), then, while the socket is open,
// `{"op":"auth"}` in band (answered by `authenticated`), so the live stream
// continues on the same socket. Claims are decoded for display only; the
// server verifies. The role and expiry the server confirms win over the
// decoded ones.

import { DASH, fmtClock, fmtDateTime, fmtUtc } from './format.js';
import { h } from './dom.js';
import { authFetch } from './rest.js';

const WARN_MS = 5 * 60_000; // "expires soon" below this
const AUTH_TIMEOUT_MS = 8000;

/** The payload of a JWT (display only, unverified), or null. */
export function decodeClaims(token) {
  const part = typeof token === 'string' ? token.split('.') : [];
  if (part.length !== 3) return null;
  try {
    const b64 = part[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/** What the header and the dialog show about a token: { sub, role, exp (epoch ms or null), sources }. */
export function identity(token) {
  const c = decodeClaims(token);
  if (!c) return null;
  return {
    sub: typeof c.sub === 'string' ? c.sub : '',
    role: typeof c.role === 'string' ? c.role : '',
    exp: Number.isFinite(c.exp) ? c.exp * 1000 : null,
    sources: Array.isArray(c.sources) ? c.sources.filter((s) => typeof s === 'string') : null,
  };
}

/** Time left, e.g. "1 h 05 min", "4 min 12 s", "42 s". */
export function fmtLeft(ms) {
  if (!Number.isFinite(ms)) return DASH;
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${s} s`;
}

/** The header's compact form: "1h 05m", "4m 12s", "42s". */
export function fmtLeftShort(ms) {
  return fmtLeft(ms).replace(/ h /, 'h ').replace(/ min$/, 'm').replace(/ min /, 'm ').replace(/ s$/, 's');
}

/** Token text as pasted: surrounding blanks, a `Bearer ` prefix or a whole link are tolerated. */
export function cleanToken(text) {
  let t = String(text ?? '').trim();
  const m = /(?:^|[#&?])(?:access_token|token)=([^&\s]+)/.exec(t);
  if (m) t = decodeURIComponent(m[1]);
  return t.replace(/^bearer\s+/i, '').trim();
}

/** Why `token` cannot be used, before asking the server; '' when it looks usable. */
export function tokenProblem(token, now) {
  if (!token) return 'Paste a token first.';
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) return 'This is not a JWT (three base64url parts separated by dots).';
  const id = identity(token);
  if (!id) return 'This token\'s payload cannot be read.';
  if (id.exp !== null && id.exp <= now) return `This token expired at ${fmtClock(id.exp)} (${fmtUtc(id.exp)}).`;
  return '';
}

/**
 * @param {object} o
 * @param {Document} o.doc
 * @param {HTMLElement} o.button       header button (#who) that opens the dialog
 * @param {string} o.storageKey        sessionStorage key of the token
 * @param {() => ({send: Function, isOpen: Function} | null)} o.socket
 * @param {(token: string|null, how: 'in-band'|'reconnect'|'signed-out') => void} o.onChange
 * @param {(text: string) => void} o.notify  toast
 */
export function createSignin({ doc, button, storageKey, socket, onChange, notify }) {
  let token = null;
  let confirmed = null;   // { role, exp, sources } from the server's `authenticated`
  let pending = null;     // { token, resolve, reject, timer } of an in-band auth
  let warned = false;
  let expiredNotice = '';

  const store = {
    get() { try { return sessionStorage.getItem(storageKey); } catch { return null; } },
    set(v) { try { if (v) sessionStorage.setItem(storageKey, v); else sessionStorage.removeItem(storageKey); } catch { /* private mode */ } },
  };

  // ---- the dialog -----------------------------------------------------------
  const current = h('div', { className: 'signin-current', id: 'signin-current' });
  const input = h('textarea', {
    id: 'signin-token', rows: 4, autocomplete: 'off', spellcheck: false,
    placeholder: 'eyJhbGciOi…', 'aria-describedby': 'signin-help signin-error',
  });
  const error = h('p', { id: 'signin-error', className: 'signin-error', role: 'alert' });
  const submit = h('button', { type: 'submit', className: 'primary' }, 'Sign in');
  const signOut = h('button', { type: 'button', id: 'signout' }, 'Sign out');
  const close = h('button', { type: 'button', className: 'close' }, 'Close');
  const form = h('form', { className: 'signin-form' },
    h('h2', { id: 'signin-h' }, 'Sign in'),
    current,
    h('label', { htmlFor: 'signin-token' }, 'Access token (JWT)'),
    input,
    h('p', { id: 'signin-help', className: 'hint' },
      'Paste a token (or a link carrying one). It is checked with the server first; the live stream keeps its connection.'),
    error,
    h('div', { className: 'actions' }, submit, signOut, close));
  const dialog = h('dialog', { id: 'signin', className: 'signin', 'aria-labelledby': 'signin-h' }, form);
  doc.body.append(dialog);

  const name = h('span', { className: 'who-name' });
  const rest = h('span', { className: 'who-left' });
  button.replaceChildren(name, rest);

  function open() {
    error.textContent = expiredNotice;
    renderCurrent(Date.now());
    if (!dialog.open) dialog.showModal();
    input.focus();
  }
  button.addEventListener('click', open);
  close.addEventListener('click', () => dialog.close());
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    supply(input.value, 'pasted');
  });
  signOut.addEventListener('click', () => {
    setToken(null);
    confirmed = null;
    dialog.close();
    onChange(null, 'signed-out');
    notify('Signed out.');
  });

  // ---- state -------------------------------------------------------------------
  function shown() {
    const id = identity(token);
    if (!id) return null;
    return { ...id, ...(confirmed || {}) };
  }

  function setToken(t) {
    token = t;
    store.set(t);
    warned = false;
    expiredNotice = '';
    tick();
  }

  function renderCurrent(now) {
    const id = shown();
    const rows = [];
    if (id) {
      const left = id.exp === null ? null : id.exp - now;
      const expires = id.exp === null ? DASH
        : h('time', { dateTime: new Date(id.exp).toISOString(), title: fmtUtc(id.exp) }, fmtDateTime(id.exp));
      rows.push(['Signed in as', id.sub || DASH, 'sub'], ['Role', id.role || DASH, 'role'],
        ['Sources', id.sources ? id.sources.join(', ') : 'all', 'sources'],
        ['Expires', expires, 'expires'],
        ['Remaining', left === null ? 'no expiry' : left > 0 ? fmtLeft(left) : 'expired', 'remaining']);
    }
    const kv = rows.length
      ? h('dl', { className: 'kv' }, ...rows.flatMap(([k, v, f]) => [h('dt', {}, k), h('dd', { data: { field: f } }, v)]))
      : h('p', { className: 'empty' }, 'Not signed in.');
    const left = id?.exp != null ? id.exp - now : Infinity;
    current.dataset.tone = left <= 0 ? 'bad' : left < WARN_MS ? 'warn' : '';
    current.replaceChildren(kv);
    signOut.hidden = !token;
  }

  /** Header button and dialog; once a second. */
  function tick(now = Date.now()) {
    const id = shown();
    const left = id?.exp != null ? id.exp - now : null;
    if (!id) {
      name.textContent = 'Sign in';
      rest.textContent = '';
      button.title = 'Not signed in: paste a token';
      button.dataset.role = '';
      button.dataset.tone = 'bad';
    } else {
      name.textContent = [id.sub, id.role].filter(Boolean).join(' · ') || 'signed in';
      rest.textContent = left === null ? '' : left > 0 ? fmtLeftShort(left) : 'expired';
      button.title = id.exp ? `expires ${fmtClock(id.exp)} (${fmtUtc(id.exp)})` : '';
      button.dataset.role = id.role;
      button.dataset.tone = left === null ? '' : left <= 0 ? 'bad' : left < WARN_MS ? 'warn' : '';
      if (left !== null && left > 0 && left < WARN_MS && !warned) {
        warned = true;
        notify(`Your session expires in ${fmtLeft(left)}: paste a fresh token to stay signed in.`);
      }
    }
    button.setAttribute('aria-label', `${name.textContent}${rest.textContent ? `, ${rest.textContent} left` : ''}: open sign-in`);
    if (dialog.open) renderCurrent(now);
  }

  // ---- supplying a token ------------------------------------------------------------
  async function restCheck(t) {
    let r;
    try {
      r = await authFetch(t, '/api/kpis?window=1m');
    } catch {
      return 'The server cannot be reached; nothing was changed.';
    }
    if (r.ok) return '';
    let msg = '';
    try { msg = (await r.json()).error?.message || ''; } catch { /* not JSON */ }
    if (r.status === 401) return `The server refused this token${msg ? `: ${msg}` : ''}.`;
    if (r.status === 403) return `This token carries no ingestwatch role${msg ? `: ${msg}` : ''}.`;
    return `The server could not check the token (HTTP ${r.status}); nothing was changed.`;
  }

  function authInBand(t) {
    const ws = socket();
    if (!ws || !ws.isOpen()) return Promise.resolve(false);
    if (pending) pending.reject(new Error('superseded by a newer token'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { pending = null; reject(new Error('the server did not answer')); }, AUTH_TIMEOUT_MS);
      pending = { token: t, resolve, reject, timer };
      if (!ws.send({ op: 'auth', token: t })) { clearTimeout(timer); pending = null; resolve(false); }
    });
  }

  /** Checks `text` as a token and, when the server accepts it, signs in with it. */
  async function supply(text, how) {
    const t = cleanToken(text);
    const problem = tokenProblem(t, Date.now());
    submit.disabled = true;
    try {
      const msg = problem || await restCheck(t);
      if (msg) { fail(msg, how); return false; }
      let inBand;
      try {
        inBand = await authInBand(t);
      } catch (e) {
        fail(`The live connection refused this token: ${e.message}.`, how);
        return false;
      }
      if (!inBand) confirmed = null;
      setToken(t);
      input.value = '';
      error.textContent = '';
      if (dialog.open) dialog.close();
      onChange(t, inBand ? 'in-band' : 'reconnect');
      const id = shown();
      notify(`Signed in as ${[id?.sub, id?.role].filter(Boolean).join(' · ') || 'token holder'}.`);
      return true;
    } finally {
      submit.disabled = false;
    }
  }

  function fail(msg, how) {
    error.textContent = msg;
    if (how !== 'pasted') notify(msg);
  }

  /** Frames that belong to sign-in; true when handled. */
  function onFrame(msg) {
    if (msg.type === 'authenticated') {
      confirmed = {
        role: typeof msg.role === 'string' ? msg.role : undefined,
        exp: Number.isFinite(msg.expires_at) ? msg.expires_at * 1000 : null,
        sources: Array.isArray(msg.sources) ? msg.sources : null,
      };
      for (const k of Object.keys(confirmed)) if (confirmed[k] === undefined) delete confirmed[k];
      if (pending) { clearTimeout(pending.timer); pending.resolve(true); pending = null; }
      tick();
      return true;
    }
    if (msg.type === 'error' && msg.code === 'invalid_token' && pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(msg.message || 'invalid token'));
      pending = null;
      return true;
    }
    if (msg.type === 'error' && msg.code === 'token_expired') {
      expiredNotice = 'Your session expired: paste a fresh token now to keep the live stream.';
      notify(expiredNotice);
      tick();
      return true;
    }
    return false;
  }

  /** Uses `t` as it is (from a link or storage); the connection verifies it. */
  function adopt(t) {
    confirmed = null;
    setToken(t);
  }

  setInterval(() => tick(), 1000);
  adopt(store.get());
  return {
    token: () => token,
    adopt,
    supply,
    open,
    onFrame,
    /** Asks the server for the role and expiry it sees (after every open). */
    confirm() { if (token) socket()?.send({ op: 'auth', token }); },
  };
}
