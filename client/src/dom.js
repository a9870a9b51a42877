// The client's one DOM builder (`h`) and its idempotent updates (`text`,
// `attr`). Every module that makes elements uses these.

/**
 * `h('a', { href, class: 'x', data: { id: 1 }, on: { click } }, ...children)`.
 * Props that are element properties are set as such (false included, e.g.
 * `spellcheck: false`), others as attributes; null props, null and false
 * children and false attributes are skipped. `data` fills the dataset, `on`
 * adds listeners.
 */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null) continue;
    if (key === 'class') { if (value !== false) node.className = value; }
    else if (key === 'data') for (const [d, dv] of Object.entries(value)) node.dataset[d] = String(dv);
    else if (key === 'on') for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (key in node && !key.includes('-')) node[key] = value;
    else if (value !== false) node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const c of children.flat()) if (c != null && c !== false) node.append(c);
  return node;
}

/** Sets textContent only when it changed (no needless layout work). */
export function text(node, value) {
  const s = String(value);
  if (node.textContent !== s) node.textContent = s;
}

/** Sets or removes an attribute only when it changed. */
export function attr(node, name, value) {
  if (value == null || value === false) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else if (node.getAttribute(name) !== String(value)) {
    node.setAttribute(name, value === true ? '' : String(value));
  }
}
