// Statuses and feeds. A status is an <article> with its actions on it (Reply, Boost,
// Favourite, and Delete on one's own); a feed is an ARIA feed (role="feed") of them that
// loads older pages as the reader scrolls, and takes live posts at the top, or behind an
// "N new posts" bar when the reader has scrolled down (nothing moves under their eyes).

import { api, session } from './api.js';
import { announce, avatar, displayName, h, sanitize, timeEl } from './dom.js';

let serial = 0;
/** A page of statuses as the API gives it by default: a shorter one is the last. */
const PAGE = 20;

/** Where the app routes a path (set by app.js): links and buttons navigate through it. */
export const nav = { go: (path) => { location.assign(path); } };

export function statusPath(status) {
  return `/@${status.account.acct || status.account.username}/${status.id}`;
}

function accountLink(account) {
  return h('a', { href: `/@${account.acct || account.username}`, 'data-link': true, class: 'who' },
    h('span', { class: 'name' }, displayName(account)), ' ',
    h('span', { class: 'acct' }, `@${account.acct || account.username}`));
}

function count(n, one, many) {
  return h('span', { class: 'count', title: `${n} ${n === 1 ? one : many}` }, n ? String(n) : '');
}

/** Every article showing this status (or a boost of it), so that one change shows everywhere. */
function articlesOf(id) {
  return document.querySelectorAll(`article[data-id="${CSS.escape(String(id))}"]`);
}

function refresh(status) {
  for (const article of articlesOf(status.id)) {
    const fav = article.querySelector('button.fav');
    const boost = article.querySelector('button.boost');
    if (fav) fav.setAttribute('aria-pressed', String(Boolean(status.favourited)));
    if (boost) boost.setAttribute('aria-pressed', String(Boolean(status.reblogged)));
    article.querySelector('.count-fav')?.replaceWith(countOf(status, 'fav'));
    article.querySelector('.count-boost')?.replaceWith(countOf(status, 'boost'));
    article.querySelector('.count-reply')?.replaceWith(countOf(status, 'reply'));
  }
}

function countOf(status, kind) {
  const [n, one, many] = {
    reply: [status.replies_count || 0, 'reply', 'replies'],
    boost: [status.reblogs_count || 0, 'boost', 'boosts'],
    fav: [status.favourites_count || 0, 'favourite', 'favourites'],
  }[kind];
  const el = count(n, one, many);
  el.classList.add(`count-${kind}`);
  return el;
}

/** Remove a deleted status (and boosts of it) from every feed on the page. */
export function removeStatus(id) {
  for (const article of document.querySelectorAll('article.status')) {
    if (article.dataset.id === String(id) || article.dataset.wrapper === String(id)) {
      const feed = article.closest('[role="feed"]');
      article.remove();
      if (feed) renumber(feed);
    }
  }
}

async function toggle(status, kind, button) {
  const on = button.getAttribute('aria-pressed') === 'true';
  const verb = kind === 'fav' ? (on ? 'unfavourite' : 'favourite') : (on ? 'unreblog' : 'reblog');
  button.disabled = true;
  try {
    const { data } = await api(`/api/v1/statuses/${status.id}/${verb}`, { method: 'POST' });
    const target = data.reblog && kind === 'boost' ? data.reblog : data;
    Object.assign(status, {
      favourited: target.favourited, reblogged: target.reblogged,
      favourites_count: target.favourites_count, reblogs_count: target.reblogs_count,
    });
    if (kind === 'boost' && verb === 'reblog') status.reblogged = true;
    if (kind === 'boost' && verb === 'unreblog') status.reblogged = false;
    if (kind === 'fav') status.favourited = verb === 'favourite';
    refresh(status);
    announce({ favourite: 'Favourited', unfavourite: 'Favourite removed', reblog: 'Boosted', unreblog: 'Boost removed' }[verb]);
  } catch (err) {
    announce(err.message);
  } finally {
    button.disabled = false;
  }
}

function deleteControls(status, article) {
  const button = h('button', { type: 'button', class: 'delete' }, 'Delete');
  const confirmBox = h('span', { class: 'confirm', hidden: true },
    h('span', {}, 'Delete this post? '),
    h('button', { type: 'button', class: 'danger', onclick: async (e) => {
      e.target.disabled = true;
      try {
        await api(`/api/v1/statuses/${status.id}`, { method: 'DELETE' });
        removeStatus(status.id);
        announce('Post deleted');
        if (article.classList.contains('focal')) nav.go('/');
      } catch (err) {
        announce(err.message);
        e.target.disabled = false;
      }
    } }, 'Yes, delete'),
    h('button', { type: 'button', onclick: () => { confirmBox.hidden = true; button.hidden = false; button.focus(); } }, 'Cancel'));
  button.addEventListener('click', () => {
    button.hidden = true;
    confirmBox.hidden = false;
    confirmBox.querySelector('button').focus();
  });
  return [button, confirmBox];
}

/** One status as an <article>; a boost shows the boosted status, with who boosted it. */
export function renderStatus(wrapper, { focal = false } = {}) {
  const status = wrapper.reblog || wrapper;
  const me = session.get()?.account;
  const mine = me && status.account.id === me.id;
  const id = `st-${++serial}`;
  const article = h('article', {
    class: `status${focal ? ' focal' : ''}`, tabindex: '0', 'aria-labelledby': `${id}-by`,
    'aria-describedby': `${id}-text`, dataset: { id: status.id },
  });
  if (wrapper.reblog) {
    article.dataset.wrapper = wrapper.id;
    article.append(h('p', { class: 'boosted' }, '↻ ', accountLink(wrapper.account), ' boosted'));
  }
  const header = h('header', { class: 'status-head' },
    avatar(status.account),
    h('span', { id: `${id}-by`, class: 'by' }, accountLink(status.account)),
    h('a', { href: statusPath(status), 'data-link': true, class: 'when' }, timeEl(status.created_at)));
  article.append(header);
  if (status.in_reply_to_id && !focal) {
    const to = (status.mentions || []).find((m) => m.id === status.in_reply_to_account_id);
    article.append(h('p', { class: 'replying' }, 'Replying to ',
      h('a', { href: `/@${to ? to.acct : status.account.acct}/${status.in_reply_to_id}`, 'data-link': true },
        to ? `@${to.acct}` : 'a post')));
  }
  const content = h('div', { class: 'content', id: `${id}-text`, lang: status.language || null });
  content.append(sanitize(status.content || ''));
  article.append(content);
  const actions = h('footer', { class: 'actions' },
    h('span', { class: 'action' },
      h('button', { type: 'button', class: 'reply', onclick: () => nav.go(statusPath(status), { reply: true }) }, 'Reply'),
      countOf(status, 'reply')),
    h('span', { class: 'action' },
      h('button', { type: 'button', class: 'boost', 'aria-pressed': String(Boolean(status.reblogged)),
        onclick: (e) => toggle(status, 'boost', e.currentTarget) }, 'Boost'),
      countOf(status, 'boost')),
    h('span', { class: 'action' },
      h('button', { type: 'button', class: 'fav', 'aria-pressed': String(Boolean(status.favourited)),
        onclick: (e) => toggle(status, 'fav', e.currentTarget) }, 'Favourite'),
      countOf(status, 'fav')),
    mine ? h('span', { class: 'action' }, deleteControls(status, article)) : null);
  if (!me) for (const b of actions.querySelectorAll('button')) b.disabled = true;
  article.append(actions);
  return article;
}

function renumber(feed) {
  const articles = feed.querySelectorAll(':scope > article');
  articles.forEach((a, i) => { a.setAttribute('aria-posinset', String(i + 1)); a.setAttribute('aria-setsize', '-1'); });
}

/**
 * A feed of statuses: `source(query)` fetches a page ({data, next}); `label` names the feed.
 * live feeds take `add(status)` from the stream.
 */
export class Feed {
  constructor({ label, path, query = {}, empty = 'Nothing here yet.' }) {
    this.path = path;
    this.query = query;
    this.next = null;
    this.loading = false;
    this.pending = [];
    this.emptyText = empty;
    this.list = h('div', { role: 'feed', 'aria-label': label, 'aria-busy': 'true', class: 'feed' });
    this.bar = h('button', { type: 'button', class: 'new-posts', hidden: true, onclick: () => this.flush(true) }, '');
    this.more = h('button', { type: 'button', class: 'more', hidden: true, onclick: () => this.older() }, 'Load older posts');
    this.note = h('p', { class: 'muted feed-note' });
    this.el = h('section', { class: 'feed-wrap' }, this.bar, this.list, this.note, this.more);
    this.list.addEventListener('keydown', (e) => this.keys(e));
    this.onScroll = () => { if (window.scrollY < 80 && this.pending.length) this.flush(false); };
    window.addEventListener('scroll', this.onScroll, { passive: true });
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.next) this.older();
    }, { rootMargin: '800px 0px' });
    this.observer.observe(this.more);
  }

  destroy() {
    window.removeEventListener('scroll', this.onScroll);
    this.observer.disconnect();
  }

  ids() { return new Set([...this.list.querySelectorAll(':scope > article')].map((a) => a.dataset.wrapper || a.dataset.id)); }

  async start() {
    await this.load(this.path, this.query);
    // when the first page is drawn (the browser test reads it: the first render of Home)
    performance.mark(`feed-rendered:${this.list.getAttribute('aria-label')}`);
  }

  async load(path, query) {
    this.loading = true;
    this.list.setAttribute('aria-busy', 'true');
    try {
      const { data, next } = await api(path, { query });
      const seen = this.ids();
      for (const status of data || []) {
        if (!seen.has(status.id)) this.list.append(renderStatus(status));
      }
      this.next = data && data.length >= PAGE ? next : null; // a short page is the last
      renumber(this.list);
      this.note.textContent = this.list.children.length ? '' : this.emptyText;
    } catch (err) {
      this.note.textContent = `Could not load: ${err.message}`;
    } finally {
      this.loading = false;
      this.list.setAttribute('aria-busy', 'false');
      this.more.hidden = !this.next;
    }
  }

  async older() {
    if (this.loading || !this.next) return;
    await this.load(this.next);
  }

  /** After the stream dropped: what was posted meanwhile, as if it had arrived live. */
  async catchUp() {
    try {
      const { data } = await api(this.path, { query: this.query });
      for (const status of [...(data || [])].reverse()) this.add(status);
    } catch { /* logged as it failed */ }
  }

  /** A live status: at the top now if the reader is there, else counted in the bar. */
  add(status, { now = false } = {}) {
    const key = status.id;
    if (this.ids().has(key) || this.pending.some((s) => s.id === key)) return;
    this.pending.unshift(status);
    if (now || window.scrollY < 80) this.flush(false);
    else this.showBar();
  }

  showBar() {
    const n = this.pending.length;
    this.bar.textContent = `${n} new post${n === 1 ? '' : 's'}`;
    this.bar.hidden = n === 0;
  }

  flush(jump) {
    const items = this.pending.splice(0);
    for (const status of items.reverse()) this.list.prepend(renderStatus(status));
    renumber(this.list);
    this.note.textContent = this.list.children.length ? '' : this.emptyText;
    this.showBar();
    if (jump) {
      window.scrollTo({ top: 0 });
      this.list.querySelector('article')?.focus();
    }
  }

  remove(id) {
    this.pending = this.pending.filter((s) => s.id !== id && s.reblog?.id !== id);
    this.showBar();
    removeStatus(id);
  }

  /** The feed pattern's keys: Page Down / Page Up (and j / k) move between articles. */
  keys(e) {
    const article = e.target.closest('article');
    if (!article || (e.target !== article && /^(INPUT|TEXTAREA)$/.test(e.target.tagName))) return;
    let to = null;
    if (e.key === 'PageDown' || (e.key === 'j' && e.target === article)) to = article.nextElementSibling;
    else if (e.key === 'PageUp' || (e.key === 'k' && e.target === article)) to = article.previousElementSibling;
    if (to) {
      e.preventDefault();
      to.focus();
      if (!to.nextElementSibling) this.older();
    }
  }
}
