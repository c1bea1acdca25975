// The actions toolbar of the thread view: note, tags, sub-status, mark
// unread, transfer, close & dispose (a multi-level disposition picker),
// reopen, downloads (PDF transcript with or without attachments, .eml).
// Every successful change emits `interaction-changed` with the new view and
// refreshes the thread; a 4xx shows the server's message as a toast.

import { api } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, modal } from './ui.js';
import { state, canWork, isSpy, isSupervisor, refresh, setView, showError, download, me, upsertMessage } from './thread.js';

const MAX_BYTES = 15 * 1024 * 1024;
let tagsCache = null;
let substatusCache = null;
let dispositionCache = null;

export function mount() {}

async function tagList() {
  if (!tagsCache) tagsCache = (await api.get('/tags')).map((t) => t.name);
  return tagsCache;
}

export async function substatusList() {
  if (!substatusCache) substatusCache = (await api.get('/substatuses')).map((s) => s.name);
  return substatusCache;
}

async function dispositionTree() {
  if (!dispositionCache) dispositionCache = await api.get('/dispositions');
  return dispositionCache;
}

// Lists the admin may change meanwhile: forget them when the desk reconnects.
bus.on('logged-in', () => {
  tagsCache = null;
  substatusCache = null;
  dispositionCache = null;
});

/** Apply a REST answer that is the new interaction view. */
function changed(view, { reload = true } = {}) {
  if (view && view.id) {
    setView(view);
    bus.emit('interaction-changed', view);
  }
  if (reload) refresh();
}

function btn(testid, label, onclick, title) {
  return h('button', { type: 'button', class: 'btn btn-small', 'data-testid': testid, title: title || label, onclick }, label);
}

/** The toolbar for interaction `v`, showing what the caller may do. */
export function renderActions(v) {
  if (!v) return null;
  const open = v.status === 'open';
  const work = canWork(v);
  const spy = isSpy(v);
  const sup = isSupervisor();
  const items = [];
  if (spy) {
    items.push(supervisorNoteBox(v));
  } else {
    if (work || sup) items.push(btn('action-note', 'Note', () => noteDialog(v), 'add an internal note'));
    if (work && open) {
      items.push(btn('action-tags', 'Tags', () => tagsDialog(v)));
      items.push(substatusSelect(v));
      items.push(btn('action-mark-unread', 'Mark unread', () => markUnread(v)));
    }
    if ((work || sup) && open) {
      items.push(btn('action-transfer', 'Transfer', () => transferDialog(v)));
      items.push(btn('action-close', 'Close', () => closeFlow(v), 'close & dispose'));
    }
  }
  if (!open) items.push(btn('action-reopen', 'Reopen', () => reopen(v)));
  return h('div', { class: 'd2-actions', role: 'toolbar', 'aria-label': 'interaction actions' }, items);
}

/** The downloads of interaction `v` (on the reply row: with the actions they wrapped at 1440 px). */
export function renderDownloads(v) {
  if (!v) return null;
  const items = [];
  items.push(btn('download-pdf', 'PDF', () => download(`/interactions/${v.id}/transcript.pdf`, `interaction-${v.id}-transcript.pdf`), 'transcript as PDF'));
  items.push(btn('download-pdf-attachments', 'PDF + attachments', () => download(`/interactions/${v.id}/transcript.pdf?attachments=true`, `interaction-${v.id}-transcript.pdf`), 'transcript as PDF, with image attachments'));
  items.push(btn('download-eml', '.eml', () => downloadEml(), 'the last mail as .eml'));
  return h('div', { class: 'd2-downloads', role: 'toolbar', 'aria-label': 'downloads' }, items);
}

function downloadEml() {
  const mails = state.messages.filter((m) => m.kind !== 'note' && m.kind !== 'supervisor_note');
  const last = mails[mails.length - 1];
  if (!last) return toast('this interaction has no mail to download', 'warn');
  download(`/messages/${last.id}/raw`, `message-${last.id}.eml`);
}

// --- notes ---

function noteDialog(v) {
  const input = h('textarea', { class: 'd2-note-input', 'data-testid': 'note-input', rows: 5, placeholder: 'Internal note (never sent to the customer)' });
  const forAgent = isSupervisor() && v.owner && v.owner !== me().username
    ? h('input', { type: 'checkbox', 'data-testid': 'note-for-agent' }) : null;
  const files = h('input', { type: 'file', multiple: true, 'data-testid': 'note-file' });
  const err = h('div', { class: 'd2-error', 'data-testid': 'note-error', hidden: true });
  const body = h('div', { class: 'd2-form' }, input,
    h('label', null, 'Attach files', files),
    forAgent ? h('label', null, forAgent, ` a note for ${v.owner} only`) : null, err);
  return modal('Internal note', body, [
    { label: 'Cancel', value: null, testid: 'note-cancel' },
    { label: 'Save note', kind: 'primary', testid: 'note-save', value: async () => {
      const text = input.value.trim();
      const chosen = [...files.files];
      const fail = (msg) => {
        err.hidden = false;
        err.textContent = msg;
        throw new Error(msg);
      };
      if (!text && !chosen.length) fail('write the note first');
      const big = chosen.filter((f) => f.size > MAX_BYTES);
      if (big.length) fail(`over ${MAX_BYTES / 1024 / 1024} MB: ${big.map((f) => f.name).join(', ')}`);
      try {
        const ids = [];
        for (const f of chosen) ids.push(String((await api.upload(f)).id));
        await addNote(v, text, forAgent && forAgent.checked, ids);
        return true;
      } catch (e) {
        err.hidden = false;
        err.textContent = e.message;
        throw e;
      }
    } },
  ], { testid: 'note-dialog', keepOpen: true });
}

async function addNote(v, text, forAgent, attachments = []) {
  const body = { text: text || null };
  if (attachments.length) body.attachments = attachments;
  if (forAgent) body.for_agent = true;
  const msg = await api.post(`/interactions/${v.id}/notes`, body);
  toast(forAgent ? 'note for the agent saved' : 'note saved', 'success', 2500);
  // The owner hears message_added; anyone else (a supervisor) sees it here.
  upsertMessage(msg);
  bus.emit('interaction-changed', state.view);
}

/** Spy mode: the only thing a supervisor may do in someone else's interaction is write to its agent. */
function supervisorNoteBox(v) {
  const input = h('textarea', { class: 'd2-sup-note', 'data-testid': 'thread-sup-note-input', rows: 2, placeholder: `A note for ${v.owner} (internal)` });
  const save = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'thread-sup-note-save', onclick: async () => {
    const text = input.value.trim();
    if (!text) return toast('write the note first', 'warn');
    save.disabled = true;
    try {
      await addNote(v, text, true);
      input.value = '';
    } catch (e) {
      showError(e, 'note not saved');
    } finally {
      save.disabled = false;
    }
  } }, 'Note to agent');
  return h('div', { class: 'd2-sup-note-box' }, input, save);
}

// --- tags ---

async function tagsDialog(v) {
  let all;
  try {
    all = await tagList();
  } catch (e) {
    return showError(e, 'cannot load tags');
  }
  const current = new Set(v.tags || []);
  for (const t of current) if (!all.includes(t)) all = [...all, t];
  if (!all.length) return toast('no tags defined yet (an admin adds them)', 'warn');
  const boxes = all.map((name) => h('label', { class: 'd2-tag-option', 'data-testid': 'tag-option', 'data-tag': name },
    h('input', { type: 'checkbox', value: name, checked: current.has(name), 'data-testid': 'tag-checkbox' }), ` ${name}`));
  const chosen = await modal('Tags', h('div', { class: 'd2-tag-list' }, boxes), [
    { label: 'Cancel', value: null, testid: 'tags-cancel' },
    { label: 'Save tags', kind: 'primary', testid: 'tags-save', value: () => boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value) },
  ], { testid: 'tags-dialog' });
  if (!chosen) return;
  try {
    changed(await api.put(`/interactions/${v.id}/tags`, { tags: chosen }), { reload: false });
    toast('tags saved', 'success', 2000);
  } catch (e) {
    showError(e, 'tags not saved');
  }
}

// --- sub-status ---

function substatusSelect(v) {
  const sel = h('select', { class: 'd2-substatus-select', 'data-testid': 'action-substatus', title: 'sub-status' },
    h('option', { value: '' }, 'no sub-status'),
    v.substatus ? h('option', { value: v.substatus, selected: true }, v.substatus) : null);
  substatusList().then((names) => {
    clear(sel, h('option', { value: '' }, 'no sub-status'),
      names.map((n) => h('option', { value: n, selected: n === v.substatus }, n)));
    sel.value = v.substatus || '';
  }).catch(() => {});
  sel.addEventListener('change', async () => {
    const value = sel.value || null;
    try {
      changed(await api.put(`/interactions/${v.id}/substatus`, { substatus: value }), { reload: false });
      toast(value ? `sub-status: ${value}` : 'sub-status cleared', 'success', 2000);
    } catch (e) {
      sel.value = v.substatus || '';
      showError(e, 'sub-status not set');
    }
  });
  return h('label', { class: 'd2-inline' }, 'Sub-status ', sel);
}

// --- unread ---

async function markUnread(v) {
  try {
    // Not reloaded: opening it again would mark it read (docs/working.md).
    const view = await api.post(`/interactions/${v.id}/unread`);
    changed(view, { reload: false });
    toast('marked unread', 'success', 2000);
  } catch (e) {
    showError(e, 'cannot mark unread');
  }
}

// --- transfer ---

async function transferDialog(v) {
  let targets;
  try {
    targets = await api.get('/transfer-targets', { interaction: v.id });
  } catch (e) {
    return showError(e, 'cannot load transfer targets');
  }
  const sel = h('select', { 'data-testid': 'transfer-target', class: 'd2-transfer-target' },
    h('option', { value: '' }, 'choose a queue or an agent…'),
    h('optgroup', { label: 'Queues' }, (targets.queues || []).map((q) => h('option', { value: `queue:${q.name}` }, `queue ${q.name}`))),
    h('optgroup', { label: 'Agents online now' }, (targets.agents || []).map((a) =>
      h('option', { value: `agent:${a.username}` }, `${a.name || a.username} (${a.username}) ${a.owned}/${a.capacity}`))));
  const err = h('div', { class: 'd2-error', 'data-testid': 'transfer-error', hidden: true });
  const result = await modal('Transfer', h('div', { class: 'd2-form' }, sel, err), [
    { label: 'Cancel', value: null, testid: 'transfer-cancel' },
    { label: 'Transfer', kind: 'primary', testid: 'transfer-confirm', value: async () => {
      if (!sel.value) {
        err.hidden = false;
        err.textContent = 'choose where to transfer it';
        throw new Error('none');
      }
      const [kind, ...rest] = sel.value.split(':');
      const name = rest.join(':');
      try {
        return await api.post(`/interactions/${v.id}/transfer`, kind === 'queue' ? { queue: name } : { agent: name });
      } catch (e) {
        err.hidden = false;
        err.textContent = e.message;
        toast(`transfer refused: ${e.message}`, 'error');
        throw e;
      }
    } },
  ], { testid: 'transfer-dialog', keepOpen: true });
  if (result) {
    toast(`transferred to ${result.owner || result.queue}`, 'success', 3000);
    changed(result);
  }
}

// --- close & dispose ---

/**
 * The disposition picker: one select per level, filled from the tree; only
 * a leaf can be confirmed. Resolves with the path of names, [] when the
 * tree is empty (nothing to pick), or null when cancelled.
 */
export async function pickDisposition(title = 'Close & dispose') {
  let nodes;
  try {
    nodes = await dispositionTree();
  } catch (e) {
    showError(e, 'cannot load dispositions');
    return null;
  }
  if (!nodes.length) return [];
  const children = (parent) => nodes.filter((n) => String(n.parent ?? '') === String(parent ?? ''));
  const selects = [1, 2, 3].map((level) => h('select', { 'data-testid': `disposition-level-${level}`, class: 'd2-disp-level', 'data-level': level }));
  const confirmBtnHolder = {};
  const hint = h('div', { class: 'd2-hint', 'data-testid': 'disposition-hint' });
  const fill = (level, parent) => {
    const sel = selects[level - 1];
    const opts = parent === undefined ? [] : children(parent);
    clear(sel, h('option', { value: '' }, opts.length ? `level ${level}…` : '—'), opts.map((n) => h('option', { value: String(n.id) }, n.name)));
    sel.disabled = !opts.length;
    sel.hidden = level > 1 && !opts.length;
  };
  const chosen = () => {
    const path = [];
    let leaf = false;
    for (const sel of selects) {
      if (!sel.value) break;
      const node = nodes.find((n) => String(n.id) === sel.value);
      path.push(node);
      leaf = children(node.id).length === 0;
    }
    return { path, leaf: path.length > 0 && leaf };
  };
  const update = () => {
    const { path, leaf } = chosen();
    if (confirmBtnHolder.btn) confirmBtnHolder.btn.disabled = !leaf;
    hint.textContent = leaf ? path.map((n) => n.name).join(' / ') : path.length ? 'choose a more precise disposition' : 'choose a disposition';
  };
  fill(1, null);
  fill(2, undefined);
  fill(3, undefined);
  selects.forEach((sel, i) => sel.addEventListener('change', () => {
    for (let j = i + 1; j < 3; j++) fill(j + 1, j === i + 1 && sel.value ? sel.value : undefined);
    update();
  }));
  const picker = h('div', { class: 'd2-disposition-picker', 'data-testid': 'disposition-picker' }, selects, hint);
  const p = modal(title, picker, [
    { label: 'Cancel', value: null, testid: 'disposition-cancel' },
    // Where the queue does not require one; where it does, the server says so.
    { label: 'No disposition', value: () => [], testid: 'disposition-none' },
    { label: 'Confirm', kind: 'primary', testid: 'disposition-confirm', value: () => {
      const { path, leaf } = chosen();
      if (!leaf) throw new Error('not a leaf');
      return path.map((n) => n.name);
    } },
  ], { testid: 'disposition-dialog', keepOpen: true });
  // The modal's buttons exist once it is in the document.
  const confirmEl = document.querySelector('[data-testid="disposition-dialog"] [data-testid="disposition-confirm"]');
  if (confirmEl) confirmBtnHolder.btn = confirmEl;
  update();
  return p;
}

async function closeFlow(v) {
  const path = await pickDisposition();
  if (path === null) return;
  try {
    const view = await api.post(`/interactions/${v.id}/close`, path.length ? { disposition: path } : {});
    toast(path.length ? `closed: ${path.join(' / ')}` : 'closed', 'success', 3000);
    changed(view);
  } catch (e) {
    showError(e, 'not closed');
  }
}

// --- reopen ---

async function reopen(v) {
  try {
    const view = await api.post(`/interactions/${v.id}/reopen`);
    toast('reopened', 'success', 2000);
    changed(view);
  } catch (e) {
    showError(e, 'not reopened');
  }
}
