// Raw JSON viewer for the record drill-down: the payload text exactly as
// stored (tokens keep their spelling: `1.50`, 20-digit integers, escapes),
// indented like prettyJson(), foldable, searchable and copyable.
//
// The text is parsed into a tree of *source ranges*, never into JS values,
// so nothing is rounded. The viewer's textContent is exactly
// prettyJson(text): fold buttons are empty (their glyph is CSS) and a folded
// node's summary is CSS generated content.
//
// Keyboard: the tree is one tab stop (roving tabindex over keys and array
// items); ↑/↓ move, → unfolds or goes to the first child, ← folds or goes to
// the parent, Enter/Space fold or unfold, Home/End. The focused node's JSON
// path is shown (and announced) above the tree, with "Copy path".

import { h } from './dom.js';

/** Parses JSON text into { t: 'obj'|'arr'|'str'|'num'|'lit', s, e, kids: [{ key, keyRaw, node }] }. */
export function parseRanges(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const fail = (what) => { throw new SyntaxError(`${what} at offset ${i}`); };
  function str() {
    const s = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return { t: 'str', s, e: i };
  }
  function value() {
    ws();
    const c = text[i];
    if (c === '"') return str();
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      const node = { t: c === '{' ? 'obj' : 'arr', s: i++, e: 0, kids: [] };
      ws();
      if (text[i] === close) { node.e = ++i; return node; }
      for (;;) {
        let keyRaw = null;
        if (node.t === 'obj') {
          ws();
          if (text[i] !== '"') fail('expected a key');
          const k = str();
          keyRaw = text.slice(k.s, k.e);
          ws();
          if (text[i++] !== ':') fail('expected ":"');
        }
        node.kids.push({ key: keyRaw === null ? node.kids.length : JSON.parse(keyRaw), keyRaw, node: value() });
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === close) { node.e = ++i; return node; }
        fail(`expected "," or "${close}"`);
      }
    }
    const m = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|^(?:true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) fail('unexpected token');
    const s = i;
    i += m[0].length;
    return { t: /^[tfn]/.test(m[0]) ? 'lit' : 'num', s, e: i };
  }
  const root = value();
  ws();
  if (i !== text.length) fail('trailing text');
  return root;
}

/** `$.a.b[2]["odd key"]` */
export function childPath(parent, key) {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/** Copies `text`: the async clipboard API, else a hidden textarea and execCommand. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { value: text, readOnly: true, className: 'offscreen', 'aria-hidden': 'true', tabIndex: -1 });
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { /* unsupported */ }
    ta.remove();
    return ok;
  }
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/**
 * Builds the viewer. Returns { element, tree } where `tree` is the <pre>
 * whose textContent is prettyJson(text).
 */
export function createJsonView(text, { id = 'raw-json', label = 'Raw JSON payload' } = {}) {
  let root;
  try {
    root = parseRanges(text);
  } catch {
    root = null; // not JSON (cannot happen for jsonb): shown as plain text below
  }
  const heads = [];              // focusable node heads (keys, array items), in document order
  const info = new Map();        // head -> { path, node, c (container span or null), parent (head), tog }
  const headOf = new WeakMap();  // entry span or fold button -> head
  const indent = (d) => '  '.repeat(d);

  function container(node, depth, path) {
    const [open, close] = node.t === 'obj' ? ['{', '}'] : ['[', ']'];
    const summary = node.t === 'obj' ? plural(node.kids.length, 'key', 'keys') : plural(node.kids.length, 'item', 'items');
    const body = h('span', { className: 'jv-body' });
    node.kids.forEach((kid, n) => {
      body.append(`${n ? ',' : ''}\n${indent(depth + 1)}`, entry(kid, depth + 1, childPath(path, kid.key)));
    });
    body.append(`\n${indent(depth)}`);
    return h('span', { className: 'jv-c' }, h('span', { className: 'jv-p', data: { summary } }, open), body, h('span', { className: 'jv-p' }, close));
  }

  function scalar(node) {
    const raw = text.slice(node.s, node.e);
    return h('span', { className: `jv-v jv-${node.t}` }, node.kids ? raw.replace(/\s+/g, '') : raw);
  }

  /** One key (or array item, or the root) and its value. */
  function entry({ keyRaw, node }, depth, path) {
    const slot = heads.push(null) - 1; // pre-order: the head before its children
    const foldable = node.kids?.length > 0;
    const value = foldable ? container(node, depth, path) : scalar(node);
    const key = keyRaw ? h('span', { className: 'jv-k' }, keyRaw) : null;
    const head = key || (foldable ? value.firstChild : value);
    head.classList.add('jv-h');
    head.tabIndex = -1;
    head.dataset.path = path;
    heads[slot] = head;
    const tog = foldable ? h('button', { type: 'button', className: 'jv-tog', tabIndex: -1, 'aria-expanded': 'true', 'aria-label': `Fold ${path}` }) : null;
    info.set(head, { path, node, c: foldable ? value : null, parent: null, tog });
    for (let k = slot + 1; k < heads.length; k++) if (info.get(heads[k]).parent === null) info.get(heads[k]).parent = head;
    const ent = h('span', { className: 'jv-e' }, tog, ...(key ? [key, ': ', value] : [value]));
    headOf.set(ent, head);
    if (tog) headOf.set(tog, head);
    return ent;
  }

  const tree = h('pre', { id, className: 'json jv', tabIndex: -1, 'aria-label': label, 'aria-describedby': `${id}-keys` });
  if (root) {
    tree.append(entry({ keyRaw: null, node: root }, 0, '$'));
    heads[0].tabIndex = 0;
  } else {
    tree.textContent = text;
    tree.tabIndex = 0;
  }

  // ---- folding ---------------------------------------------------------------------
  function setFolded(head, folded) {
    const i = info.get(head);
    if (!i?.c) return;
    i.c.toggleAttribute('data-folded', folded);
    i.tog.setAttribute('aria-expanded', String(!folded));
    i.tog.setAttribute('aria-label', `${folded ? 'Unfold' : 'Fold'} ${i.path}`);
  }
  const isFolded = (head) => !!info.get(head)?.c?.hasAttribute('data-folded');
  const visible = (head) => !head.closest('.jv-c[data-folded] > .jv-body');
  function foldAll(folded) {
    for (const hd of heads) if (hd !== heads[0]) setFolded(hd, folded);
    if (!folded) setFolded(heads[0], false);
    if (current && !visible(current)) focusHead(ancestorVisible(current), false);
  }
  function ancestorVisible(head) {
    let hd = head;
    while (hd && !visible(hd)) hd = info.get(hd).parent;
    return hd || heads[0];
  }
  function reveal(node) {
    for (let c = node.closest('.jv-c'); c; c = c.parentElement?.closest('.jv-c')) {
      if (c.hasAttribute('data-folded')) {
        const head = heads.find((hd) => info.get(hd).c === c);
        if (head) setFolded(head, false);
      }
    }
  }

  // ---- selection and keyboard ----------------------------------------------------------
  const pathOut = h('output', { className: 'jv-path', id: `${id}-path`, 'aria-live': 'polite' }, '$');
  let current = heads[0] || null;
  function focusHead(head, focus = true) {
    if (!head) return;
    if (current) { current.tabIndex = -1; current.classList.remove('jv-sel'); }
    current = head;
    head.tabIndex = 0;
    head.classList.add('jv-sel');
    pathOut.textContent = info.get(head).path;
    if (focus) head.focus();
    else head.scrollIntoView?.({ block: 'nearest' });
  }
  tree.addEventListener('click', (e) => {
    const tog = e.target.closest('.jv-tog');
    const head = headOf.get(tog) || headOf.get(e.target.closest('.jv-e'));
    if (!head) return;
    if (tog) setFolded(head, !isFolded(head));
    if (head) focusHead(head);
  });
  tree.addEventListener('focusin', (e) => { if (info.has(e.target) && e.target !== current) focusHead(e.target, false); });
  tree.addEventListener('keydown', (e) => {
    if (!current || e.altKey || e.ctrlKey || e.metaKey) return;
    const shown = heads.filter(visible);
    const at = shown.indexOf(current);
    const i = info.get(current);
    let next = null;
    switch (e.key) {
      case 'ArrowDown': next = shown[at + 1]; break;
      case 'ArrowUp': next = shown[at - 1]; break;
      case 'Home': next = shown[0]; break;
      case 'End': next = shown[shown.length - 1]; break;
      case 'ArrowRight':
        if (i.c && isFolded(current)) setFolded(current, false);
        else if (i.c) next = shown[at + 1];
        break;
      case 'ArrowLeft':
        if (i.c && !isFolded(current)) setFolded(current, true);
        else next = i.parent;
        break;
      case 'Enter': case ' ':
        if (i.c) setFolded(current, !isFolded(current));
        break;
      default: return;
    }
    e.preventDefault();
    if (next) focusHead(next);
  });

  // ---- search --------------------------------------------------------------------------
  const search = h('input', { type: 'search', id: `${id}-search`, placeholder: 'Find in keys and values', autocomplete: 'off', spellcheck: false });
  const count = h('output', { className: 'jv-count', id: `${id}-count`, 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', 'aria-label': 'Previous match', title: 'Previous match (Shift+Enter)', disabled: true }, '↑');
  const next = h('button', { type: 'button', 'aria-label': 'Next match', title: 'Next match (Enter)', disabled: true }, '↓');
  let marks = [];
  let at = -1;
  let query = '';
  function clearMarks() {
    for (const m of marks) m.replaceWith(...m.childNodes);
    for (const hd of tree.querySelectorAll('.jv-k, .jv-v')) hd.normalize();
    marks = [];
    at = -1;
  }
  function find(q) {
    query = q;
    clearMarks();
    const needle = q.toLowerCase();
    if (needle) {
      for (const span of tree.querySelectorAll('.jv-k, .jv-v')) {
        const t = span.textContent;
        const low = t.toLowerCase();
        let from = 0;
        const parts = [];
        for (let k = low.indexOf(needle); k >= 0; k = low.indexOf(needle, k + needle.length)) {
          parts.push(t.slice(from, k));
          const m = h('mark', { className: 'jv-m' }, t.slice(k, k + needle.length));
          parts.push(m);
          marks.push(m);
          from = k + needle.length;
        }
        if (parts.length) span.replaceChildren(...parts, t.slice(from));
      }
    }
    prev.disabled = next.disabled = marks.length === 0;
    count.textContent = !needle ? '' : marks.length ? `${marks.length} matches` : 'no match';
    if (marks.length) go(0);
  }
  function go(n) {
    if (!marks.length) return;
    marks[at]?.classList.remove('jv-cur');
    at = (n + marks.length) % marks.length;
    const m = marks[at];
    m.classList.add('jv-cur');
    reveal(m);
    focusHead(headOf.get(m.closest('.jv-e')), false);
    m.scrollIntoView?.({ block: 'nearest' });
    count.textContent = `${at + 1} of ${marks.length}`;
  }
  let debounce = 0;
  search.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(() => find(search.value), 120); });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      clearTimeout(debounce);
      if (search.value !== query) find(search.value);
      else go(at + (e.shiftKey ? -1 : 1));
    } else if (e.key === 'Escape' && search.value) {
      e.preventDefault();
      search.value = '';
      find('');
    }
  });
  prev.addEventListener('click', () => go(at - 1));
  next.addEventListener('click', () => go(at + 1));

  // ---- copy ----------------------------------------------------------------------------
  const note = h('output', { className: 'jv-note', 'aria-live': 'polite' });
  const button = (label, title, fn) => {
    const b = h('button', { type: 'button', title }, label);
    b.addEventListener('click', fn);
    return b;
  };
  const copied = async (what, value) => {
    note.textContent = (await copyText(value)) ? `Copied ${what}.` : `Could not copy ${what}.`;
  };
  const copyRaw = button('Copy raw', 'Copy the payload exactly as stored', () => copied('the raw JSON', text));
  copyRaw.dataset.copy = 'raw';
  const copyPath = button('Copy path', 'Copy the JSON path of the selected node', () => copied(`path ${pathOut.textContent}`, pathOut.textContent));
  copyPath.dataset.copy = 'path';
  const copyValue = button('Copy value', 'Copy the selected node\'s JSON as stored', () => {
    const n = info.get(current)?.node;
    if (n) copied(`the value of ${pathOut.textContent}`, text.slice(n.s, n.e));
  });
  copyValue.dataset.copy = 'value';
  const expandAll = button('Expand all', 'Unfold every object and array', () => foldAll(false));
  const collapseAll = button('Collapse all', 'Fold everything below the top level', () => foldAll(true));
  for (const b of [copyPath, copyValue, expandAll, collapseAll]) b.disabled = !root;

  const keysHelp = h('p', { id: `${id}-keys`, className: 'offscreen' },
    'Arrow keys move between keys; Enter or Space folds and unfolds; left and right arrows fold, unfold and move to the parent.');
  const element = h('div', { className: 'jv-wrap' },
    h('div', { className: 'jv-tools', role: 'toolbar', 'aria-label': 'Raw JSON tools' },
      h('label', { htmlFor: search.id, className: 'offscreen' }, 'Find in the raw JSON'), search, prev, next, count,
      expandAll, collapseAll, copyRaw),
    h('div', { className: 'jv-pathbar' }, h('span', { className: 'muted' }, 'Path '), pathOut, copyPath, copyValue, note),
    keysHelp, tree);
  if (current) focusHead(current, false);
  return { element, tree, search: find, fold: (path, folded) => setFolded(heads.find((hd) => info.get(hd).path === path), folded) };
}
