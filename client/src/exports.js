// Background CSV export jobs (operators): `#/exports` starts a job from a
// list's filter (POST /api/exports; the form is prefilled from the URL or the
// last list viewed), follows it live (WebSocket topic `exports`, with
// GET /api/exports/{id} as the fallback), offers the download when it is
// finished and cancels or deletes it. The list comes from GET /api/exports
// (the caller's jobs, from any tab or browser); this browser also remembers
// the filters of the jobs it started (localStorage), which the server does
// not echo.

import { h, text, attr } from './dom.js';
import { DASH, fmtCount, fmtDateTime, fmtUtc, parseTime } from './format.js';

const KEY = 'ingestwatch.exports';
const DONE = new Set(['finished', 'failed', 'cancelled', 'expired', 'deleted']);

/** Filters a job can take, per list (the list's query parameters). */
export const EXPORT_FILTERS = {
  runs: [['source', 'Source'], ['status', 'Status', ['running', 'succeeded', 'failed', 'partial']], ['from', 'From (RFC 3339)'], ['to', 'To']],
  records: [['source', 'Source'], ['status', 'Status', ['pending', 'normalized', 'rejected']], ['run', 'Run id'],
    ['external_id', 'External id'], ['from', 'From (RFC 3339)'], ['to', 'To']],
  errors: [['source', 'Source'], ['severity', 'Severity', ['error', 'warning']], ['stage', 'Stage', ['fetch', 'validate', 'normalize', 'load']],
    ['code', 'Code'], ['q', 'Message contains'], ['run', 'Run id'], ['from', 'From (RFC 3339)'], ['to', 'To']],
};

function load() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || '[]');
    return Array.isArray(v) ? v.filter((j) => j && typeof j.id === 'string') : [];
  } catch { return []; }
}

/** The jobs this browser started: state from REST and the `exports` topic. */
export function createExportStore({ rest, onChange }) {
  const jobs = new Map(load().map((j) => [j.id, j]));
  let polling = 0;
  const save = () => {
    try {
      localStorage.setItem(KEY, JSON.stringify([...jobs.values()].map(({ id, kind, filters, include_payload: p, created_at: c }) => ({
        id, kind, filters, include_payload: p, created_at: c }))));
    } catch { /* private mode: this tab only */ }
  };
  const merge = (id, patch) => {
    const j = jobs.get(id);
    if (!j) return false;
    Object.assign(j, patch);
    onChange();
    return true;
  };
  async function fetchJob(id) {
    try {
      const v = await rest.get(`/api/exports/${encodeURIComponent(id)}`);
      merge(id, v);
    } catch (e) {
      if (e.status === 404) merge(id, { status: 'expired', gone: true });
    }
  }
  return {
    list: () => [...jobs.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at))),
    get: (id) => jobs.get(id),
    /** An `export` frame; true when it was about one of ours. */
    apply(msg) {
      if (msg.type !== 'export' || !jobs.has(msg.id)) return false;
      const patch = { status: msg.status };
      if (Number.isFinite(msg.rows)) patch.rows = msg.rows;
      merge(msg.id, patch);
      if (msg.status === 'finished') fetchJob(msg.id); // bytes, finished_at, expires_at
      return true;
    },
    /** Re-reads every job (view opened; frames may have been missed). */
    async refreshAll() {
      let held;
      try {
        held = (await rest.get('/api/exports')).items || [];
      } catch {
        return Promise.all([...jobs.keys()].map(fetchJob));
      }
      const seen = new Set();
      for (const v of held) {
        seen.add(v.id);
        if (jobs.has(v.id)) Object.assign(jobs.get(v.id), v);
        else jobs.set(v.id, { ...v });
      }
      for (const [id, j] of jobs) if (!seen.has(id) && !DONE.has(j.status)) Object.assign(j, { status: 'expired', gone: true });
      save();
      onChange();
    },
    /** While watched, jobs not done are re-read every 5 s (frames lost to a resync). */
    watch() {
      const timer = setInterval(() => {
        for (const j of jobs.values()) if (!DONE.has(j.status)) fetchJob(j.id);
      }, 5000);
      polling++;
      return () => { clearInterval(timer); polling--; };
    },
    async start(kind, filters, includePayload) {
      const job = await rest.post('/api/exports', { kind, filters, include_payload: includePayload });
      jobs.set(job.id, { ...job, filters });
      save();
      onChange();
      return job;
    },
    async cancel(id) {
      await rest.del(`/api/exports/${encodeURIComponent(id)}`);
      merge(id, { status: jobs.get(id)?.status === 'finished' ? 'deleted' : 'cancelled' });
    },
    forget(id) {
      jobs.delete(id);
      save();
      onChange();
    },
  };
}

function filterText(filters) {
  if (filters == null) return DASH; // started elsewhere: the server does not echo filters
  const parts = Object.entries(filters || {}).filter(([, v]) => v !== '' && v != null).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(', ') : 'everything';
}

/**
 * `#/exports?kind=errors&severity=error`: the form (prefilled from the URL,
 * else from `lastList` = { kind, params } of the last list viewed) and the jobs.
 */
export function renderExportsView(root, { rest, store, params, lastList, onDownloaded }) {
  const fromUrl = EXPORT_FILTERS[params.get('kind')] ? { kind: params.get('kind'), params } : null;
  const preset = fromUrl || lastList || { kind: 'records', params: new URLSearchParams() };
  const kindSel = h('select', { id: 'x-kind', name: 'kind' },
    Object.keys(EXPORT_FILTERS).map((k) => h('option', { value: k, selected: k === preset.kind }, k)));
  const fields = h('div', { class: 'filters-fields' });
  const payload = h('input', { type: 'checkbox', id: 'x-payload', name: 'include_payload' });
  const payloadLabel = h('label', { class: 'check', htmlFor: 'x-payload' }, payload, 'include payloads');
  function showFields(kind, values) {
    fields.replaceChildren(...EXPORT_FILTERS[kind].map(([name, label, options]) => {
      const id = `x-${name}`;
      const input = options
        ? h('select', { id, name }, ['', ...options].map((o) => h('option', { value: o }, o || 'any')))
        : h('input', { id, name, type: 'search', autocomplete: 'off', spellcheck: false });
      input.value = values?.get(name) || '';
      return h('label', { htmlFor: id }, label, input);
    }));
    payloadLabel.hidden = kind !== 'records';
  }
  showFields(preset.kind, preset.params);
  kindSel.addEventListener('change', () => showFields(kindSel.value, null));
  const formStatus = h('p', { class: 'list-status', role: 'status' },
    fromUrl || lastList ? `Prefilled from the ${preset.kind} list's filter.` : '');
  const form = h('form', { class: 'filters', id: 'export-form', 'aria-label': 'New export job' },
    h('label', { htmlFor: 'x-kind' }, 'List', kindSel), fields, payloadLabel,
    h('button', { type: 'submit' }, 'Start export'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const filters = {};
    for (const [k, v] of new FormData(form)) {
      if (k === 'kind' || k === 'include_payload') continue;
      if (String(v).trim()) filters[k] = String(v).trim();
    }
    try {
      const job = await store.start(kindSel.value, filters, kindSel.value === 'records' && payload.checked);
      text(formStatus, `Started export ${job.id.slice(0, 8)} of ${kindSel.value} (${filterText(filters)}).`);
    } catch (err) {
      text(formStatus, `Could not start the export: ${err.message}`);
    }
  });

  const tbody = h('tbody');
  const empty = h('p', { class: 'empty' }, 'No export jobs started from this browser.');
  const table = h('table', { class: 'list', id: 'export-jobs' },
    h('thead', {}, h('tr', {}, [['Started'], ['List'], ['Filter'], ['Status'], ['Progress'], ['Rows', 'n'], ['Size', 'n'], ['']]
      .map(([c, cls]) => h('th', { scope: 'col', class: cls || null }, c)))), tbody);

  async function download(job, button) {
    button.disabled = true;
    try {
      const r = await rest.fetchOk(`/api/exports/${encodeURIComponent(job.id)}/download`);
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: `${job.kind}-${job.id.slice(0, 8)}.csv`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      onDownloaded?.(job);
    } catch (e) {
      text(formStatus, `Download failed: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  const rows = new Map();
  function row(job) {
    const tr = h('tr', { data: { id: job.id } },
      h('td', { data: { col: 'created' } }), h('td', {}, job.kind), h('td', { class: 'summary' }, filterText(job.filters)),
      h('td', { data: { col: 'status' } }, h('b')), h('td', { data: { col: 'progress' } }, h('progress', { max: 1, 'aria-label': `Progress of export ${job.id.slice(0, 8)}` })),
      h('td', { class: 'n', data: { col: 'rows' } }), h('td', { class: 'n', data: { col: 'bytes' } }), h('td', { class: 'actions', data: { col: 'actions' } }));
    rows.set(job.id, tr);
    return tr;
  }
  function update() {
    const list = store.list();
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    list.forEach((job, i) => {
      const tr = rows.get(job.id) || row(job);
      const cell = (c) => tr.querySelector(`[data-col="${c}"]`);
      const t = parseTime(job.created_at);
      text(cell('created'), t == null ? DASH : fmtDateTime(t));
      attr(cell('created'), 'title', t == null ? null : fmtUtc(t));
      const status = job.status || 'queued';
      attr(tr, 'data-status', status);
      attr(cell('status').firstChild, 'data-state', status);
      text(cell('status').firstChild, job.error ? `${status}: ${job.error}` : status);
      const prog = cell('progress').firstChild;
      const est = job.total_estimate > 0 ? job.total_estimate : null;
      if (status === 'finished') { prog.max = 1; prog.value = 1; }
      else if (est && job.rows != null) { prog.max = est; prog.value = Math.min(job.rows, est); }
      else if (status === 'running') prog.removeAttribute('value'); // indeterminate
      else { prog.max = 1; prog.value = 0; }
      attr(cell('rows'), 'data-value', job.rows ?? '');
      text(cell('rows'), job.rows == null ? DASH : `${fmtCount(job.rows)}${est && !DONE.has(status) ? ` of ~${fmtCount(est)}` : ''}`);
      text(cell('bytes'), job.bytes == null ? DASH : `${fmtCount(Math.ceil(job.bytes / 1024))} KB`);
      const actions = cell('actions');
      const key = `${status}`;
      if (actions.dataset.key !== key) {
        actions.dataset.key = key;
        const label = `export ${job.id.slice(0, 8)}`;
        const btn = (txt, aria, fn) => h('button', { type: 'button', 'aria-label': `${aria} ${label}`, on: { click: (e) => fn(e.currentTarget) } }, txt);
        actions.replaceChildren(...[
          status === 'finished' ? btn('Download', 'Download', (b) => download(job, b)) : null,
          !DONE.has(status) ? btn('Cancel', 'Cancel', () => store.cancel(job.id).catch((e) => text(formStatus, `Cancel failed: ${e.message}`))) : null,
          status === 'finished' ? btn('Delete', 'Delete the file of', () => store.cancel(job.id).catch((e) => text(formStatus, `Delete failed: ${e.message}`))) : null,
          DONE.has(status) ? btn('Remove', 'Remove from the list', () => store.forget(job.id)) : null,
        ].filter(Boolean));
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const [id, tr] of rows) if (!store.get(id)) { tr.remove(); rows.delete(id); }
  }

  root.replaceChildren(
    h('div', { class: 'console-head' }, h('h2', {}, 'Exports')),
    h('section', { class: 'panel pad', 'aria-labelledby': 'x-new-h' }, h('h3', { id: 'x-new-h' }, 'New export job'),
      h('p', { class: 'hint' }, 'Any number of rows, written in the background; the file is kept for an hour. '
        + 'Up to 10,000 rows download at once with "Export CSV" on the list.'), form, formStatus),
    h('section', { class: 'panel list-panel', 'aria-labelledby': 'x-jobs-h' }, h('h3', { id: 'x-jobs-h' }, 'Your export jobs'),
      h('div', { class: 'scroll' }, table, empty)),
  );
  const unwatch = store.watch();
  store.refreshAll();
  update();
  return { update, leave: unwatch };
}
