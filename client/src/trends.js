// Trends from GET /api/trends (one metric per request, columnar, history
// from the rollups and the right edge live): the wallboard's last-hour charts
// (refreshed every few seconds and soon after KPI changes) and the `#/trends`
// view (range picker, source selector, four charts; all in the URL).

import { h, attr, text } from './dom.js';
import { createChart, reducedMotion } from './charts.js';
import { fmtDateTime } from './format.js';

/** Range name → length and bucket (≤ 1,440 points per series). */
export const RANGES = {
  '1h': { secs: 3600, bucket: 'minute', label: '1 hour' },
  '6h': { secs: 6 * 3600, bucket: 'minute', label: '6 hours' },
  '24h': { secs: 86_400, bucket: 'minute', label: '24 hours' },
  '7d': { secs: 7 * 86_400, bucket: 'hour', label: '7 days' },
  '30d': { secs: 30 * 86_400, bucket: 'hour', label: '30 days' },
  '90d': { secs: 90 * 86_400, bucket: 'day', label: '90 days' },
  '12mo': { secs: 365 * 86_400, bucket: 'day', label: '12 months' },
};
export const DEFAULT_RANGE = '24h';
const STEP = { minute: 60, hour: 3600, day: 86_400 };

/** [from, to) in epoch seconds: whole buckets, the last one holding `now`. */
export function rangeWindow(range, nowMs) {
  const { secs, bucket } = RANGES[range];
  const step = STEP[bucket];
  const to = Math.ceil((Math.floor(nowMs / 1000) + 1) / step) * step;
  return { from: to - secs, to, bucket, step };
}

const S = (key, label, color, extra = {}) => ({ key, label, color, ...extra });
/** Chart groups: which metrics share a chart. */
export const GROUPS = {
  throughput: { title: 'Throughput', kind: 'count', series: [S('received', 'Received', '--c-received', { fill: true }),
    S('normalized', 'Normalized', '--c-normalized'), S('rejected', 'Rejected', '--c-rejected', { dash: [6, 3] })] },
  problems: { title: 'Errors and warnings', kind: 'count', series: [S('errors', 'Errors', '--c-errors', { fill: true }),
    S('warnings', 'Warnings', '--c-warnings', { dash: [6, 3] })] },
  errors: { title: 'Errors', kind: 'count', series: [S('errors', 'Errors', '--c-errors', { fill: true })] },
  lag: { title: 'Processing lag', kind: 'ms', series: [S('lag_p50', 'p50', '--c-lag-50', { dash: [2, 3] }),
    S('lag_p95', 'p95', '--c-lag'), S('lag_p99', 'p99', '--c-lag-99', { dash: [6, 3] })] },
  lag95: { title: 'Lag p95', kind: 'ms', series: [S('lag_p95', 'p95', '--c-lag', { fill: true })] },
  runs: { title: 'Runs', kind: 'count', series: [S('runs_started', 'Started', '--c-received'),
    S('runs_succeeded', 'Succeeded', '--c-normalized'), S('runs_failed', 'Failed', '--c-rejected', { dash: [6, 3] }),
    S('runs_partial', 'Partial', '--c-warnings', { dash: [2, 3] })] },
  duration: { title: 'Run duration', kind: 'ms', series: [S('run_duration_p50', 'p50', '--c-lag-50', { dash: [2, 3] }),
    S('run_duration_p95', 'p95', '--c-lag'), S('run_duration_p99', 'p99', '--c-lag-99', { dash: [6, 3] })] },
};

/**
 * Fetches `metrics` over one window; resolves to chart data
 * { t, values: { metric: [] }, from, to, step, stepName } of `source` (or the total).
 */
export async function fetchTrends(rest, metrics, { bucket, from, to, source }) {
  const base = new URLSearchParams({ bucket, from: String(from), to: String(to) });
  if (source) base.set('source', source);
  const bodies = await Promise.all(metrics.map((m) => {
    const q = new URLSearchParams(base);
    q.set('metric', m);
    return rest.get(`/api/trends?${q}`);
  }));
  const first = bodies[0];
  const values = {};
  bodies.forEach((b, i) => { values[metrics[i]] = b.series?.[source || 'total'] || b.t.map(() => null); });
  return { t: first.t, values, from: first.from, to: first.to, step: first.step, stepName: first.bucket };
}

const metricsOf = (groups) => [...new Set(groups.flatMap((g) => GROUPS[g].series.map((s) => s.key)))];

/**
 * The wallboard's last hour: throughput, errors, lag p95. `kpisChanged()`
 * asks for a refresh soon (at most one every `minGap` ms); a refresh also
 * runs every `every` ms while `canFetch()`. The visible window slides every second (only on
 * refresh with prefers-reduced-motion).
 */
export function createWallCharts(host, rest, { every = 10_000, minGap = 3000, canFetch = () => true } = {}) {
  const groups = ['throughput', 'errors', 'lag95'];
  const charts = groups.map((g) => createChart(host, { id: `wall-${g}`, ...GROUPS[g], figure: GROUPS[g].kind === 'ms' ? 'peak' : 'total' }));
  const metrics = metricsOf(groups);
  let last = 0;
  let pending = false;
  let busy = false;
  let timers = [];

  async function refresh() {
    if (!canFetch()) return; // socket down: the server likely is too; the next snapshot refreshes
    if (busy) { pending = true; return; }
    busy = true;
    pending = false;
    last = Date.now();
    try {
      const data = await fetchTrends(rest, metrics, rangeWindow('1h', Date.now()));
      for (const c of charts) c.setData(data);
      attr(host, 'data-error', null);
    } catch (e) {
      attr(host, 'data-error', e.message);
    } finally {
      busy = false;
      if (pending) setTimeout(refresh, Math.max(0, minGap - (Date.now() - last)));
    }
  }
  return {
    start() {
      if (timers.length) return;
      refresh();
      timers = [setInterval(refresh, every), setInterval(() => {
        if (reducedMotion()) return;
        const now = Date.now() / 1000;
        for (const c of charts) c.setWindow(now - 3600, now);
      }, 1000)];
    },
    stop() { timers.forEach(clearInterval); timers = []; },
    kpisChanged() {
      if (!timers.length || pending) return;
      const wait = minGap - (Date.now() - last);
      if (wait <= 0) refresh();
      else { pending = true; setTimeout(() => { if (pending) refresh(); }, wait); }
    },
  };
}

/** `#/trends?range=7d&source=crm`: four charts of one range and one source (or all). */
export function renderTrendsView(root, { rest, params, sources, navigate }) {
  const range = RANGES[params.get('range')] ? params.get('range') : DEFAULT_RANGE;
  const source = params.get('source') || '';
  const go = (r, s) => {
    const q = new URLSearchParams({ range: r });
    if (s) q.set('source', s);
    navigate(`#/trends?${q}`);
  };
  const picker = h('div', { class: 'range-picker', role: 'group', 'aria-label': 'Time range' },
    Object.entries(RANGES).map(([name, r]) => h('button', {
      type: 'button', data: { range: name }, 'aria-pressed': String(name === range), title: `${r.label}, per ${r.bucket}`,
      on: { click: () => go(name, source) },
    }, name)));
  const select = h('select', { id: 'trends-source', name: 'source', on: { change: (e) => go(range, e.target.value) } },
    h('option', { value: '' }, 'all sources'));
  const fillSources = (names) => {
    const want = new Set(names);
    if (source) want.add(source);
    select.replaceChildren(h('option', { value: '' }, 'all sources'),
      ...[...want].sort().map((n) => h('option', { value: n, selected: n === source }, n)));
  };
  fillSources(sources.items.map((s) => s.name));
  if (!sources.loaded) sources.refresh().then(() => fillSources(sources.items.map((s) => s.name)));

  const status = h('p', { class: 'list-status', role: 'status' }, 'Loading…');
  const grid = h('div', { class: 'chart-grid' });
  root.replaceChildren(
    h('div', { class: 'console-head' }, h('h2', {}, 'Trends'), picker,
      h('label', { class: 'inline', htmlFor: 'trends-source' }, 'Source', select)),
    status, grid);
  const groups = ['throughput', 'problems', 'lag', 'runs', 'duration'];
  const charts = groups.map((g) => createChart(grid, { id: g, ...GROUPS[g] }));
  let gone = false;
  let timer = 0;

  async function load() {
    const win = rangeWindow(range, Date.now());
    try {
      const data = await fetchTrends(rest, metricsOf(groups), { ...win, source });
      if (gone) return;
      for (const c of charts) c.setData(data);
      root.dataset.range = range;
      root.dataset.source = source;
      text(status, `${RANGES[range].label} per ${data.stepName}, ${source || 'all sources'}; `
        + `${fmtDateTime(data.from * 1000)} – ${fmtDateTime(data.to * 1000)}`);
      attr(status, 'data-loaded', 'true');
    } catch (e) {
      if (!gone) text(status, `Could not load trends: ${e.message}`);
    }
  }
  load();
  // short ranges follow the live edge
  if (RANGES[range].bucket === 'minute') timer = setInterval(load, 15_000);
  return { leave() { gone = true; clearInterval(timer); for (const c of charts) c.destroy(); } };
}
