// Signing in, as any Mastodon app does: the client registers itself once (POST /api/v1/apps,
// its client id and secret kept in localStorage), signs people up with an app token
// (client_credentials, then POST /api/v1/accounts), and logs them in through the server's
// own pages (/oauth/authorize, authorization code with PKCE), never seeing a password it
// did not take for a sign-up. Logging out revokes the token (POST /oauth/revoke).

import { api, ApiError, session } from './api.js';

const APP_KEY = 'homefeed.app';
const PENDING_KEY = 'homefeed.login';
export const SCOPES = 'read write follow';
const CALLBACK = '/auth/callback';

function redirectUri() { return location.origin + CALLBACK; }

function storedApp() {
  try {
    const app = JSON.parse(localStorage.getItem(APP_KEY) || 'null');
    return app && app.redirect_uri === redirectUri() ? app : null;
  } catch { return null; }
}

async function registerApp() {
  const { data } = await api('/api/v1/apps', {
    method: 'POST', token: null,
    form: { client_name: 'homefeed web', redirect_uris: redirectUri(), scopes: SCOPES, website: location.origin },
  });
  const app = { client_id: data.client_id, client_secret: data.client_secret, redirect_uri: redirectUri() };
  localStorage.setItem(APP_KEY, JSON.stringify(app));
  return app;
}

/** The app's own token (no user): what sign-up needs. Re-registers once if the server
 * no longer knows the app (a fresh data directory). */
async function appToken() {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const app = storedApp() || await registerApp();
    try {
      const { data } = await api('/oauth/token', {
        method: 'POST', token: null,
        form: { grant_type: 'client_credentials', client_id: app.client_id, client_secret: app.client_secret, scope: SCOPES },
      });
      return { app, token: data.access_token };
    } catch (err) {
      if (attempt === 0 && err instanceof ApiError && (err.status === 401 || err.status === 400)) {
        localStorage.removeItem(APP_KEY);
        continue;
      }
      throw err;
    }
  }
  throw new ApiError(0, 'could not register the web client');
}

async function remember(token) {
  const { data: account } = await api('/api/v1/accounts/verify_credentials', { token });
  session.set({ token, account });
  return account;
}

/** Sign up: the new account's token comes back with it, so the person is logged in. */
export async function signUp({ username, email, password }) {
  const { token: appTok } = await appToken();
  const { data } = await api('/api/v1/accounts', {
    method: 'POST', token: appTok,
    form: { username, email, password, agreement: 'true', locale: navigator.language || 'en' },
  });
  return remember(data.access_token);
}

function randomString(bytes = 32) {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return base64url(raw);
}

function base64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** PKCE: S256 where the browser can hash (a secure context: https or loopback), else plain. */
async function challengeOf(verifier) {
  if (globalThis.crypto?.subtle) {
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
    return { code_challenge: base64url(new Uint8Array(digest)), code_challenge_method: 'S256' };
  }
  return { code_challenge: verifier, code_challenge_method: 'plain' };
}

/** Log in: off to the server's log-in page; it comes back to /auth/callback. */
export async function startLogIn() {
  const { app } = await appToken(); // also proves the server still knows the app
  const verifier = randomString(48);
  const state = randomString(16);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: 'code', client_id: app.client_id, redirect_uri: app.redirect_uri, scope: SCOPES,
    state, force_login: 'true', ...(await challengeOf(verifier)),
  });
  location.assign(`/oauth/authorize?${query}`);
}

/** Back from the log-in page: the code for a token. */
export async function finishLogIn(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
  sessionStorage.removeItem(PENDING_KEY);
  if (params.get('error')) throw new ApiError(400, params.get('error') === 'access_denied' ? 'You did not authorize the log-in.' : params.get('error'));
  const app = storedApp();
  if (!pending || !app || params.get('state') !== pending.state) {
    throw new ApiError(400, 'This log-in did not start here (or was already used): log in again.');
  }
  const { data } = await api('/oauth/token', {
    method: 'POST', token: null,
    form: {
      grant_type: 'authorization_code', code: params.get('code') || '', redirect_uri: app.redirect_uri,
      client_id: app.client_id, client_secret: app.client_secret, code_verifier: pending.verifier, scope: SCOPES,
    },
  });
  return remember(data.access_token);
}

/** Log out: the token is revoked on the server, then forgotten here. */
export async function logOut() {
  const token = session.token();
  const app = storedApp();
  session.clear();
  if (token && app) {
    await api('/oauth/revoke', {
      method: 'POST', token: null,
      form: { client_id: app.client_id, client_secret: app.client_secret, token },
    });
  }
}
