// The composer: a textarea labelled "Compose", a character counter that counts as the
// server does (Unicode code points, up to the instance's max_characters; at least one
// visible character), and a "Post" button. An Idempotency-Key makes a retried post one post.

import { api, maxCharacters } from './api.js';
import { announce, h } from './dom.js';

let serial = 0;

/** Code points, as the server counts (Python's len of the text). */
export function length(text) {
  return [...text].length;
}

/** Not only spaces or format characters (U+200B and the like): as the server requires. */
export function visible(text) {
  return /[^\s\p{Cf}]/u.test(text);
}

function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** A composer form; `onPosted(status)` is called with the new status. */
export function composer({ replyTo = null, onPosted = () => {}, prefill = '' } = {}) {
  const id = `compose-${++serial}`;
  const counter = h('span', { id: `${id}-count`, class: 'counter' });
  const error = h('p', { class: 'error', role: 'alert' });
  const text = h('textarea', { id, name: 'status', rows: '3', 'aria-describedby': `${id}-count`, placeholder: replyTo ? 'Write your reply' : 'What is happening?' });
  text.value = prefill;
  const post = h('button', { type: 'submit' }, 'Post');
  let max = 500;
  let key = newKey();
  const update = () => {
    const left = max - length(text.value);
    counter.textContent = left >= 0 ? `${left} characters left` : `${-left} characters too many`;
    counter.classList.toggle('over', left < 0);
    post.disabled = left < 0 || !visible(text.value);
  };
  maxCharacters().then((m) => { max = m; update(); });
  text.addEventListener('input', () => { error.textContent = ''; update(); });
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });
  const form = h('form', { class: 'composer', onsubmit: async (e) => {
    e.preventDefault();
    if (post.disabled) return;
    post.disabled = true;
    try {
      const body = { status: text.value, visibility: 'public' };
      if (replyTo) body.in_reply_to_id = replyTo.id;
      const { data } = await api('/api/v1/statuses', { method: 'POST', json: body, headers: { 'Idempotency-Key': key } });
      key = newKey();
      text.value = prefill;
      update();
      announce(replyTo ? 'Reply posted' : 'Posted');
      onPosted(data);
    } catch (err) {
      error.textContent = err.message;
      post.disabled = false;
    }
  } },
  h('label', { for: id }, 'Compose'), text,
  h('div', { class: 'compose-row' }, counter, post), error);
  update();
  form.focusText = () => { text.focus(); text.setSelectionRange(text.value.length, text.value.length); };
  return form;
}
