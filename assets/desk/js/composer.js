// The composer (docs/compose.md): reply, reply-all, forward and new mail;
// canned answers; plain text (a textarea) or HTML (a contenteditable whose
// content is sent as it is — the server sanitises it); attachments by drag
// and drop or a file picker, refused above 15 MB before any upload;
// "show original message"; Send, Send as (a sub-status) and Send and Close.
// Delivery (queued → sent | failed) shows on the sent message in the thread,
// updated by the `message_added` frames.

import { api, session } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, fmtFull, fmtSize } from './ui.js';
import { state, canWork, composerSlot, defaultOriginal, upsertMessage, refresh, showError, me } from './thread.js';
import { pickDisposition, substatusList } from './actions.js';
import { autosaveToggle, touched, save as saveDraft, discard as discardDraft, forget as forgetDraft, hasDraft } from './drafts.js';

export const MAX_BYTES = 15 * 1024 * 1024;
const UPLOADS_KEY = 'mailroom.uploads'; // id → {filename, size, content_type}: names of uploads a draft names by id
const HTML_KEY = 'mailroom.composer.html';

const MODE_LABEL = { reply: 'Reply', reply_all: 'Reply all', forward: 'Forward', new: 'New mail' };

/** The open composer, or null. */
let c = null;

export function mount() {}

export function composerOpenFor(id) {
  if (!c) return false;
  return id === null ? c.interactionId === null : c.interactionId === String(id);
}

// --- buttons ---

export function newMailButton() {
  return h('button', { type: 'button', class: 'btn btn-primary btn-small', 'data-testid': 'new-mail-button', onclick: () => openComposer('new') }, '+ New mail');
}

/** Reply / Reply all / Forward for interaction `v` (disabled when the caller may not send). */
export function composerButtons(v) {
  if (!v) return null;
  const allowed = canWork(v) && v.status === 'open';
  const why = v.status !== 'open' ? 'reopen it to answer' : 'only its owner may answer';
  const b = (testid, mode, label) => h('button', { type: 'button', class: 'btn btn-small', 'data-testid': testid, disabled: !allowed, title: allowed ? label : why,
    onclick: () => openComposer(mode) }, label);
  return h('div', { class: 'd2-reply-buttons' },
    b('reply-button', 'reply', 'Reply'), b('reply-all-button', 'reply_all', 'Reply all'), b('forward-button', 'forward', 'Forward'));
}

// --- recipients ---

function addr(mb) {
  return mb ? (mb.name ? `${mb.name} <${mb.address}>` : mb.address) : '';
}

/** Our own addresses as far as the desk can tell (the From of mail we sent, the agent's own). */
function ownAddresses() {
  const own = new Set();
  for (const m of state.messages) if (m.direction === 'out' && m.from) own.add(m.from.address.toLowerCase());
  if (me().email) own.add(me().email.toLowerCase());
  return own;
}

/** What the server will compute (docs/compose.md), shown so the agent can see and change it. */
function computed(mode, original) {
  if (!original || mode === 'forward' || mode === 'new') return { to: [], cc: [] };
  const answerTo = original.direction === 'out' ? original.to : (original.reply_to && original.reply_to.length ? original.reply_to : [original.from].filter(Boolean));
  if (mode === 'reply') return { to: answerTo.map(addr), cc: [] };
  const own = ownAddresses();
  // Without a mail of ours in the thread the desk does not know the
  // account's address: it shows only the sender and lets the server add the
  // other recipients (leaving ours out) rather than risk mailing ourselves.
  if (![...own].some((a) => a !== (me().email || '').toLowerCase())) return { to: answerTo.map(addr), cc: [], partial: true };
  const seen = new Set();
  const keep = (list) => list.filter((mb) => {
    const a = mb.address.toLowerCase();
    if (own.has(a) || seen.has(a)) return false;
    seen.add(a);
    return true;
  });
  const to = keep([...answerTo, ...(original.to || [])]);
  const cc = keep(original.cc || []);
  return { to: to.map(addr), cc: cc.map(addr) };
}

function subjectFor(mode, original) {
  const s = (original && original.subject) || (state.view && state.view.subject) || '';
  if (mode === 'reply' || mode === 'reply_all') return /^re:/i.test(s) ? s : `Re: ${s}`;
  if (mode === 'forward') return /^fwd?:/i.test(s) ? s : `Fwd: ${s}`;
  return '';
}

function sameList(a, b) {
  const norm = (l) => l.map((x) => x.trim().toLowerCase()).join('\n');
  return norm(a) === norm(b);
}

function splitList(s) {
  return String(s || '').split(/[,;\n]/).map((x) => x.trim()).filter(Boolean);
}

// --- uploads remembered by id (so a restored draft names its files) ---

function rememberUpload(meta) {
  try {
    const all = JSON.parse(localStorage.getItem(UPLOADS_KEY) || '{}');
    all[meta.id] = { filename: meta.filename, size: meta.size, content_type: meta.content_type };
    const keys = Object.keys(all);
    for (const k of keys.slice(0, Math.max(0, keys.length - 200))) delete all[k];
    localStorage.setItem(UPLOADS_KEY, JSON.stringify(all));
  } catch {
    // storage full or off: names fall back to ids
  }
}

function uploadMeta(id) {
  for (const m of state.messages) for (const a of m.attachments || []) if (String(a.id) === String(id)) return a;
  try {
    const all = JSON.parse(localStorage.getItem(UPLOADS_KEY) || '{}');
    if (all[id]) return Object.assign({ id }, all[id]);
  } catch {
    // ignore
  }
  return { id, filename: `attachment #${id}`, size: null, content_type: '' };
}

// --- a small cleaner for HTML we put into the editor (canned answers and
// drafts: both already sanitised by the server; this is the second wall) ---

const DROP_TAGS = new Set(['SCRIPT', 'STYLE', 'IFRAME', 'FRAME', 'OBJECT', 'EMBED', 'LINK', 'META', 'BASE', 'FORM', 'INPUT', 'BUTTON', 'TEXTAREA', 'SELECT', 'SVG', 'MATH', 'TEMPLATE']);

function cleanFragment(html) {
  const doc = new DOMParser().parseFromString(`<body>${html || ''}</body>`, 'text/html');
  const walk = (node) => {
    for (const child of [...node.children]) {
      if (DROP_TAGS.has(child.tagName.toUpperCase())) {
        child.remove();
        continue;
      }
      for (const attr of [...child.attributes]) {
        const n = attr.name.toLowerCase();
        const v = attr.value.trim().toLowerCase();
        if (n.startsWith('on') || n === 'style' || n === 'srcset' || ((n === 'href' || n === 'src' || n === 'action' || n === 'xlink:href') && !/^(https?:|mailto:|tel:|#|data:image\/(png|jpeg|gif|webp);)/.test(v))) {
          child.removeAttribute(attr.name);
        }
      }
      walk(child);
    }
  };
  walk(doc.body);
  const frag = document.createDocumentFragment();
  for (const n of [...doc.body.childNodes]) frag.appendChild(document.importNode(n, true));
  return frag;
}

function textToFragment(text) {
  const frag = document.createDocumentFragment();
  for (const para of String(text || '').split(/\n/)) {
    const p = document.createElement('div');
    if (para) p.textContent = para;
    else p.appendChild(document.createElement('br'));
    frag.appendChild(p);
  }
  return frag;
}

// --- the composer ---

/**
 * Open the composer. `mode`: reply | reply_all | forward | new.
 * `opts.draft`: a stored draft to restore.
 */
export function openComposer(mode, opts = {}) {
  const slot = composerSlot();
  if (!slot) return;
  // Switching between reply, reply-all and forward keeps what was written.
  const carry = !opts.draft && c && c.interactionId !== null && c.interactionId === (mode === 'new' ? null : state.id)
    ? { text: bodyText(), html: bodyHtml(), attachments: c.attachments.filter((a) => !a.pending && a.id) } : null;
  const draft = opts.draft || null;
  const isNew = mode === 'new';
  if (!isNew && (!state.view || !canWork(state.view))) {
    toast('only the owner may answer this interaction', 'warn');
    return;
  }
  const interactionId = isNew ? null : state.id;
  let original = null;
  if (!isNew) {
    const wanted = (opts.original && opts.original.id) || (draft && draft.message);
    original = (wanted && state.messages.find((m) => String(m.id) === String(wanted))) || defaultOriginal();
  }
  const comp = computed(mode, original);
  comp.subject = subjectFor(mode, original);
  const htmlPref = localStorage.getItem(HTML_KEY) === 'true';
  c = {
    mode,
    interactionId,
    original,
    computed: comp,
    html: draft ? !!draft.html : htmlPref,
    attachments: [], // {id, filename, size, content_type} | {pending: true, filename}
    sending: false,
    showOriginal: false,
    el: {},
  };
  const e = c.el;
  e.to = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'composer-to', placeholder: mode === 'forward' || isNew ? 'to@example.com, Name <x@y.z>' : '' });
  e.cc = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'composer-cc',
    placeholder: comp.partial && mode === 'reply_all' ? "the original's other recipients are added when sent (leave empty)" : '' });
  e.bcc = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'composer-bcc' });
  e.subject = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'composer-subject' });
  e.to.value = (draft && draft.to && draft.to.length ? draft.to : comp.to).join(', ');
  e.cc.value = (draft && draft.cc && draft.cc.length ? draft.cc : comp.cc).join(', ');
  e.bcc.value = (draft && draft.bcc ? draft.bcc : []).join(', ');
  e.subject.value = draft && draft.subject ? draft.subject : comp.subject;
  for (const k of ['to', 'cc', 'bcc', 'subject']) {
    e[k].addEventListener('input', () => changed());
  }
  if (isNew) {
    e.account = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'composer-account', list: 'd2-accounts', placeholder: 'account key, e.g. SERV',
      value: localStorage.getItem('mailroom.composer.account') || (state.view && state.view.account) || '' });
    e.accounts = h('datalist', { id: 'd2-accounts' });
    fillAccounts(e.accounts);
  }

  e.bodySlot = h('div', { class: 'd2-body-slot' });
  if (carry) c.html = carry.html !== null;
  makeEditor(draft ? (draft.html || null) : carry ? carry.html : null, draft ? (draft.text || '') : carry ? carry.text : '');

  e.htmlToggle = h('input', { type: 'checkbox', 'data-testid': 'composer-html-toggle', checked: c.html });
  e.htmlToggle.addEventListener('change', () => switchHtml(e.htmlToggle.checked));
  e.canned = h('select', { 'data-testid': 'composer-canned', class: 'd2-canned', title: 'insert a canned answer' }, h('option', { value: '' }, 'Canned answer…'));
  fillCanned(e.canned);
  e.canned.addEventListener('change', () => insertCanned(e.canned));

  e.original = h('div', { class: 'd2-original', 'data-testid': 'composer-original', hidden: true });
  e.showOriginal = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'show-original', disabled: !original, title: original ? '' : 'no original message',
    onclick: () => toggleOriginal() }, 'Show original message');

  e.file = h('input', { type: 'file', multiple: true, class: 'd2-file', 'data-testid': 'composer-file' });
  e.file.addEventListener('change', () => {
    addFiles([...e.file.files]);
    e.file.value = '';
  });
  e.drop = h('label', { class: 'd2-dropzone', 'data-testid': 'composer-dropzone' },
    h('span', null, 'Drop files here or '), h('span', { class: 'd2-linkish' }, 'choose files'), h('span', { class: 'd2-hint' }, ` (at most ${MAX_BYTES / 1024 / 1024} MB each)`), e.file);
  for (const ev of ['dragenter', 'dragover']) e.drop.addEventListener(ev, (x) => { x.preventDefault(); e.drop.classList.add('d2-drag'); });
  for (const ev of ['dragleave', 'dragend']) e.drop.addEventListener(ev, () => e.drop.classList.remove('d2-drag'));
  e.drop.addEventListener('drop', (x) => {
    x.preventDefault();
    e.drop.classList.remove('d2-drag');
    const files = x.dataTransfer ? [...x.dataTransfer.files] : [];
    addFiles(files);
  });
  e.files = h('div', { class: 'd2-composer-files' });
  e.error = h('div', { class: 'd2-error', 'data-testid': 'composer-error', role: 'alert', hidden: true });
  e.status = h('span', { class: 'd2-draft-status', 'data-testid': 'composer-status' });
  e.warning = h('div', { class: 'd2-draft-warning-slot' });

  e.send = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'send-button', onclick: () => send() }, 'Send');
  e.sendAsSel = h('select', { 'data-testid': 'send-as-substatus', class: 'd2-sendas' }, h('option', { value: '' }, 'sub-status…'));
  e.sendAs = h('button', { type: 'button', class: 'btn', 'data-testid': 'send-as-button', onclick: () => sendAs() }, 'Send as');
  e.sendClose = h('button', { type: 'button', class: 'btn', 'data-testid': 'send-close-button', onclick: () => sendClose() }, 'Send and close');
  e.saveDraft = h('button', { type: 'button', class: 'btn', 'data-testid': 'save-draft-button', onclick: () => saveNow() }, 'Save draft');
  if (!isNew) {
    substatusList().then((names) => {
      for (const n of names) e.sendAsSel.appendChild(h('option', { value: n }, n));
    }).catch(() => {});
  }

  const head = h('div', { class: 'd2-composer-head' },
    h('b', null, MODE_LABEL[mode] + (original && !isNew ? ` to ${addr(original.from) || 'message ' + original.id}` : '')),
    h('span', { class: 'd2-grow' }),
    !isNew ? h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'composer-minimise', title: 'save as draft and minimise', onclick: () => minimise() }, '▁') : null,
    h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'composer-discard', title: 'discard', onclick: () => discardComposer() }, '✕'));
  const row = (label, input) => h('label', { class: 'd2-row' }, h('span', { class: 'd2-row-label' }, label), input);
  const section = h('section', { class: 'd2-composer', 'data-testid': 'composer', 'data-mode': mode, 'data-interaction-id': interactionId || '' },
    head,
    isNew ? row('From account', h('span', { class: 'd2-grow-in' }, e.account, e.accounts)) : null,
    row('To', e.to), row('Cc', e.cc), row('Bcc', e.bcc), row('Subject', e.subject),
    h('div', { class: 'd2-composer-tools' },
      h('label', { class: 'd2-inline' }, e.htmlToggle, ' HTML'), e.canned, e.showOriginal,
      !isNew ? autosaveToggle() : null),
    e.bodySlot, e.original,
    mode === 'forward' && original && (original.attachments || []).length
      ? h('div', { class: 'd2-hint', 'data-testid': 'composer-forward-files' },
        `Forwarded with the original's files: ${original.attachments.map((a) => a.filename).join(', ')}`)
      : null,
    e.drop, e.files, e.warning, e.error,
    h('div', { class: 'd2-composer-buttons' },
      e.send,
      !isNew ? h('span', { class: 'd2-sendas-group' }, e.sendAsSel, e.sendAs) : null,
      !isNew ? e.sendClose : null,
      !isNew ? e.saveDraft : null,
      e.status));
  c.section = section;
  clear(slot, section);
  if (carry && carry.attachments.length) {
    c.attachments.push(...carry.attachments);
    renderFiles();
  }
  if (draft) {
    for (const id of draft.attachments || []) c.attachments.push(uploadMeta(id));
    renderFiles();
    setDraftStatus(interactionId, `draft from ${fmtFull(draft.updated_at)}`);
  }
  (mode === 'forward' || isNew ? (isNew && !e.account.value ? e.account : e.to) : e.body).focus();
  section.scrollIntoView({ block: 'nearest' });
}

/** Restore a stored draft (docs/working.md shape) into the composer of the open interaction. */
export function restoreDraftIntoComposer(draft) {
  if (!draft || String(draft.interaction_id) !== state.id) return;
  openComposer(draft.mode || 'reply', { draft });
}

/** Leave the composer: what was written for an interaction is saved as its draft first. */
export function stashComposer() {
  if (!c || c.interactionId === null) return; // a new mail stays open across interactions
  const content = composerContent();
  const b = content && content.body;
  if (b && (b.text || (b.html && b.html.replace(/<[^>]*>/g, '').trim()) || b.attachments.length)) {
    saveDraft(content.interactionId, b);
  }
  closeComposer();
}

export function closeComposer() {
  c = null;
  const slot = composerSlot();
  if (slot) clear(slot);
}

function makeEditor(html, text) {
  const e = c.el;
  if (c.html) {
    e.body = h('div', { class: 'd2-editor', 'data-testid': 'composer-body', contenteditable: 'true', role: 'textbox', 'aria-multiline': 'true', spellcheck: 'true' });
    if (html) e.body.appendChild(cleanFragment(html));
    else if (text) e.body.appendChild(textToFragment(text));
  } else {
    e.body = h('textarea', { class: 'd2-textarea', 'data-testid': 'composer-body', rows: 10, spellcheck: 'true' });
    e.body.value = text || (html ? cleanFragment(html).textContent : '');
  }
  e.body.addEventListener('input', () => changed());
  clear(e.bodySlot, c.html ? formatBar(e.body) : null, e.body);
}

/** Bold, italic, underline and lists for the HTML editor (the browser's own editing commands). */
function formatBar(editor) {
  const cmd = (testid, label, command, title) => {
    const b = h('button', { type: 'button', class: 'btn btn-small d2-fmt', 'data-testid': testid, title }, label);
    // mousedown, not click: the editor keeps its selection.
    b.addEventListener('mousedown', (ev) => {
      ev.preventDefault();
      editor.focus();
      document.execCommand(command, false);
      changed();
    });
    return b;
  };
  return h('div', { class: 'd2-fmt-bar', role: 'toolbar', 'aria-label': 'formatting' },
    cmd('composer-bold', 'B', 'bold', 'bold'), cmd('composer-italic', 'I', 'italic', 'italic'),
    cmd('composer-underline', 'U', 'underline', 'underline'),
    cmd('composer-ul', '• list', 'insertUnorderedList', 'bulleted list'), cmd('composer-ol', '1. list', 'insertOrderedList', 'numbered list'),
    cmd('composer-clear-format', 'clear', 'removeFormat', 'remove formatting'));
}

function switchHtml(on) {
  if (on === c.html) return;
  const text = bodyText();
  const html = c.html ? c.el.body.innerHTML : null;
  c.html = on;
  localStorage.setItem(HTML_KEY, on ? 'true' : 'false');
  makeEditor(on ? null : html, text);
  changed();
}

function bodyText() {
  if (!c) return '';
  return c.html ? c.el.body.innerText : c.el.body.value;
}

function bodyHtml() {
  return c && c.html ? c.el.body.innerHTML : null;
}

function changed() {
  if (!c) return;
  if (c.interactionId) touched();
}

function showErrorIn(text) {
  if (!c) return toast(text, 'error');
  c.el.error.hidden = false;
  c.el.error.textContent = text;
}

function hideError() {
  if (c && !c.el.error.hidden) {
    c.el.error.hidden = true;
    c.el.error.textContent = '';
  }
}

export function setDraftStatus(id, text) {
  if (c && c.interactionId === String(id)) c.el.status.textContent = text;
}

// --- canned answers ---

async function fillCanned(sel) {
  try {
    const list = c.interactionId ? await api.get(`/interactions/${c.interactionId}/canned-answers`) : await api.get('/canned-answers');
    const items = Array.isArray(list) ? list : list.items || [];
    sel._items = items;
    for (const a of items) sel.appendChild(h('option', { value: String(a.id) }, a.title));
    if (!items.length) sel.disabled = true;
  } catch {
    sel.disabled = true;
  }
}

function insertCanned(sel) {
  const a = (sel._items || []).find((x) => String(x.id) === sel.value);
  sel.value = '';
  if (!a || !c) return;
  const body = c.el.body;
  if (c.html) {
    const frag = a.html ? cleanFragment(a.html) : textToFragment(a.text);
    const selection = window.getSelection();
    if (selection && selection.rangeCount && body.contains(selection.getRangeAt(0).commonAncestorContainer)) {
      const range = selection.getRangeAt(0);
      range.deleteContents();
      range.insertNode(frag);
      range.collapse(false);
    } else {
      body.appendChild(frag);
    }
  } else {
    const start = body.selectionStart ?? body.value.length;
    const end = body.selectionEnd ?? body.value.length;
    body.setRangeText(a.text || '', start, end, 'end');
  }
  body.focus();
  changed();
}

// --- the original message ---

function originalLines() {
  const o = c.original;
  const text = o.text || (o.html ? cleanFragment(o.html).textContent : '');
  return { header: `On ${fmtFull(o.at)}, ${addr(o.from) || 'you'} wrote:`, text };
}

function toggleOriginal() {
  if (!c || !c.original) return;
  c.showOriginal = !c.showOriginal;
  const e = c.el;
  if (c.showOriginal) {
    const { header, text } = originalLines();
    clear(e.original, h('div', { class: 'd2-original-head' }, header), h('pre', { class: 'd2-quote' }, text));
    e.original.hidden = false;
    e.showOriginal.textContent = 'Hide original message';
    e.showOriginal.setAttribute('aria-pressed', 'true');
  } else {
    e.original.hidden = true;
    clear(e.original);
    e.showOriginal.textContent = 'Show original message';
    e.showOriginal.setAttribute('aria-pressed', 'false');
  }
}

/**
 * The body to send: what the agent wrote, plus the quoted original when it
 * is shown in a reply (a forward carries the original anyway).
 */
function outgoingBody() {
  let text = bodyText();
  let html = bodyHtml();
  if (c.showOriginal && c.original && c.mode !== 'forward') {
    const { header, text: orig } = originalLines();
    text = `${text}\n\n${header}\n${orig.split('\n').map((l) => `> ${l}`).join('\n')}`;
    if (html !== null) {
      // Built as DOM text, then serialised: the original's text is escaped.
      const q = document.createElement('div');
      q.appendChild(h('p', null, header));
      const bq = h('blockquote', { type: 'cite' });
      for (const line of orig.split('\n')) bq.appendChild(h('div', null, line || '\u00a0'));
      q.appendChild(bq);
      html = `${html}<br>${q.innerHTML}`;
    }
  }
  return { text, html };
}

// --- attachments ---

function addFiles(files) {
  if (!c) return;
  hideError();
  const refused = [];
  for (const f of files) {
    if (f.size > MAX_BYTES) {
      refused.push(`${f.name} is ${fmtSize(f.size)}: the limit is ${MAX_BYTES / 1024 / 1024} MB`);
      continue;
    }
    upload(f);
  }
  if (refused.length) showErrorIn(`Not attached: ${refused.join('; ')}`);
}

async function upload(file) {
  const mine = c;
  const item = { pending: true, filename: file.name, size: file.size, content_type: file.type };
  mine.attachments.push(item);
  renderFiles();
  try {
    const meta = await api.upload(file);
    Object.assign(item, meta, { pending: false });
    rememberUpload(meta);
    if (c === mine) {
      renderFiles();
      changed();
    }
  } catch (e) {
    mine.attachments = mine.attachments.filter((x) => x !== item);
    if (c === mine) {
      renderFiles();
      showErrorIn(`${file.name} not uploaded: ${e.message}`);
    }
  }
}

function renderFiles() {
  if (!c) return;
  clear(c.el.files, c.attachments.map((a) => h('span', { class: ['d2-chip', a.pending && 'd2-chip-pending'], 'data-testid': 'composer-attachment', 'data-attachment-id': a.id ? String(a.id) : '', 'data-pending': a.pending ? 'true' : 'false' },
    `${a.filename}${a.size != null ? ` (${fmtSize(a.size)})` : ''}${a.pending ? ' uploading…' : ''}`,
    h('button', { type: 'button', class: 'd2-chip-x', 'data-testid': 'composer-attachment-remove', title: 'remove', disabled: !!a.pending,
      onclick: () => { c.attachments = c.attachments.filter((x) => x !== a); renderFiles(); changed(); } }, '×'))));
}

// --- drafts ---

/** The composer as a draft body, for drafts.js. */
export function composerContent() {
  if (!c || !c.interactionId) return null;
  const e = c.el;
  return {
    interactionId: c.interactionId,
    body: {
      mode: c.mode,
      message: c.original ? String(c.original.id) : null,
      to: splitList(e.to.value),
      cc: splitList(e.cc.value),
      bcc: splitList(e.bcc.value),
      subject: e.subject.value,
      text: bodyText() || null,
      html: bodyHtml(),
      attachments: c.attachments.filter((a) => !a.pending && a.id).map((a) => String(a.id)),
    },
  };
}

async function saveNow() {
  const content = composerContent();
  if (!content) return;
  const d = await saveDraft(content.interactionId, content.body);
  if (d) toast('draft saved', 'success', 1500);
}

async function minimise() {
  const content = composerContent();
  if (!content) return closeComposer();
  const d = await saveDraft(content.interactionId, content.body);
  if (d) closeComposer();
}

async function discardComposer() {
  if (!c) return;
  const id = c.interactionId;
  closeComposer();
  if (id && hasDraft(id)) await discardDraft(id);
}

// --- sending ---

function fillAccounts(list) {
  const keys = new Set();
  const add = (k) => {
    if (k && !keys.has(k)) {
      keys.add(k);
      list.appendChild(h('option', { value: k }));
    }
  };
  if (state.view) add(state.view.account);
  api.get('/interactions', { scope: 'all', limit: 200 }).then((r) => (r.items || []).forEach((i) => add(i.account))).catch(() => {});
  if (me().role === 'admin') api.get('/accounts').then((r) => (Array.isArray(r) ? r : r.items || []).forEach((a) => add(a.key))).catch(() => {});
}

function pendingUploads() {
  return c.attachments.some((a) => a.pending);
}

function busy(on) {
  c.sending = on;
  for (const k of ['send', 'sendAs', 'sendClose', 'saveDraft']) if (c.el[k]) c.el[k].disabled = on;
}

async function send(after) {
  if (!c || c.sending) return;
  hideError();
  if (pendingUploads()) return showErrorIn('wait until the attachments are uploaded');
  const e = c.el;
  const { text, html } = outgoingBody();
  const attachments = c.attachments.filter((a) => a.id).map((a) => String(a.id));
  if (!text.trim() && !html && !attachments.length && c.mode !== 'forward') return showErrorIn('the mail is empty');
  const mine = c;
  busy(true);
  try {
    if (c.mode === 'new') {
      const account = e.account.value.trim();
      if (!account) throw Object.assign(new Error('choose the account to send from'), { local: true });
      const body = { account, to: splitList(e.to.value), cc: splitList(e.cc.value), bcc: splitList(e.bcc.value), subject: e.subject.value, text, attachments };
      if (html !== null) body.html = html;
      const created = await api.post('/interactions', body);
      localStorage.setItem('mailroom.composer.account', account);
      const { messages, ...view } = created;
      toast(`mail queued (interaction #${view.id})`, 'success', 3000);
      closeComposer();
      bus.emit('interaction-changed', view);
      bus.emit('open-interaction', String(view.id));
      return;
    }
    const body = { mode: c.mode, text, attachments };
    if (c.original) body.message = String(c.original.id);
    if (html !== null) body.html = html;
    // Recipients and subject as computed are left to the server (it knows
    // our own addresses, which reply-all leaves out); changed, they replace them.
    const to = splitList(e.to.value);
    const cc = splitList(e.cc.value);
    if (c.mode === 'forward' || !sameList(to, c.computed.to)) body.to = to;
    if (!sameList(cc, c.computed.cc)) body.cc = cc;
    if (splitList(e.bcc.value).length) body.bcc = splitList(e.bcc.value);
    if (e.subject.value.trim() !== c.computed.subject.trim()) body.subject = e.subject.value;
    if (after) body.after = after;
    const id = c.interactionId;
    const msg = await api.post(`/interactions/${id}/messages`, body);
    const { after_error: afterError, ...message } = msg;
    // The server deleted the draft: it has been sent.
    forgetDraft(id);
    if (c === mine) closeComposer();
    if (state.id === id) upsertMessage(message);
    if (afterError) toast(`sent, but: ${afterError}`, 'warn', 8000);
    else toast(after && after.close ? 'sent and closed' : after && after.substatus ? `sent as ${after.substatus}` : 'mail queued', 'success', 2500);
    if (state.id === id) refresh();
  } catch (err) {
    if (c === mine) {
      busy(false);
      showErrorIn(err.local ? err.message : `Not sent: ${err.message}`);
    }
    if (!err.local) toast(`not sent: ${err.message}`, 'error');
  }
}

function sendAs() {
  if (!c) return;
  const sub = c.el.sendAsSel.value;
  if (!sub) {
    showErrorIn('choose the sub-status to send as');
    c.el.sendAsSel.focus();
    return;
  }
  send({ substatus: sub });
}

async function sendClose() {
  if (!c) return;
  const path = await pickDisposition('Send and close');
  if (path === null || !c) return;
  send({ close: path.length ? { disposition: path } : {} });
}

/** A message of ours changed (WS delivery update): nothing in the composer shows it beyond the thread. */
export function upsertSentMessage(m) {
  if (m && m.delivery === 'failed' && m.direction === 'out' && state.id && String(m.interaction) === state.id) {
    toast(`delivery failed: ${m.delivery_error || 'refused'}`, 'error', 10000);
  }
}
