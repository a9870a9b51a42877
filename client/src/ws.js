// WebSocket connection with reconnect, jittered exponential backoff,
// heartbeat and resubscribe-on-open. The caller supplies the subscribe
// message (so it can carry the current `since`) and receives parsed frames.

/** Close codes that mean "do not retry". */
export const AUTH_CLOSE = { 4401: 'signed-out', 4403: 'forbidden' };

const MIN_DELAY = 500;
const MAX_DELAY = 10_000;

/** Delay before retry number `attempt` (0-based): 0.5 s doubling to 10 s, "equal jitter". */
export function backoffDelay(attempt, rnd = Math.random) {
  const cap = Math.min(MAX_DELAY, MIN_DELAY * 2 ** Math.min(attempt, 16));
  return Math.round(cap / 2 + (rnd() * cap) / 2);
}

/** `ws(s)://<host>/<base>ws`. The token travels in the subprotocol header, never in a URL. */
export function wsUrl(loc) {
  const u = new URL('ws', loc.href);
  u.protocol = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  u.hash = '';
  u.search = '';
  return u.href;
}

/** `Sec-WebSocket-Protocol: bearer, <token>` (browsers cannot set Authorization on a WebSocket). */
export const bearerProtocols = (token) => (token ? ['bearer', token] : []);

/**
 * @param {object} o
 * @param {string} o.url
 * @param {() => string[]} [o.protocols]  read on every (re)open, so a refreshed token is used
 * @param {() => object} o.subscribe    message sent on every open
 * @param {(msg: object) => void} o.onFrame
 * @param {(state: string, info?: object) => void} o.onState
 *        states: connecting | open | waiting | signed-out | forbidden
 */
export function connect({ url, protocols = () => [], subscribe, onFrame, onState, pingEvery = 20_000, idleTimeout = 45_000 }) {
  let sock = null;
  let attempt = 0;
  let retryTimer = 0;
  let stableTimer = 0;
  let pingTimer = 0;
  let lastRx = 0;
  let pingId = 0;
  let stopped = false;

  function open() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    onState('connecting', { attempt });
    let s;
    try {
      s = new WebSocket(url, protocols());
    } catch (err) {
      console.error('ingestwatch: cannot open WebSocket', err);
      retry();
      return;
    }
    sock = s;
    s.onopen = () => {
      lastRx = Date.now();
      onState('open');
      send(subscribe());
      // only a connection that stays up resets the backoff (no tight flapping)
      stableTimer = setTimeout(() => { attempt = 0; }, 5000);
      pingTimer = setInterval(heartbeat, pingEvery);
    };
    s.onmessage = (ev) => {
      lastRx = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('ingestwatch: ignoring non-JSON frame');
        return;
      }
      if (msg && typeof msg === 'object' && !Array.isArray(msg)) onFrame(msg);
    };
    s.onerror = () => {}; // a close event always follows
    s.onclose = (ev) => {
      detach(s);
      const terminal = AUTH_CLOSE[ev.code];
      if (terminal) {
        stopped = true;
        onState(terminal, { code: ev.code, reason: ev.reason });
      } else {
        retry(ev.code);
      }
    };
  }

  function detach(s) {
    if (!s) return;
    s.onopen = s.onmessage = s.onerror = s.onclose = null;
    if (sock === s) sock = null;
    clearTimeout(stableTimer);
    clearInterval(pingTimer);
  }

  function heartbeat() {
    if (Date.now() - lastRx > idleTimeout) {
      // half-open TCP: don't wait for a close handshake that may never come
      const s = sock;
      detach(s);
      try { s.close(4000, 'idle'); } catch { /* already closing */ }
      console.warn('ingestwatch: connection idle, reconnecting');
      retry();
      return;
    }
    send({ op: 'ping', id: `hb-${++pingId}` });
  }

  function retry(code) {
    if (stopped || retryTimer) return;
    const delay = backoffDelay(attempt++);
    onState('waiting', { retryAt: Date.now() + delay, code });
    retryTimer = setTimeout(open, delay);
  }

  function send(obj) {
    if (sock && sock.readyState === 1) {
      sock.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /** Skip the remaining backoff (e.g. the browser came back online). */
  function reconnectNow() {
    if (!stopped && retryTimer) open();
  }

  /** Starts again after a terminal close (4401/4403) or `stop()`, e.g. with a new token. */
  function restart() {
    if (sock) return;
    stopped = false;
    attempt = 0;
    open();
  }

  /** Closes the socket and stays closed (signed out). */
  function stop() {
    stopped = true;
    clearTimeout(retryTimer);
    retryTimer = 0;
    const s = sock;
    detach(s);
    try { s?.close(1000, 'signed out'); } catch { /* already closing */ }
  }

  const isOpen = () => !!sock && sock.readyState === 1;

  addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) reconnectNow(); });
  open();
  return { send, reconnectNow, restart, stop, isOpen };
}
