// The wallboard's "What is wrong now" panel, for 1 to 10,000 sources: how
// many sources are failing, stale, warning and healthy; the worst sources by
// full name with their reason in line (no hover needed); and, once the fleet
// is bigger than the list, a compact map with one cell per source (colour =
// state, a link to the source). Small fleets list every source; bigger ones
// fold the healthy into their count.

import { h, text, attr } from './dom.js';
import { fmtCount } from './format.js';
import { HEALTH_ORDER, freshnessText } from './sources.js';

/** Up to this many sources, every source is listed and no map is drawn. */
export const LIST_ALL_UP_TO = 12;
/** The longest worst-first list (it scrolls; the first rows are the worst). */
const WORST_MAX = 40;

/** { failing, stale, warning, healthy } counts of a healthOf() list. */
export function healthCounts(list) {
  const n = Object.fromEntries(HEALTH_ORDER.map((s) => [s, 0]));
  for (const { hl } of list) n[hl.state] += 1;
  return n;
}

/** Which rows the list shows: all of a small fleet, else the unhealthy, worst first. */
export function worstRows(list) {
  if (list.length <= LIST_ALL_UP_TO) return list;
  const bad = [];
  for (const x of list) { if (x.hl.state !== 'healthy') bad.push(x); if (bad.length === WORST_MAX) break; }
  return bad;
}

const sourceHref = (name) => `#/trends?source=${encodeURIComponent(name)}`;

/**
 * @param {HTMLElement} panel  the section holding #health-counts, #health, #health-map
 * @returns {(list: object[]|null, loaded: boolean, now: number) => void}
 */
export function createWrongNow(panel) {
  const counts = panel.querySelector('#health-counts');
  const rows = panel.querySelector('#health');
  const folded = panel.querySelector('#health-folded');
  const map = panel.querySelector('#health-map');
  const cards = new Map();  // name -> li
  const cells = new Map();  // name -> a
  let mapKey = '';
  let mapCount = 0;
  let cellKey = '';

  function card(name) {
    let li = cards.get(name);
    if (!li) {
      li = h('li', { class: 'health', data: { source: name } },
        h('span', { class: 'health-state' }),
        h('a', { class: 'health-name', href: sourceHref(name) }, name),
        h('span', { class: 'health-why' }),
        h('span', { class: 'health-age' }));
      cards.set(name, li);
    }
    return li;
  }

  // cell size: the map's box divided among the sources (3..22 px)
  function sizeCells() {
    if (!mapCount || map.hidden) return;
    const w = map.clientWidth;
    const hgt = Math.max(map.clientHeight, 48);
    const side = Math.max(3, Math.min(22, Math.floor(Math.sqrt((w * hgt) / mapCount)) - 1));
    const key = `${side}`;
    if (key !== cellKey) { cellKey = key; map.style.setProperty('--cell', `${side}px`); }
  }
  new ResizeObserver(sizeCells).observe(map);

  function renderMap(list) {
    const big = list.length > LIST_ALL_UP_TO;
    attr(map, 'hidden', !big);
    if (!big) { mapCount = 0; return; }
    const names = list.map((x) => x.src.name).sort();
    const key = names.join('\n');
    if (key !== mapKey) { // a source came or went: lay the map out again (by name: cells never move otherwise)
      mapKey = key;
      const seen = new Set(names);
      for (const [name, a] of cells) if (!seen.has(name)) { a.remove(); cells.delete(name); }
      const frag = document.createDocumentFragment();
      for (const name of names) {
        let a = cells.get(name);
        if (!a) cells.set(name, (a = h('a', { href: sourceHref(name), tabIndex: -1, data: { source: name } })));
        frag.append(a);
      }
      map.replaceChildren(frag);
      mapCount = names.length;
      attr(map, 'aria-label', `Map of ${fmtCount(mapCount)} sources, one cell each`);
      sizeCells();
    }
    for (const { src, hl } of list) {
      const a = cells.get(src.name);
      if (a.dataset.health !== hl.state) a.dataset.health = hl.state;
      const title = `${src.name}: ${hl.state}${hl.reasons.length ? ` — ${hl.reasons.join('; ')}` : ''}`;
      if (a.title !== title) a.title = title;
    }
  }

  return function render(list, loaded, now) {
    panel.dataset.loaded = String(loaded);
    if (!list) return;
    const n = healthCounts(list);
    for (const a of counts.querySelectorAll('[data-state]')) {
      const c = n[a.dataset.state];
      text(a.querySelector('b'), fmtCount(c));
      attr(a, 'data-count', String(c));
    }
    attr(counts, 'data-total', String(list.length));
    attr(panel, 'data-big', list.length > LIST_ALL_UP_TO); // the list holds only the unhealthy: one line each

    const shown = worstRows(list);
    const keep = new Set();
    shown.forEach(({ src, hl }, i) => {
      keep.add(src.name);
      const li = card(src.name);
      attr(li, 'data-health', hl.state);
      attr(li, 'title', hl.reasons.join('\n') || 'healthy');
      const [state, , why, age] = li.children;
      text(state, hl.state);
      text(why, hl.reasons[0] ? `${hl.reasons[0]}${hl.reasons.length > 1 ? ` (+${hl.reasons.length - 1} more)` : ''}` : '');
      text(age, freshnessText(hl, now));
      if (rows.children[i] !== li) rows.insertBefore(li, rows.children[i] || null);
    });
    for (const [name, li] of cards) if (!keep.has(name)) { li.remove(); cards.delete(name); }
    attr(rows, 'data-empty', list.length ? 'Nothing wrong: every source is healthy.' : 'No sources yet.');

    const hiddenHealthy = list.length > LIST_ALL_UP_TO ? n.healthy : 0;
    const more = list.length - shown.length - hiddenHealthy;
    attr(folded, 'hidden', !hiddenHealthy && !more);
    text(folded.querySelector('a'), [more ? `${fmtCount(more)} more not healthy` : '',
      hiddenHealthy ? `${fmtCount(hiddenHealthy)} healthy` : ''].filter(Boolean).join(' · '));
    renderMap(list);
  };
}
