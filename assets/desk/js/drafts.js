// Drafts (docs/working.md): one per interaction, kept on the server so it
// survives a reload or a closed browser.
// - save (PUT …/draft?base=<updated_at we last saw>); a 409 `draft_exists`
//   (another agent's draft) or `draft_changed` (our other tab saved since)
//   shows `draft-replace-warning` with the owner and time, and
//   `draft-replace-confirm` saves again with ?replace=true;
// - the autosave switch (`autosave-toggle`, remembered in localStorage):
//   a save after a few seconds without typing;
// - the minimised draft boxes at the bottom of the list pane (#draft-boxes),
//   named as the guide names them (`display_name`: "KEY - TO", "KEY - SUBJECT"
//   or "KEY - Untitled"), with an X that discards;
// - the pencil on the thread header: grey without a draft, red with one.

import { api, session } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, fmtTime, fmtFull } from './ui.js';
import { state, showError } from './thread.js';
import { composerOpenFor, restoreDraftIntoComposer, composerContent, setDraftStatus, closeComposer } from './composer.js';

const AUTOSAVE_KEY = 'mailroom.autosave';
const AUTOSAVE_IDLE_MS = 3000;

/** interaction id → the last draft the server gave us (or null: none). */
const known = new Map();
let boxesEl = null;
let idleTimer = null;
let blocked = null; // interaction id whose saves wait for the agent's answer to a conflict

export function autosaveOn() {
  const v = localStorage.getItem(AUTOSAVE_KEY);
  return v === null ? true : v === 'true';
}

export function setAutosave(on) {
  localStorage.setItem(AUTOSAVE_KEY, on ? 'true' : 'false');
  if (!on) clearTimeout(idleTimer);
}

/** The switch shown in the composer. */
export function autosaveToggle() {
  const box = h('input', { type: 'checkbox', 'data-testid': 'autosave-toggle', checked: autosaveOn() });
  box.addEventListener('change', () => setAutosave(box.checked));
  return h('label', { class: 'd2-inline', title: 'save the draft a few seconds after you stop typing' }, box, ' Autosave');
}

export function mount() {
  boxesEl = document.getElementById('draft-boxes');
  if (!boxesEl) return;
  refreshBoxes();
  bus.on('drafts-changed', () => refreshBoxes());
  bus.on('logged-in', () => refreshBoxes());
  bus.on('logged-out', () => {
    known.clear();
    if (boxesEl) clear(boxesEl);
  });
  // A closed interaction loses its draft on the server.
  bus.on('ws:interaction_updated', (f) => {
    const v = f && f.interaction;
    if (v && v.status !== 'open' && known.get(String(v.id))) {
      known.set(String(v.id), null);
      updatePencil();
      refreshBoxes();
    }
  });
  // Before the page goes away, a last save of unsaved typing (best effort).
  // `keepalive` lets the request outlive the page.
  window.addEventListener('beforeunload', () => {
    if (!autosaveOn() || !idleTimer) return;
    clearTimeout(idleTimer);
    idleTimer = null;
    const content = composerContent();
    if (!content || !content.interactionId || blocked === content.interactionId || !session.token) return;
    const prev = known.get(content.interactionId);
    const base = prev && prev.updated_at ? `?base=${encodeURIComponent(prev.updated_at)}` : '';
    fetch(`/api/v1/interactions/${content.interactionId}/draft${base}`, {
      method: 'PUT',
      keepalive: true,
      headers: { Authorization: `Bearer ${session.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(content.body),
    }).catch(() => {});
  });
}

/** The pencil for the open interaction's header. */
export function pencil() {
  const el = h('span', { class: 'd2-pencil', 'data-testid': 'draft-pencil', 'data-state': 'grey', title: 'no draft', role: 'img', 'aria-label': 'draft' }, '✎');
  el.addEventListener('click', async () => {
    const id = state.id;
    const d = id && known.get(id);
    if (d && !composerOpenFor(id)) restoreDraftIntoComposer(d);
  });
  paint(el);
  return el;
}

function paint(el) {
  const d = state.id ? known.get(state.id) : null;
  el.setAttribute('data-state', d ? 'red' : 'grey');
  el.title = d ? `draft saved ${fmtFull(d.updated_at)}` : 'no draft';
  el.classList.toggle('d2-pencil-red', !!d);
}

export function updatePencil() {
  for (const el of document.querySelectorAll('[data-testid="draft-pencil"]')) paint(el);
}

export function hasDraft(id) {
  return !!known.get(String(id));
}

/**
 * The caller's draft of interaction `id` (null if none). Read from GET
 * /drafts (the caller's own, whole drafts) rather than GET …/draft, whose
 * 404 for "no draft" every browser logs as a console error.
 */
export async function loadDraft(id) {
  id = String(id);
  try {
    const list = (await api.get('/drafts')).items || [];
    const d = list.find((x) => String(x.interaction_id) === id) || null;
    known.set(id, d);
    updatePencil();
    return d;
  } catch (e) {
    showError(e, 'cannot read the draft');
    return null;
  }
}

/** The server deleted our draft (it was sent): forget it. */
export function forget(id) {
  known.set(String(id), null);
  if (blocked === String(id)) blocked = null;
  clearTimeout(idleTimer);
  idleTimer = null;
  updatePencil();
  refreshBoxes();
}

/** The composer's content changed: autosave once the typing stops. */
export function touched() {
  if (!autosaveOn()) return;
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    idleTimer = null;
    flush();
  }, AUTOSAVE_IDLE_MS);
}

function flush() {
  const content = composerContent();
  if (!content || !content.interactionId) return;
  save(content.interactionId, content.body, { auto: true });
}

/**
 * PUT the draft. `replace` overrides a conflict. Resolves with the saved
 * draft, or null when refused (the warning is shown in the composer).
 */
export async function save(id, body, { replace = false, auto = false } = {}) {
  id = String(id);
  if (auto && blocked === id) return null;
  const prev = known.get(id);
  let path = `/interactions/${id}/draft`;
  if (replace) path += '?replace=true';
  else if (prev && prev.updated_at) path += `?base=${encodeURIComponent(prev.updated_at)}`;
  setDraftStatus(id, auto ? 'autosaving…' : 'saving…');
  try {
    const d = await api.put(path, body);
    known.set(id, d);
    if (blocked === id) blocked = null;
    clearWarning(id);
    updatePencil();
    setDraftStatus(id, `draft saved ${fmtTime(d.updated_at)}`);
    refreshBoxes();
    return d;
  } catch (e) {
    if (e.status === 409 && (e.code === 'draft_exists' || e.code === 'draft_changed')) {
      blocked = id;
      setDraftStatus(id, 'draft not saved');
      showWarning(id, body, e);
      return null;
    }
    setDraftStatus(id, 'draft not saved');
    showError(e, 'draft not saved');
    return null;
  }
}

/** DELETE the caller's draft of `id`. */
export async function discard(id) {
  id = String(id);
  try {
    await api.del(`/interactions/${id}/draft`);
  } catch (e) {
    if (e.status !== 404) {
      showError(e, 'draft not deleted');
      return false;
    }
  }
  forget(id);
  return true;
}

function warningSlot(id) {
  const composer = document.querySelector(`[data-testid="composer"][data-interaction-id="${id}"]`);
  return composer ? composer.querySelector('.d2-draft-warning-slot') : null;
}

function clearWarning(id) {
  const slot = warningSlot(id);
  if (slot) clear(slot);
}

function showWarning(id, body, e) {
  const held = (e.body && e.body.draft) || {};
  const who = held.owner_name ? `${held.owner_name} (${held.owner})` : held.owner || 'someone';
  const when = held.updated_at ? fmtFull(held.updated_at) : 'earlier';
  const text = e.code === 'draft_exists'
    ? `${who} has a draft of this interaction, saved ${when}. Replace it with yours? Their draft will be lost.`
    : `Your draft was saved elsewhere (another tab or window) at ${when}. Replace it with this one?`;
  const warn = h('div', { class: 'd2-draft-warning', 'data-testid': 'draft-replace-warning', role: 'alert' },
    h('span', null, text), ' ',
    h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-testid': 'draft-replace-confirm',
      onclick: async () => {
        const current = composerContent();
        const d = await save(id, current && current.interactionId === id ? current.body : body, { replace: true });
        if (d) toast('draft replaced', 'success', 2000);
      } }, 'Replace'),
    ' ',
    h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'draft-replace-cancel',
      onclick: () => { clearWarning(id); } }, 'Keep theirs'));
  const slot = warningSlot(id);
  if (slot) clear(slot, warn);
  else toast(text, 'warn');
}

/** Redraw the minimised boxes from GET /drafts. */
export async function refreshBoxes() {
  if (!boxesEl) return;
  let list;
  try {
    list = (await api.get('/drafts')).items || [];
  } catch {
    return; // logged out, or the server is away: keep what is shown
  }
  // The list is the truth about which drafts exist (another tab may have saved or sent).
  const ids = new Set(list.map((d) => String(d.interaction_id)));
  for (const k of [...known.keys()]) if (!ids.has(k)) known.set(k, null);
  for (const d of list) {
    const k = String(d.interaction_id);
    const had = known.get(k);
    if (!had || had.updated_at !== d.updated_at) known.set(k, d);
  }
  updatePencil();
  clear(boxesEl, list.map((d) => box(d)));
}

function box(d) {
  const id = String(d.interaction_id);
  const name = d.display_name || `#${id}`;
  const el = h('div', { class: 'd2-draft-box', 'data-testid': 'draft-box', 'data-interaction-id': id, title: `draft of #${id}, saved ${fmtFull(d.updated_at)}`, role: 'button', tabIndex: 0 },
    h('span', { class: 'd2-draft-box-pen' }, '✎'),
    h('span', { class: 'd2-draft-box-name', 'data-testid': 'draft-box-name' }, name));
  const del = h('button', { type: 'button', class: 'd2-draft-box-x', 'data-testid': 'draft-box-delete', title: 'discard this draft', 'aria-label': 'discard draft' }, '×');
  del.addEventListener('click', async (e) => {
    e.stopPropagation();
    if (await discard(id)) {
      toast(`draft ${name} discarded`, 'info', 2000);
      if (composerOpenFor(id)) closeComposer();
    }
  });
  el.appendChild(del);
  const openIt = async () => {
    if (state.id === id) {
      if (!composerOpenFor(id)) {
        const fresh = await loadDraft(id);
        if (fresh) restoreDraftIntoComposer(fresh);
      }
    } else {
      bus.emit('open-interaction', id);
    }
  };
  el.addEventListener('click', openIt);
  el.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      openIt();
    }
  });
  return el;
}
