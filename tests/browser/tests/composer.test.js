// The composer and the thread's mail details (issue #8, parts 5 and 6),
// end to end through Postfix and Dovecot: a mail that CCs the agent herself,
// with an image and a text file, shows the CC notice and an image preview
// that enlarges; a reply written in HTML from a canned answer and sent "as" a
// sub-status reaches the customer with an HTML part; "show original message";
// a forward carries the original's attachments to a third address; a new
// mail goes out from the account; "send and close" closes with a
// disposition picked in the picker.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  agentEmail, freshAddress, launchBrowser, login, openDesk, problems, seedDispositions, sendMail, shot, startServer,
  waitForMail,
} from '../lib/harness.js';

// A 2×2 red PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);

let server;
let browser;
let alice;
let id;
const stamp = Date.now();
const subject = `Photo of the damage ${stamp}`;
const customer = freshAddress('jane-');
const colleague = freshAddress('colleague-');

before(async () => {
  server = await startServer({ name: 'composer', dispositionRequired: false });
  const admin = await server.token('admin');
  await server.api(admin, 'POST', '/canned-answers', {
    title: 'Greeting',
    text: 'Hi {{contact.first_name}},\n\nthank you for writing.',
    html: '<p>Hi {{contact.first_name}},</p><p>thank you for <b>writing</b>.</p>',
  });
  await server.api(admin, 'POST', '/substatuses', { name: 'Waiting for parts' });
  browser = await launchBrowser();
  alice = await openDesk(browser, server);
  await login(alice.page, 'alice');
  await seedDispositions(server);
  // The mail CCs alice's own address; it carries an image and a text file.
  await sendMail({
    from: `Jane Doe <${customer}>`,
    to: server.mailbox,
    cc: [agentEmail('alice'), colleague],
    subject,
    text: 'Hello, the photo of the broken part is attached. Order 4711.',
    attachments: [
      { filename: 'damage.png', content: PNG, contentType: 'image/png' },
      { filename: 'order.txt', content: 'Order 4711\n', contentType: 'text/plain' },
    ],
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

async function openComposer(button) {
  if (await composer().isVisible()) {
    const discard = composer().getByTestId('composer-discard');
    if (await discard.count()) await discard.click();
    const confirm = alice.page.getByTestId('confirm-ok');
    if (await confirm.isVisible().catch(() => false)) await confirm.click();
    await composer().waitFor({ state: 'detached', timeout: 5_000 }).catch(() => {});
  }
  await thread().getByTestId(button).first().click();
  await composer().waitFor({ timeout: 10_000 });
}

function partTypes(node, out = []) {
  if (!node) return out;
  out.push(node.type);
  for (const c of node.childNodes || []) partTypes(c, out);
  return out;
}

test('CC notice, image preview that enlarges, and downloadable attachments', async () => {
  await thread().getByTestId('cc-notice').waitFor({ timeout: 10_000 });
  assert.match(await thread().getByTestId('cc-notice').textContent(), /CC/);
  const attachments = thread().getByTestId('attachment');
  await attachments.first().waitFor();
  assert.equal(await attachments.count(), 2);
  const preview = thread().getByTestId('attachment-preview').first();
  await preview.waitFor({ timeout: 10_000 });
  // The preview really decoded the image (it is fetched with the token, not by URL).
  await alice.page.waitForFunction(
    (sel) => { const img = document.querySelector(sel); return img && img.complete && img.naturalWidth === 2; },
    `[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=attachment-preview]`,
    { timeout: 10_000 },
  );
  await preview.click();
  await alice.page.getByTestId('attachment-enlarged').waitFor({ state: 'visible', timeout: 10_000 });
  await shot(alice.page, '14-attachment-enlarged');
  await alice.page.getByTestId('attachment-enlarged-close').click();
  await alice.page.getByTestId('attachment-enlarged').waitFor({ state: 'detached' });

  const [download] = await Promise.all([
    alice.page.waitForEvent('download', { timeout: 15_000 }),
    attachments.filter({ hasText: 'order.txt' }).getByTestId('attachment-download').click(),
  ]);
  assert.equal(download.suggestedFilename(), 'order.txt');
  const { readFileSync } = await import('node:fs');
  assert.equal(readFileSync(await download.path(), 'utf8'), 'Order 4711\n');
});

test('a reply in HTML from a canned answer, sent as a sub-status, reaches the customer', async () => {
  await openComposer('reply-button');
  // "Show original message" shows what is answered.
  await composer().getByTestId('show-original').click();
  await composer().getByTestId('composer-original').filter({ hasText: 'Order 4711' }).waitFor({ state: 'visible' });

  await composer().getByTestId('composer-html-toggle').check();
  const body = composer().getByTestId('composer-body');
  await body.click();
  await composer().getByTestId('composer-canned').selectOption({ label: 'Greeting' });
  await alice.page.waitForFunction(
    () => /Hi Jane/.test(document.querySelector('[data-testid=composer-body]')?.innerHTML || ''),
    null,
    { timeout: 10_000 },
  );
  await shot(alice.page, '15-composer-html-canned');
  await composer().getByTestId('send-as-substatus').selectOption('Waiting for parts');
  await composer().getByTestId('send-as-button').click();

  const mail = await waitForMail(customer, (env) => (env.subject || '').includes(subject), 60_000);
  const types = partTypes(mail.bodyStructure);
  assert.ok(types.includes('text/html'), `an HTML part: ${types}`);
  assert.ok(types.includes('text/plain'), `a text part beside it: ${types}`);
  const token = await server.token('sup');
  await alice.page.waitForTimeout(200);
  const view = await server.api(token, 'GET', `/interactions/${id}`);
  assert.equal((view.interaction ?? view).substatus, 'Waiting for parts');
});

test("a forward carries the original's attachments", async () => {
  const friend = freshAddress('friend-');
  await thread().locator('[data-testid=message][data-direction=in]').first().waitFor();
  await openComposer('forward-button');
  await composer().getByTestId('composer-to').fill(friend);
  const body = composer().getByTestId('composer-body');
  await body.click();
  await body.fill('Please have a look at this.');
  await composer().getByTestId('send-button').click();
  const mail = await waitForMail(friend, (env) => (env.subject || '').includes(subject), 60_000);
  assert.match(mail.envelope.subject, /^Fwd: /);
  const names = mail.parts.map((p) => p.filename).sort();
  assert.deepEqual(names, ['damage.png', 'order.txt']);
  assert.deepEqual(mail.parts.find((p) => p.filename === 'damage.png').bytes, PNG);
});

test('a new mail goes out from the account', async () => {
  const someone = freshAddress('new-');
  const newSubject = `Your repair appointment ${stamp}`;
  await alice.page.getByTestId('new-mail-button').first().click();
  await composer().waitFor({ timeout: 10_000 });
  const account = composer().getByTestId('composer-account');
  if (await account.count()) await account.fill('SERV');
  await composer().getByTestId('composer-to').fill(someone);
  await composer().getByTestId('composer-subject').fill(newSubject);
  const body = composer().getByTestId('composer-body');
  await body.click();
  await body.fill('We will come on Monday.');
  await composer().getByTestId('send-button').click();
  const mail = await waitForMail(someone, (env) => (env.subject || '').includes(newSubject), 60_000);
  assert.equal(mail.envelope.from[0].address, server.mailbox);
});

test('send and close closes the interaction', async () => {
  await alice.page.locator(`[data-testid=interaction-row][data-interaction-id="${id}"]`).click();
  await thread().waitFor({ timeout: 10_000 });
  await openComposer('reply-button');
  const body = composer().getByTestId('composer-body');
  await body.click();
  await body.fill('The part is on its way. Closing this request.');
  await composer().getByTestId('send-close-button').click();
  // A disposition two levels deep (the queue does not require one, but the picker offers it).
  const picker = alice.page.getByTestId('disposition-picker');
  await picker.waitFor({ timeout: 10_000 });
  await picker.getByTestId('disposition-level-1').selectOption({ label: 'Sales' });
  await picker.getByTestId('disposition-level-2').selectOption({ label: 'Won' });
  await alice.page.getByTestId('disposition-confirm').click();
  await alice.page.waitForFunction(
    (sel) => /closed/i.test(document.querySelector(sel)?.textContent || ''),
    `[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=interaction-status]`,
    { timeout: 15_000 },
  );
  const token = await server.token('sup');
  const view = await server.api(token, 'GET', `/interactions/${id}`);
  assert.equal((view.interaction ?? view).status, 'closed');
  assert.deepEqual((view.interaction ?? view).disposition, ['Sales', 'Won']);
  // The reply itself was recorded and handed to Postfix.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const now = await server.api(token, 'GET', `/interactions/${id}`);
    const last = (now.messages || []).filter((m) => m.direction === 'out' && /Closing this request/.test(JSON.stringify(m)));
    if (last.length === 1 && last[0].delivery === 'sent') break;
    assert.ok(Date.now() < deadline, `the last reply was never sent: ${JSON.stringify(last)}`);
    await alice.page.waitForTimeout(300);
  }
});

test('no script or policy errors on the desk', () => {
  assert.deepEqual(problems(alice.record).filter((p) => !/status of 4\d\d/.test(p)), []);
});
