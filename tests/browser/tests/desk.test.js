// The rest of an agent's day in the desktop (issue #8, parts 2, 4 and 7):
// pausing with a reason holds offers back until resume; notes, tags, mark
// unread, search and advanced search in the list, the .eml download, and a
// transfer to another online agent — each checked against the server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  freshAddress, interactionBySubject, launchBrowser, login, openDesk, problems, sendMail, shot, startServer,
} from '../lib/harness.js';

let server;
let browser;
let alice;
let bob;
let admin;
let sup;
const stamp = Date.now();
const subjects = { paused: `Paused arrival ${stamp}`, other: `Second question ${stamp}` };
const ids = {};

before(async () => {
  server = await startServer({ name: 'desk' });
  admin = await server.token('admin');
  sup = await server.token('sup');
  for (const name of ['VIP', 'Needs callback']) await server.api(admin, 'POST', '/tags', { name });
  browser = await launchBrowser();
  alice = await openDesk(browser, server);
  await login(alice.page, 'alice');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const row = (desk, id) => desk.page.locator(`[data-testid=interaction-row][data-interaction-id="${id}"]`);
const thread = (desk, id) => desk.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`);

async function acceptOffer(desk, subject) {
  const card = desk.page.getByTestId('offer').filter({ hasText: subject });
  await card.waitFor({ timeout: 60_000 });
  const id = await card.getAttribute('data-interaction-id');
  await card.getByTestId('offer-accept').click();
  await thread(desk, id).waitFor({ timeout: 15_000 });
  return id;
}

test('paused with a reason, no offer comes; resumed, it does', async () => {
  await alice.page.getByTestId('pause-button').click();
  await alice.page.getByTestId('pause-reason').selectOption('Lunch');
  await alice.page.getByTestId('pause-confirm').click();
  const state = alice.page.getByTestId('presence-state');
  await alice.page.waitForFunction(
    () => /paused/i.test(document.querySelector('[data-testid=presence-state]')?.textContent || ''),
    null,
    { timeout: 10_000 },
  );
  assert.match(await state.textContent(), /Lunch/);
  const presence = await server.api(sup, 'GET', '/supervisor/agents');
  const me = presence.find((a) => (a.agent?.username ?? a.username) === 'alice');
  assert.equal((me.presence ?? me).status, 'paused', JSON.stringify(me));
  await shot(alice.page, '12-paused');

  await sendMail({ from: freshAddress('cust-'), to: server.mailbox, subject: subjects.paused, text: 'Are you there?' });
  // It arrives and waits in the queue: no offer for a paused agent.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const queues = await server.api(sup, 'GET', '/supervisor/queues');
    if (queues.find((q) => q.name === 'support')?.waiting >= 1) break;
    assert.ok(Date.now() < deadline, `the mail never waited in the queue: ${JSON.stringify(queues)}`);
    await alice.page.waitForTimeout(250);
  }
  assert.equal(await alice.page.getByTestId('offer').count(), 0, 'no offer while paused');

  await alice.page.getByTestId('resume-button').click();
  await alice.page.waitForFunction(
    () => /online/i.test(document.querySelector('[data-testid=presence-state]')?.textContent || ''),
    null,
    { timeout: 10_000 },
  );
  ids.paused = await acceptOffer(alice, subjects.paused);
});

test('an internal note is shown as internal', async () => {
  const id = ids.paused;
  const text = `Called the customer ${stamp}`;
  await thread(alice, id).getByTestId('action-note').click();
  await alice.page.getByTestId('note-input').fill(text);
  await alice.page.getByTestId('note-save').click();
  await thread(alice, id).getByTestId('note-internal').filter({ hasText: text }).first().waitFor({ timeout: 10_000 });
  const view = await server.api(sup, 'GET', `/interactions/${id}`);
  assert.ok(JSON.stringify(view).includes(text), 'the note is stored');
});

test('tags are set from the tags dialog', async () => {
  const id = ids.paused;
  await thread(alice, id).getByTestId('action-tags').click();
  await alice.page.getByTestId('tag-option').filter({ hasText: 'VIP' }).getByTestId('tag-checkbox').check();
  await alice.page.getByTestId('tags-save').click();
  await thread(alice, id).getByTestId('interaction-tag').filter({ hasText: 'VIP' }).first().waitFor({ timeout: 10_000 });
  const view = await server.api(sup, 'GET', `/interactions/${id}`);
  assert.deepEqual((view.interaction ?? view).tags, ['VIP']);
});

test('mark unread shows the row unread', async () => {
  const id = ids.paused;
  await thread(alice, id).getByTestId('action-mark-unread').click();
  await alice.page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute('data-unread') === 'true',
    `[data-testid=interaction-row][data-interaction-id="${id}"]`,
    { timeout: 10_000 },
  );
  const view = await server.api(sup, 'GET', `/interactions/${id}`);
  assert.equal((view.interaction ?? view).unread, true);
});

test('search and advanced search narrow the list', async () => {
  await sendMail({ from: freshAddress('cust-'), to: server.mailbox, subject: subjects.other, text: 'Another thing.' });
  ids.other = await acceptOffer(alice, subjects.other);
  await row(alice, ids.other).waitFor({ timeout: 15_000 });
  await row(alice, ids.paused).waitFor({ timeout: 15_000 });

  // Plain search: a word of one subject.
  const search = alice.page.getByTestId('search-input');
  await search.fill('Paused');
  await search.press('Enter');
  await row(alice, ids.other).waitFor({ state: 'detached', timeout: 10_000 });
  assert.equal(await row(alice, ids.paused).count(), 1);
  await search.fill('');
  await search.press('Enter');
  await row(alice, ids.other).waitFor({ timeout: 10_000 });

  // Advanced: subject contains "Second".
  await alice.page.getByTestId('advanced-search-button').click();
  const panel = alice.page.getByTestId('advanced-search-panel');
  await panel.waitFor();
  if ((await panel.getByTestId('adv-condition').count()) === 0) await panel.getByTestId('adv-add').click();
  const cond = panel.getByTestId('adv-condition').first();
  await cond.getByTestId('adv-field').selectOption('subject');
  await cond.getByTestId('adv-operator').selectOption('contains');
  await cond.getByTestId('adv-value').fill('Second');
  await panel.getByTestId('adv-apply').click();
  await row(alice, ids.paused).waitFor({ state: 'detached', timeout: 10_000 });
  assert.equal(await row(alice, ids.other).count(), 1);
  await alice.page.getByTestId('advanced-active').waitFor({ state: 'visible' });
  await shot(alice.page, '13-advanced-search');
  await alice.page.getByTestId('adv-clear').click();
  await row(alice, ids.paused).waitFor({ timeout: 10_000 });
  await alice.page.getByTestId('advanced-active').waitFor({ state: 'hidden' });
});

test('the last mail downloads as .eml', async () => {
  const id = ids.other;
  await row(alice, id).click();
  await thread(alice, id).waitFor();
  const [download] = await Promise.all([
    alice.page.waitForEvent('download', { timeout: 15_000 }),
    thread(alice, id).getByTestId('download-eml').click(),
  ]);
  assert.match(download.suggestedFilename(), /\.eml$/);
  const path = await download.path();
  const { readFileSync } = await import('node:fs');
  assert.match(readFileSync(path, 'utf8'), new RegExp(`Subject: ${subjects.other}`));
});

test('the transcript downloads as a PDF', async () => {
  const id = ids.other;
  const [download] = await Promise.all([
    alice.page.waitForEvent('download', { timeout: 20_000 }),
    thread(alice, id).getByTestId('download-pdf').click(),
  ]);
  assert.match(download.suggestedFilename(), /\.pdf$/);
  const { readFileSync } = await import('node:fs');
  assert.equal(readFileSync(await download.path()).subarray(0, 5).toString('latin1'), '%PDF-');
});

test('a draft box: the pencil turns red, the X discards it and the pencil is grey again', async () => {
  const id = ids.paused;
  await row(alice, id).click();
  await thread(alice, id).waitFor();
  const pencil = thread(alice, id).getByTestId('draft-pencil');
  await pencil.waitFor();
  assert.equal(await pencil.getAttribute('data-state'), 'grey');
  await thread(alice, id).getByTestId('reply-button').first().click();
  const composer = alice.page.getByTestId('composer');
  await composer.waitFor();
  const body = composer.getByTestId('composer-body');
  await body.click();
  await body.fill(`Draft to throw away ${stamp}`);
  const saved = alice.page.waitForResponse((r) => /\/draft(\?|$)/.test(r.url()) && r.request().method() === 'PUT' && r.ok(), { timeout: 15_000 });
  await composer.getByTestId('save-draft-button').click();
  await saved;
  await alice.page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute('data-state') === 'red',
    `[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=draft-pencil]`,
    { timeout: 10_000 },
  );
  const box = alice.page.getByTestId('draft-box').filter({ hasText: 'SERV' }).first();
  await box.waitFor({ timeout: 10_000 });
  await box.getByTestId('draft-box-delete').click();
  const ok = alice.page.getByTestId('confirm-ok');
  if (await ok.isVisible({ timeout: 2_000 }).catch(() => false)) await ok.click();
  await box.waitFor({ state: 'detached', timeout: 10_000 });
  await alice.page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute('data-state') === 'grey',
    `[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=draft-pencil]`,
    { timeout: 10_000 },
  );
  // Gone on the server too.
  const res = await fetch(`${server.url}/api/v1/interactions/${id}/draft`, {
    headers: { authorization: `Bearer ${await server.token('alice')}` },
  });
  assert.equal(res.status, 404);
});

test('a transfer to an online agent moves it to their desk', async () => {
  bob = await openDesk(browser, server);
  await login(bob.page, 'bob');
  await bob.page.getByTestId('presence-state').filter({ hasText: /online/i }).waitFor({ timeout: 20_000 });
  const id = ids.other;
  await row(alice, id).click();
  await thread(alice, id).waitFor();
  await thread(alice, id).getByTestId('action-transfer').click();
  const target = alice.page.getByTestId('transfer-target');
  await target.waitFor();
  await target.selectOption('agent:bob');
  await alice.page.getByTestId('transfer-confirm').click();
  // Bob gets it (assigned via transfer: it opens on his desk).
  await thread(bob, id).waitFor({ timeout: 15_000 });
  const view = await interactionBySubject(server, sup, subjects.other);
  assert.equal(view.owner, 'bob');
});

test('no script or policy errors on the desks', () => {
  assert.deepEqual(problems(alice.record), []);
  if (bob) assert.deepEqual(problems(bob.record), []);
});
