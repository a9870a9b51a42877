// Time-series charts on uPlot (client/vendor, imported on first use so views
// without charts never load it). A chart keeps the latest columnar data and
// its time window and draws at most once per animation frame, however often
// it is fed; colours come from the theme's CSS variables and are re-read when
// the theme changes. Every chart has a text alternative: a legend with the
// range's figures and a data table (built when opened).

import { h, text } from './dom.js';
import { DASH, fmtCount, fmtDateTime, fmtDuration, fmtUtc } from './format.js';

let uplot = null;
/** Loads uPlot and its stylesheet once. */
export function loadUPlot() {
  if (!uplot) {
    document.head.append(h('link', { rel: 'stylesheet', href: 'vendor/uPlot.min.css' }));
    uplot = import('../vendor/uPlot.esm.js').then((m) => m.default);
  }
  return uplot;
}

export const reducedMotion = () => matchMedia('(prefers-reduced-motion: reduce)').matches;

/** Value formatter of a chart kind: counts or milliseconds. */
export const fmtValue = (kind, v) => (kind === 'ms' ? fmtDuration(v) : fmtCount(v));

/** Sum (counts) or peak (ms) of a series, null when it holds no number. */
export function seriesFigure(kind, values) {
  let out = null;
  for (const v of values || []) {
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    out = out === null ? v : kind === 'ms' ? Math.max(out, v) : out + v;
  }
  return out;
}

function lastNumber(values) {
  for (let i = (values || []).length - 1; i >= 0; i--) {
    if (typeof values[i] === 'number' && Number.isFinite(values[i])) return values[i];
  }
  return null;
}

/** Points on a series with few values (a lone value draws no line). */
function sparse(u, si) {
  let n = 0;
  for (const v of u.data[si]) if (v != null && ++n > 90) return false;
  return true;
}

/** Tick steps of the value axes: whole counts, whole milliseconds. */
const WHOLE_INCRS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9].map((p) => m * p)).sort((a, b) => a - b);

/** "#rrggbb" → the same colour at 15 % opacity (canvas styles take no color-mix()). */
function translucent(color) {
  return /^#[0-9a-f]{6}$/i.test(color) ? `${color}26` : color;
}

function fmtTick(t, step) {
  const d = new Date(t * 1000);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  if (step >= 86_400) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  if (step >= 3600 && d.getHours() === 0) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return `${hh}:${mm}`;
}

// All charts redraw from one animation-frame callback.
const dirty = new Set();
let frame = 0;
function schedule(chart) {
  dirty.add(chart);
  if (!frame) {
    frame = requestAnimationFrame(() => {
      frame = 0;
      const todo = [...dirty];
      dirty.clear();
      for (const c of todo) c.draw();
    });
  }
}

// Theme changes (toggle or OS setting) rebuild every live chart.
const live = new Set();
let themeWatch = false;
function watchTheme() {
  if (themeWatch) return;
  themeWatch = true;
  const rebuild = () => { for (const c of live) c.rebuild(); };
  new MutationObserver(rebuild).observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
  matchMedia('(prefers-color-scheme: light)').addEventListener('change', rebuild);
}

/**
 * @param {HTMLElement} host  receives the chart (legend, plot, data table)
 * @param {object} spec
 * @param {string} spec.id      stable id (for tests and labels)
 * @param {string} spec.title
 * @param {'count'|'ms'} spec.kind
 * @param {{key: string, label: string, color: string, dash?: number[]}[]} spec.series  color: a CSS variable name
 * @param {string} [spec.figure]  legend figure label ("total" or "peak")
 */
export function createChart(host, spec) {
  const { id, title, kind, series } = spec;
  const figureLabel = spec.figure || (kind === 'ms' ? 'peak' : 'total');
  let data = null; // { t: [], values: { key: [] }, from, to, step }
  let win = null;  // [from, to] epoch seconds
  let u = null;
  let gone = false;

  const legend = h('ul', { class: 'chart-legend' }, series.map((s) => h('li', { data: { series: s.key } },
    h('span', { class: 'swatch', data: { color: s.color.slice(2) }, 'aria-hidden': 'true' }),
    `${s.label} `, h('small', { class: 'fig-kind' }, `${figureLabel} `), h('b', { data: { figure: '' } }, DASH), h('small', { class: 'fig-last' }, ''))));
  const readout = h('p', { class: 'chart-readout', 'aria-hidden': 'true' }, '\u00a0');
  const plot = h('div', { class: 'chart-plot', role: 'img', 'aria-label': `${title} chart; figures in the legend and the data table` });
  const table = h('div', { class: 'chart-table', tabIndex: 0, role: 'region', 'aria-label': `${title}: data table` });
  const details = h('details', { class: 'chart-data' }, h('summary', {}, 'Data table'), table);
  details.addEventListener('toggle', () => { if (details.open) fillTable(); });
  const box = h('figure', { class: 'chart', id: `chart-${id}`, data: { chart: id } },
    h('figcaption', {}, h('h3', {}, title), legend), plot, readout, details);
  host.append(box);

  function colors() {
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim() || '#888';
    return { v, muted: v('--muted'), grid: v('--border'), size: parseFloat(css.fontSize) || 16 };
  }

  function options(width, height) {
    const c = colors();
    const font = `${Math.round(c.size * 0.8)}px system-ui, sans-serif`;
    const axis = {
      stroke: c.muted, font, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1, size: 4 },
    };
    return {
      width, height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      scales: {
        x: { time: true, range: () => win || [0, 1] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { ...axis, values: (_u, splits) => splits.map((t) => fmtTick(t, data?.step || 60)), space: c.size * 5 },
        { ...axis, size: c.size * 4.2, values: (_u, splits) => splits.map((v) => fmtValue(kind, v)), space: c.size * 2.2,
          incrs: WHOLE_INCRS },
      ],
      series: [{}, ...series.map((s) => ({
        label: s.label, stroke: c.v(s.color), width: 2, dash: s.dash, spanGaps: kind === 'ms',
        points: kind === 'ms' ? { show: sparse, size: 6 } : undefined, // lag has no value in idle buckets
        fill: s.fill ? translucent(c.v(s.color)) : undefined,
      }))],
      hooks: { setCursor: [(self) => showReadout(self.cursor.idx)] },
    };
  }

  function showReadout(idx) {
    if (idx == null || !data) { text(readout, '\u00a0'); return; }
    const parts = series.map((s) => `${s.label} ${fmtValue(kind, data.values[s.key]?.[idx])}`);
    text(readout, `${fmtTick(data.t[idx], 60)}${data.step >= 86_400 ? '' : ` ${fmtDateTime(data.t[idx] * 1000).slice(0, 10)}`} — ${parts.join(' · ')}`);
  }

  function size() {
    return { width: Math.max(120, Math.floor(plot.clientWidth)), height: Math.max(80, Math.floor(plot.clientHeight)) };
  }

  function columns() {
    if (!data) return [[], ...series.map(() => [])];
    return [data.t, ...series.map((s) => data.values[s.key] || data.t.map(() => null))];
  }

  async function build() {
    const UPlot = await loadUPlot();
    if (gone || u) return;
    const { width, height } = size();
    u = new UPlot(options(width, height), columns(), plot);
    live.add(chart);
  }

  function fillTable() {
    if (!data) { table.replaceChildren(h('p', { class: 'empty' }, 'No data yet.')); return; }
    const head = h('tr', {}, h('th', { scope: 'col' }, 'Bucket (UTC)'), series.map((s) => h('th', { scope: 'col', class: 'n' }, s.label)));
    const rows = data.t.map((t, i) => h('tr', { data: { t } }, h('th', { scope: 'row' }, fmtUtc(t * 1000).replace(' UTC', '')),
      series.map((s) => h('td', { class: 'n', data: { value: data.values[s.key]?.[i] ?? '' } }, fmtValue(kind, data.values[s.key]?.[i])))));
    table.replaceChildren(h('table', { class: 'list' }, h('caption', {}, `${title}, one row per ${data.stepName || 'bucket'}`),
      h('thead', {}, head), h('tbody', {}, rows)));
  }

  function updateLegend() {
    for (const s of series) {
      const li = legend.querySelector(`[data-series="${s.key}"]`);
      const values = data?.values[s.key];
      const fig = seriesFigure(kind, values);
      const b = li.querySelector('b');
      b.dataset.figure = fig == null ? '' : String(fig);
      text(b, fmtValue(kind, fig));
      text(li.querySelector('.fig-last'), data ? ` · last ${fmtValue(kind, lastNumber(values))}` : '');
    }
  }

  const ro = new ResizeObserver(() => schedule(chart));
  ro.observe(plot);

  const chart = {
    el: box,
    /** New data: { t, values: { key: [] }, from, to, step }. Drawn on the next frame. */
    setData(next) {
      data = next;
      win = [next.from, next.to];
      updateLegend();
      box.dataset.from = next.from;
      box.dataset.to = next.to;
      box.dataset.step = next.step;
      if (details.open) fillTable();
      schedule(chart);
    },
    /** Slides the visible window without new data. */
    setWindow(from, to) {
      win = [from, to];
      schedule(chart);
    },
    draw() {
      if (gone) return;
      if (!u) { build().then(() => u && chart.draw()); return; }
      const { width, height } = size();
      if (u.width !== width || u.height !== height) u.setSize({ width, height });
      u.setData(columns());
      box.dataset.drawn = String((Number(box.dataset.drawn) || 0) + 1);
    },
    rebuild() {
      if (!u) return;
      u.destroy();
      u = null;
      schedule(chart);
    },
    destroy() {
      gone = true;
      ro.disconnect();
      live.delete(chart);
      u?.destroy();
      u = null;
      box.remove();
    },
  };
  watchTheme();
  schedule(chart);
  return chart;
}
