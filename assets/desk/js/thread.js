// The thread view (#thread-pane): one interaction with every message in
// order, its actions toolbar (actions.js) and the composer (composer.js).
//
// Mail content is never markup of this document: text bodies go through
// textContent, HTML bodies only into <iframe sandbox="" srcdoc> (no scripts,
// an opaque origin), the second wall after the server's sanitiser.

import { api, session } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, modal, fmtTime, fmtFull, fmtSize } from './ui.js';
import { renderActions, renderDownloads } from './actions.js';
import { composerButtons, openComposer, closeComposer, stashComposer, composerOpenFor, restoreDraftIntoComposer, newMailButton, upsertSentMessage } from './composer.js';
import { pencil, loadDraft } from './drafts.js';

/** The open interaction: `view` (the interaction fields), `messages` (oldest first). */
export const state = {
  id: null,
  view: null,
  messages: [],
  /** Bumped on every open, so a slow answer for a previous one is dropped. */
  seq: 0,
};

let root = null; // the thread-view element
let parts = {}; // header, toolbar, replybar, list, composer slots
const blobUrls = new Set(); // object URLs of previews, revoked on the next open

/** The caller (GET /me is flattened: {id, username, role, …, presence}). */
export function me() {
  const m = session.me || {};
  return m.agent || m;
}

export function isSupervisor() {
  const r = me().role;
  return r === 'supervisor' || r === 'admin';
}

/** May the caller work the open interaction (reply, draft, tags, …)? Owner or admin. */
export function canWork(view = state.view) {
  if (!view) return false;
  return view.owner === me().username || me().role === 'admin';
}

/** A supervisor looking at an interaction someone else owns: read-only except notes for the agent. */
export function isSpy(view = state.view) {
  if (!view) return false;
  return isSupervisor() && me().role !== 'admin' && !!view.owner && view.owner !== me().username;
}

/** Show an API error as a toast with the server's own message. */
export function showError(e, what) {
  const msg = (e && e.message) || String(e);
  toast(what ? `${what}: ${msg}` : msg, 'error');
}

/** GET a download with the bearer header (no token in URLs) and return the Blob. */
export async function fetchBlob(path) {
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const res = await fetch('/api/v1' + path, { headers });
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch {
      // not JSON
    }
    if (res.status === 401) bus.emit('logged-out');
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  const blob = await res.blob();
  return { blob, filename: filenameOf(res.headers.get('content-disposition')) };
}

function filenameOf(cd) {
  if (!cd) return null;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
  if (star) {
    try {
      return decodeURIComponent(star[1]);
    } catch {
      // fall through to the ASCII name
    }
  }
  const plain = /filename="([^"]*)"/i.exec(cd);
  return plain ? plain[1] : null;
}

/** Download `path` and hand it to the browser as a file named as the server says (or `fallback`). */
export async function download(path, fallback) {
  try {
    const { blob, filename } = await fetchBlob(path);
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: filename || fallback || 'download', hidden: true });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  } catch (e) {
    showError(e, 'download failed');
  }
}

function mailbox(mb) {
  if (!mb) return '';
  return mb.name ? `${mb.name} <${mb.address}>` : mb.address;
}

function mailboxes(list) {
  return (list || []).map(mailbox).join(', ');
}

export function mount() {
  const pane = document.getElementById('thread-pane');
  if (!pane || root) return;
  root = h('div', { class: 'd2-thread', 'data-testid': 'thread-view', 'data-interaction-id': '' });
  parts = {
    top: h('div', { class: 'd2-thread-top' }),
    header: h('div', { class: 'd2-thread-header' }),
    toolbar: h('div', { class: 'd2-toolbar' }),
    replybar: h('div', { class: 'd2-replybar' }),
    list: h('div', { class: 'd2-messages' }),
    composer: h('div', { class: 'd2-composer-slot' }),
  };
  parts.top.appendChild(newMailButton());
  clear(root, parts.top, parts.header, parts.toolbar, parts.replybar, parts.list, parts.composer);
  clear(pane, root);
  renderEmpty();

  bus.on('open-interaction', (id) => open(String(id)));
  bus.on('ws:message_added', (f) => {
    if (!f || !state.view || String(f.interaction_id) !== state.id || !f.message) return;
    upsertMessage(f.message);
  });
  bus.on('ws:interaction_updated', (f) => {
    const v = f && f.interaction;
    if (!v || !state.view || String(v.id) !== state.id) return;
    setView(v);
  });
  // Someone else (the list, the side panel) changed the open interaction.
  bus.on('interaction-changed', (v) => {
    if (!v || !state.view || String(v.id) !== state.id || v === state.view) return;
    // A bare {id} (a supervisor's note from the supervisor view, say): read it again.
    if (!('status' in v)) refresh();
    else if (v.updated_at !== state.view.updated_at) setView(v, { quiet: true });
  });
  // Frames missed while the socket was down, or a transfer to us of what we
  // are looking at: read the open interaction again.
  let wasDown = false;
  bus.on('ws-state', (st) => {
    if (st === 'open' && wasDown && state.id) refresh();
    wasDown = st !== 'open';
  });
  bus.on('ws:assigned', (f) => {
    if (f && state.id && String(f.interaction_id) === state.id) refresh();
  });
  bus.on('logged-out', () => {
    closeComposer();
    state.id = null;
    state.view = null;
    state.messages = [];
    renderEmpty();
  });
}

function renderEmpty() {
  root.setAttribute('data-interaction-id', '');
  clear(parts.header, h('div', { class: 'd2-empty' }, 'Select an interaction from the list, or write a new mail.'));
  clear(parts.toolbar);
  clear(parts.replybar);
  clear(parts.list);
  if (!composerOpenFor(null)) clear(parts.composer);
}

/** The slot the composer renders into. */
export function composerSlot() {
  return parts.composer;
}

/** Load and show interaction `id` (GET marks it read when the caller owns it). */
export async function open(id) {
  const seq = ++state.seq;
  let data;
  try {
    data = await api.get(`/interactions/${encodeURIComponent(id)}`);
  } catch (e) {
    if (seq === state.seq) showError(e, `cannot open interaction ${id}`);
    return;
  }
  if (seq !== state.seq) return;
  const { messages, ...view } = data;
  const switched = state.id !== String(view.id);
  if (switched) {
    // What was being written for the previous interaction becomes its draft
    // (a minimised box), as the guide's desk does.
    stashComposer();
  }
  state.id = String(view.id);
  state.messages = messages || [];
  state.view = view;
  root.setAttribute('data-interaction-id', state.id);
  if (view.status !== 'open' && composerOpenFor(state.id)) closeComposer();
  render();
  // Opening marked it read: let the list update its row.
  bus.emit('interaction-changed', view);
  bus.emit('thread-opened', view);
  if (switched) {
    const draft = canWork(view) && view.status === 'open' ? await loadDraft(state.id) : null;
    if (seq !== state.seq) return;
    if (draft) restoreDraftIntoComposer(draft);
  }
}

/** Re-read the open interaction (after an action). */
export function refresh() {
  if (state.id) return open(state.id);
  return Promise.resolve();
}

/** A newer interaction view (REST answer or WS frame) for the open one. */
export function setView(v, { quiet = false } = {}) {
  if (!state.view || String(v.id) !== state.id) return;
  const before = state.view;
  state.view = Object.assign({}, state.view, v);
  if (state.view.status !== 'open' && composerOpenFor(state.id)) closeComposer();
  renderHeader();
  renderToolbar();
  renderReplybar();
  // The per-message reply/forward links depend on who owns it and whether it is open.
  if (before.status !== state.view.status || before.owner !== state.view.owner) {
    clear(parts.list);
    for (const m of state.messages) parts.list.appendChild(renderMessage(m));
  }
  if (!quiet) bus.emit('thread-opened', state.view);
}

/** Add a message, or replace the one with the same id (delivery updates arrive again). */
export function upsertMessage(m) {
  const i = state.messages.findIndex((x) => String(x.id) === String(m.id));
  if (i >= 0) {
    state.messages[i] = Object.assign({}, state.messages[i], m);
    const old = parts.list.querySelector(`[data-testid="message"][data-message-id="${cssEscape(m.id)}"]`);
    const fresh = renderMessage(state.messages[i]);
    if (old) old.replaceWith(fresh);
    else parts.list.appendChild(fresh);
  } else {
    state.messages.push(m);
    parts.list.appendChild(renderMessage(m));
    renderCcNotice();
  }
  upsertSentMessage(m);
}

function cssEscape(s) {
  return window.CSS && CSS.escape ? CSS.escape(String(s)) : String(s).replace(/"/g, '\\"');
}

function render() {
  // Every preview is made again below: free the previous object URLs.
  for (const u of blobUrls) URL.revokeObjectURL(u);
  blobUrls.clear();
  renderHeader();
  renderToolbar();
  renderReplybar();
  clear(parts.list);
  for (const m of state.messages) parts.list.appendChild(renderMessage(m));
  renderCcNotice();
}

function renderHeader() {
  const v = state.view;
  const links = [];
  if (v.continues) {
    links.push(h('a', { href: '#', class: 'd2-thread-link', 'data-testid': 'thread-link', 'data-target-id': String(v.continues), 'data-rel': 'previous',
      onclick: (e) => { e.preventDefault(); bus.emit('open-interaction', String(v.continues)); } }, `← earlier thread #${v.continues}`));
  }
  if (v.continued_in) {
    links.push(h('a', { href: '#', class: 'd2-thread-link', 'data-testid': 'thread-link', 'data-target-id': String(v.continued_in), 'data-rel': 'next',
      onclick: (e) => { e.preventDefault(); bus.emit('open-interaction', String(v.continued_in)); } },
    `later thread #${v.continued_in} →` + (v.new_in_conversation ? ` (${v.new_in_conversation} new)` : '')));
  }
  const contact = v.contact ? [v.contact.first_name, v.contact.last_name].filter(Boolean).join(' ') || v.contact.email : '';
  clear(parts.header,
    h('div', { class: 'd2-title-row' },
      h('span', { class: 'd2-id' }, `#${v.id}`),
      h('h2', { class: 'd2-subject' }, v.subject || '(no subject)'),
      pencil()),
    h('div', { class: 'd2-meta' },
      h('span', { class: ['d2-status', `d2-status-${v.status}`], 'data-testid': 'interaction-status', 'data-status': v.status }, v.status),
      v.substatus ? h('span', { class: 'd2-substatus', 'data-testid': 'interaction-substatus' }, v.substatus) : null,
      v.reopened ? h('span', { class: 'd2-badge' }, 'reopened') : null,
      h('span', null, `${v.account} · ${v.queue}`),
      contact ? h('span', null, contact) : null,
      h('span', null, v.owner ? `owner: ${v.owner}` : 'unassigned'),
      (v.tags || []).map((t) => h('span', { class: 'd2-tag', 'data-testid': 'interaction-tag' }, t)),
      isSpy(v) ? h('span', { class: 'd2-spy', 'data-testid': 'spy-mode' }, `spying on ${v.owner} (read-only)`) : null),
    links.length ? h('div', { class: 'd2-links' }, links) : null,
    h('div', { class: 'd2-cc-slot' }));
  renderCcNotice();
}

function renderCcNotice() {
  const slot = parts.header.querySelector('.d2-cc-slot');
  if (!slot) return;
  const cc = state.messages.filter((m) => m.you_are === 'cc' || m.you_are === 'bcc');
  if (!cc.length) return clear(slot);
  const kinds = [...new Set(cc.map((m) => m.you_are.toUpperCase()))].join('/');
  clear(slot, h('div', { class: 'd2-cc-notice', 'data-testid': 'cc-notice', role: 'note' },
    `You were in ${kinds} of ${cc.length === 1 ? 'a mail' : `${cc.length} mails`} in this interaction: it was addressed to someone else.`));
}

function renderToolbar() {
  clear(parts.toolbar, renderActions(state.view));
}

function renderReplybar() {
  clear(parts.replybar, composerButtons(state.view), h('span', { class: 'd2-sep' }), renderDownloads(state.view));
}

/** A note's author: a username in pushed frames, an agent id in GET /interactions/{id}. */
function authorOf(m) {
  const a = m.author;
  if (a === null || a === undefined || a === '') return '';
  if (String(a) === String(me().id) || a === me().username) return 'by you';
  return /^\d+$/.test(String(a)) ? `by agent #${a}` : `by ${a}`;
}

const KIND_LABEL = { mail: 'mail', auto_reply: 'auto-reply', note: 'internal note', supervisor_note: 'note for the agent' };

function renderMessage(m) {
  const note = m.kind === 'note' || m.kind === 'supervisor_note';
  const head = h('div', { class: 'd2-msg-head' },
    h('span', { class: 'd2-dir', 'data-testid': 'message-direction', title: m.direction === 'in' ? 'incoming' : 'outgoing' }, note ? '✎' : m.direction === 'in' ? '↙ in' : '↗ out'),
    h('span', { class: 'd2-kind' }, KIND_LABEL[m.kind] || m.kind),
    note ? h('span', { class: 'd2-from' }, authorOf(m)) : h('span', { class: 'd2-from', title: 'From' }, mailbox(m.from)),
    h('span', { class: 'd2-at', title: fmtFull(m.at) }, fmtTime(m.at)),
    m.delivery ? h('span', { class: ['d2-delivery', `d2-delivery-${m.delivery}`], 'data-testid': 'message-delivery', 'data-delivery': m.delivery, title: m.delivery_error || '' },
      m.delivery + (m.delivery_error ? `: ${m.delivery_error}` : '')) : null,
    m.you_are ? h('span', { class: 'd2-youare' }, `you: ${m.you_are}`) : null,
    !note && canWork() && state.view.status === 'open' ? h('button', { type: 'button', class: 'd2-link-btn', title: 'reply to this mail', 'data-testid': 'message-reply',
      onclick: () => openComposer('reply', { original: m }) }, 'reply') : null,
    !note && canWork() && state.view.status === 'open' ? h('button', { type: 'button', class: 'd2-link-btn', title: 'forward this mail', 'data-testid': 'message-forward',
      onclick: () => openComposer('forward', { original: m }) }, 'forward') : null,
    !note ? h('button', { type: 'button', class: 'd2-link-btn', title: 'download this mail as .eml', 'data-testid': 'message-eml',
      onclick: () => download(`/messages/${m.id}/raw`, `message-${m.id}.eml`) }, '.eml') : null);
  const addr = note ? null : h('div', { class: 'd2-msg-addr' },
    m.to && m.to.length ? h('div', null, h('b', null, 'To: '), mailboxes(m.to)) : null,
    m.cc && m.cc.length ? h('div', null, h('b', null, 'Cc: '), mailboxes(m.cc)) : null,
    m.bcc && m.bcc.length ? h('div', null, h('b', null, 'Bcc: '), mailboxes(m.bcc)) : null,
    m.subject ? h('div', null, h('b', null, 'Subject: '), m.subject) : null);
  const body = renderBody(m);
  const files = renderAttachments(m);
  const inner = note
    ? h('div', { class: 'd2-note', 'data-testid': 'note-internal' },
      h('div', { class: 'd2-note-label' }, m.kind === 'supervisor_note' ? 'Internal: note for the agent — never sent to the customer' : 'Internal note — never sent to the customer'),
      body, files)
    : h('div', null, addr, body, files);
  return h('article', {
    class: ['d2-msg', `d2-msg-${m.direction}`, `d2-kind-${m.kind}`],
    'data-testid': 'message', 'data-message-id': String(m.id), 'data-direction': m.direction, 'data-kind': m.kind,
  }, head, inner);
}

function renderBody(m) {
  if (m.html) {
    // Without scripts in the frame we cannot measure its content: a height
    // guessed from the text length, a scroll bar beyond it, and a resizable wrapper.
    const len = (m.text || m.html.replace(/<[^>]*>/g, '')).length;
    const lines = (m.text || '').split('\n').length;
    const guess = Math.max(120, Math.min(520, 60 + Math.max(lines * 20, (len / 90) * 20)));
    const frame = h('iframe', {
      class: 'd2-html',
      'data-testid': 'message-html',
      sandbox: '',
      referrerpolicy: 'no-referrer',
      title: `message ${m.id}`,
      style: { height: `${Math.round(guess)}px` },
    });
    // `cid:` images come later as data: URLs (fillInlineImages); meanwhile a
    // blank pixel, so the frame never asks for `cid:` (refused by the CSP).
    frame.srcdoc = /cid:/i.test(m.html) ? blankCids(m.html) : m.html;
    const wrap = h('div', { class: 'd2-html-wrap' }, frame,
      h('button', { type: 'button', class: 'd2-link-btn', 'data-testid': 'message-html-expand',
        onclick: () => { frame.style.height = frame.style.height === '80vh' ? `${Math.round(guess)}px` : '80vh'; } }, 'taller / shorter'));
    if (hasCid(m)) fillInlineImages(m, frame);
    return wrap;
  }
  return h('pre', { class: 'd2-text', 'data-testid': 'message-text' }, m.text || '');
}

function hasCid(m) {
  return (m.attachments || []).some((a) => a.content_id) && /cid:/i.test(m.html || '');
}

const BLANK = 'data:image/gif;base64,R0lGODlhAQABAAAAACw=';

function blankCids(html) {
  return html.replace(/(["'])cid:[^"']*\1/gi, `"${BLANK}"`);
}

// Inline images (cid:) need the bearer token: fetch them and rewrite the
// srcdoc with data: URLs (the frame cannot use our blob: URLs from its opaque origin).
async function fillInlineImages(m, frame) {
  let html = m.html;
  for (const a of m.attachments || []) {
    if (!a.content_id || !/^image\//i.test(a.content_type) || /svg/i.test(a.content_type)) continue;
    if (a.size > 5 * 1024 * 1024) continue;
    try {
      const { blob } = await fetchBlob(`/attachments/${a.id}?inline=true`);
      const dataUrl = await new Promise((resolve, reject) => {
        const r = new FileReader();
        r.onload = () => resolve(r.result);
        r.onerror = () => reject(r.error);
        r.readAsDataURL(blob);
      });
      html = html.split(`cid:${a.content_id}`).join(dataUrl);
    } catch {
      // leave the broken image
    }
  }
  html = blankCids(html); // any cid: without a part
  if (frame.isConnected) frame.srcdoc = html;
}

function isPreviewable(a) {
  return /^image\//i.test(a.content_type || '') && !/svg/i.test(a.content_type || '');
}

function renderAttachments(m) {
  const files = (m.attachments || []).filter((a) => !a.inline || !a.content_id || !/cid:/i.test(m.html || ''));
  if (!files.length) return null;
  return h('div', { class: 'd2-attachments' },
    files.map((a) => {
      const item = h('div', { class: 'd2-attachment', 'data-testid': 'attachment', 'data-attachment-id': String(a.id) });
      if (isPreviewable(a)) {
        const img = h('img', { class: 'd2-thumb', 'data-testid': 'attachment-preview', alt: a.filename, title: 'click to enlarge' });
        img.addEventListener('click', () => enlarge(a, img));
        item.appendChild(img);
        loadThumb(a, img);
      }
      item.appendChild(h('span', { class: 'd2-att-name' }, a.filename));
      item.appendChild(h('span', { class: 'd2-att-size' }, `${a.content_type} · ${fmtSize(a.size)}`));
      item.appendChild(h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'attachment-download',
        onclick: () => download(`/attachments/${a.id}`, a.filename) }, 'Download'));
      return item;
    }));
}

async function loadThumb(a, img) {
  try {
    const { blob } = await fetchBlob(`/attachments/${a.id}?inline=true`);
    const url = URL.createObjectURL(blob);
    blobUrls.add(url);
    img.src = url;
  } catch (e) {
    img.alt = `${a.filename} (no preview: ${e.message})`;
    img.classList.add('d2-thumb-failed');
  }
}

function enlarge(a, img) {
  if (!img.src) return;
  const big = h('img', { class: 'd2-enlarged', 'data-testid': 'attachment-enlarged', src: img.src, alt: a.filename });
  // An icon-sized image shown at its natural size is a dot: blow it up, crisp.
  const grow = () => { if (Math.max(big.naturalWidth, big.naturalHeight) < 240) big.classList.add('d2-enlarged-tiny'); };
  if (big.complete) grow(); else big.addEventListener('load', grow);
  modal(a.filename, big,
    [{ label: 'Download', value: 'download' }, { label: 'Close', value: null, kind: 'primary', testid: 'attachment-enlarged-close' }],
    { testid: 'attachment-modal' })
    .then((v) => { if (v === 'download') download(`/attachments/${a.id}`, a.filename); });
}

/** The message a reply or forward answers by default: the last customer mail, else the last mail. */
export function defaultOriginal() {
  const mails = state.messages.filter((m) => m.kind === 'mail');
  const incoming = mails.filter((m) => m.direction === 'in');
  return incoming[incoming.length - 1] || mails[mails.length - 1] || null;
}

export { openComposer };
