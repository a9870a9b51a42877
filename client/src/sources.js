// Source health: one state per source (healthy / warning / failing / stale)
// from /api/sources (expected interval, newest record, last run), the live
// 5-minute figures of the `kpis` topic and the active alerts; the wallboard's
// health grid and the `#/sources` view. `sourceHealth` is pure (time passed in).

import { h, text, attr } from './dom.js';
import { DASH, fmtAgo, fmtCount, fmtDuration, fmtPercent, parseTime } from './format.js';
import { fmtAlertValue } from './alerts.js';
import { createVirtualRows } from './vrows.js';

/** The thresholds (documented in README, "Browser client"). */
export const HEALTH = {
  /** freshness: late past 1 × the expected interval, stale past this many */
  staleFactor: 3,
  /** rejected ÷ (normalized + rejected) over 5 min: warning / failing from */
  rejectWarn: 0.05,
  rejectFail: 0.2,
  /** errors ÷ received over 5 min: warning from */
  errorWarn: 0.05,
  /** rates count only with at least this many records in the 5 min */
  minRecords: 10,
};

export const HEALTH_ORDER = ['failing', 'stale', 'warning', 'healthy'];

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/**
 * @param {object} src   an /api/sources item (may be partial)
 * @param {object} live  that source's live 5-minute figures (kpis topic) or null
 * @param {object[]} alerts active alerts
 * @param {number} now   epoch ms
 * @returns {{state: string, reasons: string[], last: number|null, age: number|null, freshness: string, rejectRate: number|null}}
 */
export function sourceHealth(src, live, alerts, now) {
  const fig = live || src.figures || null;
  const times = [parseTime(src.last_record_at), parseTime(live?.last_received_at)].filter((t) => t != null);
  const last = times.length ? Math.max(...times) : null;
  const age = last == null ? null : Math.max(0, (now - last) / 1000);
  const every = num(src.expected_interval_secs);
  let freshness = 'never';
  if (last != null) {
    if (every == null || age <= every) freshness = 'healthy';
    else if (age <= every * HEALTH.staleFactor) freshness = 'late';
    else freshness = 'stale';
  }
  const ok = num(fig?.normalized) ?? 0;
  const bad = num(fig?.rejected) ?? 0;
  const received = num(fig?.received) ?? 0;
  const errors = num(fig?.errors) ?? 0;
  const rejectRate = ok + bad >= HEALTH.minRecords ? bad / (ok + bad) : null;
  const errorRate = received >= HEALTH.minRecords ? errors / received : null;
  const mine = alerts.filter((a) => a.source === src.name || (a.sources || []).includes(src.name));

  const failing = [];
  const warning = [];
  for (const a of mine) {
    const line = alertReason(a);
    if (a.state === 'firing' && a.severity === 'critical') failing.push(line);
    else warning.push(line);
  }
  if (src.last_run?.status === 'failed') failing.push(`last run #${src.last_run.id} failed`);
  if (src.last_run?.status === 'partial') warning.push(`last run #${src.last_run.id} partial`);
  if (rejectRate != null && rejectRate >= HEALTH.rejectFail) failing.push(`${fmtPercent(rejectRate * 100)} rejected (5 min)`);
  else if (rejectRate != null && rejectRate >= HEALTH.rejectWarn) warning.push(`${fmtPercent(rejectRate * 100)} rejected (5 min)`);
  if (errorRate != null && errorRate >= HEALTH.errorWarn) warning.push(`${fmtPercent(errorRate * 100)} errors per record (5 min)`);
  if (freshness === 'late') warning.push(`late: expected a record every ${fmtDuration(every * 1000)}`);
  const staleReason = freshness === 'never' ? 'no record yet'
    : freshness === 'stale' ? `stale: nothing for over ${HEALTH.staleFactor} × ${fmtDuration(every * 1000)}` : null;

  let state = 'healthy';
  let reasons = [];
  if (failing.length) { state = 'failing'; reasons = [...failing, ...(staleReason ? [staleReason] : []), ...warning]; }
  else if (staleReason) { state = 'stale'; reasons = [staleReason, ...warning]; }
  else if (warning.length) { state = 'warning'; reasons = warning; }
  return { state, reasons, last, age, freshness, rejectRate };
}

const ALERT_WHAT = {
  lag_p95: 'lag p95', backlog: 'backlog', reject_rate: 'rejected', error_rate: 'errors per record',
  stale: 'no record for', long_run: 'run running for', notification_queue: 'notify queue',
  listener_disconnected: 'listener down for',
};

/** An alert as a health reason: "lag p95 5.2 min > 8 s (lag-high, firing)", "3 failed runs in a row (…)". */
export function alertReason(a) {
  const why = `(${a.rule}${a.state === 'firing' ? '' : `, ${a.state}`})`;
  if (a.condition === 'failed_runs') return `${fmtAlertValue(a.value, '')} failed runs in a row ${why}`;
  const what = ALERT_WHAT[a.condition];
  if (!what || typeof a.value !== 'number') return `${a.severity} alert ${a.rule} ${a.state}`;
  return `${what} ${fmtAlertValue(a.value, a.unit)} > ${fmtAlertValue(a.threshold, a.unit)} ${why}`;
}

/** "last record 12 s ago" / "no record yet". */
export function freshnessText(hl, now) {
  return hl.last == null ? 'no record yet' : `last record ${fmtAgo(hl.last, now)}`;
}

/**
 * Keeps /api/sources fresh (every `every` ms while someone is watching) and
 * combines it with the live figures and alerts.
 */
export function createSourcesModel({ rest, every = 15_000, onChange, canFetch = () => true }) {
  const PAGE = 500; // the API's largest page
  let items = [];
  let loadedAt = 0;
  let error = null;
  let inflight = null;
  let watchers = 0;
  let timer = 0;
  async function refresh() {
    if (inflight) return inflight;
    inflight = (async () => {
      const all = [];
      let cursor = null;
      do { // every page: fleets of thousands of sources
        const q = new URLSearchParams({ limit: String(PAGE), window: '5m' });
        if (cursor) q.set('cursor', cursor);
        const body = await rest.get(`/api/sources?${q}`);
        all.push(...(body.items || []));
        cursor = body.next_cursor || null;
      } while (cursor);
      return all;
    })().then((all) => {
      items = all;
      loadedAt = Date.now();
      error = null;
    }).catch((e) => { error = e; }).finally(() => { inflight = null; onChange(); });
    return inflight;
  }
  return {
    get items() { return items; },
    get loaded() { return loadedAt > 0; },
    get error() { return error; },
    refresh,
    /** Starts polling for one watcher; the returned function stops it. */
    watch() {
      if (watchers++ === 0) {
        refresh();
        // a big fleet is re-read less often: its live figures come with the
        // kpis topic anyway, only runs and intervals come from here
        const tick = () => {
          if (canFetch()) refresh();
          timer = setTimeout(tick, items.length > PAGE ? every * 4 : every);
        };
        timer = setTimeout(tick, every);
      }
      return () => { if (--watchers === 0) clearTimeout(timer); };
    },
    /** [{ src, live, hl }] sorted worst first (state, then most reasons), then by name. */
    healthOf(kpis, alerts, now) {
      const liveSources = kpis?.['5m']?.sources || {};
      const names = new Set([...items.map((s) => s.name), ...Object.keys(liveSources)]);
      const byName = new Map(items.map((s) => [s.name, s]));
      return [...names].map((name) => {
        const src = byName.get(name) || { name };
        const live = liveSources[name] || null;
        return { src, live, hl: sourceHealth(src, live, alerts, now) };
      }).sort((a, b) => HEALTH_ORDER.indexOf(a.hl.state) - HEALTH_ORDER.indexOf(b.hl.state)
        || b.hl.reasons.length - a.hl.reasons.length
        || (a.src.name < b.src.name ? -1 : a.src.name > b.src.name ? 1 : 0));
    },
  };
}

const SOURCE_COLUMNS = [
  // [key, label, class, sort value]
  ['name', 'Source', null, (x) => x.src.name],
  ['kind', 'Kind', null, (x) => x.src.kind ?? ''],
  ['health', 'Health', null, (x) => HEALTH_ORDER.indexOf(x.hl.state)],
  ['why', 'Why', null, null],
  ['last', 'Last record', null, (x) => -(x.hl.last ?? -Infinity)],
  ['expected', 'Expected every', 'n', (x) => x.src.expected_interval_secs ?? Infinity],
  ['received', 'Received', 'n', (x) => -((x.live || x.src.figures || {}).received ?? -1)],
  ['rejected', 'Rejected', 'n', (x) => -((x.live || x.src.figures || {}).rejected ?? -1)],
  ['errors', 'Errors', 'n', (x) => -((x.live || x.src.figures || {}).errors ?? -1)],
  ['run', 'Last run', null, null],
];
const BY = Object.fromEntries(SOURCE_COLUMNS.filter((c) => c[3]).map((c) => [c[0], c[3]]));

/** Filters (`health`, search `q`) and sorts (`sort=col` / `-col`) a healthOf() list. */
export function viewOf(all, { health = null, q = '', sort = '' } = {}) {
  const needle = q.trim().toLowerCase();
  let list = all;
  if (health) list = list.filter((x) => x.hl.state === health);
  if (needle) list = list.filter((x) => x.src.name.toLowerCase().includes(needle) || (x.src.kind || '').toLowerCase().includes(needle));
  const desc = sort.startsWith('-');
  const key = BY[sort.replace(/^-/, '')];
  if (key) {
    const dir = desc ? -1 : 1;
    list = list.map((x) => [key(x), x]).sort((a, b) => (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : 0)
      || (a[1].src.name < b[1].src.name ? -1 : 1)).map((p) => p[1]);
  }
  return list;
}

/** `#/sources`: every source with its health, freshness, live figures and last run; search, sort, totals. */
export function renderSourcesView(root, { model, params = new URLSearchParams() }) {
  const only = HEALTH_ORDER.includes(params.get('health')) ? params.get('health') : null;
  const opts = { health: only, q: params.get('q') || '', sort: BY[(params.get('sort') || '').replace(/^-/, '')] ? params.get('sort') : '' };
  const tbody = h('tbody');
  const status = h('p', { class: 'list-status', role: 'status' }, 'Loading…');
  const totals = h('p', { class: 'totals', id: 'sources-totals' });
  const search = h('input', { id: 'sources-search', type: 'search', value: opts.q, autocomplete: 'off', spellcheck: false, placeholder: 'name or kind' });
  let last = null; // [list, now] of the last update, to redraw on input
  const url = () => {
    const p = new URLSearchParams();
    if (only) p.set('health', only);
    if (opts.q) p.set('q', opts.q);
    if (opts.sort) p.set('sort', opts.sort);
    const hash = `#/sources${p.toString() ? `?${p}` : ''}`;
    if (location.hash !== hash) history.replaceState(history.state, '', hash);
  };
  search.addEventListener('input', () => { opts.q = search.value; url(); if (last) update(...last); });
  const heads = SOURCE_COLUMNS.map(([key, label, cls, by]) => {
    if (!by) return h('th', { scope: 'col', class: cls });
    const b = h('button', { type: 'button', class: 'sort', data: { sort: key } }, label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' }));
    b.addEventListener('click', () => {
      opts.sort = opts.sort === key ? `-${key}` : key;
      url();
      if (last) update(...last);
    });
    return h('th', { scope: 'col', class: cls, data: { col: key } }, b);
  });
  SOURCE_COLUMNS.forEach(([, label, , by], i) => { if (!by) heads[i].textContent = label; });
  const table = h('table', { class: 'list', id: 'sources-list' }, h('thead', {}, h('tr', {}, heads, h('th', { scope: 'col' }, ''))), tbody);
  const scroll = h('div', { class: 'scroll' }, table);
  root.replaceChildren(
    h('div', { class: 'console-head' }, h('h2', {}, 'Sources'),
      h('span', { class: 'meta' }, 'figures of the last 5 minutes, live')),
    h('div', { class: 'filters' }, h('label', { htmlFor: 'sources-search' }, 'Search', search),
      only ? h('a', { href: '#/sources', class: 'chip' }, `health: ${only} ✕`) : null),
    totals, status,
    h('div', { class: 'panel list-panel' }, scroll),
  );

  function create(name) {
    const q = encodeURIComponent(name);
    return h('tr', { data: { source: name } },
      h('th', { scope: 'row' }, h('a', { href: `#/trends?source=${q}` }, name)),
      ...SOURCE_COLUMNS.slice(1).map(([col, label, cls]) => h('td', { class: col === 'why' ? 'summary' : cls, data: { col, label } }, col === 'health' ? h('b') : null)),
      h('td', {}, h('a', { href: `#/runs?source=${q}`, 'aria-label': `Runs of ${name}` }, 'runs'), ' · ',
        h('a', { href: `#/errors?source=${q}`, 'aria-label': `Errors of ${name}` }, 'errors')));
  }
  const rows = createVirtualRows({ scroller: scroll, tbody, colspan: SOURCE_COLUMNS.length + 1, create });

  function update(all, now) {
    last = [all, now];
    const list = viewOf(all, opts);
    const byName = new Map(list.map((x) => [x.src.name, x]));
    if (model.error && !model.loaded) text(status, `Could not load sources: ${model.error.message}`);
    else if (model.loaded) {
      text(status, only || opts.q ? `${list.length} of ${all.length} sources${only ? ` ${only}` : ''}${opts.q ? ` matching "${opts.q}"` : ''}` : `${list.length} sources`);
    }
    const n = Object.fromEntries(HEALTH_ORDER.map((st) => [st, 0]));
    const sum = { received: 0, rejected: 0, errors: 0 };
    for (const x of all) {
      n[x.hl.state] += 1;
      const fig = x.live || x.src.figures || {};
      for (const k of Object.keys(sum)) sum[k] += num(fig[k]) ?? 0;
    }
    text(totals, `${fmtCount(all.length)} sources: ${HEALTH_ORDER.map((st) => `${fmtCount(n[st])} ${st}`).join(' · ')}`
      + ` — last 5 min: ${fmtCount(sum.received)} received, ${fmtCount(sum.rejected)} rejected, ${fmtCount(sum.errors)} errors`);
    for (const th of heads) {
      const key = th.dataset.col;
      if (!key) continue;
      const dir = opts.sort === key ? 'ascending' : opts.sort === `-${key}` ? 'descending' : 'none';
      attr(th, 'aria-sort', dir);
      text(th.querySelector('.sort-mark'), dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : '');
    }
    rows.set(list.map((x) => x.src.name), (tr, name) => {
      const { src, live, hl } = byName.get(name);
      const fig = live || src.figures || {};
      const cell = (c) => tr.querySelector(`[data-col="${c}"]`);
      text(cell('kind'), src.kind ?? DASH);
      attr(cell('health'), 'data-health', hl.state);
      text(cell('health').firstChild, hl.state);
      text(cell('why'), hl.reasons.join('; ') || DASH);
      text(cell('last'), freshnessText(hl, now));
      text(cell('expected'), src.expected_interval_secs == null ? DASH : fmtDuration(src.expected_interval_secs * 1000));
      text(cell('received'), fmtCount(fig.received));
      text(cell('rejected'), hl.rejectRate == null ? fmtCount(fig.rejected) : `${fmtCount(fig.rejected)} (${fmtPercent(hl.rejectRate * 100)})`);
      text(cell('errors'), fmtCount(fig.errors));
      const run = src.last_run;
      const runCell = cell('run');
      const runKey = run ? `${run.id}:${run.status}` : '';
      if (runCell.dataset.key !== runKey) {
        runCell.dataset.key = runKey;
        runCell.replaceChildren(run ? h('a', { href: `#/run/${run.id}` }, `#${run.id} `, h('b', { data: { state: run.status } }, run.status)) : DASH);
      }
    });
  }
  return { update };
}
