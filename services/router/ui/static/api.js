// The one way the UI talks to Podium: the same REST API users call, with the signed-in token as a bearer.

const TOKEN_KEY = 'podium.token';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get signedIn() { return sessionStorage.getItem(TOKEN_KEY) !== null; },
  signIn(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  signOut() { sessionStorage.removeItem(TOKEN_KEY); },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  get display() { return `${this.code}: ${this.message}`; }
}

// Calls the API; resolves to the decoded JSON, or to {status, data, text, headers, latencyMs} with raw.
export async function api(method, path, body, { raw = false, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, 'UNREACHABLE', `Podium did not answer (${error.message})`);
  }
  const text = await response.text();
  const latencyMs = performance.now() - started;
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch { data = null; }
  if (!response.ok) {
    const code = (data && data.error_code) || `HTTP_${response.status}`;
    const message = (data && data.message) || text || response.statusText;
    if (response.status === 401) {
      window.dispatchEvent(new CustomEvent('podium:unauthenticated', { detail: message }));
    }
    const error = new ApiError(response.status, code, message);
    if (raw) Object.assign(error, { latencyMs, text, data, headers: response.headers });
    throw error;
  }
  return raw ? { status: response.status, data, text, headers: response.headers, latencyMs } : data;
}

export const endpointPath = (name) => `/api/2.0/serving-endpoints/${encodeURIComponent(name)}`;
