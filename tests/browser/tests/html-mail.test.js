// A hostile HTML mail runs nothing in the desktop (issue #8, part 8): it
// carries a <script>, an onerror= handler, javascript: links, an SVG onload
// and a meta refresh. Every payload would raise a dialog, set a flag on the
// desk's window (or its parent/top) or log to the console; none may happen.
// The mail's iframe must be sandboxed without allow-scripts (and without
// allow-same-origin), and the mail's harmless text must still be shown, so
// the test cannot pass on an empty thread.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { freshAddress, launchBrowser, login, openDesk, problems, sendMail, shot, startServer } from '../lib/harness.js';

let server;
let browser;
let alice;

before(async () => {
  server = await startServer({ name: 'html-mail' });
  browser = await launchBrowser();
  alice = await openDesk(browser, server);
  await login(alice.page, 'alice');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const PAYLOAD = (tag) => `try{(top.__pwned=top.__pwned||[]).push('${tag}')}catch(e){};try{(parent.__pwned=parent.__pwned||[]).push('${tag}')}catch(e){};window.__pwned='${tag}';console.log('PWNED ${tag}');alert('${tag}')`;

const HTML = `<!doctype html><html><head>
<meta http-equiv="refresh" content="0;url=javascript:${PAYLOAD('refresh')}">
<script>${PAYLOAD('script')}</script>
<style>body{background:red}</style>
</head><body>
<p>Visible greeting <b>from a hostile sender</b>.</p>
<img src="x" onerror="${PAYLOAD('onerror')}">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" onload="${PAYLOAD('onload')}">
<a id="js-link" href="javascript:${PAYLOAD('href')}">Click for a prize</a>
<a href="JaVaScRiPt:${PAYLOAD('href-case')}">Another prize</a>
<svg onload="${PAYLOAD('svg')}"><circle r="5"/></svg>
<iframe srcdoc="<script>${PAYLOAD('iframe')}</script>"></iframe>
<form action="javascript:${PAYLOAD('form')}"><button id="js-submit">Submit</button></form>
<div onmouseover="${PAYLOAD('mouseover')}" style="width:200px;height:40px">hover me</div>
<object data="javascript:${PAYLOAD('object')}"></object>
</body></html>`;

test('an HTML mail with scripts, handlers and javascript: links runs nothing', async () => {
  const subject = `Hostile HTML ${Date.now()}`;
  await sendMail({ from: freshAddress('evil-'), to: server.mailbox, subject, text: 'Visible greeting (text part).', html: HTML });
  const card = alice.page.getByTestId('offer').filter({ hasText: subject });
  await card.waitFor({ timeout: 60_000 });
  const id = await card.getAttribute('data-interaction-id');
  await card.getByTestId('offer-accept').click();
  const thread = alice.page.locator(`[data-testid=thread-view][data-interaction-id="${id}"]`);
  await thread.waitFor({ timeout: 15_000 });

  const iframe = thread.getByTestId('message-html').first();
  await iframe.waitFor({ timeout: 15_000 });
  assert.equal(await iframe.evaluate((el) => el.tagName), 'IFRAME');
  const sandbox = await iframe.getAttribute('sandbox');
  assert.notEqual(sandbox, null, 'the mail iframe has a sandbox attribute');
  const tokens = sandbox.split(/\s+/).filter(Boolean);
  assert.ok(!tokens.includes('allow-scripts'), `sandbox="${sandbox}" allows scripts`);
  assert.ok(!tokens.includes('allow-same-origin'), `sandbox="${sandbox}" allows same origin`);

  // The harmless part is rendered inside the frame.
  const frame = alice.page.frameLocator(`[data-testid=thread-view][data-interaction-id="${id}"] [data-testid=message-html]`).first();
  await frame.getByText('Visible greeting').waitFor({ timeout: 10_000 });

  // Poke every trap: click the links and the button, hover the div.
  for (const sel of ['#js-link', 'a >> nth=1', '#js-submit']) {
    const el = frame.locator(sel);
    if (await el.count()) await el.first().click({ timeout: 2_000, force: true }).catch(() => {});
  }
  await frame.getByText('hover me').hover({ timeout: 2_000 }).catch(() => {});
  await alice.page.waitForTimeout(1_500);
  await shot(alice.page, '09-hostile-html-mail');

  assert.deepEqual(alice.record.dialogs, [], 'no dialog opened');
  assert.equal(await alice.page.evaluate(() => window.__pwned ?? null), null, 'nothing reached the desk window');
  const pwnedLogs = alice.record.console.filter((m) => m.text.includes('PWNED'));
  assert.deepEqual(pwnedLogs, [], 'no payload logged');
  // The desk is still on its page (no navigation by a link or a refresh).
  assert.equal(new URL(alice.page.url()).pathname, '/');
  await thread.waitFor();
  // The desk itself ran cleanly.
  const bad = problems(alice.record).filter((p) => !p.includes('Blocked script execution') && !p.includes('sandboxed'));
  assert.deepEqual(bad, []);
});
