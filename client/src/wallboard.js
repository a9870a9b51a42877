// The wallboard's core rendering: header pill, KPI tiles, per-source table
// and event feed (the static skeleton of index.html). `kpiValues`, `fmtKpi`,
// `tone` and `connStatus` are pure; `createWallboard(document)` returns
// `render(state, now)`, which brings that skeleton up to date with `state`
// (idempotent, touches only what changed). The wallboard's other panels
// (alerts banner, charts, health) and the other pages live in pages.js.

import { readableKind, incidentText } from './incidents.js';
import { createVirtualRows } from './vrows.js';
import { DASH, isNum, fmtCount, fmtFull, fmtPercent, fmtDuration, fmtAgo, fmtClock, fmtDay, fmtUtc, parseTime } from './format.js';

export const KPI_KEYS = [
  'received', 'normalized', 'rejected', 'success_rate', 'errors', 'warnings',
  'runs_started', 'runs_succeeded', 'runs_failed', 'runs_running', 'backlog',
  'run_p95', 'lag_p95', 'lag_p99',
];
const SOURCE_COLS = ['received', 'normalized', 'rejected', 'errors', 'backlog', 'lag_p95'];
const SOURCE_LABELS = { received: 'Received', normalized: 'Normalized', rejected: 'Rejected', errors: 'Errors', backlog: 'Backlog', lag_p95: 'Lag p95' };
const COUNTS = ['received', 'normalized', 'rejected', 'errors', 'warnings', 'runs_started',
  'runs_succeeded', 'runs_failed', 'runs_running', 'backlog'];

/** Raw KPI numbers (or null) of one F object. success_rate is a percentage 0..100. */
export function kpiValues(f) {
  const num = (v) => (isNum(v) ? v : null);
  const out = {};
  for (const k of COUNTS) out[k] = num(f?.[k]);
  const { normalized: ok, rejected: bad } = out;
  out.success_rate = ok !== null && bad !== null && ok + bad > 0 ? (ok / (ok + bad)) * 100 : null;
  const lag = f?.lag_ms;
  out.lag_p50 = num(lag?.p50);
  out.lag_p95 = num(lag?.p95);
  out.lag_p99 = num(lag?.p99);
  out.run_p95 = num(f?.run_duration_ms?.p95);
  return out;
}

export function fmtKpi(key, v) {
  if (key === 'success_rate') return fmtPercent(v);
  if (key.startsWith('lag_') || key === 'run_p95') return fmtDuration(v);
  return fmtCount(v);
}

/** Colour hint for a value: '', 'good', 'warn' or 'bad'. */
export function tone(key, v) {
  if (!isNum(v)) return '';
  if (key === 'rejected' || key === 'errors' || key === 'runs_failed') return v > 0 ? 'bad' : '';
  if (key === 'warnings') return v > 0 ? 'warn' : '';
  if (key === 'success_rate') return v >= 99 ? 'good' : v >= 95 ? 'warn' : 'bad';
  return '';
}

/** Status pill: { state, text }. */
export function connStatus(s) {
  const asOf = s.dataAt != null ? ` — data as of ${fmtClock(s.dataAt)}` : '';
  if (s.conn === 'signed-out') return { state: 'denied', text: `signed out${asOf}` };
  if (s.conn === 'forbidden') return { state: 'denied', text: `not allowed${asOf}` };
  if (s.live) return { state: 'live', text: 'live' };
  if (s.dataAt != null) return { state: 'stale', text: `reconnecting${asOf}` };
  return { state: 'connecting', text: 'connecting' };
}

const setText = (el, t) => { if (el.textContent !== t) el.textContent = t; };
function setAttr(el, name, v) {
  if (v === null || v === false) { if (el.hasAttribute(name)) el.removeAttribute(name); }
  else if (el.getAttribute(name) !== String(v)) el.setAttribute(name, v === true ? '' : v);
}
const rawAttr = (v) => (isNum(v) ? String(v) : '');

/** Big number with a smaller unit: "2.3 s" → "2.3 " + <span class=unit>s</span> (textContent unchanged). */
function setNumber(el, text) {
  if (el.textContent === text) return;
  const m = /^(.*?\d)(\s*(?:ms|s|min|h|%))$/.exec(text);
  if (!m) { el.textContent = text; return; }
  const unit = el.ownerDocument.createElement('span');
  unit.className = 'unit';
  unit.textContent = m[2];
  el.replaceChildren(m[1], unit);
}
/** Bring tbody's rows to `keys` order, creating/removing rows via `cache`. */
function reconcile(tbody, keys, cache, create, update) {
  const keep = new Set(keys);
  for (const [k, el] of cache) if (!keep.has(k)) { el.remove(); cache.delete(k); }
  keys.forEach((k, i) => {
    let el = cache.get(k);
    if (!el) cache.set(k, (el = create(k)));
    update(el, k);
    const at = tbody.children[i];
    if (at !== el) tbody.insertBefore(el, at || null);
  });
}

function cell(doc, tag, cls) {
  const el = doc.createElement(tag);
  if (cls) el.className = cls;
  return el;
}

export function createWallboard(doc = document) {
  const $ = (sel) => doc.querySelector(sel);
  const app = $('#app');
  const pill = $('#status');
  const seqEl = $('#seq');
  const rangeEl = $('#range');
  const toastEl = $('#toast');
  const tiles = KPI_KEYS.map((k) => [k, $(`[data-kpi="${k}"]`)]);
  const winButtons = [...doc.querySelectorAll('[data-window]')];
  const srcBody = $('#sources tbody');
  const srcEmpty = $('#sources-empty');
  const feedBody = $('#feed tbody');
  const feedEmpty = $('#feed-empty');
  const feedTable = $('#feed');
  const feedHead = $('#feed-h');
  const feedToggle = $('#feed-toggle');
  const incList = $('#incidents');
  const incEmpty = $('#incidents-empty');
  // only the rows in view are in the DOM (1,000+ sources)
  const srcTable = createVirtualRows({ scroller: srcBody.closest('.scroll'), tbody: srcBody, colspan: 2 + SOURCE_COLS.length, create: (name) => newSourceRow(name) });
  const feedRows = new Map();
  const incRows = new Map();
  let feedPrimed = false;
  let incPrimed = false;

  /** Where an incident is explained: its runs, errors, records or the alerts. */
  function incidentHref(inc) {
    const q = new URLSearchParams();
    if (inc.source && !inc.source.includes(', ')) q.set('source', inc.source);
    if (inc.kind === 'run_failed' || inc.kind === 'run_partial') {
      q.set('status', inc.kind === 'run_failed' ? 'failed' : 'partial');
      return `#/runs?${q}`;
    }
    if (inc.kind === 'errors') { if (inc.label) q.set('code', inc.label); return `#/errors?${q}`; }
    if (inc.kind === 'rejected') { q.set('status', 'rejected'); return `#/records?${q}`; }
    return '#/alerts';
  }

  function newIncidentRow(inc) {
    const li = doc.createElement('li');
    li.dataset.kind = inc.kind;
    li.dataset.level = inc.level;
    if (incPrimed) li.className = 'new';
    const time = doc.createElement('time');
    const a = doc.createElement('a');
    a.href = incidentHref(inc);
    const src = cell(doc, 'span', 'inc-source');
    src.textContent = inc.source ?? 'all sources';
    li.append(time, a, src);
    return li;
  }

  function newSourceRow(name) {
    const tr = doc.createElement('tr');
    tr.dataset.source = name;
    const th = cell(doc, 'th', 'name');
    th.scope = 'row';
    th.textContent = th.title = name;
    tr.append(th);
    for (const col of SOURCE_COLS) {
      const td = cell(doc, 'td', 'n');
      td.dataset.col = col;
      td.dataset.label = SOURCE_LABELS[col];
      tr.append(td);
    }
    const last = cell(doc, 'td', 'n');
    last.dataset.col = 'last_received_at';
    last.dataset.label = 'Last record';
    last.append(doc.createElement('time'));
    tr.append(last);
    return tr;
  }

  function newFeedRow(ev) {
    const tr = doc.createElement('tr');
    tr.dataset.seq = ev.seq;
    if (feedPrimed) tr.className = 'new';
    const at = parseTime(ev.at);
    const time = doc.createElement('time');
    time.textContent = fmtClock(at);
    time.title = fmtUtc(at);
    if (typeof ev.at === 'string') time.dateTime = ev.at;
    const td0 = cell(doc, 'td', 'when');
    td0.append(time);
    const kind = cell(doc, 'td', 'kind');
    kind.textContent = typeof ev.kind === 'string' ? readableKind(ev.kind) : DASH;
    if (typeof ev.kind === 'string') kind.dataset.kind = ev.kind;
    const src = cell(doc, 'td', 'name');
    src.textContent = ev.source ?? (Array.isArray(ev.sources) && ev.sources.length ? ev.sources.join(', ') : DASH);
    src.title = src.textContent;
    kind.title = typeof ev.kind === 'string' ? ev.kind : '';
    const rows = cell(doc, 'td', 'n rows');
    rows.textContent = fmtCount(ev.rows);
    tr.append(td0, kind, src, rows);
    return tr;
  }

  return function render(state, now = Date.now()) {
    const stale = !state.live;
    setAttr(app, 'data-stale', stale);
    const title = stale ? 'ingestwatch (stale)' : 'ingestwatch';
    if (doc.title !== title) doc.title = title;

    const st = connStatus(state);
    setAttr(pill, 'data-state', st.state);
    setText(pill, st.text);
    setAttr(pill, 'title', state.retryAt && !state.live && state.retryAt > now
      ? `next attempt in ${Math.ceil((state.retryAt - now) / 1000)} s` : null);
    setText(seqEl, state.seq == null ? DASH : fmtFull(state.seq));
    for (const b of winButtons) setAttr(b, 'aria-pressed', String(b.dataset.window === state.window));

    const k = state.kpis?.[state.window] ?? null;
    const from = parseTime(k?.from);
    const to = parseTime(k?.to);
    const day = (t) => (new Date(t).toDateString() === new Date(to).toDateString() ? '' : `${fmtDay(t)} `);
    setText(rangeEl, from != null && to != null ? `window ${day(from)}${fmtClock(from)} – ${fmtClock(to)}` : '');
    setAttr(rangeEl, 'title', from != null && to != null ? `${fmtUtc(from)} – ${fmtUtc(to)}` : null);

    // KPI tiles
    const vals = kpiValues(k?.total);
    for (const [key, el] of tiles) {
      const v = vals[key];
      setNumber(el, fmtKpi(key, v));
      setAttr(el, 'data-value', rawAttr(v));
      setAttr(el, 'data-tone', tone(key, v) || null);
      const full = COUNTS.includes(key) && isNum(v) ? fmtFull(v) : '';
      setAttr(el, 'title', (full || stale) ? `${full}${full && stale ? ' ' : ''}${stale ? '(stale)' : ''}` : null);
    }

    // Per-source table
    const sources = k?.sources && typeof k.sources === 'object' ? k.sources : {};
    const names = Object.keys(sources).sort((a, b) => a.localeCompare(b));
    srcTable.set(names, (tr, name) => {
      const f = sources[name];
      const sv = kpiValues(f);
      for (const td of tr.cells) {
        const col = td.dataset.col;
        if (!col) continue;
        if (col === 'last_received_at') {
          const t = parseTime(f?.last_received_at);
          const time = td.firstChild;
          setText(time, fmtAgo(t, now));
          setAttr(time, 'title', t != null ? fmtUtc(t) : null);
          setAttr(time, 'datetime', t != null ? f.last_received_at : null);
          setAttr(td, 'data-value', t != null ? f.last_received_at : '');
        } else {
          setText(td, fmtKpi(col, sv[col]));
          setAttr(td, 'data-value', rawAttr(sv[col]));
          setAttr(td, 'data-tone', tone(col, sv[col]) || null);
        }
      }
    });
    srcEmpty.hidden = names.length > 0;
    setText(srcEmpty, state.kpis ? 'No source reported anything in this window.' : 'Waiting for data…');

    // Recent incidents, or every event (newest first); only the visible one is kept up to date
    const raw = !!state.feedRaw;
    setAttr(feedToggle, 'aria-pressed', String(raw));
    setText(feedToggle, raw ? 'Incidents' : 'All events');
    setAttr(feedToggle, 'title', raw ? 'Show recent incidents only' : 'Show every event of the stream');
    setText(feedHead, raw ? 'All events' : 'Recent incidents');
    feedTable.hidden = !raw;
    incList.hidden = raw;
    if (raw) {
      reconcile(feedBody, state.events.map((e) => e.seq), feedRows,
        (seq) => newFeedRow(state.events.find((e) => e.seq === seq)), () => {});
      feedEmpty.hidden = state.events.length > 0;
      incEmpty.hidden = true;
    } else {
      feedEmpty.hidden = true;
      const incs = state.incidents || [];
      reconcile(incList, incs.map((x) => x.id), incRows, (id) => newIncidentRow(incs.find((x) => x.id === id)), (li, id) => {
        const inc = incs.find((x) => x.id === id);
        const time = li.firstChild;
        setText(time, fmtClock(inc.at));
        setAttr(time, 'title', fmtUtc(inc.at));
        setAttr(time, 'datetime', new Date(inc.at).toISOString());
        setText(li.children[1], incidentText(inc));
      });
      incEmpty.hidden = incs.length > 0;
    }
    feedPrimed ||= state.events.length > 0; // the first batch does not flash
    incPrimed = true; // incidents only arrive live: every one flashes once

    // Toast
    const showToast = state.toast && state.toast.until > now;
    toastEl.hidden = !showToast;
    if (showToast) setText(toastEl, state.toast.text);
  };
}
