// Pretty-print JSON *text* without parsing it into JS values, so numbers
// keep their exact spelling (`1.50`, 20-digit integers) and strings keep
// their escapes: only whitespace between tokens changes.

/** Indents `text` (valid JSON) by two spaces per level. */
export function prettyJson(text, indent = '  ') {
  let out = '';
  let depth = 0;
  const nl = () => `\n${indent.repeat(depth)}`;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      let k = i + 1;
      while (k < text.length && /\s/.test(text[k])) k++;
      if (text[k] === close) { out += c + close; i = k; continue; }
      depth++;
      out += c + nl();
    } else if (c === '}' || c === ']') {
      depth--;
      out += nl() + c;
    } else if (c === ',') {
      out += `,${nl()}`;
    } else if (c === ':') {
      out += ': ';
    } else if (!/\s/.test(c)) {
      out += c;
    }
  }
  return out;
}
