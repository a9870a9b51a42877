// Small DOM helpers for the views modules (wallboard charts, trends, alerts,
// sources, exports): element creation and idempotent updates.

/**
 * `h('a', { href, class: 'x', data: { id: 1 }, on: { click } }, ...children)`.
 * Props that are element properties are set as such, others as attributes;
 * null and false children and props are skipped.
 */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'data') for (const [d, dv] of Object.entries(value)) node.dataset[d] = String(dv);
    else if (key === 'on') for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (key in node && !key.includes('-')) node[key] = value;
    else node.setAttribute(key, value === true ? '' : String(value));
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
