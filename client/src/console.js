// Ops console: hash routes `#/runs`, `#/records`, `#/errors` (lists with the
// API's filters, paging and CSV export) and `#/record/{id}` (raw JSON side by
// side with the normalized meeting and its errors). REST through rest.js.

import { DASH, fmtCount, fmtDateTime, fmtDuration, fmtFull, fmtUtc, parseTime } from './format.js';
import { createLiveList } from './livelist.js';
import { createJsonView } from './jsonview.js';
import { h } from './dom.js';
import { createRest } from './rest.js';
import { createSourcePicker } from './sourcepicker.js';

const sel = (name, label, options) => ({ name, label, options: ['', ...options] });
const txt = (name, label) => ({ name, label });
/** The multi-select source picker (sourcepicker.js); `source=a,b` in the URL and the API. */
const pick = (name, label) => ({ name, label, picker: true });
/** A time filter: the browser's local time in the input, UTC RFC 3339 in the URL and the API. */
const when = (name, label) => ({ name, label, time: true });
const RANGE = [when('from', 'From'), when('to', 'Until')];

/** "2026-11-26T10:15:30Z" → the local "2026-11-26T11:15:30" a datetime-local input takes. */
export function toLocalInput(iso) {
  const t = parseTime(iso);
  if (t == null) return '';
  return new Date(t - new Date(t).getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}
/** A datetime-local value (local time) → UTC RFC 3339, or '' when invalid. */
export function fromLocalInput(v) {
  const t = Date.parse(v); // no zone in the text: local time
  return Number.isNaN(t) ? '' : new Date(t).toISOString().replace('.000Z', 'Z');
}

export const LISTS = {
  runs: {
    title: 'Runs',
    filters: [pick('source', 'Source'), sel('status', 'Status', ['running', 'succeeded', 'failed', 'partial']), ...RANGE],
    sorts: { id: 'id', status: 'status', started_at: 'started_at' },
    tones: { status: { failed: 'bad', partial: 'warn', succeeded: 'good' } },
    columns: [
      ['id', 'Run', (r) => link(`#/run/${r.id}`, `#${r.id}`, `Run ${r.id}`)],
      ['source', 'Source'], ['status', 'Status'], ['started_at', 'Started', time],
      ['duration_ms', 'Duration', (r) => fmtDuration(r.duration_ms), 'n'],
      ['records_received', 'Received', null, 'n'], ['records_normalized', 'Normalized', null, 'n'],
      ['records_rejected', 'Rejected', null, 'n'], ['records_pending', 'Pending', null, 'n'],
      ['errors', 'Errors', null, 'n'], ['warnings', 'Warnings', null, 'n'],
    ],
  },
  records: {
    title: 'Records',
    sorts: { id: 'id', external_id: 'external_id', status: 'status', received_at: 'received_at', processed_at: 'processed_at' },
    tones: { status: { rejected: 'bad', normalized: 'good', pending: 'warn' } },
    filters: [pick('source', 'Source'), sel('status', 'Status', ['pending', 'normalized', 'rejected']),
      txt('run', 'Run id'), txt('external_id', 'External id'), ...RANGE],
    columns: [
      ['id', 'Record', (r) => link(`#/record/${r.id}`, `#${r.id}`, `Record ${r.id}`)],
      ['source', 'Source'], ['external_id', 'External id'], ['status', 'Status'],
      ['received_at', 'Received', time], ['processed_at', 'Processed', time], ['run_id', 'Run', null, 'n'],
    ],
  },
  errors: {
    title: 'Errors',
    sorts: { occurred_at: 'occurred_at', severity: 'severity', stage: 'stage', code: 'code' },
    tones: { severity: { error: 'bad', warning: 'warn' } },
    filters: [pick('source', 'Source'), sel('severity', 'Severity', ['error', 'warning']),
      sel('stage', 'Stage', ['fetch', 'validate', 'normalize', 'load']), txt('code', 'Code'), txt('q', 'Message contains'),
      txt('run', 'Run id'), ...RANGE],
    columns: [
      ['occurred_at', 'Time', time], ['source', 'Source'], ['severity', 'Severity'], ['stage', 'Stage'],
      ['code', 'Code'], ['message', 'Message'],
      ['raw_record_id', 'Record', (r) => (r.raw_record_id == null ? DASH
        : link(`#/record/${r.raw_record_id}`, `#${r.raw_record_id}`, `Record ${r.raw_record_id}`))],
    ],
  },
};

function link(href, text, label) { return h('a', label ? { href, 'aria-label': label } : { href }, text); }
function time(r, key) {
  const t = parseTime(r[key]);
  if (t == null) return DASH;
  return h('time', { datetime: r[key], title: fmtUtc(t) }, fmtDateTime(t));
}
function show(v) {
  if (v == null || v === '') return DASH;
  return typeof v === 'number' ? fmtCount(v) : String(v);
}

/** The API's default order of each list (newest first). */
const DEFAULT_SORT = { runs: '-started_at', records: '-received_at', errors: '-occurred_at' };

/** A column header; a button that sorts by it (server side: `sort=col` / `sort=-col`) where the API can. */
function sortHeader(kind, spec, q, key, label, cls) {
  const by = spec.sorts?.[key];
  if (!by) return h('th', { scope: 'col', className: cls || '' }, label);
  const current = q.get('sort') || DEFAULT_SORT[kind];
  const dir = current === by ? 'ascending' : current === `-${by}` ? 'descending' : null;
  const next = new URLSearchParams(q);
  next.set('sort', dir === 'descending' ? by : `-${by}`);
  const b = h('button', { type: 'button', class: 'sort', data: { sort: by } }, label,
    h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''));
  b.addEventListener('click', () => { location.hash = `#/${kind}?${next}`; });
  return h('th', { scope: 'col', className: cls || '', 'aria-sort': dir || 'none' }, b);
}

/** Parses `#/runs?source=crm` into { route: ['runs'], params }. */
export function parseRoute(hash) {
  const s = hash.replace(/^#/, '');
  if (!s.startsWith('/')) return { route: [], params: new URLSearchParams(s) };
  const q = s.indexOf('?');
  const p = q < 0 ? s : s.slice(0, q);
  return { route: p.split('/').filter(Boolean), params: new URLSearchParams(q < 0 ? '' : s.slice(q + 1)) };
}

export function createConsole({ root, getToken, onAuthError }) {
  let gen = 0; // drops answers of views that were left

  const rest = createRest({ getToken, onAuthError });

  function filterQuery(spec, params) {
    const q = new URLSearchParams();
    for (const f of spec.filters) {
      const v = params.get(f.name);
      if (v) q.set(f.name, v);
    }
    const sort = params.get('sort') || '';
    if (spec.sorts && Object.values(spec.sorts).includes(sort.replace(/^-/, ''))) q.set('sort', sort);
    return q;
  }

  function renderList(kind, params) {
    const spec = LISTS[kind];
    const my = ++gen;
    const q = filterQuery(spec, params);
    const form = h('form', { className: 'filters', 'aria-label': `${spec.title} filters` });
    for (const f of spec.filters) {
      const id = `f-${kind}-${f.name}`;
      let input;
      if (f.picker) {
        form.append(createSourcePicker({ id, name: f.name, value: q.get(f.name) || '', rest, label: f.label }));
        continue;
      }
      if (f.options) input = h('select', { id, name: f.name }, ...f.options.map((o) => h('option', { value: o }, o || 'any')));
      else if (f.time) input = h('input', { id, name: f.name, type: 'datetime-local', step: 1, title: fmtUtc(parseTime(q.get(f.name))) });
      else input = h('input', { id, name: f.name, type: 'search', autocomplete: 'off', spellcheck: false });
      input.value = f.time ? toLocalInput(q.get(f.name)) : q.get(f.name) || '';
      form.append(h('label', { htmlFor: id }, f.label, input));
    }
    form.append(h('button', { type: 'submit' }, 'Apply'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const next = new URLSearchParams();
      const times = new Set(spec.filters.filter((f) => f.time).map((f) => f.name));
      for (const [k, v] of new FormData(form)) {
        const val = times.has(k) ? fromLocalInput(String(v)) : String(v).trim();
        if (val) next.set(k, val);
      }
      if (q.get('sort')) next.set('sort', q.get('sort'));
      const s = next.toString();
      location.hash = `#/${kind}${s ? `?${s}` : ''}`;
    });
    form.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT') form.requestSubmit(); });

    const status = h('p', { className: 'list-status', role: 'status' }, 'Loading…');
    const exportBtn = h('button', { type: 'button', className: 'export', data: { export: kind } }, 'Export CSV');
    exportBtn.addEventListener('click', () => exportCsv(kind, q, status));
    const thead = h('thead', {}, h('tr', {}, ...spec.columns.map(([key, label, , cls]) => sortHeader(kind, spec, q, key, label, cls))));
    const tbody = h('tbody');
    const table = h('table', { className: 'list', data: { list: kind } }, thead, tbody);
    const more = h('button', { type: 'button', className: 'more', hidden: true }, 'Load more');
    let cursor = null;
    const makeRow = (r) => h('tr', { data: { id: String(r.id) } }, ...spec.columns.map(([key, label, fmt, cls]) => {
      const v = fmt ? fmt(r, key) : show(r[key]);
      const full = typeof r[key] === 'number' && Math.abs(r[key]) >= 1e5 ? { title: fmtFull(r[key]) } : {}; // compact "1.2M"
      const tone = spec.tones?.[key]?.[r[key]];
      return h('td', { className: cls || '', data: { col: key, label, ...(tone ? { tone } : {}) }, ...full }, v);
    }));
    const counted = () => { status.textContent = `${tbody.rows.length} ${kind}${cursor ? ' (more available)' : ''}`; };
    const live = createLiveList({
      kind, params: q, tbody, makeRow, alive: () => my === gen, changed: counted,
      firstPage: async () => {
        const page = new URLSearchParams(q);
        page.set('limit', '50');
        return (await rest.get(`/api/${kind}?${page}`)).items;
      },
    });

    async function load() {
      const page = new URLSearchParams(q);
      page.set('limit', '100');
      if (cursor) page.set('cursor', cursor);
      more.disabled = true;
      try {
        const body = await rest.get(`/api/${kind}?${page}`);
        if (my !== gen) return;
        const have = new Set([...tbody.rows].map((tr) => tr.dataset.id));
        for (const r of body.items) if (!have.has(String(r.id))) tbody.append(makeRow(r)); // a live row may be here already
        live.seen(body.items);
        cursor = body.next_cursor;
        more.hidden = !cursor;
        counted();
      } catch (e) {
        if (my === gen) status.textContent = `Could not load ${kind}: ${e.message}`;
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener('click', load);

    root.replaceChildren(
      h('div', { className: 'console-head' }, h('h2', {}, spec.title), live.controls, exportBtn),
      form, status,
      h('div', { className: 'panel list-panel' }, h('div', { className: 'scroll' }, table), more),
    );
    load();
  }

  async function exportCsv(kind, q, status) {
    try {
      const f = new URLSearchParams(q);
      f.delete('sort'); // the export keeps the API's order
      const r = await rest.fetchOk(`/api/export/${kind}.csv${f.toString() ? `?${f}` : ''}`);
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: `${kind}.csv`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      status.textContent = `Exported ${kind}.csv (${fmtCount(blob.size)} bytes)`;
    } catch (e) {
      status.textContent = `Export failed: ${e.message}`;
    }
  }

  async function renderRecord(id) {
    const my = ++gen;
    const status = h('p', { className: 'list-status', role: 'status' }, 'Loading…');
    root.replaceChildren(h('div', { className: 'console-head' }, h('h2', {}, `Record #${id}`)), status);
    let body;
    try {
      body = await rest.get(`/api/records/${encodeURIComponent(id)}`);
    } catch (e) {
      if (my === gen) status.textContent = `Could not load record ${id}: ${e.message}`;
      return;
    }
    if (my !== gen) return;
    const rec = body.record;
    status.textContent = `${rec.source} · ${rec.external_id ?? DASH} · ${rec.status}`;

    const raw = body.payload_redacted
      ? h('pre', { id: 'raw-json', className: 'json', tabIndex: 0, 'aria-label': 'Raw JSON payload' }, 'payload hidden (operator role required)')
      : createJsonView(body.payload_text ?? '').element;
    const dl = (pairs) => h('dl', { className: 'kv' }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { data: { field: k } }, v)]));
    const m = body.meeting;
    const meeting = m
      ? dl([['title', show(m.title)], ['starts_at', time(m, 'starts_at')], ['ends_at', time(m, 'ends_at')],
        ['organizer', show(m.organizer)], ['attendee_count', show(m.attendee_count)]])
      : h('p', { className: 'empty' }, 'Not normalized.');
    const errs = body.errors.length
      ? h('ul', { className: 'errlist' }, ...body.errors.map((e) => h('li', { data: { code: e.code } },
        h('b', { data: { tone: e.severity === 'error' ? 'bad' : 'warn' } }, `${e.severity} · ${e.stage} · ${e.code}`), ` ${e.message}`)))
      : h('p', { className: 'empty' }, 'No errors.');
    const meta = dl([['record', `#${rec.id}`], ['run', rec.run_id == null ? DASH : link(`#/run/${rec.run_id}`, `#${rec.run_id}`, `Run ${rec.run_id}`)],
      ['received_at', time(rec, 'received_at')], ['processed_at', time(rec, 'processed_at')]]);
    root.append(h('div', { className: 'drill' },
      h('section', { className: 'panel', 'aria-labelledby': 'raw-h' },
        h('h3', { id: 'raw-h' }, 'Raw JSON'), raw),
      h('section', { className: 'panel', 'aria-labelledby': 'norm-h' },
        h('h3', { id: 'norm-h' }, 'Normalized meeting'), h('div', { id: 'meeting' }, meeting),
        h('h3', {}, 'Errors'), h('div', { id: 'record-errors' }, errs),
        h('h3', {}, 'Record'), meta)));
  }

  async function renderRun(id) {
    const my = ++gen;
    const status = h('p', { className: 'list-status', role: 'status' }, 'Loading…');
    root.replaceChildren(h('div', { className: 'console-head' }, h('h2', {}, `Run #${id}`)), status);
    let body;
    try {
      body = await rest.get(`/api/runs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (my === gen) status.textContent = `Could not load run ${id}: ${e.message}`;
      return;
    }
    if (my !== gen) return;
    const { run, error_summary: summary, timeline: tl } = body;
    status.textContent = `${run.source} · ${run.status}`;
    const dl = (pairs) => h('dl', { className: 'kv' }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { data: { field: k } }, v)]));
    const figures = dl([['status', run.status], ['duration', fmtDuration(run.duration_ms)],
      ['received', show(run.records_received)], ['normalized', show(run.records_normalized)],
      ['rejected', show(run.records_rejected)], ['pending', show(run.records_pending)],
      ['errors', show(run.errors)], ['warnings', show(run.warnings)]]);
    const timeline = dl([['started_at', time(tl, 'started_at')], ['first_record_at', time(tl, 'first_record_at')],
      ['last_record_at', time(tl, 'last_record_at')], ['finished_at', time(tl, 'finished_at')]]);
    const sumTable = summary.length
      ? h('table', { className: 'list', id: 'error-summary' },
        h('thead', {}, h('tr', {}, ...['Code', 'Severity', 'Count', 'First', 'Last'].map((c, i) => h('th', { scope: 'col', className: i === 2 ? 'n' : '' }, c)))),
        h('tbody', {}, ...summary.map((e) => h('tr', { data: { code: e.code } },
          h('td', {}, link(`#/errors?run=${run.id}&code=${encodeURIComponent(e.code)}`, e.code, `Errors ${e.code} of run ${run.id}`)),
          h('td', {}, e.severity), h('td', { className: 'n' }, show(e.count)),
          h('td', {}, time(e, 'first_at')), h('td', {}, time(e, 'last_at'))))))
      : h('p', { className: 'empty' }, 'No errors.');
    root.append(
      h('p', { className: 'links' }, link(`#/records?run=${run.id}`, 'Records of this run', null),
        ' · ', link(`#/errors?run=${run.id}`, 'Errors of this run', null)),
      h('div', { className: 'drill' },
        h('section', { className: 'panel', 'aria-labelledby': 'run-h' }, h('h3', { id: 'run-h' }, 'Figures'), figures,
          h('h3', {}, 'Timeline'), timeline),
        h('section', { className: 'panel', 'aria-labelledby': 'sum-h' }, h('h3', { id: 'sum-h' }, 'Error summary'), sumTable)));
  }

  /** Shows the view of `route` (from parseRoute); false when it is not a console route. */
  return function route({ route: r, params }) {
    const [head, arg] = r;
    if (LISTS[head] && !arg) { renderList(head, params); return true; }
    if (head === 'record' && /^\d+$/.test(arg || '')) { renderRecord(arg); return true; }
    if (head === 'run' && /^\d+$/.test(arg || '')) { renderRun(arg); return true; }
    return false;
  };
}
