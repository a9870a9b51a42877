// Virtual table rows: a tbody of thousands of keys keeps only the rows in
// (and just around) its scroll box in the DOM, with two spacer rows standing
// in for the others, so a live update touches a screenful of rows and the
// browser lays out and paints no more. Rows have one height (measured from
// the first one drawn). Small tables (up to `all` rows) are drawn whole.

import { h } from './dom.js';

/**
 * @param {object} o
 * @param {HTMLElement} o.scroller            the element that scrolls (holds the table)
 * @param {HTMLTableSectionElement} o.tbody
 * @param {number} o.colspan                  columns of the table
 * @param {(key: string) => HTMLTableRowElement} o.create
 * @param {number} [o.all]                    up to this many keys, every row is drawn
 * @returns {{ set(keys: string[], update: (tr: HTMLTableRowElement, key: string) => void): void, redraw(): void, readonly drawn: number }}
 */
export function createVirtualRows({ scroller, tbody, colspan, create, all = 60, overscan = 8 }) {
  const top = h('tr', { class: 'vspacer', 'aria-hidden': 'true' }, h('td', { colSpan: colspan }));
  const bottom = h('tr', { class: 'vspacer', 'aria-hidden': 'true' }, h('td', { colSpan: colspan }));
  const rows = new Map(); // key -> tr, only the rows in the DOM
  let keys = [];
  let update = () => {};
  let rowH = 0;
  let frame = 0;

  const setHeight = (tr, px) => {
    const v = `${px}px`;
    if (tr.firstChild.style.height !== v) tr.firstChild.style.height = v;
    tr.hidden = px === 0;
  };

  function draw() {
    const n = keys.length;
    let from = 0;
    let to = n;
    if (n > all) {
      if (!rowH) {
        const probe = rows.values().next().value;
        rowH = probe?.isConnected ? probe.getBoundingClientRect().height : 0;
      }
      const hgt = rowH || 32;
      const offset = tbody.offsetTop; // the header above the first row
      from = Math.max(0, Math.floor((scroller.scrollTop - offset) / hgt) - overscan);
      to = Math.min(n, from + Math.ceil(scroller.clientHeight / hgt) + 2 * overscan);
      setHeight(top, from * hgt);
      setHeight(bottom, (n - to) * hgt);
    } else { // small: no spacers at all
      top.remove();
      bottom.remove();
    }
    const want = keys.slice(from, to);
    const keep = new Set(want);
    for (const [k, tr] of rows) if (!keep.has(k)) { tr.remove(); rows.delete(k); }
    const spaced = n > all;
    if (spaced && tbody.firstChild !== top) tbody.prepend(top);
    const first = spaced ? 1 : 0;
    want.forEach((k, i) => {
      let tr = rows.get(k);
      if (!tr) rows.set(k, (tr = create(k)));
      update(tr, k);
      const at = tbody.children[i + first];
      if (at !== tr) tbody.insertBefore(tr, at || null);
    });
    if (spaced && tbody.lastChild !== bottom) tbody.append(bottom);
    if (!rowH && n > all) { rowH = rows.values().next().value?.getBoundingClientRect().height || 0; if (rowH) draw(); }
  }

  scroller.addEventListener('scroll', () => {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }, { passive: true });

  return {
    set(nextKeys, nextUpdate) {
      keys = nextKeys;
      update = nextUpdate;
      draw();
    },
    redraw: draw,
    get drawn() { return rows.size; },
  };
}
