// The one way the UI talks to Podium: the same REST API users call, with the signed-in token as a bearer.

import { splitEvents } from './sse.js';

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
      // With the token it refused: a call still in flight from an earlier session must not end this one.
      window.dispatchEvent(new CustomEvent('podium:unauthenticated', { detail: { message, token } }));
    }
    const error = new ApiError(response.status, code, message);
    if (raw) Object.assign(error, { latencyMs, text, data, headers: response.headers });
    throw error;
  }
  return raw ? { status: response.status, data, text, headers: response.headers, latencyMs } : data;
}

// POSTs a request that may answer with server-sent events; onData gets each event's decoded JSON as it
// arrives. Resolves to {status, headers, latencyMs, firstEventMs, streamed, data}; throws ApiError as api() does.
export async function apiStream(path, body, onData) {
  const headers = { Accept: 'text/event-stream, application/json', 'Content-Type': 'application/json' };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, { method: 'POST', headers, cache: 'no-store', body: JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, 'UNREACHABLE', `Podium did not answer (${error.message})`);
  }
  const isStream = (response.headers.get('Content-Type') || '').startsWith('text/event-stream');
  if (!response.ok || !isStream) {
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : {}; } catch { data = null; }
    const latencyMs = performance.now() - started;
    if (!response.ok) {
      const error = new ApiError(response.status, (data && data.error_code) || `HTTP_${response.status}`, (data && data.message) || text);
      Object.assign(error, { latencyMs, text, data, headers: response.headers });
      throw error;
    }
    return { status: response.status, headers: response.headers, latencyMs, firstEventMs: latencyMs, streamed: false, data };
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let firstEventMs = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    let events;
    [events, buffer] = splitEvents(buffer + decoder.decode(value, { stream: true }));
    for (const data of events) {
      if (data === '[DONE]') continue;
      if (firstEventMs === null) firstEventMs = performance.now() - started;
      onData(JSON.parse(data));
    }
  }
  return { status: response.status, headers: response.headers, latencyMs: performance.now() - started, firstEventMs, streamed: true };
}

export const endpointPath = (name) => `/api/2.0/serving-endpoints/${encodeURIComponent(name)}`;
