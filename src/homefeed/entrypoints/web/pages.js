// The pages: each draws itself into <main> from the address, and returns an optional
// cleanup. They only call the Mastodon API (api.js) and the pieces (timeline.js, compose.js).

import { api, ApiError, session } from './api.js';
import { finishLogIn, signUp, startLogIn } from './auth.js';
import { composer } from './compose.js';
import { announce, avatar, displayName, h, sanitize, timeEl } from './dom.js';
import { Feed, nav, renderStatus } from './timeline.js';

/** The live feeds on the page (the stream adds to them). */
export const live = { home: null };

function heading(text) {
  return h('h1', { class: 'page-title' }, text);
}

function problem(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? err.message : String(err));
}

// -- logged out ---------------------------------------------------------------------------

export function welcome(main) {
  const error = h('p', { class: 'error', role: 'alert' });
  const field = (label, name, type, extra = {}) => {
    const id = `signup-${name}`;
    return h('div', { class: 'field' }, h('label', { for: id }, label),
      h('input', { id, name, type, required: true, ...extra }));
  };
  const form = h('form', { class: 'card signup', onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    error.textContent = '';
    try {
      await signUp({ username: data.get('username'), email: data.get('email'), password: data.get('password') });
      announce('Signed up and logged in');
      nav.go('/', { replace: true, fresh: true });
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
    }
  } },
  h('h2', {}, 'Create an account'),
  field('Username', 'username', 'text', { autocomplete: 'username', pattern: '[A-Za-z0-9_]{1,30}', maxlength: '30', title: 'Letters, digits and _ (up to 30)' }),
  field('Email', 'email', 'email', { autocomplete: 'email' }),
  field('Password', 'password', 'password', { autocomplete: 'new-password', minlength: '8' }),
  h('p', { class: 'muted small' }, "By signing up you accept this server's rules."),
  h('button', { type: 'submit', class: 'primary' }, 'Sign up'), error);
  main.append(
    h('section', { class: 'hero' },
      heading('homefeed'),
      h('p', { class: 'lead' }, 'Short posts from the people you follow, live. Sign up, or log in if you have an account.'),
      h('p', {}, h('button', { type: 'button', class: 'primary', onclick: () => startLogIn().catch((err) => { error.textContent = err.message; }) }, 'Log in'),
        ' ', h('a', { href: '/public', 'data-link': true }, 'See what people post'))),
    form);
}

export async function callback(main) {
  main.append(heading('Logging in…'));
  try {
    await finishLogIn(new URLSearchParams(location.search));
    nav.go('/', { replace: true, fresh: true });
  } catch (err) {
    main.append(problem(err), h('p', {}, h('a', { href: '/', 'data-link': true }, 'Back')));
  }
}

// -- timelines ----------------------------------------------------------------------------

export async function home(main) {
  const feed = new Feed({ label: 'Home', path: '/api/v1/timelines/home',
    empty: 'Your home timeline is empty: follow people (try the public timeline or search) and their posts appear here.' });
  const form = composer({ onPosted: (status) => feed.add(status, { now: true }) });
  main.append(h('h1', { class: 'visually-hidden' }, 'Home'), form, feed.el);
  live.home = feed;
  await feed.start();
  return () => { live.home = null; feed.destroy(); };
}

export async function timeline(main, { local }) {
  const feed = new Feed({ label: local ? 'Local timeline' : 'Public timeline', path: '/api/v1/timelines/public',
    query: local ? { local: 'true' } : {}, empty: 'Nobody has posted yet.' });
  main.append(heading(local ? 'Local timeline' : 'Public timeline'),
    h('nav', { class: 'tabs', 'aria-label': 'Timelines' },
      h('a', { href: '/public', 'data-link': true, 'aria-current': local ? null : 'page' }, 'Everyone'),
      h('a', { href: '/public/local', 'data-link': true, 'aria-current': local ? 'page' : null }, 'This server')),
    feed.el);
  await feed.start();
  return () => feed.destroy();
}

export async function tag(main, { tag: name }) {
  const feed = new Feed({ label: `#${name}`, path: `/api/v1/timelines/tag/${encodeURIComponent(name)}`, empty: `No posts with #${name} yet.` });
  main.append(heading(`#${name}`), feed.el);
  await feed.start();
  return () => feed.destroy();
}

// -- people -------------------------------------------------------------------------------

function accountRow(account) {
  return h('li', { class: 'account-row' }, avatar(account, 'sm'),
    h('a', { href: `/@${account.acct}`, 'data-link': true }, h('span', { class: 'name' }, displayName(account)), ' ',
      h('span', { class: 'acct' }, `@${account.acct}`)));
}

async function lookup(username) {
  const { data } = await api('/api/v1/accounts/lookup', { query: { acct: username } });
  return data;
}

function followButton(account) {
  const button = h('button', { type: 'button', class: 'primary follow', hidden: true }, 'Follow');
  const me = session.get()?.account;
  if (!me || me.id === account.id) return button;
  const set = (following) => {
    button.textContent = following ? 'Unfollow' : 'Follow';
    button.dataset.following = String(following);
    button.hidden = false;
  };
  api('/api/v1/accounts/relationships', { query: { id: [account.id] } })
    .then(({ data }) => set(Boolean(data[0]?.following || data[0]?.requested)))
    .catch(() => set(false));
  button.addEventListener('click', async () => {
    const following = button.dataset.following === 'true';
    button.disabled = true;
    try {
      const { data } = await api(`/api/v1/accounts/${account.id}/${following ? 'unfollow' : 'follow'}`, { method: 'POST' });
      set(Boolean(data.following || data.requested));
      const counter = document.querySelector('.followers-count');
      if (counter) counter.textContent = String(Math.max(0, Number(counter.textContent) + (data.following ? 1 : -1)));
      announce(data.following ? `Following @${account.acct}` : `Unfollowed @${account.acct}`);
    } catch (err) {
      announce(err.message);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export async function profile(main, { username, tab }) {
  let account;
  try {
    account = await lookup(username);
  } catch (err) {
    main.append(heading(`@${username}`), problem(err.status === 404 ? 'There is nobody called that here.' : err));
    return null;
  }
  const base = `/@${account.acct}`;
  const note = h('div', { class: 'note' });
  note.append(sanitize(account.note || ''));
  main.append(h('section', { class: 'profile card' },
    h('div', { class: 'profile-head' }, avatar(account, 'lg'),
      h('div', {}, h('h1', { class: 'page-title' }, displayName(account)), h('p', { class: 'acct' }, `@${account.acct}`)),
      followButton(account)),
    note,
    h('nav', { class: 'tabs', 'aria-label': 'Profile' },
      h('a', { href: base, 'data-link': true, 'aria-current': tab ? null : 'page' },
        h('span', { class: 'n' }, String(account.statuses_count)), ' posts'),
      h('a', { href: `${base}/following`, 'data-link': true, 'aria-current': tab === 'following' ? 'page' : null },
        h('span', { class: 'n' }, String(account.following_count)), ' following'),
      h('a', { href: `${base}/followers`, 'data-link': true, 'aria-current': tab === 'followers' ? 'page' : null },
        h('span', { class: 'n followers-count' }, String(account.followers_count)), ' followers'))));
  if (tab) {
    const list = h('ul', { class: 'accounts', 'aria-label': tab === 'followers' ? 'Followers' : 'Following' });
    main.append(list);
    const { data } = await api(`/api/v1/accounts/${account.id}/${tab}`, { query: { limit: 80 } });
    for (const a of data) list.append(accountRow(a));
    if (!data.length) main.append(h('p', { class: 'muted' }, tab === 'followers' ? 'No followers yet.' : 'Not following anyone yet.'));
    return null;
  }
  const feed = new Feed({ label: `Posts by @${account.acct}`, path: `/api/v1/accounts/${account.id}/statuses`, empty: 'No posts yet.' });
  main.append(feed.el);
  await feed.start();
  return () => feed.destroy();
}

// -- a thread -----------------------------------------------------------------------------

export async function thread(main, { id }, state = {}) {
  let status;
  try {
    ({ data: status } = await api(`/api/v1/statuses/${id}`));
  } catch (err) {
    main.append(heading('Post'), problem(err.status === 404 ? 'This post does not exist (or was deleted).' : err));
    return null;
  }
  const list = h('div', { role: 'feed', 'aria-label': 'Thread', class: 'feed thread' });
  main.append(heading(`Post by @${status.account.acct}`), list);
  const focal = renderStatus(status, { focal: true });
  list.append(focal);
  if (session.get()) {
    const me = session.get().account;
    const mention = status.account.id === me.id ? '' : `@${status.account.acct} `;
    const form = composer({ replyTo: status, prefill: mention, onPosted: (reply) => list.append(renderStatus(reply)) });
    form.classList.add('reply-composer');
    main.append(h('h2', { class: 'visually-hidden' }, 'Reply'), form);
    if (state.reply) form.focusText();
  }
  try {
    const { data } = await api(`/api/v1/statuses/${id}/context`);
    for (const s of data.ancestors) list.insertBefore(renderStatus(s), focal);
    for (const s of data.descendants) list.append(renderStatus(s));
    if (!state.reply) focal.focus();
  } catch (err) {
    list.after(problem(err));
  }
  return null;
}

// -- search -------------------------------------------------------------------------------

export async function search(main) {
  const q = new URLSearchParams(location.search).get('q') || '';
  main.append(heading(q ? `Search: ${q}` : 'Search'));
  if (!q.trim()) {
    main.append(h('p', { class: 'muted' }, 'Search for people by username, posts by their words, and #hashtags.'));
    return null;
  }
  let data;
  try {
    ({ data } = await api('/api/v2/search', { query: { q, resolve: 'false', limit: 20 } }));
  } catch (err) {
    main.append(problem(err));
    return null;
  }
  const section = (title, items) => h('section', { class: 'results', 'aria-label': title }, h('h2', {}, title), items);
  main.append(section('People', data.accounts.length
    ? h('ul', { class: 'accounts' }, data.accounts.map(accountRow)) : h('p', { class: 'muted' }, 'Nobody by that name.')));
  main.append(section('Hashtags', data.hashtags.length
    ? h('ul', { class: 'tags' }, data.hashtags.map((t) => h('li', {}, h('a', { href: `/tags/${encodeURIComponent(t.name)}`, 'data-link': true }, `#${t.name}`))))
    : h('p', { class: 'muted' }, 'No hashtag.')));
  const posts = h('div', { role: 'feed', 'aria-label': 'Posts found', class: 'feed' }, data.statuses.map((s) => renderStatus(s)));
  main.append(section('Posts', data.statuses.length ? posts : h('p', { class: 'muted' }, 'No post has these words.')));
  return null;
}

// -- notifications ------------------------------------------------------------------------

const SAYS = {
  favourite: 'favourited your post',
  reblog: 'boosted your post',
  mention: 'mentioned you',
  follow: 'followed you',
  status: 'posted',
  update: 'edited a post',
};

export function renderNotification(n) {
  const who = h('a', { href: `/@${n.account.acct}`, 'data-link': true, class: 'who' }, `@${n.account.acct}`);
  const item = h('article', { class: `notification kind-${n.type}`, tabindex: '0', dataset: { id: n.id } },
    h('p', { class: 'notification-line' }, avatar(n.account, 'sm'), who, ` ${SAYS[n.type] || n.type} `, timeEl(n.created_at)));
  if (n.status) {
    const quote = h('div', { class: 'quoted' });
    quote.append(sanitize(n.status.content || ''));
    item.append(h('a', { href: `/@${n.status.account.acct}/${n.status.id}`, 'data-link': true, class: 'quoted-link' }, quote));
  }
  return item;
}

export const inbox = { list: null };

export async function notifications(main, _params, _state, { markRead }) {
  const list = h('div', { role: 'feed', 'aria-label': 'Notifications', class: 'feed notifications', 'aria-busy': 'true' });
  const note = h('p', { class: 'muted' });
  main.append(heading('Notifications'), list, note);
  inbox.list = list;
  try {
    const { data } = await api('/api/v1/notifications', { query: { limit: 40 } });
    for (const n of data) list.append(renderNotification(n));
    note.textContent = data.length ? '' : 'No notifications yet. When someone follows you, favourites, boosts or mentions you, it shows here.';
    if (data.length) await markRead(data[0].id);
  } catch (err) {
    main.append(problem(err));
  } finally {
    list.setAttribute('aria-busy', 'false');
  }
  return () => { inbox.list = null; };
}
