// REST calls of the views modules: bearer token, the JSON error envelope
// turned into an Error carrying `status` and `code`.

export function createRest({ getToken, onAuthError }) {
  async function request(method, path, body) {
    if (!getToken()) throw Object.assign(new Error('not signed in'), { status: 401, code: 'unauthorized' }); // no request to refuse
    const headers = { authorization: `Bearer ${getToken() || ''}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 || r.status === 403) onAuthError?.(r.status);
    if (!r.ok) {
      let code = '';
      let message = `HTTP ${r.status}`;
      try {
        const e = (await r.json()).error;
        code = e?.code || '';
        message = e?.message || message;
      } catch { /* not JSON */ }
      throw Object.assign(new Error(message), { status: r.status, code });
    }
    return r.status === 204 ? null : r.json();
  }
  return {
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body),
    del: (path) => request('DELETE', path),
  };
}
