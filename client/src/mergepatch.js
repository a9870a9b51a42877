// RFC 7396 JSON Merge Patch. Returns a new value; never mutates its inputs
// (untouched subtrees are shared with `target`).

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

export function applyMergePatch(target, patch) {
  if (!isObject(patch)) return patch; // arrays, scalars and null replace wholesale
  const out = isObject(target) ? { ...target } : {};
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) {
      delete out[key];
    } else {
      // defineProperty so a key named "__proto__" stays plain data
      Object.defineProperty(out, key, {
        value: applyMergePatch(out[key], value),
        enumerable: true, writable: true, configurable: true,
      });
    }
  }
  return out;
}
