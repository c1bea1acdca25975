// REST client for /api/v1 (docs/api.md). Every call adds the bearer token;
// JSON in and out; a non-2xx answer throws ApiError with the server's
// {"error":{"code","message"}} body. A 401 logs the desk out.

import { bus } from './bus.js';

const BASE = '/api/v1';
const TOKEN_KEY = 'mailroom.token';

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** The current session: `token` (kept in localStorage so a reload stays logged in) and `me` (GET /me). */
export const session = {
  token: localStorage.getItem(TOKEN_KEY) || null,
  /** GET /me once loaded: {id, username, name, role, …, presence: {status, reason}, agent: {id, username, name, role, …}}. */
  me: null,
  setToken(token) {
    this.token = token;
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  },
  clear() {
    this.setToken(null);
    this.me = null;
  },
  get agent() {
    return this.me ? this.me.agent : null;
  },
  get isSupervisor() {
    const role = this.me && this.me.agent && this.me.agent.role;
    return role === 'supervisor' || role === 'admin';
  },
};

function buildQuery(query) {
  if (!query) return '';
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) {
      for (const item of v) if (item !== undefined && item !== null && item !== '') sp.append(k, String(item));
    } else {
      sp.append(k, String(v));
    }
  }
  const s = sp.toString();
  return s ? `?${s}` : '';
}

async function request(method, path, { query, body, form } = {}) {
  const headers = { Accept: 'application/json' };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  let payload;
  if (form) {
    payload = form; // the browser sets the multipart boundary
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path + buildQuery(query), { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, 'network', `network error: ${e.message}`, null);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    const apiErr = new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText, data);
    // The login call itself answers 401 for a wrong password: that is not a logout.
    if (res.status === 401 && path !== '/login' && session.token) {
      session.clear();
      bus.emit('logged-out');
    }
    throw apiErr;
  }
  return data;
}

export const api = {
  get: (path, query) => request('GET', path, { query }),
  post: (path, body) => request('POST', path, { body }),
  put: (path, body) => request('PUT', path, { body }),
  del: (path) => request('DELETE', path),
  /** POST /attachments multipart → {id, filename, content_type, size}. */
  upload(file) {
    const form = new FormData();
    form.append('file', file, file.name);
    return request('POST', '/attachments', { form });
  },
  /**
   * An absolute URL under /api/v1 carrying the token as `?token=` — for
   * links, downloads and <img> where no header can be set.
   */
  url(path, query) {
    const q = Object.assign({}, query || {});
    if (session.token) q.token = session.token;
    return BASE + path + buildQuery(q);
  },
};

// GET /me answers the agent's fields flat ({id, username, name, role, …,
// presence}); `me.agent` repeats them so both `me.username` and
// `me.agent.username` work.
function shapeMe(raw) {
  if (!raw || typeof raw !== 'object') return raw;
  const { presence, ...agent } = raw;
  return Object.assign({}, raw, { agent: raw.agent || agent, presence: presence || { status: 'offline', reason: null } });
}

/** POST /login → stores the token and loads `me`. Throws ApiError on a wrong password. */
export async function login(username, password) {
  const res = await api.post('/login', { username, password });
  session.setToken(res.token);
  session.me = shapeMe(await api.get('/me'));
  return session.me;
}

/** Loads GET /me for a stored token; null when there is none or it is no longer valid. */
export async function restore() {
  if (!session.token) return null;
  try {
    session.me = shapeMe(await api.get('/me'));
    return session.me;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

/** POST /logout (best effort), then forget the token. */
export async function logout() {
  try {
    if (session.token) await api.post('/logout');
  } catch {
    // the token is forgotten either way
  }
  session.clear();
  bus.emit('logged-out');
}
