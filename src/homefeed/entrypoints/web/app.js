// The web client's entry: the navigation, the router (the address says which page; links
// are followed without a reload), the live stream (server-sent events of the streaming API:
// new posts into Home, deletions everywhere, notifications into the unread count).

import { api, session } from './api.js';
import { logOut } from './auth.js';
import { announce, clear, h } from './dom.js';
import * as pages from './pages.js';
import { nav, removeStatus } from './timeline.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let cleanup = null;
let rendering = 0;

// -- routes -------------------------------------------------------------------------------

const ROUTES = [
  [/^\/$/, () => (session.get() ? [pages.home, 'Home'] : [pages.welcome, 'Welcome'])],
  [/^\/public$/, () => [pages.timeline, 'Public timeline', { local: false }]],
  [/^\/public\/local$/, () => [pages.timeline, 'Local timeline', { local: true }]],
  [/^\/notifications$/, () => [pages.notifications, 'Notifications', {}, true]],
  [/^\/search$/, () => [pages.search, 'Search']],
  [/^\/tags\/([^/]+)$/, (m) => [pages.tag, `#${m[1]}`, { tag: m[1] }]],
  [/^\/@([^/]+)$/, (m) => [pages.profile, `@${m[1]}`, { username: m[1] }]],
  [/^\/@([^/]+)\/(followers|following)$/, (m) => [pages.profile, `@${m[1]} ${m[2]}`, { username: m[1], tab: m[2] }]],
  [/^\/@([^/]+)\/(\d+)$/, (m) => [pages.thread, 'Post', { username: m[1], id: m[2] }]],
  [/^\/auth\/callback$/, () => [pages.callback, 'Logging in']],
];

function match(path) {
  for (const [re, make] of ROUTES) {
    const m = path.match(re);
    if (m) return make(m.map((part, i) => (i ? decodeURIComponent(part) : part)));
  }
  return null;
}

async function render({ focus = false } = {}) {
  const ticket = ++rendering;
  if (cleanup) { try { cleanup(); } catch (err) { console.error(err); } cleanup = null; }
  clear(main);
  drawNav();
  const found = match(location.pathname);
  if (!found) {
    document.title = 'Not found · homefeed';
    main.append(h('h1', { class: 'page-title' }, 'Not found'), h('p', {}, 'There is no page here. ',
      h('a', { href: '/', 'data-link': true }, 'Go home')));
    return;
  }
  const [view, title, params = {}, needsLogin = false] = found;
  document.title = `${title} · homefeed`;
  if (needsLogin && !session.get()) {
    main.append(h('h1', { class: 'page-title' }, title), h('p', {}, 'Log in to see this page. ',
      h('a', { href: '/', 'data-link': true }, 'Sign up or log in')));
    return;
  }
  const done = await view(main, params, history.state || {}, { markRead });
  if (ticket !== rendering) { if (typeof done === 'function') done(); return; }
  cleanup = typeof done === 'function' ? done : null;
  if (focus && !document.activeElement?.closest('main form, main article')) {
    (main.querySelector('h1') || main).setAttribute('tabindex', '-1');
    (main.querySelector('h1') || main).focus({ preventScroll: true });
  }
}

nav.go = (path, { replace = false, fresh = false, ...state } = {}) => {
  if (replace) history.replaceState(state, '', path);
  else history.pushState(state, '', path);
  if (fresh) restartLive();
  window.scrollTo({ top: 0 });
  render({ focus: true });
};

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.origin !== location.origin) return;
  e.preventDefault();
  nav.go(a.pathname + a.search);
});

window.addEventListener('popstate', () => render({ focus: true }));

// -- the navigation -----------------------------------------------------------------------

let unread = 0;
let lastRead = null;

function badge() {
  return unread ? h('span', { class: 'badge' }, String(unread > 40 ? '40+' : unread), h('span', { class: 'visually-hidden' }, ' unread')) : null;
}

function link(path, text, extra = null) {
  const here = location.pathname === path;
  return h('a', { href: path, 'data-link': true, 'aria-current': here ? 'page' : null }, text, extra);
}

function drawNav() {
  const me = session.get()?.account;
  const q = location.pathname === '/search' ? new URLSearchParams(location.search).get('q') || '' : '';
  const searchBox = h('form', { role: 'search', class: 'search', onsubmit: (e) => {
    e.preventDefault();
    const value = e.target.q.value.trim();
    if (value) nav.go(`/search?q=${encodeURIComponent(value)}`);
  } },
  h('label', { for: 'search-q', class: 'visually-hidden' }, 'Search'),
  h('input', { id: 'search-q', name: 'q', type: 'search', placeholder: 'Search', value: q, autocomplete: 'off' }));
  const links = me
    ? [link('/', 'Home'), link('/public', 'Public'),
      h('a', { href: '/notifications', 'data-link': true, id: 'nav-notifications', 'aria-current': location.pathname === '/notifications' ? 'page' : null }, 'Notifications', badge()),
      link(`/@${me.acct}`, 'Profile')]
    : [link('/public', 'Public'), link('/', 'Sign up')];
  clear(top).append(h('nav', { 'aria-label': 'Main', class: 'bar' },
    h('a', { href: '/', 'data-link': true, class: 'brand' }, 'homefeed'),
    h('div', { class: 'links' }, links),
    searchBox,
    me ? h('button', { type: 'button', class: 'logout', onclick: async () => {
      stopLive();
      try { await logOut(); } catch { /* logged out here anyway */ }
      announce('Logged out');
      nav.go('/', { replace: true });
    } }, 'Log out') : null,
    h('a', { href: '/about', class: 'about' }, 'About')));
}

function updateBadge() {
  const a = document.getElementById('nav-notifications');
  if (!a) return;
  a.querySelector('.badge')?.remove();
  const b = badge();
  if (b) a.append(b);
  document.documentElement.dataset.unread = String(unread);
}

async function refreshUnread() {
  try {
    const [markers, list] = await Promise.all([
      api('/api/v1/markers', { query: { timeline: ['notifications'] } }),
      api('/api/v1/notifications', { query: { limit: 40 } }),
    ]);
    lastRead = markers.data?.notifications?.last_read_id || null;
    const after = lastRead ? BigInt(lastRead) : -1n;
    unread = location.pathname === '/notifications' ? 0 : list.data.filter((n) => BigInt(n.id) > after).length;
    updateBadge();
  } catch { /* logged as it failed; the count stays */ }
}

async function markRead(id) {
  unread = 0;
  updateBadge();
  if (lastRead && BigInt(lastRead) >= BigInt(id)) return;
  lastRead = id;
  await api('/api/v1/markers', { method: 'POST', json: { notifications: { last_read_id: id } } }).catch(() => {});
}

// -- live ---------------------------------------------------------------------------------

let stream = null;
let retry = 1000;

function stopLive() {
  if (stream) stream.close();
  stream = null;
  document.documentElement.dataset.stream = 'closed';
}

function startLive() {
  const token = session.token();
  if (!token || stream) return;
  const es = new EventSource(`/api/v1/streaming/user?access_token=${encodeURIComponent(token)}`);
  stream = es;
  let dropped = false;
  es.addEventListener('open', () => {
    retry = 1000;
    document.documentElement.dataset.stream = 'open';
    if (dropped && pages.live.home) pages.live.home.catchUp(); // fill what was missed
    dropped = false;
  });
  es.addEventListener('update', (e) => pages.live.home?.add(JSON.parse(e.data)));
  es.addEventListener('delete', (e) => { pages.live.home?.remove(e.data); removeStatus(e.data); });
  es.addEventListener('notification', (e) => {
    const n = JSON.parse(e.data);
    if (pages.inbox.list) {
      pages.inbox.list.prepend(pages.renderNotification(n));
      markRead(n.id);
    } else {
      unread += 1;
      updateBadge();
    }
  });
  es.addEventListener('error', () => {
    dropped = true;
    document.documentElement.dataset.stream = 'reconnecting';
    if (es.readyState === EventSource.CLOSED && stream === es) {
      console.error('homefeed: the live stream was refused; trying again');
      stream = null;
      setTimeout(startLive, retry);
      retry = Math.min(retry * 2, 60000);
    }
  });
}

function restartLive() {
  stopLive();
  unread = 0;
  if (session.get()) { startLive(); refreshUnread(); }
}

// -- start --------------------------------------------------------------------------------

async function boot() {
  if (session.get() && location.pathname !== '/auth/callback') {
    try {
      const { data } = await api('/api/v1/accounts/verify_credentials');
      session.set({ ...session.get(), account: data });
    } catch (err) {
      if (err.status === 401 || err.status === 403) session.clear();
    }
  }
  if (session.get()) { startLive(); refreshUnread(); }
  await render();
  document.documentElement.dataset.ready = 'true';
}

// Leaving the page closes the stream at once (a browser may otherwise keep the connection
// until the server next writes, and it has six per server).
window.addEventListener('pagehide', stopLive);

boot();
