// Offers in two browsers at once (issue #8, part 8): alice and bob, members
// of a ring_all queue, each in their own browser context, both see the offer
// of a mail sent through Postfix. On ring_all a reject only takes the
// rejecter out of that offer round (docs/routing.md), so "the other accepts,
// the first sees taken" needs the first still to hold an offer when the
// other accepts: mail 1 — alice rejects (her card goes, bob's stays), bob
// accepts; mail 2 — both hold the offer, bob accepts, alice sees the
// "taken" toast and her card goes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  freshAddress, interactionBySubject, launchBrowser, login, openDesk, problems, recordSignals, sendMail, shot,
  startServer,
} from '../lib/harness.js';

let server;
let browser;
let alice;
let bob;

before(async () => {
  server = await startServer({ name: 'offers' });
  browser = await launchBrowser();
  alice = await openDesk(browser, server);
  // Bob allowed desktop notifications; what his desk shows and plays is recorded.
  bob = await openDesk(browser, server, {
    contextOptions: { permissions: ['notifications'] },
    initScript: recordSignals,
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const offerOf = (desk, id) => desk.page.locator(`[data-testid=offer][data-interaction-id="${id}"]`);

/** Send a mail from a fresh customer and wait for both desks to show its offer; returns the interaction id. */
async function mailAndOffers(subject) {
  const customer = freshAddress('cust-');
  await sendMail({ from: customer, to: server.mailbox, subject, text: `Hello, this is ${subject}.` });
  const card = alice.page.getByTestId('offer').filter({ hasText: subject });
  await card.waitFor({ state: 'visible', timeout: 60_000 });
  const id = await card.getAttribute('data-interaction-id');
  assert.ok(id, 'the offer card names its interaction');
  await offerOf(bob, id).waitFor({ state: 'visible', timeout: 30_000 });
  return id;
}

test('login screen, then both agents are online', async () => {
  await alice.page.getByTestId('login-username').waitFor();
  await shot(alice.page, '01-login');
  // A wrong password is refused in the form.
  await alice.page.getByTestId('login-username').fill('alice');
  await alice.page.getByTestId('login-password').fill('wrong');
  await alice.page.getByTestId('login-submit').click();
  await alice.page.getByTestId('login-error').waitFor({ state: 'visible' });
  await login(alice.page, 'alice');
  await login(bob.page, 'bob');
  for (const desk of [alice, bob]) {
    await desk.page.getByTestId('presence-state').filter({ hasText: /online/i }).waitFor({ timeout: 20_000 });
  }
});

test('a reject passes the offer on; the other agent accepts it', async () => {
  const subject = `Offer reject ${Date.now()}`;
  const id = await mailAndOffers(subject);
  // The countdown to the offer timeout is visible and counts in seconds.
  const left = Number((await offerOf(alice, id).getByTestId('offer-countdown').textContent()).match(/\d+/)?.[0]);
  assert.ok(left > 0 && left <= 300, `countdown shows seconds left: ${left}`);

  await offerOf(alice, id).getByTestId('offer-reject').click();
  await offerOf(alice, id).waitFor({ state: 'detached', timeout: 15_000 });
  // Bob still holds it (a reject only takes alice out of this round).
  assert.equal(await offerOf(bob, id).count(), 1);
  await offerOf(bob, id).getByTestId('offer-accept').click();
  await offerOf(bob, id).waitFor({ state: 'detached', timeout: 15_000 });
  // Accepting opens the interaction in bob's thread view, and the server says bob owns it.
  await bob.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`).waitFor({ timeout: 15_000 });
  const sup = await server.token('sup');
  const view = await server.api(sup, 'GET', `/interactions/${id}`);
  assert.equal(view.owner ?? view.interaction?.owner, 'bob');
  assert.equal(await offerOf(alice, id).count(), 0, 'alice has no card for it');
  // And the first (who rejected) is told another agent took it.
  await alice.page.getByTestId('toast').filter({ hasText: subject }).filter({ hasText: /taken/i })
    .first().waitFor({ state: 'visible', timeout: 15_000 });
});

test('both see the offer; one accepts; the other sees "taken"', async () => {
  const subject = `Offer race ${Date.now()}`;
  const id = await mailAndOffers(subject);
  await shot(alice.page, '02-list-with-offer');
  await offerOf(bob, id).getByTestId('offer-accept').click();
  // Alice's card goes and a toast tells her another agent took it.
  await offerOf(alice, id).waitFor({ state: 'detached', timeout: 15_000 });
  await alice.page.getByTestId('toast').filter({ hasText: subject }).filter({ hasText: /taken/i })
    .first().waitFor({ state: 'visible', timeout: 15_000 });
  await shot(alice.page, '03-taken-toast');
  await bob.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`).waitFor({ timeout: 15_000 });
  // Bob's list (scope "me") shows both his interactions.
  const row = bob.page.locator(`[data-testid=interaction-row][data-interaction-id="${id}"]`);
  await row.waitFor({ timeout: 15_000 });
  const sup = await server.token('sup');
  const view = await interactionBySubject(server, sup, subject);
  assert.equal(view.owner, 'bob');
});

test('an offer rings and shows a desktop notification where permitted', async () => {
  const signals = await bob.page.evaluate(() => window.__signals);
  const offered = signals.notifications.filter((n) => /Offer (reject|race)/.test(n.title));
  assert.equal(offered.length, 2, `one notification per offer: ${JSON.stringify(signals)}`);
  assert.ok(signals.tones >= 2, `a ring per offer: ${signals.tones} tones`);
  // Alice did not allow notifications: she is offered the button instead.
  await alice.page.getByTestId('notify-enable').waitFor({ state: 'visible' });
});

test('no script or policy errors on either desk', () => {
  for (const [who, desk] of [['alice', alice], ['bob', bob]]) {
    const bad = problems(desk.record).filter((p) => !/401|Unauthorized|login/i.test(p));
    assert.deepEqual(bad, [], `${who}'s desk logged errors`);
  }
});
