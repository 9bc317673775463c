// The Mastodon API, as any app calls it: a bearer token, JSON in and out, pages followed by
// their Link header. Every failure is logged as a console error (a failed load must be
// visible to whoever looks, and to the browser tests) and thrown as an ApiError whose
// message is the server's own sentence.

const SESSION_KEY = 'homefeed.session';

/** The logged-in person: {token, account} in localStorage (one per origin). */
export const session = {
  get() {
    try { return JSON.parse(localStorage.getItem(SESSION_KEY) || 'null'); } catch { return null; }
  },
  set(value) { localStorage.setItem(SESSION_KEY, JSON.stringify(value)); },
  clear() { localStorage.removeItem(SESSION_KEY); },
  token() { return this.get()?.token || null; },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Every request is counted while in flight (the browser tests wait for quiet). */
let inFlight = 0;
function settle() { inFlight -= 1; document.documentElement.dataset.busy = String(inFlight); }

/**
 * api('/api/v1/statuses', {method: 'POST', json: {...}}) -> {data, next, prev}
 * `token: null` sends no Authorization (the default is the session's token); `form`
 * sends application/x-www-form-urlencoded (the OAuth endpoints prefer it).
 */
export async function api(path, { method = 'GET', json, form, token, query, headers: extra } = {}) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  const bearer = token === undefined ? session.token() : token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null) continue;
      for (const item of Array.isArray(v) ? v : [v]) q.append(Array.isArray(v) ? `${k}[]` : k, item);
    }
    const text = q.toString();
    if (text) url += (url.includes('?') ? '&' : '?') + text;
  }
  inFlight += 1;
  document.documentElement.dataset.busy = String(inFlight);
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: 'same-origin' });
  } catch (err) {
    settle();
    console.error(`homefeed: ${method} ${path} failed: ${err}`);
    throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.');
  }
  try {
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!response.ok) {
      const message = (data && (data.error_description || data.error)) || `${response.status} ${response.statusText}`;
      console.error(`homefeed: ${method} ${path}: ${response.status} ${message}`);
      throw new ApiError(response.status, typeof message === 'string' ? message : JSON.stringify(message));
    }
    const links = parseLinks(response.headers.get('Link'));
    return { data, next: links.next || null, prev: links.prev || null };
  } finally {
    settle();
  }
}

/** `<url>; rel="next", <url>; rel="prev"` -> {next: url, prev: url} (same-origin paths). */
export function parseLinks(header) {
  const out = {};
  if (!header) return out;
  for (const part of header.split(',')) {
    const m = part.match(/<([^>]+)>\s*;\s*rel="?([a-z]+)"?/);
    if (m) {
      const url = new URL(m[1], location.origin);
      out[m[2]] = url.pathname + url.search;
    }
  }
  return out;
}

/** The server's limits (post length), read once. */
let instance = null;
export async function instanceInfo() {
  if (!instance) {
    instance = api('/api/v2/instance', { token: null }).then(({ data }) => data).catch(() => null);
  }
  return instance;
}

export async function maxCharacters() {
  const info = await instanceInfo();
  return info?.configuration?.statuses?.max_characters || 500;
}
