// A day's work on one interaction in the desktop (issue #8, part 8): the
// owner replies with an attachment dropped into the composer and the
// customer's Dovecot mailbox receives it; a file over 15 MB is refused before
// any upload; a draft survives a reload; closing without the queue's
// mandatory disposition pauses the agent (a banner says why); the
// interaction is closed with a disposition picked level by level, which
// lifts the pause, then reopened. Screenshots of the thread,
// the composer and the close picker go to target/desk-screenshots/.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  dropFiles, freshAddress, launchBrowser, login, openDesk, problems, seedDispositions, sendMail, shot, startServer,
  waitForMail,
} from '../lib/harness.js';

let server;
let browser;
let alice;
let customer;
let subject;
let id;

before(async () => {
  server = await startServer({ name: 'work', dispositionRequired: true });
  await seedDispositions(server);
  browser = await launchBrowser();
  alice = await openDesk(browser, server);
  await login(alice.page, 'alice');
  // Alice's mail: she accepts its offer, and the thread opens.
  customer = freshAddress('cust-');
  subject = `Broken kettle ${Date.now()}`;
  await sendMail({
    from: `Kim Customer <${customer}>`,
    to: server.mailbox,
    subject,
    text: 'Hello,\n\nmy kettle stopped working after two days. Can you help?\n\nKim',
  });
  const card = alice.page.getByTestId('offer').filter({ hasText: subject });
  await card.waitFor({ timeout: 60_000 });
  id = await card.getAttribute('data-interaction-id');
  await card.getByTestId('offer-accept').click();
  await thread().waitFor({ timeout: 15_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const thread = () => alice.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`);
const composer = () => alice.page.getByTestId('composer');

/** Open the interaction from the list (after a reload, say). */
async function openFromList() {
  const row = alice.page.locator(`[data-testid=interaction-row][data-interaction-id="${id}"]`);
  await row.waitFor({ timeout: 20_000 });
  await row.click();
  await thread().waitFor({ timeout: 15_000 });
}

test('the thread shows the customer mail', async () => {
  const msg = thread().getByTestId('message').first();
  await msg.waitFor();
  assert.equal(await msg.getAttribute('data-direction'), 'in');
  await thread().getByText('my kettle stopped working', { exact: false }).first().waitFor({ timeout: 10_000 });
  assert.match(await thread().getByTestId('interaction-status').textContent(), /open/i);
  await shot(alice.page, '04-thread');
});

test('a file over 15 MB is refused before any upload', async () => {
  await thread().getByTestId('reply-button').click();
  await composer().waitFor();
  const uploads = () => alice.record.requests.filter((r) => r.method === 'POST' && r.url.includes('/api/v1/attachments'));
  const before = uploads().length;
  await dropFiles(alice.page, '[data-testid=composer-dropzone]', [
    { name: 'huge.bin', type: 'application/octet-stream', size: 15 * 1024 * 1024 + 1 },
  ]);
  const error = composer().getByTestId('composer-error');
  await error.waitFor({ state: 'visible', timeout: 5_000 });
  assert.match(await error.textContent(), /15\s*MB/);
  await alice.page.waitForTimeout(500);
  assert.equal(uploads().length, before, 'no POST /attachments for the refused file');
  assert.equal(await composer().getByTestId('composer-attachment').filter({ hasText: 'huge.bin' }).count(), 0);
});

test('the owner replies with a dropped attachment; the customer receives it', async () => {
  await composer().waitFor();
  // The reply goes to the customer.
  const to = composer().getByTestId('composer-to');
  assert.match(await to.inputValue().catch(() => to.textContent()), new RegExp(customer.replace(/[.]/g, '\\.')));
  const body = composer().getByTestId('composer-body');
  await body.click();
  await body.fill('Hello Kim,\n\nplease find the repair form attached.\n\nAlice');
  const formText = `Repair form for ${subject}\nSerial: K-1234\n`;
  // The drop uploads the file at once (POST /attachments), before Send.
  const uploaded = alice.page.waitForResponse(
    (r) => r.url().includes('/api/v1/attachments') && r.request().method() === 'POST',
    { timeout: 15_000 },
  );
  await dropFiles(alice.page, '[data-testid=composer-dropzone]', [
    { name: 'repair-form.txt', type: 'text/plain', text: formText },
  ]);
  const chip = composer().getByTestId('composer-attachment').filter({ hasText: 'repair-form.txt' });
  await chip.waitFor({ timeout: 15_000 });
  assert.equal((await uploaded).status(), 201);
  await shot(alice.page, '05-composer');
  await composer().getByTestId('send-button').click();

  const mail = await waitForMail(customer, (env) => (env.subject || '').includes(subject), 60_000);
  const part = mail.parts.find((p) => p.filename === 'repair-form.txt');
  assert.ok(part, `the reply carries repair-form.txt: ${JSON.stringify(mail.parts.map((p) => p.filename))}`);
  assert.equal(part.bytes.toString('utf8'), formText);
  // The thread shows the outgoing message.
  await thread().locator('[data-testid=message][data-direction=out]').first().waitFor({ timeout: 20_000 });
});

test('a draft survives a page reload', async () => {
  const words = `Draft kept across reloads ${Date.now()}`;
  if (!(await composer().isVisible())) await thread().getByTestId('reply-button').click();
  await composer().waitFor();
  const body = composer().getByTestId('composer-body');
  await body.click();
  await body.fill(words);
  const saved = alice.page.waitForResponse((r) => /\/draft(\?|$)/.test(r.url()) && r.request().method() === 'PUT' && r.ok(), { timeout: 15_000 });
  await composer().getByTestId('save-draft-button').click();
  await saved;

  await alice.page.reload();
  await alice.page.getByTestId('presence-state').waitFor({ timeout: 20_000 });
  // The minimised draft box at the bottom of the list names it; opening it restores the text.
  const box = alice.page.getByTestId('draft-box').first();
  await box.waitFor({ timeout: 15_000 });
  assert.match(await box.textContent(), /SERV/);
  await shot(alice.page, '06-draft-box-after-reload');
  await box.getByTestId('draft-box-name').click().catch(async () => box.click());
  await composer().waitFor({ timeout: 15_000 });
  const restored = composer().getByTestId('composer-body');
  await assert.doesNotReject(async () => {
    await alice.page.waitForFunction(
      (w) => {
        const el = document.querySelector('[data-testid=composer-body]');
        return el && (el.value ?? el.textContent).includes(w);
      },
      words,
      { timeout: 10_000 },
    );
  }, `the composer body holds the draft: ${await restored.evaluate((el) => el.value ?? el.textContent)}`);
  // The pencil on the thread is red while a draft exists.
  const pencil = alice.page.getByTestId('draft-pencil').first();
  if (await pencil.count()) assert.equal(await pencil.getAttribute('data-state'), 'red');
});

test('closing without the mandatory disposition pauses the agent, with a banner', async () => {
  if (!(await thread().isVisible())) await openFromList();
  await thread().getByTestId('action-close').click();
  await alice.page.getByTestId('disposition-picker').waitFor({ timeout: 10_000 });
  await alice.page.getByTestId('disposition-none').click();
  // The server refuses (the queue requires one) and pauses alice for it.
  await alice.page.getByTestId('disposition-pause-banner').waitFor({ state: 'visible', timeout: 10_000 });
  await alice.page.waitForFunction(
    () => /paused/i.test(document.querySelector('[data-testid=presence-state]')?.textContent || ''),
    null,
    { timeout: 10_000 },
  );
  await shot(alice.page, '07a-disposition-pause');
  const cancel = alice.page.getByTestId('disposition-cancel');
  if (await cancel.isVisible().catch(() => false)) await cancel.click();
  assert.match(await thread().getByTestId('interaction-status').textContent(), /open/i);
});

test('close with a disposition picked level by level, then reopen', async () => {
  if (!(await thread().isVisible())) await openFromList();
  await thread().getByTestId('action-close').click();
  const picker = alice.page.getByTestId('disposition-picker');
  await picker.waitFor({ timeout: 10_000 });
  const level1 = picker.getByTestId('disposition-level-1');
  await level1.selectOption({ label: 'Support' });
  const level2 = picker.getByTestId('disposition-level-2');
  await level2.waitFor({ state: 'visible' });
  await level2.selectOption({ label: 'Solved' });
  const level3 = picker.getByTestId('disposition-level-3');
  await level3.waitFor({ state: 'visible' });
  await level3.selectOption({ label: 'First contact' });
  await shot(alice.page, '07-close-picker');
  await alice.page.getByTestId('disposition-confirm').click();
  // A draft was open: the desk may ask to confirm closing over it.
  const warn = alice.page.getByTestId('draft-replace-confirm');
  if (await warn.isVisible().catch(() => false)) await warn.click();

  const status = thread().getByTestId('interaction-status');
  await alice.page.waitForFunction(
    (sel) => /closed/i.test(document.querySelector(sel)?.textContent || ''),
    `[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=interaction-status]`,
    { timeout: 15_000 },
  );
  const token = await server.token('sup');
  const closed = await server.api(token, 'GET', `/interactions/${id}`);
  const view = closed.interaction || closed;
  assert.equal(view.status, 'closed');
  assert.deepEqual(view.disposition, ['Support', 'Solved', 'First contact']);
  await shot(alice.page, '08-closed');
  // The close that names a disposition lifts the disposition pause.
  await alice.page.getByTestId('disposition-pause-banner').waitFor({ state: 'detached', timeout: 10_000 });
  await alice.page.waitForFunction(
    () => /online/i.test(document.querySelector('[data-testid=presence-state]')?.textContent || ''),
    null,
    { timeout: 10_000 },
  );

  await thread().getByTestId('action-reopen').click();
  const ok = alice.page.getByTestId('confirm-ok');
  if (await ok.isVisible().catch(() => false)) await ok.click();
  await alice.page.waitForFunction(
    (sel) => /^\s*open/i.test(document.querySelector(sel)?.textContent || ''),
    `[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=interaction-status]`,
    { timeout: 15_000 },
  );
  assert.match(await status.textContent(), /open/i);
  const reopened = await server.api(token, 'GET', `/interactions/${id}`);
  assert.equal((reopened.interaction || reopened).status, 'open');
  assert.equal((reopened.interaction || reopened).reopened, true);
  // The list marks it reopened.
  await alice.page.locator(`[data-testid=interaction-row][data-interaction-id="${id}"] [data-testid=row-reopened]`)
    .waitFor({ timeout: 15_000 });
});

test('no script or policy errors on the desk', () => {
  // The refused 15 MB file and 409s are answers, not errors; anything else is.
  assert.deepEqual(problems(alice.record).filter((p) => !/status of 4\d\d/.test(p)), []);
});
