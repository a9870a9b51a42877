// Source health: one state per source (healthy / warning / failing / stale)
// from /api/sources (expected interval, newest record, last run), the live
// 5-minute figures of the `kpis` topic and the active alerts; the wallboard's
// health grid and the `#/sources` view. `sourceHealth` is pure (time passed in).

import { h, text, attr } from './dom.js';
import { DASH, fmtAgo, fmtCount, fmtDuration, fmtPercent, parseTime } from './format.js';
import { fmtAlertValue } from './alerts.js';

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

/** `#/sources`: every source with its health, freshness, live figures and last run. */
export function renderSourcesView(root, { model, params = new URLSearchParams() }) {
  const only = HEALTH_ORDER.includes(params.get('health')) ? params.get('health') : null;
  const tbody = h('tbody');
  const status = h('p', { class: 'list-status', role: 'status' }, 'Loading…');
  root.replaceChildren(
    h('div', { class: 'console-head' }, h('h2', {}, 'Sources'),
      h('span', { class: 'meta' }, 'figures of the last 5 minutes, live')),
    status,
    h('div', { class: 'panel list-panel' }, h('div', { class: 'scroll' },
      h('table', { class: 'list', id: 'sources-list' },
        h('thead', {}, h('tr', {}, [['Source'], ['Kind'], ['Health'], ['Why'], ['Last record'], ['Expected every', 'n'],
          ['Received', 'n'], ['Rejected', 'n'], ['Errors', 'n'], ['Last run'], ['']]
          .map(([c, cls]) => h('th', { scope: 'col', class: cls || null }, c)))),
        tbody))),
  );
  const rows = new Map();
  return {
    update(all, now) {
      const list = only ? all.filter((x) => x.hl.state === only) : all;
      if (model.error && !model.loaded) text(status, `Could not load sources: ${model.error.message}`);
      else if (model.loaded) text(status, only ? `${list.length} of ${all.length} sources ${only}` : `${list.length} sources`);
      const seen = new Set();
      list.forEach(({ src, live, hl }, i) => {
        seen.add(src.name);
        let tr = rows.get(src.name);
        if (!tr) {
          const q = encodeURIComponent(src.name);
          tr = h('tr', { data: { source: src.name } },
            h('th', { scope: 'row' }, h('a', { href: `#/trends?source=${q}` }, src.name)),
            h('td', { data: { col: 'kind' } }), h('td', { data: { col: 'health' } }, h('b')), h('td', { data: { col: 'why' }, class: 'summary' }),
            h('td', { data: { col: 'last' } }), h('td', { class: 'n', data: { col: 'expected' } }),
            h('td', { class: 'n', data: { col: 'received' } }), h('td', { class: 'n', data: { col: 'rejected' } }),
            h('td', { class: 'n', data: { col: 'errors' } }), h('td', { data: { col: 'run' } }),
            h('td', {}, h('a', { href: `#/runs?source=${q}`, 'aria-label': `Runs of ${src.name}` }, 'runs'), ' · ',
              h('a', { href: `#/errors?source=${q}`, 'aria-label': `Errors of ${src.name}` }, 'errors')));
          rows.set(src.name, tr);
        }
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
          runCell.replaceChildren(run ? h('a', { href: `#/run/${run.id}` }, `#${run.id} ${run.status}`) : DASH);
        }
        if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      });
      for (const [name, tr] of rows) if (!seen.has(name)) { tr.remove(); rows.delete(name); }
    },
  };
}
