// Boot: restore the session (token in localStorage) or show the login form;
// then build the top bar (presence, view switch, user menu), mount the
// panes, and connect the WebSocket.

import { api, session, login, restore, logout } from './api.js';
import { bus } from './bus.js';
import * as ws from './ws.js';
import { h, clear, toast, modal } from './ui.js';
import * as offers from './offers.js';
import * as list from './list.js';
import * as search from './search.js';
import * as supervisor from './supervisor.js';
import { mount as mountThread } from './thread.js';
import { mount as mountSide } from './sidepanel.js';
import { mount as mountDrafts } from './drafts.js';

const PAUSE_REASONS = ['Break', 'Lunch', 'Meeting', 'Training', 'Back office', 'Other'];
const DISPOSITION = 'disposition';

const $ = (id) => document.getElementById(id);

let presence = { status: 'offline', reason: null };
// Set while this tab's own set_presence is on its way: a `presence` frame
// that pauses the agent outside such a request was imposed (a supervisor's
// force-pause, `missed offers`, or another tab) and is shown as a banner.
let ownRequest = null; // {status, reason, at}
let imposed = false;
let mounted = false;

// ---- login ---------------------------------------------------------------------

function showLogin(message) {
  $('desk').hidden = true;
  $('login-view').hidden = false;
  const err = document.querySelector('[data-testid=login-error]');
  if (message) {
    err.textContent = message;
    err.hidden = false;
  } else {
    err.hidden = true;
    err.textContent = '';
  }
  $('login-password').value = '';
  $('login-username').focus();
}

function wireLogin() {
  const form = $('login-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const submit = form.querySelector('[data-testid=login-submit]');
    const err = form.querySelector('[data-testid=login-error]');
    submit.disabled = true;
    err.hidden = true;
    try {
      await login($('login-username').value.trim(), $('login-password').value);
      startDesk();
    } catch (ex) {
      err.textContent = ex.status === 401 ? 'Wrong username or password.' : `Login failed: ${ex.message}`;
      err.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
}

// ---- presence ------------------------------------------------------------------

function onPresenceFrame(f) {
  // The `presence` frame of our own request may come before or after its `ok`.
  const r = ownRequest;
  const mine = r && Date.now() - r.at < 10000 && r.status === f.status && (r.reason || null) === (f.reason || null);
  if (f.status === 'paused' && !mine && f.reason !== DISPOSITION) imposed = true;
  if (f.status !== 'paused') imposed = false;
  setPresence(f);
}

function setPresence(p) {
  if (!p) return;
  presence = { status: p.status, reason: p.reason == null ? null : p.reason };
  if (session.me) session.me.presence = Object.assign({}, session.me.presence, presence);
  renderPresence();
}

function renderPresence() {
  const root = $('presence');
  const paused = presence.status === 'paused';
  const disp = paused && presence.reason === DISPOSITION;
  const label = paused ? `paused${presence.reason ? ` — ${presence.reason}` : ''}` : presence.status;
  const stateEl = h('span', {
    class: ['presence-state', `ps-${presence.status}`], 'data-testid': 'presence-state', 'data-status': presence.status,
    'data-reason': presence.reason || '',
  }, h('span', { class: 'dot' }), label);
  const controls = [];
  if (paused) {
    controls.push(h('button', {
      type: 'button', class: 'btn btn-small', 'data-testid': 'resume-button', disabled: disp,
      title: disp ? 'Close your interaction with a disposition to be back online' : 'Back online',
      onclick: () => changePresence('online', null),
    }, 'Resume'));
  } else {
    controls.push(h('button', {
      type: 'button', class: 'btn btn-small', 'data-testid': 'pause-button', disabled: presence.status === 'offline',
      title: 'Pause: no new offers', onclick: askPause,
    }, 'Pause'));
  }
  clear(root, stateEl, controls);
  // The mandatory disposition pause, as a banner over the desk.
  const banners = $('banners');
  const existing = banners.querySelector('[data-testid=disposition-pause-banner]');
  if (disp && !existing) {
    banners.appendChild(h('div', { class: 'banner banner-warn', 'data-testid': 'disposition-pause-banner', role: 'alert' },
      h('strong', null, 'Paused for a disposition. '),
      'This queue requires a disposition: close your interaction with one (Close & dispose) to receive new work. ',
      h('button', {
        type: 'button', class: 'btn btn-small', 'data-testid': 'disposition-pause-show',
        onclick: () => {
          showView('agent');
          list.setFilters({ scope: 'me', status: 'open' });
        },
      }, 'Show my open interactions')));
  } else if (!disp && existing) {
    existing.remove();
  }
  const forced = banners.querySelector('[data-testid=imposed-pause-banner]');
  if (forced) forced.remove();
  if (paused && !disp && imposed) {
    banners.appendChild(h('div', { class: 'banner banner-warn', 'data-testid': 'imposed-pause-banner', role: 'status' },
      h('strong', null, 'You were paused'), presence.reason ? ` (${presence.reason})` : '',
      '. No new offers come until you resume.'));
  }
}

async function changePresence(status, reason) {
  ownRequest = { status, reason: reason || null, at: Date.now() };
  imposed = false;
  try {
    const ok = await ws.send({ type: 'set_presence', status, reason: reason || undefined });
    setPresence({ status: ok.status, reason: ok.reason });
  } catch (e) {
    toast(`Presence: ${e.message}`, 'error');
  }
}

async function askPause() {
  const sel = h('select', { 'data-testid': 'pause-reason', 'aria-label': 'Pause reason' },
    PAUSE_REASONS.map((r) => h('option', { value: r }, r)));
  const other = h('input', { type: 'text', 'data-testid': 'pause-reason-other', placeholder: 'Reason', maxLength: 200, hidden: true });
  sel.addEventListener('change', () => {
    other.hidden = sel.value !== 'Other';
    if (!other.hidden) other.focus();
  });
  const reason = await modal('Pause', h('div', { class: 'form-col' }, h('label', null, 'Reason ', sel), other), [
    { label: 'Cancel', value: null },
    {
      label: 'Pause', kind: 'primary', testid: 'pause-confirm',
      value: () => (sel.value === 'Other' ? other.value.trim() || 'Other' : sel.value),
    },
  ], { testid: 'pause-dialog' });
  if (reason) changePresence('paused', reason);
}

// ---- top bar -----------------------------------------------------------------------

function renderTopbar() {
  const me = session.agent;
  clear($('user-menu'),
    h('span', { class: 'user-name', 'data-testid': 'user-name', title: `${me.username} (${me.role})` }, me.name || me.username),
    h('span', { class: 'user-role' }, me.role),
    h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'logout-button', onclick: doLogout }, 'Log out'));
  const sw = $('view-switch');
  if (session.isSupervisor) {
    const agentBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'view-agent', onclick: () => showView('agent') }, 'Agent');
    const supBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'view-supervisor', onclick: () => showView('supervisor') }, 'Supervisor');
    clear(sw, agentBtn, supBtn);
    sw.hidden = false;
  } else {
    clear(sw);
    sw.hidden = true;
  }
  clear($('notify-slot'), offers.notifyButton());
  renderPresence();
}

let view = 'agent';

function showView(v) {
  if (v === 'supervisor' && !session.isSupervisor) v = 'agent';
  view = v;
  $('agent-view').hidden = v !== 'agent';
  $('supervisor-view').hidden = v !== 'supervisor';
  for (const b of $('view-switch').querySelectorAll('button')) {
    b.classList.toggle('active', b.dataset.testid === `view-${v}`);
    b.setAttribute('aria-pressed', b.dataset.testid === `view-${v}` ? 'true' : 'false');
  }
  if (v === 'supervisor') supervisor.show();
  else supervisor.hide();
}

function wsIndicator(s) {
  const el = $('ws-indicator');
  el.className = `ws-indicator ws-${s}`;
  el.dataset.state = s;
  el.title = s === 'open' ? 'connected' : s === 'connecting' ? 'connecting…' : 'disconnected — reconnecting';
  // Quiet while connected; says so while it is not (the presence dot already shows online).
  el.textContent = s === 'open' ? '' : s === 'connecting' ? 'connecting…' : 'reconnecting…';
}

async function doLogout() {
  ws.disconnect();
  await logout(); // emits logged-out
}

// ---- boot ---------------------------------------------------------------------------

function startDesk() {
  $('login-view').hidden = true;
  $('desk').hidden = false;
  setPresence(session.me.presence || { status: 'offline', reason: null });
  renderTopbar();
  if (!mounted) {
    mounted = true;
    offers.mount();
    list.mount();
    search.mount();
    supervisor.mount();
    for (const [name, fn] of [['thread', mountThread], ['side panel', mountSide], ['drafts', mountDrafts]]) {
      try {
        fn();
      } catch (e) {
        console.error(`mounting ${name} failed`, e);
      }
    }
  } else {
    bus.emit('logged-in', session.me);
  }
  showView('agent');
  ws.connect();
}

function wireBus() {
  bus.on('ws:hello', (f) => setPresence(f.presence));
  bus.on('ws:presence', onPresenceFrame);
  bus.on('ws-state', (s) => {
    wsIndicator(s);
    if (s === 'closed' && presence.status !== 'offline') setPresence({ status: 'offline', reason: null });
  });
  bus.on('logged-out', (info) => {
    imposed = false;
    ws.disconnect();
    showLogin(info && info.reason === 'revoked' ? 'You were logged out.' : info && info.reason === 'expired' ? 'Your session expired.' : '');
  });
  bus.on('show-view', showView);
}

async function boot() {
  wireLogin();
  wireBus();
  wsIndicator('closed');
  let me = null;
  try {
    me = await restore();
  } catch (e) {
    showLogin(`The server did not answer: ${e.message}`);
    return;
  }
  if (me) startDesk();
  else showLogin();
}

// Exposed for debugging in the console and for tests.
window.mailroomDesk = { api, session, bus, ws };

boot();
