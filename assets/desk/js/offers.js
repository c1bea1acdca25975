// Offer cards (docs/protocol.md, docs/routing.md "The life of an offer").
// A card per `offer` frame with accept / reject and a countdown to its
// `expires_at`; a short WebAudio tone (no audio file is fetched); a desktop
// Notification when the agent allowed them. `offer_rescinded` removes the
// card (`taken` → a toast); `assigned` opens the interaction.

import { api, session } from './api.js';
import { bus } from './bus.js';
import { send } from './ws.js';
import { h, clear, toast } from './ui.js';

const cards = new Map(); // offer_id → {el, timer, frame, notification}
let root = null;
let audio = null;

// ---- sound ---------------------------------------------------------------------

function audioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  if (!audio) audio = new Ctx();
  return audio;
}

// Browsers only let an AudioContext play after a user gesture: create and
// resume it on the first click or key press, so later offers can ring.
function unlockAudio() {
  const ctx = audioContext();
  if (ctx && ctx.state === 'suspended') ctx.resume().catch(() => {});
}

/** Two short sine beeps, made in the page. */
export function ring() {
  const ctx = audioContext();
  if (!ctx) return;
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  const t0 = ctx.currentTime + 0.01;
  for (const [start, freq] of [[0, 880], [0.18, 1175]]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t0 + start);
    gain.gain.exponentialRampToValueAtTime(0.25, t0 + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + start + 0.15);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + start);
    osc.stop(t0 + start + 0.16);
  }
}

// ---- desktop notifications --------------------------------------------------------

function notificationsSupported() {
  return typeof window.Notification === 'function';
}

/** A button asking for the permission once; hidden when it is already decided. */
export function notifyButton() {
  if (!notificationsSupported() || Notification.permission !== 'default') return null;
  const btn = h('button', {
    type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'notify-enable',
    title: 'Show a desktop notification for each offer',
    onclick: async () => {
      try {
        await Notification.requestPermission();
      } catch {
        // old callback-style API or refused: nothing to do
      }
      btn.remove();
    },
  }, 'Enable notifications');
  return btn;
}

function desktopNotify(f) {
  if (!notificationsSupported() || Notification.permission !== 'granted') return null;
  try {
    const n = new Notification(`New mail offer: ${f.subject || '(no subject)'}`, {
      body: `${f.from || ''}${f.queue ? ` — ${f.queue}` : ''}`,
      tag: `offer-${f.offer_id}`,
      requireInteraction: false,
    });
    n.addEventListener('click', () => {
      window.focus();
      n.close();
    });
    return n;
  } catch {
    return null; // some browsers only allow notifications from a service worker
  }
}

// ---- cards ---------------------------------------------------------------------------

// The tab's title counts the offers waiting, for an agent working in another window.
const baseTitle = document.title;
function updateTitle() {
  document.title = cards.size ? `(${cards.size}) ${baseTitle}` : baseTitle;
}

function removeCard(offerId) {
  const c = cards.get(offerId);
  if (!c) return null;
  cards.delete(offerId);
  clearInterval(c.timer);
  if (c.notification) c.notification.close();
  c.el.remove();
  updateTitle();
  return c;
}

function secondsLeft(c) {
  return Math.max(0, Math.ceil((c.deadline - Date.now()) / 1000));
}

function onOffer(f) {
  if (cards.has(f.offer_id)) return;
  // The deadline in this browser's clock: the server's `at` and `expires_at`
  // give the time left, whatever the skew between the two clocks.
  const serverNow = Date.parse(f.at);
  const expires = Date.parse(f.expires_at);
  const left = Number.isFinite(serverNow) && Number.isFinite(expires) ? expires - serverNow : 30000;
  const c = { frame: f, deadline: Date.now() + left, busy: false };
  const countdown = h('span', { class: 'offer-countdown', 'data-testid': 'offer-countdown', title: 'seconds left to answer' });
  const bar = h('div', { class: 'offer-bar' });
  const accept = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'offer-accept', onclick: () => answer(c, 'accept') }, 'Accept');
  const reject = h('button', { type: 'button', class: 'btn', 'data-testid': 'offer-reject', onclick: () => answer(c, 'reject') }, 'Reject');
  c.buttons = [accept, reject];
  c.el = h('div', {
    class: 'offer', 'data-testid': 'offer', 'data-interaction-id': f.interaction_id, 'data-offer-id': f.offer_id, role: 'alertdialog',
    'aria-label': `Offer: ${f.subject || ''}`,
  },
  h('div', { class: 'offer-head' },
    h('span', { class: 'offer-title' }, '✉ New mail'),
    h('span', { class: 'offer-queue' }, [f.account, f.queue].filter(Boolean).join(' · ')),
    countdown),
  h('div', { class: 'offer-subject', 'data-testid': 'offer-subject' }, f.subject || '(no subject)'),
  h('div', { class: 'offer-from', 'data-testid': 'offer-from' }, f.from || ''),
  f.preview ? h('div', { class: 'offer-preview' }, f.preview) : null,
  bar,
  h('div', { class: 'offer-buttons' }, reject, accept));
  const total = Math.max(1, left);
  const tick = () => {
    const s = secondsLeft(c);
    countdown.textContent = `${s}s`;
    bar.style.width = `${Math.max(0, Math.min(100, ((c.deadline - Date.now()) / total) * 100))}%`;
    c.el.classList.toggle('urgent', s <= 5);
    // The server rescinds on timeout; if that frame is lost, the card still goes.
    if (Date.now() > c.deadline + 5000) removeCard(f.offer_id);
  };
  tick();
  c.timer = setInterval(tick, 250);
  cards.set(f.offer_id, c);
  root.appendChild(c.el);
  updateTitle();
  ring();
  c.notification = desktopNotify(f);
}

async function answer(c, type) {
  if (c.busy) return;
  c.busy = true;
  for (const b of c.buttons) b.disabled = true;
  const f = c.frame;
  try {
    await send({ type, offer_id: f.offer_id });
    removeCard(f.offer_id);
    // An accept is followed by `assigned` (before or after the `ok`), which opens it.
    if (type === 'reject') watchAfterReject(f);
  } catch (e) {
    removeCard(f.offer_id);
    if (e.code === 'offer_gone') toast(`The offer for “${f.subject || '#' + f.interaction_id}” is gone (taken or timed out).`, 'warn');
    else if (e.code === 'over_capacity') toast('You are at capacity: close an interaction first.', 'warn');
    else toast(`${type === 'accept' ? 'Accept' : 'Reject'} failed: ${e.message}`, 'error');
  }
}

// After a reject the server says nothing more about the offer (protocol.md).
// The agent still wants to know who took it, as the guide shows: watch the
// interaction for a short while (agents of the queue may read it) and tell
// when another agent owns it.
function watchAfterReject(f) {
  const me = session.agent && session.agent.username;
  const until = Date.now() + 120000;
  let delay = 1000;
  const check = async () => {
    if (!session.token || Date.now() > until) return;
    try {
      const i = await api.get(`/interactions/${encodeURIComponent(f.interaction_id)}`);
      if (i.owner && i.owner !== me) {
        toast(`“${i.subject || '#' + i.id}” was taken by another agent (${i.owner}).`, 'info');
        return;
      }
      if (i.status !== 'open') return;
    } catch {
      return; // not readable (another queue) or gone
    }
    delay = Math.min(5000, delay * 1.5);
    setTimeout(check, delay);
  };
  setTimeout(check, delay);
}

function onRescinded(f) {
  const c = removeCard(f.offer_id);
  const subject = c ? c.frame.subject || `#${f.interaction_id}` : `#${f.interaction_id}`;
  if (f.reason === 'taken') {
    toast(`“${subject}” was taken by another agent.`, 'info');
  } else if (f.reason === 'timeout' && c) {
    toast(`The offer for “${subject}” timed out.`, 'warn');
  } else if (c) {
    toast(`The offer for “${subject}” was withdrawn.`, 'info');
  }
}

function onAssigned(f) {
  for (const [id, c] of cards) if (String(c.frame.interaction_id) === String(f.interaction_id)) removeCard(id);
  if (f.via === 'transfer') toast(`Interaction #${f.interaction_id} was transferred to you.`, 'info');
  if (f.via === 'reopen') toast(`Interaction #${f.interaction_id} was reopened and assigned to you.`, 'info');
  bus.emit('open-interaction', f.interaction_id);
}

function clearAll() {
  for (const id of [...cards.keys()]) removeCard(id);
}

let mounted = false;

/** Listen for offers (once). */
export function mount() {
  if (mounted) return;
  mounted = true;
  root = document.getElementById('offers');
  clear(root);
  bus.on('ws:offer', onOffer);
  bus.on('ws:offer_rescinded', onRescinded);
  bus.on('ws:assigned', onAssigned);
  bus.on('logged-out', clearAll);
  // A new socket (reconnect) gets fresh offers; the old cards are stale.
  bus.on('ws:hello', clearAll);
  document.addEventListener('click', unlockAudio, { capture: true });
  document.addEventListener('keydown', unlockAudio, { capture: true });
}
