// The desk's WebSocket (docs/protocol.md): GET /ws?token=TOKEN.
// Every server frame is emitted on the bus as `ws:<type>`. Commands carry a
// req_id so `send` can resolve with the matching `ok` (or reject with the
// `error`). Reconnects with exponential backoff; a 4001 close means the
// token was revoked (logout, supervisor logout, expiry) and logs the desk out.

import { bus } from './bus.js';
import { session } from './api.js';

let socket = null;
let wanted = false; // true between connect() and disconnect()
let attempt = 0;
let reconnectTimer = null;
let pingTimer = null;
let nextReq = 1;
const pending = new Map(); // req_id → {resolve, reject, timer}
let state = 'closed';

function setState(s) {
  state = s;
  bus.emit('ws-state', s);
}

/** 'connecting' | 'open' | 'closed' */
export function wsState() {
  return state;
}

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws?token=${encodeURIComponent(session.token || '')}`;
}

/** Open the socket (after login). Idempotent. */
export function connect() {
  wanted = true;
  if (socket && (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING)) return;
  clearTimeout(reconnectTimer);
  if (!session.token) return;
  setState('connecting');
  const ws = new WebSocket(wsUrl());
  socket = ws;
  ws.addEventListener('open', () => {
    if (socket !== ws) return;
    attempt = 0;
    setState('open');
  });
  ws.addEventListener('message', (ev) => {
    if (socket !== ws) return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === 'hello') startPing(frame.heartbeat_secs);
    if ((frame.type === 'ok' || frame.type === 'error') && frame.req_id != null && pending.has(frame.req_id)) {
      const p = pending.get(frame.req_id);
      pending.delete(frame.req_id);
      clearTimeout(p.timer);
      if (frame.type === 'ok') p.resolve(frame);
      else p.reject(Object.assign(new Error(frame.message || frame.code), { code: frame.code, frame }));
    }
    bus.emit('ws:' + frame.type, frame);
  });
  ws.addEventListener('close', (ev) => {
    if (socket !== ws) return;
    socket = null;
    stopPing();
    failPending('socket closed');
    setState('closed');
    if (ev.code === 4001) {
      // Token revoked or expired: the session is over.
      wanted = false;
      session.clear();
      bus.emit('logged-out', { reason: 'revoked' });
      return;
    }
    if (wanted) scheduleReconnect();
  });
  ws.addEventListener('error', () => {
    // 'close' follows; a 401 at the handshake shows up here too (no socket opens).
  });
}

function scheduleReconnect() {
  clearTimeout(reconnectTimer);
  // 0.5 s, 1 s, 2 s … capped at 15 s, with jitter so many tabs do not reconnect in step.
  const base = Math.min(15000, 500 * 2 ** attempt);
  attempt += 1;
  const delay = base / 2 + Math.random() * (base / 2);
  reconnectTimer = setTimeout(async () => {
    if (!wanted) return;
    // A refused handshake (401) is indistinguishable from a network error in
    // the browser: ask /me whether the token still holds before retrying.
    try {
      const res = await fetch('/api/v1/me', { headers: { Authorization: `Bearer ${session.token}` } });
      if (res.status === 401) {
        wanted = false;
        session.clear();
        bus.emit('logged-out', { reason: 'expired' });
        return;
      }
    } catch {
      // server down: keep trying
    }
    connect();
  }, delay);
}

// Browsers answer the server's WebSocket pings by themselves; the app-level
// ping also lets us notice a dead connection (no answer) and reconnect.
function startPing(heartbeatSecs) {
  stopPing();
  const every = Math.max(5, Number(heartbeatSecs) || 15) * 1000;
  pingTimer = setInterval(() => {
    send({ type: 'ping' }, every * 2).catch(() => {
      if (socket) socket.close();
    });
  }, every);
}

function stopPing() {
  clearInterval(pingTimer);
  pingTimer = null;
}

function failPending(why) {
  for (const [, p] of pending) {
    clearTimeout(p.timer);
    p.reject(Object.assign(new Error(why), { code: 'disconnected' }));
  }
  pending.clear();
}

/**
 * Send a command frame. Returns a Promise of the server's `ok` frame; rejects
 * with an Error carrying `code` on an `error` frame, a closed socket or no
 * answer within `timeoutMs`.
 */
export function send(frame, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      reject(Object.assign(new Error('not connected'), { code: 'disconnected' }));
      return;
    }
    const req_id = frame.req_id != null ? frame.req_id : nextReq++;
    const timer = setTimeout(() => {
      pending.delete(req_id);
      reject(Object.assign(new Error('no answer'), { code: 'timeout' }));
    }, timeoutMs);
    pending.set(req_id, { resolve, reject, timer });
    socket.send(JSON.stringify(Object.assign({}, frame, { req_id })));
  });
}

// Back from sleep or a network change: try at once instead of waiting out the backoff.
function reconnectNow() {
  if (wanted && !socket && session.token) {
    clearTimeout(reconnectTimer);
    attempt = 0;
    connect();
  }
}
window.addEventListener('online', reconnectNow);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) reconnectNow();
});

/** Close the socket and stop reconnecting (logout). */
export function disconnect() {
  wanted = false;
  clearTimeout(reconnectTimer);
  stopPing();
  if (socket) {
    const s = socket;
    socket = null;
    s.close(1000, 'logout');
  }
  failPending('disconnected');
  setState('closed');
}
