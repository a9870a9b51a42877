// The client's one authenticated fetch: the bearer token on every REST call,
// the JSON error envelope turned into an Error carrying `status` and `code`.
// `authFetch` is the bare call (the sign-in dialog checks a candidate token
// with it); `createRest` adds the signed-in token, the envelope and the
// 401/403 notice, for JSON (`get`/`post`/`del`) and for files (`fetchOk`).

/** fetch() with `Authorization: Bearer <token>`; the Response as is. */
export function authFetch(token, path, init = {}) {
  return fetch(path, { ...init, headers: { authorization: `Bearer ${token || ''}`, ...init.headers } });
}

/** The error envelope's message and code of a failed response. */
async function failure(r) {
  let code = '';
  let message = `HTTP ${r.status}`;
  try {
    const e = (await r.json()).error;
    code = e?.code || '';
    message = e?.message || message;
  } catch { /* not JSON */ }
  return Object.assign(new Error(message), { status: r.status, code });
}

export function createRest({ getToken, onAuthError }) {
  /** The Response of an authenticated request; throws the envelope's error unless 2xx. */
  async function fetchOk(path, { method = 'GET', body } = {}) {
    if (!getToken()) throw Object.assign(new Error('not signed in'), { status: 401, code: 'unauthorized' }); // no request to refuse
    const headers = body === undefined ? {} : { 'content-type': 'application/json' };
    const r = await authFetch(getToken(), path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 || r.status === 403) onAuthError?.(r.status);
    if (!r.ok) throw await failure(r);
    return r;
  }
  async function request(method, path, body) {
    const r = await fetchOk(path, { method, body });
    return r.status === 204 ? null : r.json();
  }
  return {
    fetchOk,
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body),
    del: (path) => request('DELETE', path),
  };
}
