// The supervisor's view (issue #8, part 7): queue and agent status, every
// interaction, spying one read-only and leaving the agent a note. Saves the
// supervisor screenshot.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  freshAddress, launchBrowser, login, openDesk, problems, sendMail, shot, startServer,
} from '../lib/harness.js';

let server;
let browser;
let alice;
let sup;

before(async () => {
  server = await startServer({ name: 'supervisor' });
  browser = await launchBrowser();
  alice = await openDesk(browser, server);
  sup = await openDesk(browser, server);
  await login(alice.page, 'alice');
  await login(sup.page, 'sup');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('queues, agents, every interaction, spy and a note for the agent', async () => {
  const subject = `Supervised ${Date.now()}`;
  await sendMail({ from: freshAddress('cust-'), to: server.mailbox, subject, text: 'Please call me back.' });
  const card = alice.page.getByTestId('offer').filter({ hasText: subject });
  await card.waitFor({ timeout: 60_000 });
  const id = await card.getAttribute('data-interaction-id');
  await card.getByTestId('offer-accept').click();
  await alice.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`).waitFor({ timeout: 15_000 });

  await sup.page.getByTestId('view-supervisor').click();
  const queue = sup.page.getByTestId('sup-queue-row').filter({ hasText: 'support' });
  await queue.waitFor({ timeout: 15_000 });
  const agentRow = sup.page.getByTestId('sup-agent-row').filter({ hasText: /alice/i });
  await agentRow.waitFor({ timeout: 15_000 });
  await sup.page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=sup-agent-row]')].some((r) => /alice/i.test(r.textContent) && /online/i.test(r.textContent)),
    null,
    { timeout: 15_000 },
  );
  const row = sup.page.getByTestId('sup-interaction-row').filter({ hasText: subject });
  await row.waitFor({ timeout: 20_000 });
  await shot(sup.page, '10-supervisor');

  // Spy: the interaction opens read-only in the thread view.
  await row.getByTestId('spy-button').click();
  await sup.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`).waitFor({ timeout: 15_000 });
  await sup.page.getByTestId('spy-mode').first().waitFor({ timeout: 10_000 });
  assert.equal(await sup.page.getByTestId('send-button').count(), 0, 'no composer while spying');
  await shot(sup.page, '11-supervisor-spy');

  // A note for the agent, shown to alice as internal.
  const note = `Call them before noon ${Date.now()}`;
  const input = sup.page.getByTestId('sup-note-input').or(sup.page.getByTestId('thread-sup-note-input')).first();
  await input.fill(note);
  await sup.page.getByTestId('sup-note-save').or(sup.page.getByTestId('thread-sup-note-save')).first().click();
  await alice.page.getByTestId('note-internal').filter({ hasText: note }).first().waitFor({ timeout: 20_000 });
});

test('no script or policy errors on either desk', () => {
  assert.deepEqual(problems(alice.record), []);
  assert.deepEqual(problems(sup.record), []);
});
