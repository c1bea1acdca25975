// The interactions list (left pane): filters, quick search, rows, keyset
// paging. GET /api/v1/interactions (docs/api.md "Reading interactions"), or
// POST /api/v1/interactions/search while an advanced search is applied
// (search.js calls setAdvanced).

import { api, session } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, fmtTime, fmtFull, debounce } from './ui.js';

const PAGE = 50;
const SEARCH_MIN = 5;
const ON_ENTER_KEY = 'mailroom.searchOnEnter';
// Filters are kept per user: two agents sharing a browser keep their own.
const filtersKey = () => `mailroom.listFilters.${session.agent ? session.agent.username : ''}`;

const state = {
  filters: { scope: '', status: '', unread: '', agent: '', tags: [], from: '' },
  q: '',
  advanced: null, // {match, conditions} while an advanced search is applied
  items: [], // interaction views in list order
  nextCursor: null,
  selected: null,
  loading: false,
  seq: 0, // guards against a slow answer overwriting a newer one
};

let els = null;
let mounted = false;

function defaultScope() {
  return session.isSupervisor ? 'all' : 'me';
}

function loadFilters() {
  try {
    const saved = JSON.parse(localStorage.getItem(filtersKey()) || 'null');
    if (saved && typeof saved === 'object') Object.assign(state.filters, saved);
  } catch {
    // ignore a corrupt setting
  }
  if (!state.filters.scope) state.filters.scope = defaultScope();
  if (!Array.isArray(state.filters.tags)) state.filters.tags = [];
}

function saveFilters() {
  localStorage.setItem(filtersKey(), JSON.stringify(state.filters));
}

export function searchOnEnter() {
  return localStorage.getItem(ON_ENTER_KEY) === 'true';
}

function select(testid, options, value, onchange, label) {
  const sel = h('select', { 'data-testid': testid, 'aria-label': label, title: label, onchange: (e) => onchange(e.target.value) },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  return sel;
}

function buildFilters() {
  const f = state.filters;
  const scope = select('filter-scope', [['me', 'Mine'], ['unassigned', 'Unassigned'], ['all', 'All']], f.scope, (v) => setFilter('scope', v), 'Scope');
  const status = select('filter-status', [['', 'Any status'], ['open', 'Open'], ['closed', 'Closed'], ['closed_unmanaged', 'Closed unmanaged']], f.status, (v) => setFilter('status', v), 'Status');
  const read = select('filter-read', [['', 'Read & unread'], ['true', 'Unread'], ['false', 'Read']], f.unread, (v) => setFilter('unread', v), 'Read or unread');
  const from = h('input', {
    type: 'date', 'data-testid': 'filter-from', 'aria-label': 'Created from', title: 'Created from (start date)',
    value: f.from || '', onchange: (e) => setFilter('from', e.target.value),
  });
  const agentList = h('datalist', { id: 'filter-agent-list' });
  const agent = h('input', {
    type: 'text', 'data-testid': 'filter-agent', list: 'filter-agent-list', placeholder: 'Agent', 'aria-label': 'First agent',
    title: 'First agent (username)', value: f.agent || '', size: 8,
    onchange: (e) => setFilter('agent', e.target.value.trim()),
  });
  // Tags: a compact drop-down of checkboxes (any of them matches).
  const tagsSummary = h('summary', { 'data-testid': 'filter-tags-summary' });
  const tagsBox = h('div', { class: 'tags-box' });
  const tags = h('details', { class: 'filter-tags', 'data-testid': 'filter-tags', title: 'Tags (any of them)' }, tagsSummary, tagsBox);
  tags.addEventListener('change', () => {
    const chosen = [...tagsBox.querySelectorAll('input:checked')].map((i) => i.value);
    updateTagsSummary(tagsSummary, chosen);
    setFilter('tags', chosen);
  });
  updateTagsSummary(tagsSummary, f.tags);
  els.tags = tagsBox;
  els.agentList = agentList;
  clear(els.filters, h('div', { class: 'filters' }, scope, status, read, from, agent, agentList, tags));
  fillTags();
  fillAgents();
}

function updateTagsSummary(summary, chosen) {
  summary.textContent = chosen && chosen.length ? `Tags: ${chosen.join(', ')}` : 'Tags';
}

async function fillTags() {
  try {
    const tags = await api.get('/tags');
    const chosen = new Set(state.filters.tags);
    clear(els.tags, tags.length
      ? tags.map((t) => h('label', { class: 'tag-option' },
        h('input', { type: 'checkbox', value: t.name, checked: chosen.has(t.name), 'data-testid': 'filter-tag-option' }), ` ${t.name}`))
      : h('div', { class: 'muted' }, 'No tags defined.'));
  } catch {
    // tags are optional in the filter bar
  }
}

async function fillAgents() {
  // Supervisors see every agent; agents get the online ones they could transfer to.
  let names = [];
  try {
    if (session.isSupervisor) {
      const agents = await api.get('/supervisor/agents');
      names = agents.map((a) => [a.agent.username, a.agent.name]);
    } else {
      const t = await api.get('/transfer-targets');
      names = (t.agents || []).map((a) => [a.username, a.name]);
      if (session.agent) names.unshift([session.agent.username, session.agent.name]);
    }
  } catch {
    return;
  }
  clear(els.agentList, names.map(([u, n]) => h('option', { value: u }, n || u)));
}

function setFilter(key, value) {
  state.filters[key] = value;
  saveFilters();
  reload();
}

function resetFilters() {
  state.filters = { scope: defaultScope(), status: '', unread: '', agent: '', tags: [], from: '' };
  saveFilters();
  buildFilters();
  reload();
}

function buildSearch() {
  const input = h('input', {
    type: 'search', 'data-testid': 'search-input', placeholder: 'Search (id, subject, text, name, email)', 'aria-label': 'Search',
    maxLength: 200, value: state.q,
  });
  const toggle = h('input', { type: 'checkbox', 'data-testid': 'search-on-enter-toggle', checked: searchOnEnter() });
  const hint = h('span', { class: 'search-hint', 'data-testid': 'search-hint' });
  const updateHint = () => {
    hint.textContent = toggle.checked ? '⏎ to search' : `≥ ${SEARCH_MIN} chars or ⏎`;
  };
  updateHint();
  toggle.addEventListener('change', () => {
    localStorage.setItem(ON_ENTER_KEY, toggle.checked ? 'true' : 'false');
    updateHint();
  });
  const typed = debounce(() => {
    if (toggle.checked) return;
    const v = input.value.trim();
    // Search once 5 characters are typed; clearing the box lists again.
    if (v.length >= SEARCH_MIN || (v.length === 0 && state.q !== '')) runSearch(v);
  }, 300);
  input.addEventListener('input', typed);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      runSearch(input.value.trim());
    }
  });
  // The search type's clear button fires 'search' with an empty value.
  input.addEventListener('search', () => {
    if (input.value === '' && state.q !== '') runSearch('');
  });
  els.searchInput = input;
  clear(els.search, h('div', { class: 'search-bar' },
    input,
    h('label', { class: 'toggle', title: 'Search only when Enter is pressed' }, toggle, ' on Enter'),
    hint,
    h('span', { id: 'adv-slot', class: 'adv-slot' })));
}

function runSearch(q) {
  if (q === state.q) {
    reload();
    return;
  }
  state.q = q;
  reload();
}

function query(cursor, limit) {
  const f = state.filters;
  const q = { scope: f.scope || defaultScope(), limit: limit || PAGE };
  if (f.status) q.status = f.status;
  if (f.unread) q.unread = f.unread;
  if (f.agent) q.agent = f.agent;
  if (f.tags && f.tags.length) q.tag = f.tags;
  if (f.from) {
    const d = new Date(`${f.from}T00:00:00`); // local midnight of the chosen day
    if (!Number.isNaN(d.getTime())) q.from = d.toISOString();
  }
  if (state.q) q.q = state.q;
  if (cursor) q.cursor = cursor;
  return q;
}

function fetchPage(cursor, limit) {
  if (state.advanced) {
    const body = Object.assign({}, state.advanced, { limit: limit || PAGE });
    if (cursor) body.cursor = cursor;
    return api.post('/interactions/search', body);
  }
  return api.get('/interactions', query(cursor, limit));
}

/** Load the first page again (filters or search changed). Keeps as many rows as were loaded when `keep` is set. */
export async function reload({ keep = false } = {}) {
  if (!els) return;
  const seq = ++state.seq;
  const limit = keep ? Math.min(500, Math.max(PAGE, state.items.length)) : PAGE;
  state.loading = true;
  els.list.classList.add('loading');
  try {
    const page = await fetchPage(null, limit);
    if (seq !== state.seq) return;
    state.items = page.items || [];
    state.nextCursor = page.next_cursor || null;
    state.error = null;
    render();
  } catch (e) {
    if (seq !== state.seq) return;
    state.error = e;
    state.items = [];
    state.nextCursor = null;
    render();
    if (state.advanced) bus.emit('advanced-error', e);
    else toast(`List: ${e.message}`, 'error');
  } finally {
    if (seq === state.seq) {
      state.loading = false;
      els.list.classList.remove('loading');
    }
  }
}

async function loadMore() {
  if (!state.nextCursor) return;
  const seq = state.seq;
  try {
    const page = await fetchPage(state.nextCursor, PAGE);
    if (seq !== state.seq) return;
    const have = new Set(state.items.map((i) => i.id));
    for (const it of page.items || []) if (!have.has(it.id)) state.items.push(it);
    state.nextCursor = page.next_cursor || null;
    render();
  } catch (e) {
    toast(`List: ${e.message}`, 'error');
  }
}

/** Apply (or with null, clear) an advanced search: {match, conditions}. Returns the reload promise. */
export function setAdvanced(search) {
  state.advanced = search;
  return reload();
}

function contactName(c) {
  if (!c) return '';
  const name = [c.first_name, c.last_name].filter(Boolean).join(' ');
  return name || c.email || '';
}

/** One row. Mail content only through text nodes and attributes. */
export function row(i, opts = {}) {
  const lm = i.last_message;
  const dir = lm ? lm.direction : null;
  const arrow = h('span', {
    class: ['row-dir', dir && `dir-${dir}`], 'data-testid': 'row-direction', 'data-direction': dir || 'none',
    title: dir === 'in' ? 'Last mail received from the customer' : dir === 'out' ? 'Last mail sent by an agent' : 'No mail yet',
  }, dir === 'in' ? '↙' : dir === 'out' ? '↗' : '·');
  const badges = h('span', { class: 'row-badges' });
  if (i.reopened) badges.appendChild(h('span', { class: 'badge badge-reopened', 'data-testid': 'row-reopened', title: 'Reopened' }, '↺'));
  if (i.new_in_conversation > 0) {
    badges.appendChild(h('span', {
      class: 'badge badge-count', 'data-testid': 'row-count',
      title: `${i.new_in_conversation} newer thread(s) in this conversation not handled yet`,
    }, `+${i.new_in_conversation}`));
  }
  if (i.unread) {
    badges.appendChild(h('span', { class: 'badge badge-unread', 'data-testid': 'row-unread-badge', title: `${i.unread_count || 0} unread mail(s)` },
      String(i.unread_count || '•')));
  }
  const who = contactName(i.contact) || (i.contact && i.contact.email) || '—';
  const when = (lm && lm.at) || i.updated_at || i.created_at;
  const attrs = {
    class: ['row', i.unread && 'unread', i.status !== 'open' && 'closed', state.selected === i.id && 'selected'],
    'data-testid': opts.testid || 'interaction-row',
    'data-interaction-id': i.id,
    'data-unread': i.unread ? 'true' : 'false',
    'data-status': i.status,
    tabIndex: 0,
    role: 'button',
  };
  // The preview on hover; an account with show_preview = false sends it empty: then nothing is shown.
  if (lm && lm.preview) attrs.title = lm.preview;
  const el = h('div', attrs,
    h('div', { class: 'row-l1' },
      arrow,
      h('span', { class: 'row-who', title: i.contact && i.contact.email ? i.contact.email : null }, who),
      badges,
      h('span', { class: 'row-time', title: fmtFull(when) }, fmtTime(when))),
    h('div', { class: 'row-l2' },
      h('span', { class: 'row-subject' }, i.subject || '(no subject)')),
    h('div', { class: 'row-l3' },
      h('span', { class: 'row-id' }, `#${i.id}`),
      h('span', { class: 'row-acct', title: `account ${i.account}, queue ${i.queue}` }, `${i.account} · ${i.queue}`),
      i.owner ? h('span', { class: 'row-owner', title: 'owner' }, `@${i.owner}`) : h('span', { class: 'row-owner none' }, 'unassigned'),
      i.status !== 'open' ? h('span', { class: `row-status st-${i.status}` }, i.status.replace('_', ' ')) : null,
      i.substatus ? h('span', { class: 'row-substatus' }, i.substatus) : null,
      (i.tags || []).map((t) => h('span', { class: 'tag' }, t))));
  return el;
}

function render() {
  if (!els) return;
  const rows = state.items.map((i) => {
    const el = row(i);
    el.addEventListener('click', () => open(i.id));
    el.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') open(i.id);
    });
    return el;
  });
  const scroll = els.list.scrollTop;
  clear(els.list);
  if (state.error) {
    els.list.appendChild(h('div', { class: 'list-empty list-error', 'data-testid': 'list-error' }, state.error.message));
  } else if (!rows.length) {
    els.list.appendChild(h('div', { class: 'list-empty', 'data-testid': 'list-empty' }, state.q || state.advanced ? 'Nothing matches.' : 'No interactions.'));
  }
  for (const r of rows) els.list.appendChild(r);
  if (state.nextCursor) {
    els.list.appendChild(h('button', { type: 'button', class: 'btn load-more', 'data-testid': 'list-load-more', onclick: loadMore }, 'Load more'));
  }
  els.list.scrollTop = scroll;
  els.count.textContent = `${state.items.length}${state.nextCursor ? '+' : ''}`;
}

function open(id) {
  state.selected = id;
  for (const el of els.list.querySelectorAll('.row.selected')) el.classList.remove('selected');
  const el = els.list.querySelector(`[data-interaction-id="${CSS.escape(String(id))}"]`);
  if (el) el.classList.add('selected');
  bus.emit('open-interaction', id);
}

/** Replace one row in place with a fresh view (and keep its place). */
function updateRow(view) {
  if (!view || view.id == null) return;
  const idx = state.items.findIndex((i) => i.id === view.id);
  if (idx < 0) return;
  state.items[idx] = Object.assign({}, state.items[idx], view);
  render();
}

const refreshSoon = debounce(() => reload({ keep: true }), 400);

/** Build the pane (once) and load. */
export function mount() {
  if (mounted) {
    reset();
    return;
  }
  mounted = true;
  const pane = document.getElementById('list-pane');
  els = {
    filters: document.getElementById('list-filters'),
    search: document.getElementById('list-search'),
    list: document.getElementById('list'),
    count: h('span', { class: 'list-count', 'data-testid': 'list-count' }),
  };
  pane.classList.add('mounted');
  els.search.before(h('div', { class: 'pane-title' }, 'Interactions ', els.count,
    h('span', { class: 'spacer' }),
    h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'filter-reset', title: 'Reset the filters', onclick: resetFilters }, 'Reset filters'),
    h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'list-refresh', title: 'Refresh', onclick: () => reload({ keep: true }) }, '⟳')));
  loadFilters();
  buildFilters();
  buildSearch();

  bus.on('ws:interaction_updated', (f) => {
    updateRow(f.interaction);
    refreshSoon();
  });
  bus.on('ws:message_added', refreshSoon);
  // The agent's own new work shows at once: `assigned` follows the claim's
  // commit, so the list read now has it (the debounce left "No interactions"
  // beside a just-accepted thread for half a second).
  bus.on('ws:assigned', () => reload({ keep: true }));
  bus.on('ws:offer_rescinded', refreshSoon);
  bus.on('interaction-changed', (view) => {
    if (view && typeof view === 'object') updateRow(view);
    refreshSoon();
  });
  bus.on('open-interaction', (id) => {
    if (state.selected !== id) {
      state.selected = id;
      render();
    }
    // Opening marks it read for its owner: show that.
    setTimeout(refreshSoon, 600);
  });
  bus.on('logged-in', reset);
  // Unassigned work and other agents' changes send no frame to this desk: a slow poll while visible.
  setInterval(() => {
    if (session.token && !document.hidden && !state.loading) reload({ keep: true });
  }, 20000);
  reload();
}

function reset() {
  state.filters = { scope: '', status: '', unread: '', agent: '', tags: [], from: '' };
  state.q = '';
  state.selected = null;
  loadFilters();
  buildFilters();
  buildSearch();
  reload();
}

/** Set some filters (e.g. {scope: 'me', status: 'open'}) and reload. */
export function setFilters(values) {
  Object.assign(state.filters, values);
  saveFilters();
  if (els) buildFilters();
  return reload();
}

/** For other modules: the loaded rows. */
export function items() {
  return state.items;
}
