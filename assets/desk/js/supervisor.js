// The supervisor view (docs/routing.md "Supervisors", docs/working.md
// "Notes"): queue status, agent status with pause / resume / logout, every
// interaction with a spy button (read-only in the thread view) and a note
// for the agent (`for_agent: true`). Refreshed every 5 s while visible.

import { api, session } from './api.js';
import { bus } from './bus.js';
import { h, clear, toast, confirmDialog, fmtTime, fmtFull, modal } from './ui.js';
import { row } from './list.js';

const REFRESH_MS = 5000;

let els = null;
let timer = null;
let visible = false;
let spied = null; // the interaction view being spied
const filter = { status: 'open', q: '' };

function secs(s) {
  if (s == null) return '—';
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function table(headers, rows) {
  return h('table', { class: 'grid' },
    h('thead', null, h('tr', null, headers.map((t) => h('th', null, t)))),
    h('tbody', null, rows));
}

async function loadQueues() {
  const queues = await api.get('/supervisor/queues');
  clear(els.queues, table(['Queue', 'Strategy', 'Waiting', 'Offered', 'Oldest wait', 'Online', 'Paused', 'Full', 'Offline'],
    queues.map((q) => h('tr', { 'data-testid': 'sup-queue-row', 'data-queue': q.name, class: q.waiting > 0 ? 'waiting' : null },
      h('td', null, q.name),
      h('td', null, q.strategy),
      h('td', { class: 'num', 'data-testid': 'sup-queue-waiting' }, String(q.waiting)),
      h('td', { class: 'num' }, String(q.offered)),
      h('td', { class: 'num' }, secs(q.oldest_wait_secs)),
      h('td', { class: 'num' }, String(q.agents.online)),
      h('td', { class: 'num' }, String(q.agents.paused)),
      h('td', { class: 'num' }, String(q.agents.full)),
      h('td', { class: 'num' }, String(q.agents.offline))))));
}

async function agentAction(a, what) {
  const name = a.agent.name || a.agent.username;
  try {
    if (what === 'pause') {
      const reason = await modal(`Pause ${name}`, h('input', { type: 'text', 'data-testid': 'sup-pause-reason', placeholder: 'Reason (optional)', maxLength: 200 }), [
        { label: 'Cancel', value: null },
        { label: 'Pause', kind: 'primary', testid: 'sup-pause-confirm', value: () => document.querySelector('[data-testid=sup-pause-reason]').value.trim() || '' },
      ]);
      if (reason === null) return;
      await api.post(`/agents/${encodeURIComponent(a.agent.id)}/pause`, reason ? { reason } : {});
      toast(`${name} is paused.`, 'success');
    } else if (what === 'resume') {
      await api.post(`/agents/${encodeURIComponent(a.agent.id)}/resume`);
      toast(`${name} is back online.`, 'success');
    } else if (what === 'logout') {
      if (!(await confirmDialog(`Log ${name} out of every tab?`, { yes: 'Log out', danger: true }))) return;
      await api.post(`/agents/${encodeURIComponent(a.agent.id)}/logout`);
      toast(`${name} was logged out.`, 'success');
    }
  } catch (e) {
    toast(`${what}: ${e.message}`, 'error');
  }
  refresh();
}

async function loadAgents() {
  const agents = await api.get('/supervisor/agents');
  const me = session.agent && session.agent.id;
  // The server lets only an admin log out a supervisor or an admin (403
  // otherwise): offer the button only where it can work.
  const iAmAdmin = session.agent && session.agent.role === 'admin';
  const mayLogOut = (a) => a.agent.id !== me && (iAmAdmin || a.agent.role === 'agent');
  clear(els.agents, table(['Agent', 'Presence', 'Since', 'Owned', 'Idle', 'Queues', ''],
    agents.map((a) => {
      const p = a.presence || {};
      const label = p.status === 'paused' ? `paused${p.reason ? ` — ${p.reason}` : ''}` : p.status;
      return h('tr', { 'data-testid': 'sup-agent-row', 'data-agent-id': a.agent.id, 'data-username': a.agent.username, 'data-status': p.status },
        h('td', { title: `${a.agent.username} (${a.agent.role})` }, a.agent.name || a.agent.username),
        h('td', { 'data-testid': 'sup-agent-presence' }, h('span', { class: ['presence-pill', `ps-${p.status}`] }, label)),
        h('td', { title: fmtFull(p.since) }, fmtTime(p.since)),
        h('td', { class: 'num' }, `${a.owned}/${a.capacity}`),
        h('td', { class: 'num' }, secs(a.idle_secs)),
        h('td', null, (a.queues || []).join(', ')),
        h('td', { class: 'actions' },
          p.status === 'paused'
            ? h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'sup-agent-resume', onclick: () => agentAction(a, 'resume') }, 'Resume')
            : h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'sup-agent-pause', onclick: () => agentAction(a, 'pause') }, 'Pause'),
          mayLogOut(a)
            ? h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-testid': 'sup-agent-logout', onclick: () => agentAction(a, 'logout') }, 'Log out')
            : null));
    })));
}

async function loadInteractions() {
  const q = { scope: 'all', limit: 100 };
  if (filter.status) q.status = filter.status;
  if (filter.q) q.q = filter.q;
  const page = await api.get('/interactions', q);
  const fresh = spied && (page.items || []).find((i) => i.id === spied.id);
  if (fresh) {
    const ownerChanged = fresh.owner !== spied.owner;
    spied = fresh;
    if (ownerChanged) renderNote();
  }
  const rows = (page.items || []).map((i) => {
    const r = row(i, { testid: 'sup-interaction-row' });
    r.classList.toggle('selected', spied && spied.id === i.id);
    r.appendChild(h('div', { class: 'row-actions' },
      h('button', {
        type: 'button', class: 'btn btn-small', 'data-testid': 'spy-button', title: 'Open read-only',
        onclick: (e) => {
          e.stopPropagation();
          spy(i);
        },
      }, 'Spy')));
    r.addEventListener('click', () => spy(i));
    return r;
  });
  clear(els.interactions, rows.length ? rows : h('div', { class: 'list-empty' }, 'No interactions.'));
}

/** Open an interaction read-only in the thread view, next to the supervisor panes, and aim the note at it. */
function spy(i) {
  spied = i;
  for (const el of els.interactions.querySelectorAll('.row.selected')) el.classList.remove('selected');
  const el = els.interactions.querySelector(`[data-interaction-id="${CSS.escape(String(i.id))}"]`);
  if (el) el.classList.add('selected');
  renderNote();
  bus.emit('spy', i.id);
  bus.emit('open-interaction', i.id);
}

function renderNote() {
  if (!spied) {
    clear(els.note, h('div', { class: 'muted' }, 'Spy an interaction to read it and leave a note for its agent.'));
    return;
  }
  const input = h('textarea', { 'data-testid': 'sup-note-input', rows: 2, placeholder: spied.owner ? `Note for ${spied.owner} (only they see it)` : 'No owner: a note for the agent needs an owner', maxLength: 10000 });
  const save = h('button', {
    type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'sup-note-save', disabled: !spied.owner,
    onclick: async () => {
      const text = input.value.trim();
      if (!text) return;
      save.disabled = true;
      try {
        await api.post(`/interactions/${encodeURIComponent(spied.id)}/notes`, { text, for_agent: true });
        input.value = '';
        toast(`Note sent to ${spied.owner}.`, 'success');
        bus.emit('interaction-changed', { id: spied.id });
      } catch (e) {
        toast(`Note: ${e.message}`, 'error');
      } finally {
        save.disabled = !spied.owner;
      }
    },
  }, 'Send note');
  clear(els.note,
    h('div', { class: 'sup-note-head' }, h('strong', null, `Spying #${spied.id}`), ` ${spied.subject || ''}`,
      spied.owner ? h('span', { class: 'muted' }, ` — owner @${spied.owner}`) : h('span', { class: 'muted' }, ' — unassigned')),
    h('div', { class: 'sup-note' }, input, save));
}

async function refresh() {
  if (!visible || !session.isSupervisor) return;
  const results = await Promise.allSettled([loadQueues(), loadAgents(), loadInteractions()]);
  const failed = results.find((r) => r.status === 'rejected');
  els.status.textContent = failed ? `Refresh failed: ${failed.reason.message}` : `Updated ${new Date().toLocaleTimeString()}`;
  els.status.classList.toggle('error', Boolean(failed));
}

function build() {
  const root = document.getElementById('supervisor-view');
  const status = h('span', { class: 'muted sup-status', 'data-testid': 'sup-updated' });
  const statusSel = h('select', {
    'data-testid': 'sup-filter-status', 'aria-label': 'Status',
    onchange: (e) => {
      filter.status = e.target.value;
      loadInteractions().catch((err) => toast(err.message, 'error'));
    },
  }, [['open', 'Open'], ['', 'Any status'], ['closed', 'Closed'], ['closed_unmanaged', 'Closed unmanaged']].map(([v, t]) => h('option', { value: v, selected: v === filter.status }, t)));
  const search = h('input', { type: 'search', 'data-testid': 'sup-search', placeholder: 'Search', 'aria-label': 'Search interactions' });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      filter.q = search.value.trim();
      loadInteractions().catch((err) => toast(err.message, 'error'));
    }
  });
  els = {
    queues: h('div', { class: 'sup-queues', 'data-testid': 'sup-queues' }),
    agents: h('div', { class: 'sup-agents', 'data-testid': 'sup-agents' }),
    interactions: h('div', { class: 'list sup-list', 'data-testid': 'sup-interactions' }),
    note: h('div', { class: 'sup-note-box', 'data-testid': 'sup-note-box' }),
    threadSlot: h('div', { class: 'sup-thread-slot' }),
    status,
  };
  clear(root,
    h('div', { class: 'sup-left' },
      h('section', { class: 'sup-section' }, h('h2', null, 'Queues ', status), els.queues),
      h('section', { class: 'sup-section' }, h('h2', null, 'Agents'), els.agents),
      h('section', { class: 'sup-section sup-section-list' }, h('h2', null, 'Every interaction ', statusSel, search), els.interactions)),
    h('div', { class: 'sup-right' }, els.note, els.threadSlot));
  renderNote();
}

// The thread pane is moved next to the supervisor tables while this view is
// shown (spying reads the interaction in the same thread view), and put back
// before the side pane after. D2's modules keep their element references.
function borrowThread() {
  const pane = document.getElementById('thread-pane');
  if (pane && pane.parentElement !== els.threadSlot) els.threadSlot.appendChild(pane);
}

function returnThread() {
  const pane = document.getElementById('thread-pane');
  const side = document.getElementById('side-pane');
  if (pane && side && pane.parentElement !== side.parentElement) side.before(pane);
}

export function show() {
  if (!els) build();
  visible = true;
  borrowThread();
  refresh();
  clearInterval(timer);
  timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

export function hide() {
  visible = false;
  clearInterval(timer);
  timer = null;
  if (els) returnThread();
}

let mounted = false;

export function mount() {
  if (mounted) return;
  mounted = true;
  bus.on('logged-out', hide);
  bus.on('logged-in', () => {
    spied = null;
    if (els) renderNote();
  });
  // A spied interaction that changes: keep the note's owner right.
  bus.on('ws:interaction_updated', (f) => {
    if (spied && f.interaction && f.interaction.id === spied.id) {
      const ownerChanged = f.interaction.owner !== spied.owner;
      spied = f.interaction;
      if (ownerChanged) renderNote();
    }
  });
}
