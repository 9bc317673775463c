// Small DOM helpers: build elements, render a status's HTML safely, say things to screen
// readers, format times. No framework: the pages are small, and plain elements keep the
// accessibility tree exactly what the markup says.

/**
 * h('button', {type: 'button', onclick: fn}, 'Post'): an element with attributes, event
 * handlers (on*), and children (strings become text, null/false are skipped, arrays flatten).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// A status's `content` is HTML made by the server. Like any client we keep only the markup
// a post can have (paragraphs, line breaks, links, spans) and drop everything else, so a
// server (or a future federated one) cannot run script or style through it. DOMParser makes
// an inert document: nothing in it loads or runs.
const KEEP = new Set(['P', 'BR', 'A', 'SPAN']);

export function sanitize(html, origin = location.origin) {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  const out = document.createDocumentFragment();
  const copy = (from, to) => {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) {
        to.append(node.data);
      } else if (node.nodeType === Node.ELEMENT_NODE) {
        if (!KEEP.has(node.tagName)) {
          copy(node, to); // keep the text, not the element
          continue;
        }
        const el = document.createElement(node.tagName.toLowerCase());
        if (node.tagName === 'A') {
          const href = node.getAttribute('href') || '';
          let url = null;
          try { url = new URL(href, origin); } catch { url = null; }
          if (url && (url.protocol === 'http:' || url.protocol === 'https:')) {
            el.href = url.href;
            if (url.origin === origin) {
              el.dataset.link = ''; // a page of this client: routed without a reload
            } else {
              el.rel = 'nofollow noopener noreferrer';
              el.target = '_blank';
            }
          }
        }
        const cls = (node.getAttribute('class') || '').split(/\s+/)
          .filter((c) => ['invisible', 'ellipsis', 'mention', 'hashtag', 'h-card', 'u-url'].includes(c));
        if (cls.length) el.className = cls.join(' ');
        copy(node, el);
        to.append(el);
      }
    }
  };
  copy(doc.body, out);
  return out;
}

/** Tell screen readers (the polite live region of the shell). */
export function announce(message) {
  const region = document.getElementById('status');
  if (!region) return;
  region.textContent = '';
  setTimeout(() => { region.textContent = message; }, 30);
}

const UNITS = [['y', 31536000], ['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];

/** "5m", "2h", "3d": how long ago, short; the exact time goes in a <time> title. */
export function ago(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 10) return 'now';
  for (const [unit, size] of UNITS) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit}`;
  }
  return 'now';
}

export function timeEl(iso) {
  const when = new Date(iso);
  return h('time', { datetime: iso, title: when.toLocaleString() }, ago(iso));
}

/** An account's picture: its initial on a colour made from its name (no image to fetch). */
export function avatar(account, size = 'md') {
  const name = account.username || '?';
  let hue = 0;
  for (const ch of name) hue = (hue * 31 + ch.codePointAt(0)) % 360;
  const el = h('span', { class: `avatar avatar-${size} hue-${Math.floor(hue / 30)}`, 'aria-hidden': 'true' },
    [...(account.display_name || name)][0].toUpperCase());
  return el;
}

export function displayName(account) {
  return account.display_name || account.username;
}
