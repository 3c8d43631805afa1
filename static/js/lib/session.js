// The sign-in token (a JWT the operator or an identity service gave the creator), kept in this
// browser only. Every API call sends it as a bearer token; URLs the browser opens by itself
// (event streams, the original download) carry it as `access_token`, which reel accepts there.

const KEY = 'reel.token';
const listeners = new Set();

/** The stored token, or null. */
export function token() {
  try { return localStorage.getItem(KEY); } catch { return null; }
}

/** Headers for a fetch: the bearer token when signed in. */
export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** `url` with the token as `access_token` (for EventSource and download links). */
export function withToken(url) {
  const t = token();
  if (!t || !url) return url;
  const u = new URL(url, window.location.href);
  u.searchParams.set('access_token', t);
  return `${u.pathname}${u.search}`;
}

export function signIn(value) {
  try { localStorage.setItem(KEY, value.trim()); } catch { /* private mode: this page only */ }
  listeners.forEach((fn) => fn());
}

export function signOut() {
  try { localStorage.removeItem(KEY); } catch { /* nothing stored */ }
  listeners.forEach((fn) => fn());
}

/** Calls `fn` when the server asks for a sign-in (a 401), or the token changes. */
export function onSessionChange(fn) {
  listeners.add(fn);
}

/** The server refused the token (or there is none): ask for one. */
export function signInNeeded() {
  listeners.forEach((fn) => fn({ needed: true }));
}
