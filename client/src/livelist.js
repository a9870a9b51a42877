// Live console lists: rows committed while a list is open arrive at the top.
//
// main.js re-dispatches every WebSocket `event` frame as the DOM event
// `ingestwatch:event`. An event of a table the list shows (and of a source
// its filter allows) schedules a refetch of the list's first page with the
// same filters — the server applies the filter, so only matching rows ever
// appear. Rows not shown yet are merged in at their place in the page order
// (new rows: at the top) and flash briefly; rows shown already are updated in
// place. Paused, nothing moves: the rows not shown yet are only counted
// ("12 new — resume"). At most one refetch runs at a time; bursts coalesce.

import { h } from './dom.js';

/** Which outbox tables can change which list. */
const TABLES = {
  runs: ['runs', 'raw_records', 'errors'],
  records: ['raw_records'],
  errors: ['errors'],
};
const COALESCE_MS = 250;
const FLASH_MS = 2500;

/** Does `ev` (an `event` frame) possibly change list `kind` under filter `params`? */
export function relevant(kind, params, ev) {
  if (!TABLES[kind]?.includes(ev?.table)) return false;
  const wanted = (params.get('source') || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (!wanted.length) return true;
  const touched = Array.isArray(ev.sources) && ev.sources.length ? ev.sources : [ev.source];
  return ev.redacted === true || touched.some((s) => s == null || wanted.includes(s));
}

/**
 * @param {object} o
 * @param {string} o.kind                     runs | records | errors
 * @param {URLSearchParams} o.params          the list's filters
 * @param {HTMLTableSectionElement} o.tbody   rows carry data-id
 * @param {(item: object) => HTMLTableRowElement} o.makeRow
 * @param {() => Promise<object[]>} o.firstPage  the first page's items, newest first
 * @param {() => boolean} o.alive             false once the view was left
 * @param {() => void} o.changed              after rows were added or updated
 */
export function createLiveList({ kind, params, tbody, makeRow, firstPage, alive, changed }) {
  let paused = false;
  let timer = 0;
  let running = false;
  let again = false;
  const shown = new WeakMap(); // row -> JSON of its item (to update changed rows only)

  const pause = h('button', { type: 'button', className: 'live-toggle', 'aria-pressed': 'false', data: { live: 'pause' } });
  const resume = h('button', { type: 'button', className: 'live-new', hidden: true, data: { live: 'resume' } });
  const note = h('output', { className: 'live-note', 'aria-live': 'polite' });
  const controls = h('div', { className: 'live-controls' }, pause, resume, note);

  function setPaused(p) {
    paused = p;
    pause.setAttribute('aria-pressed', String(p));
    pause.textContent = p ? 'Paused' : 'Live';
    pause.title = p ? 'Resume live updates' : 'Pause live updates (new rows are counted, not shown)';
    controls.dataset.state = p ? 'paused' : 'live';
    if (!p) { resume.hidden = true; schedule(0); }
  }
  pause.addEventListener('click', () => setPaused(!paused));
  resume.addEventListener('click', () => setPaused(false));
  setPaused(false);

  function onEvent(e) {
    if (!alive()) { document.removeEventListener('ingestwatch:event', onEvent); return; }
    if (relevant(kind, params, e.detail)) schedule(COALESCE_MS);
  }
  document.addEventListener('ingestwatch:event', onEvent);

  function schedule(ms) {
    if (running) { again = true; return; }
    clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    running = true;
    again = false;
    try {
      const items = await firstPage();
      if (!alive()) return;
      if (paused) count(items);
      else merge(items);
    } catch (e) {
      if (alive()) note.textContent = `Live update failed: ${e.message}`;
    } finally {
      running = false;
      if (again && alive()) schedule(COALESCE_MS);
    }
  }

  const rowsById = () => new Map([...tbody.rows].map((r) => [r.dataset.id, r]));

  function count(items) {
    const have = rowsById();
    const fresh = items.filter((it) => !have.has(String(it.id))).length;
    resume.hidden = fresh === 0;
    resume.textContent = `${fresh}${fresh >= items.length && items.length > 0 ? '+' : ''} new — resume`;
  }

  /** Brings the page's rows into the table in page order; returns how many were new. */
  function merge(items) {
    const have = rowsById();
    let at = tbody.firstElementChild; // insert before this
    let added = 0;
    for (const it of items) {
      const json = JSON.stringify(it);
      let row = have.get(String(it.id));
      if (row) {
        if (shown.get(row) !== undefined && shown.get(row) !== json) {
          const fresh = makeRow(it);
          row.replaceWith(fresh);
          row = fresh;
        }
        at = row.nextElementSibling;
      } else {
        row = makeRow(it);
        tbody.insertBefore(row, at);
        flash(row);
        added++;
      }
      shown.set(row, json);
    }
    if (added) note.textContent = `${added} new ${added === 1 ? kind.replace(/s$/, '') : kind}`;
    changed();
    return added;
  }

  function flash(row) {
    row.classList.add('new');
    setTimeout(() => row.classList.remove('new'), FLASH_MS);
  }

  /** Call with the rows of the initial load, so later changes to them show. */
  function seen(items) {
    const have = rowsById();
    for (const it of items) {
      const row = have.get(String(it.id));
      if (row) shown.set(row, JSON.stringify(it));
    }
  }

  return { controls, seen, isPaused: () => paused, setPaused };
}
