// The side panel (#side-pane) of the open interaction: Contact (names and
// addresses, editable), Interaction (status, sub-status, tags, owner, queue,
// account, times, disposition) and Journey (the contact's interactions;
// clicking one opens it).

import { api } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, fmtTime, fmtFull } from './ui.js';
import { showError } from './thread.js';

const TAB_KEY = 'mailroom.side.tab';
let pane = null;
let view = null;
let tab = localStorage.getItem(TAB_KEY) || 'interaction';
let tabsEl = null;
let body = null;
let seq = 0;

export function mount() {
  pane = document.getElementById('side-pane');
  if (!pane || tabsEl) return;
  const tabBtn = (name, label) => h('button', { type: 'button', role: 'tab', class: 'd2-side-tab', 'data-testid': `side-tab-${name}`, 'data-tab': name, onclick: () => select(name) }, label);
  tabsEl = h('div', { class: 'd2-side-tabs', role: 'tablist' }, tabBtn('contact', 'Contact'), tabBtn('interaction', 'Interaction'), tabBtn('journey', 'Journey'));
  body = h('div', { class: 'd2-side-body', 'data-testid': 'side-body', role: 'tabpanel' });
  clear(pane, tabsEl, body);
  select(tab);
  bus.on('thread-opened', (v) => {
    const switched = !view || String(view.id) !== String(v.id);
    view = v;
    if (switched || tab === 'interaction') render();
  });
  bus.on('interaction-changed', (v) => {
    if (view && v && String(v.id) === String(view.id)) {
      view = Object.assign({}, view, v);
      if (tab === 'interaction') render();
    }
  });
  bus.on('logged-out', () => {
    view = null;
    render();
  });
}

function select(name) {
  tab = name;
  localStorage.setItem(TAB_KEY, name);
  for (const b of tabsEl.querySelectorAll('[role=tab]')) {
    const on = b.dataset.tab === name;
    b.setAttribute('aria-selected', on ? 'true' : 'false');
    b.classList.toggle('d2-active', on);
  }
  render();
}

function render() {
  const mine = ++seq;
  if (!view) return clear(body, h('div', { class: 'd2-empty' }, 'No interaction open.'));
  if (tab === 'contact') return renderContact(mine);
  if (tab === 'journey') return renderJourney(mine);
  return renderInteraction();
}

function field(name, label, value) {
  return h('div', { class: 'd2-field', 'data-testid': `side-field-${name}` },
    h('span', { class: 'd2-field-label' }, label),
    h('span', { class: 'd2-field-value' }, value === null || value === undefined || value === '' ? '—' : value));
}

function renderInteraction() {
  const v = view;
  clear(body, h('div', { class: 'd2-fields', 'data-testid': 'side-interaction' },
    field('id', 'Id', `#${v.id}`),
    field('status', 'Status', v.status),
    field('substatus', 'Sub-status', v.substatus),
    field('tags', 'Tags', (v.tags || []).length ? (v.tags || []).map((t) => h('span', { class: 'd2-tag' }, t)) : null),
    field('owner', 'Owner', v.owner),
    field('first-agent', 'First agent', v.first_agent),
    field('queue', 'Queue', v.queue),
    field('account', 'Account', v.account),
    field('priority', 'Priority', String(v.priority ?? '')),
    field('created', 'Created', fmtFull(v.created_at)),
    field('updated', 'Last activity', fmtFull(v.updated_at)),
    field('closed', 'Closed', v.closed_at ? fmtFull(v.closed_at) : null),
    field('disposition', 'Disposition', v.disposition && v.disposition.length ? v.disposition.join(' / ') : null),
    field('reopened', 'Reopened', v.reopened ? 'yes' : 'no'),
    v.continues ? field('continues', 'Continues', `#${v.continues}`) : null,
    v.continued_in ? field('continued-in', 'Continued in', `#${v.continued_in}`) : null));
}

async function renderContact(mine) {
  const c0 = view.contact;
  if (!c0) return clear(body, h('div', { class: 'd2-empty' }, 'This interaction has no contact.'));
  clear(body, h('div', { class: 'd2-loading' }, 'loading…'));
  let c;
  try {
    c = await api.get(`/contacts/${c0.id}`);
  } catch (e) {
    if (mine === seq) clear(body, h('div', { class: 'd2-error' }, `cannot load the contact: ${e.message}`));
    return;
  }
  if (mine !== seq) return;
  showContact(c);
}

function showContact(c) {
  clear(body, h('div', { class: 'd2-contact', 'data-testid': 'side-contact', 'data-contact-id': String(c.id) },
    h('div', { class: 'd2-contact-name', 'data-testid': 'contact-name' }, [c.first_name, c.last_name].filter(Boolean).join(' ') || '(no name)'),
    h('ul', { class: 'd2-contact-emails' }, (c.emails || []).map((e) => h('li', { 'data-testid': 'contact-email' }, e))),
    h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'contact-edit', onclick: () => editContact(c) }, 'Edit')));
}

function editContact(c) {
  const first = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'contact-first-name', value: c.first_name || '' });
  const last = h('input', { type: 'text', class: 'd2-in', 'data-testid': 'contact-last-name', value: c.last_name || '' });
  const emails = h('textarea', { class: 'd2-in', 'data-testid': 'contact-emails', rows: 3 });
  emails.value = (c.emails || []).join('\n');
  const err = h('div', { class: 'd2-error', 'data-testid': 'contact-error', hidden: true });
  const save = h('button', { type: 'submit', class: 'btn btn-small btn-primary', 'data-testid': 'contact-save' }, 'Save');
  const form = h('form', { class: 'd2-form' },
    h('label', null, 'First name', first), h('label', null, 'Last name', last),
    h('label', null, 'Addresses (one a line)', emails), err,
    h('div', null, save, ' ', h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'contact-cancel', onclick: () => showContact(c) }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    save.disabled = true;
    try {
      const updated = await api.put(`/contacts/${c.id}`, {
        first_name: first.value.trim(),
        last_name: last.value.trim(),
        emails: emails.value.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean),
      });
      toast('contact saved', 'success', 2000);
      if (view && view.contact && String(view.contact.id) === String(c.id)) {
        view = Object.assign({}, view, { contact: Object.assign({}, view.contact, { first_name: updated.first_name, last_name: updated.last_name, email: (updated.emails || [])[0] || view.contact.email }) });
        bus.emit('interaction-changed', view);
      }
      showContact(updated);
    } catch (x) {
      err.hidden = false;
      err.textContent = x.message;
      save.disabled = false;
    }
  });
  clear(body, form);
  first.focus();
}

async function renderJourney(mine, cursor = null, list = null) {
  const c0 = view.contact;
  if (!c0) return clear(body, h('div', { class: 'd2-empty' }, 'This interaction has no contact.'));
  if (!list) {
    list = h('ol', { class: 'd2-journey', 'data-testid': 'side-journey' });
    clear(body, list);
  }
  let page;
  try {
    page = await api.get(`/contacts/${c0.id}/journey`, cursor ? { cursor, limit: 50 } : { limit: 50 });
  } catch (e) {
    if (mine === seq) showError(e, 'cannot load the journey');
    return;
  }
  if (mine !== seq) return;
  for (const i of page.items || []) {
    const current = String(i.id) === String(view.id);
    const dir = i.last_message ? (i.last_message.direction === 'in' ? '↙' : '↗') : '';
    list.appendChild(h('li', {
      class: ['d2-journey-entry', current && 'd2-current'], 'data-testid': 'journey-entry', 'data-interaction-id': String(i.id), role: 'button', tabIndex: 0,
      title: `#${i.id} · ${i.account} · ${i.queue}`,
      onclick: () => { if (!current) bus.emit('open-interaction', String(i.id)); },
      onkeydown: (e) => { if (e.key === 'Enter' && !current) bus.emit('open-interaction', String(i.id)); },
    },
    h('div', { class: 'd2-journey-top' },
      h('span', { class: 'd2-channel' }, '✉ email'),
      h('span', { class: ['d2-status', `d2-status-${i.status}`] }, i.status),
      h('span', { class: 'd2-at', title: fmtFull(i.created_at) }, fmtTime(i.created_at))),
    h('div', { class: 'd2-journey-subject' }, `${dir} #${i.id} ${i.subject || '(no subject)'}`),
    h('div', { class: 'd2-journey-meta' }, [i.owner || i.first_agent || 'unassigned', i.disposition ? i.disposition.join(' / ') : null].filter(Boolean).join(' · '))));
  }
  if (!list.children.length) list.appendChild(h('li', { class: 'd2-empty' }, 'No interactions.'));
  const more = body.querySelector('.d2-more');
  if (more) more.remove();
  if (page.next_cursor) {
    body.appendChild(h('button', { type: 'button', class: 'btn btn-small d2-more', onclick: () => renderJourney(mine, page.next_cursor, list) }, 'More'));
  }
}
