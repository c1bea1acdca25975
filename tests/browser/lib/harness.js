// What every browser test needs: a mailroom of its own (the debug binary,
// a fresh SQLite file, port 0), a fresh mailbox on the test Dovecot for its
// account, real mail in through Postfix and out to a customer's Dovecot
// mailbox read over IMAP, and headless Debian chromium (playwright-core).
//
// The services' addresses come from scripts/services.sh's env file
// (MAILROOM_TEST_* lines); an environment variable of the same name wins.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SHOTS = path.join(ROOT, 'target', 'desk-screenshots');

/** Users provisioned in every server's config, each with password `pw-<name>`. */
export const USERS = [
  ['admin', 'admin'],
  ['sup', 'supervisor'],
  ['alice', 'agent'],
  ['bob', 'agent'],
];
export const password = (user) => `pw-${user}`;
/** Each agent's own address: a test-domain mailbox, so a mail can CC an agent. */
export const agentEmail = (user) => `${user}.agent@${serviceVar('MAILROOM_TEST_MAIL_DOMAIN')}`;

// --- services -----------------------------------------------------------

let envCache;
/** MAILROOM_TEST_* value: the environment, else the services' env file. A missing one is a failure, never a skip. */
export function serviceVar(name) {
  if (process.env[name]) return process.env[name];
  if (!envCache) {
    const dir = process.env.MAILROOM_SERVICES_DIR || '/var/tmp/mailroom-services';
    const file = path.join(dir, 'env');
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      throw new Error(`${file} is missing: run scripts/services.sh start (as root)`);
    }
    envCache = {};
    for (const line of text.split('\n')) {
      const m = /^\s*(?:export\s+)?([A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) envCache[m[1]] = m[2].trim().replace(/^(['"])(.*)\1$/, '$2');
    }
  }
  const value = envCache[name];
  if (!value) throw new Error(`${name} is neither set nor in the services' env file: run scripts/services.sh start`);
  return value;
}

function hostPort(name) {
  const addr = serviceVar(name);
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}

/** A mailbox nobody else uses: Dovecot lets any address of the test domain log in with the test password. */
export function freshAddress(prefix) {
  return `${prefix}${randomBytes(8).toString('hex')}@${serviceVar('MAILROOM_TEST_MAIL_DOMAIN')}`;
}

// --- the server -----------------------------------------------------------

function binary() {
  const bin = process.env.MAILROOM_BIN || path.join(ROOT, 'target', 'debug', 'mailroom');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: cargo build --bin mailroom`);
  return bin;
}

function configToml({ dbPath, mailbox, dispositionRequired, offerTimeout }) {
  const imap = hostPort('MAILROOM_TEST_IMAP_ADDR');
  const smtp = hostPort('MAILROOM_TEST_SMTP_ADDR');
  const pw = serviceVar('MAILROOM_TEST_MAIL_PASSWORD');
  let toml = `[http]
listen = "127.0.0.1:0"
[store]
url = "sqlite://${dbPath}"
[presence]
url = "memory://"
[bootstrap]
admin_password_file = ""
[log]
level = "info"
[outbox]
retry_first_secs = 1
retry_max_secs = 2
poll_secs = 1
`;
  for (const [user, role] of USERS) {
    toml += `[[agents]]
username = "${user}"
password = "${password(user)}"
name = "${user[0].toUpperCase()}${user.slice(1)} Test"
email = "${agentEmail(user)}"
role = "${role}"
capacity = 5
`;
  }
  toml += `[[queues]]
name = "support"
strategy = "ring_all"
sticky_secs = 0
offer_timeout_secs = ${offerTimeout}
disposition_required = ${dispositionRequired ? 'true' : 'false'}
agents = ["alice", "bob"]

[[accounts]]
key = "SERV"
address = "${mailbox}"
queue = "support"
imap = { host = "${imap.host}", port = ${imap.port}, tls = "none", username = "${mailbox}", password = "${pw}" }
smtp = { host = "${smtp.host}", port = ${smtp.port}, tls = "none", username = "${mailbox}", password = "" }
`;
  return toml;
}

/**
 * Start `target/debug/mailroom serve` with a fresh store and account mailbox.
 * Resolves when it logs `listening on http://ADDR`. Its log goes to
 * target/desk-logs/<name>.log (kept for failures).
 */
export async function startServer({ name = 'desk', dispositionRequired = true, offerTimeout = 300 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailroom-desk-'));
  const mailbox = freshAddress('desk-');
  const config = path.join(dir, 'mailroom.toml');
  fs.writeFileSync(config, configToml({ dbPath: path.join(dir, 'mailroom.db'), mailbox, dispositionRequired, offerTimeout }));
  const logDir = path.join(ROOT, 'target', 'desk-logs');
  fs.mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${name}.log`);
  const log = fs.createWriteStream(logFile);
  const proc = spawn(binary(), ['serve', '--config', config], {
    cwd: dir,
    env: {
      ...process.env,
      RUST_LOG: 'info',
      NO_COLOR: '1',
      // Working on the desktop: MAILROOM_DESK_DIR=assets/desk serves the files from disk (docs/desktop.md).
      ...(process.env.MAILROOM_DESK_DIR ? { MAILROOM_DESK_DIR: path.resolve(ROOT, process.env.MAILROOM_DESK_DIR) } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no "listening on" within 60 s; log: ${logFile}`)), 60_000);
    const onData = (chunk) => {
      log.write(chunk);
      seen += chunk.toString('utf8');
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(seen.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mailroom exited with ${code} before listening; log: ${logFile}`));
    });
  });
  const server = {
    url,
    mailbox,
    dir,
    logFile,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      log.end();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    /** A token for `user` through the REST login. */
    async token(user) {
      const res = await fetch(`${url}/api/v1/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: user, password: password(user) }),
      });
      if (res.status !== 200) throw new Error(`login ${user}: ${res.status} ${await res.text()}`);
      return (await res.json()).token;
    },
    /** A REST call; throws on a non-2xx answer. */
    async api(token, method, p, body) {
      const res = await fetch(`${url}/api/v1${p}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
  };
  return server;
}

/** The disposition tree used by the close tests: Support › Solved › {First contact, Follow-up}; Sales › Won. */
export async function seedDispositions(server) {
  const admin = await server.token('admin');
  const mk = (name, parent) => server.api(admin, 'POST', '/dispositions', parent ? { name, parent } : { name });
  const support = await mk('Support');
  const solved = await mk('Solved', support.id);
  await mk('First contact', solved.id);
  await mk('Follow-up', solved.id);
  await mk('Unsolved', support.id);
  const sales = await mk('Sales');
  await mk('Won', sales.id);
}

// --- mail -------------------------------------------------------------------

/** Hand a mail to Postfix (loopback, no AUTH, no TLS), which delivers it to Dovecot. */
export async function sendMail(message) {
  const { host, port } = hostPort('MAILROOM_TEST_SMTP_ADDR');
  const transport = nodemailer.createTransport({ host, port, secure: false, ignoreTLS: true });
  try {
    return await transport.sendMail(message);
  } finally {
    transport.close();
  }
}

/**
 * Wait (up to `timeoutMs`) for a mail in `address`'s INBOX whose envelope
 * matches `pred(envelope)`; resolves with `{ envelope, bodyStructure, parts }`
 * where `parts` are the attachments with their decoded bytes.
 */
export async function waitForMail(address, pred, timeoutMs = 60_000) {
  const { host, port } = hostPort('MAILROOM_TEST_IMAP_ADDR');
  const deadline = Date.now() + timeoutMs;
  let lastSeen = [];
  while (Date.now() < deadline) {
    const client = new ImapFlow({
      host, port, secure: false, doSTARTTLS: false,
      auth: { user: address, pass: serviceVar('MAILROOM_TEST_MAIL_PASSWORD') },
      logger: false,
    });
    await client.connect();
    try {
      const lock = await client.getMailboxLock('INBOX');
      try {
        lastSeen = [];
        const exists = client.mailbox.exists;
        if (exists > 0) {
          // Collect first: ImapFlow cannot run another command (the
          // downloads) while a FETCH is being iterated.
          const found = [];
          for await (const msg of client.fetch('1:*', { uid: true, envelope: true, bodyStructure: true })) {
            lastSeen.push(msg.envelope.subject);
            if (pred(msg.envelope)) found.push(msg);
          }
          if (found.length) {
            const msg = found[0];
            const parts = [];
            for (const node of walk(msg.bodyStructure)) {
              const filename = node.dispositionParameters?.filename || node.parameters?.name;
              if (!filename) continue;
              const { content } = await client.download(String(msg.uid), node.part, { uid: true });
              const chunks = [];
              for await (const c of content) chunks.push(c);
              parts.push({ filename, type: node.type, bytes: Buffer.concat(chunks) });
            }
            return { envelope: msg.envelope, bodyStructure: msg.bodyStructure, parts };
          }
        }
      } finally {
        lock.release();
      }
    } finally {
      await client.logout().catch(() => {});
    }
    await sleep(500);
  }
  throw new Error(`no matching mail in ${address} within ${timeoutMs} ms; subjects seen: ${JSON.stringify(lastSeen)}`);
}

function* walk(node) {
  if (!node) return;
  yield node;
  for (const child of node.childNodes || []) yield* walk(child);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- the browser -------------------------------------------------------------

/**
 * Headless Debian chromium, with the flags this machine needs (docs/desktop.md).
 * playwright-core gives every launch a fresh, empty profile of its own (it
 * refuses a --user-data-dir argument) and removes it on close.
 */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.MAILROOM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/**
 * A new context and page for one person, recording what the page says: console
 * messages, page errors, dialogs (dismissed), CSP violations and failed requests.
 */
export async function openDesk(browser, server, { viewport = { width: 1440, height: 900 }, contextOptions = {}, initScript } = {}) {
  const context = await browser.newContext({ viewport, ...contextOptions });
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  const record = { console: [], errors: [], dialogs: [], requests: [] };
  page.on('console', (m) => record.console.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => record.errors.push(String(e)));
  page.on('dialog', async (d) => {
    record.dialogs.push({ type: d.type(), message: d.message() });
    await d.dismiss().catch(() => {});
  });
  page.on('request', (r) => record.requests.push({ method: r.method(), url: r.url() }));
  await page.goto(`${server.url}/`);
  return { context, page, record };
}

/** Log in through the form and wait for the desk (the presence indicator). */
export async function login(page, user) {
  await page.getByTestId('login-username').fill(user);
  await page.getByTestId('login-password').fill(password(user));
  await page.getByTestId('login-submit').click();
  await page.getByTestId('presence-state').waitFor({ state: 'visible', timeout: 20_000 });
}

/** Save a screenshot of the whole page to target/desk-screenshots/NAME.png. */
export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

/** Console errors and page errors, for asserting a screen ran cleanly (CSP violations show up here). */
export function problems(record) {
  return [
    ...record.errors.map((e) => `pageerror: ${e}`),
    ...record.console.filter((m) => m.type === 'error').map((m) => `console.error: ${m.text}`),
  ];
}

/**
 * Drop `files` ({name, type, size} with zero bytes, or {name, type, text})
 * onto the element `selector` with a synthetic DataTransfer, as a drag from
 * the desktop would (dragenter, dragover, drop).
 */
export async function dropFiles(page, selector, files) {
  await page.evaluate(({ selector, files }) => {
    const target = document.querySelector(selector);
    if (!target) throw new Error(`no ${selector} to drop on`);
    const dt = new DataTransfer();
    for (const f of files) {
      const body = f.text !== undefined ? [f.text] : [new Uint8Array(f.size)];
      dt.items.add(new File(body, f.name, { type: f.type }));
    }
    for (const type of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    }
  }, { selector, files });
}

/** A test's interaction by subject, seen through the REST API (for checks the UI cannot give). */
export async function interactionBySubject(server, token, subject, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const page = await server.api(token, 'GET', `/interactions?scope=all&q=${encodeURIComponent(subject)}`);
    const items = page.items || page;
    const hit = items.find((i) => i.subject === subject);
    if (hit) return hit;
    await sleep(300);
  }
  throw new Error(`no interaction "${subject}" within ${timeoutMs} ms`);
}

/**
 * An init script (run before the desk's own scripts, outside its CSP) that
 * records the desktop notifications the page shows and the tones it plays,
 * in `window.__signals = { notifications: [{title, body}], tones }`.
 */
export function recordSignals() {
  window.__signals = { notifications: [], tones: 0 };
  const N = window.Notification;
  if (typeof N === 'function') {
    window.Notification = class extends N {
      constructor(title, options) {
        window.__signals.notifications.push({ title, body: options?.body ?? '' });
        super(title, options);
      }
    };
  }
  for (const Ctx of [window.AudioContext, window.webkitAudioContext]) {
    if (!Ctx) continue;
    const create = Ctx.prototype.createOscillator;
    Ctx.prototype.createOscillator = function createOscillator() {
      window.__signals.tones += 1;
      return create.call(this);
    };
  }
}
