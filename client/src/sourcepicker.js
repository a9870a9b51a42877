// A multi-select source picker for the list filters: a disclosure with a
// search box and one checkbox per source (from /api/sources, every page,
// loaded when first opened), the choice kept comma-separated in a hidden
// input named like the filter, so a form submits it as the API's
// `source=a,b`. Only the first matches are drawn (thousands of sources:
// type to narrow).

import { h, text } from './dom.js';
import { fmtCount } from './format.js';

const SHOWN = 200;
let names = null; // Promise<string[]>, shared by every picker of the page

/** Every source name the caller may see, sorted. */
export function sourceNames(rest) {
  if (!names) {
    names = (async () => {
      const all = [];
      let cursor = null;
      do {
        const q = new URLSearchParams({ limit: '500' });
        if (cursor) q.set('cursor', cursor);
        const body = await rest.get(`/api/sources?${q}`);
        for (const s of body.items || []) all.push(s.name);
        cursor = body.next_cursor || null;
      } while (cursor);
      return all.sort();
    })();
    names.catch(() => { names = null; }); // try again next time
  }
  return names;
}

const summaryOf = (picked) => (picked.length === 0 ? 'any'
  : picked.length <= 2 ? picked.join(', ') : `${fmtCount(picked.length)} sources`);

/**
 * @param {object} o
 * @param {string} o.id        id of the hidden input (the filter's id)
 * @param {string} o.name      form field name
 * @param {string} o.value     comma-separated names
 * @param {object} o.rest      rest.js client
 * @param {string} [o.label]
 * @returns {HTMLElement}
 */
export function createSourcePicker({ id, name, value, rest, label = 'Source' }) {
  let picked = (value || '').split(',').map((s) => s.trim()).filter(Boolean);
  const hidden = h('input', { type: 'hidden', id, name, value: picked.join(',') });
  const summary = h('summary', { class: 'picker-summary', 'aria-label': `${label}: ${summaryOf(picked)}` }, `${label}: `, h('b', {}, summaryOf(picked)));
  const search = h('input', { type: 'search', class: 'picker-search', placeholder: 'Find a source', 'aria-label': 'Find a source', autocomplete: 'off', spellcheck: false });
  const list = h('ul', { class: 'picker-list', role: 'group', 'aria-label': 'Sources' });
  const note = h('p', { class: 'picker-note', role: 'status' }, 'Loading sources…');
  const clear = h('button', { type: 'button', class: 'picker-clear' }, 'Any source');
  const box = h('details', { class: 'picker', data: { picker: name } }, summary,
    h('div', { class: 'picker-pop' }, search, clear, note, list));
  const wrap = h('div', { class: 'picker-field' }, hidden, box);
  let all = [];

  function changed() {
    hidden.value = picked.join(',');
    text(summary.querySelector('b'), summaryOf(picked));
    summary.setAttribute('aria-label', `${label}: ${summaryOf(picked)}`);
  }

  function draw() {
    const q = search.value.trim().toLowerCase();
    const matches = q ? all.filter((n) => n.toLowerCase().includes(q)) : all;
    const chosen = new Set(picked);
    // the picked ones first, then the matches
    const order = [...picked.filter((n) => !q || n.toLowerCase().includes(q)), ...matches.filter((n) => !chosen.has(n))];
    list.replaceChildren(...order.slice(0, SHOWN).map((n) => h('li', {},
      h('label', {}, h('input', { type: 'checkbox', value: n, checked: chosen.has(n) }), ` ${n}`))));
    text(note, matches.length > SHOWN ? `${fmtCount(SHOWN)} of ${fmtCount(matches.length)} shown: type to narrow`
      : `${fmtCount(matches.length)} source${matches.length === 1 ? '' : 's'}`);
  }

  list.addEventListener('change', (e) => {
    const cb = e.target;
    if (cb.type !== 'checkbox') return;
    picked = cb.checked ? [...picked, cb.value] : picked.filter((n) => n !== cb.value);
    changed();
  });
  clear.addEventListener('click', () => { picked = []; changed(); draw(); });
  search.addEventListener('input', draw);
  search.addEventListener('keydown', (e) => { if (e.key === 'Enter') e.preventDefault(); }); // not a submit
  box.addEventListener('keydown', (e) => { if (e.key === 'Escape' && box.open) { box.open = false; summary.focus(); } });
  box.addEventListener('toggle', async () => {
    if (!box.open) return;
    search.focus();
    try {
      all = await sourceNames(rest);
      draw();
    } catch (e) {
      text(note, `Could not load the sources: ${e.message}`);
    }
  });
  return wrap;
}
