// mandate's own inspector (/inspector, docs/INSPECTOR.md) in headless Chromium, clicked as an
// operator clicks it: sign in, connect to the demo MCP server asking for customers.read, open the
// authorization page the inspector offers, consent, come back; call list_customers from the form
// generated from its input schema; call send_invoice and see the 403 refusal; step up (consent to
// invoices.send) and call again; read the JSON-RPC log; refresh; run the doctor; revoke, and see
// the inspector gone from /account/apps. The server is `mandate serve --demo` with
// MANDATE_INSPECTOR_OPERATORS=[demo] (.ci/e2e.sh). Every step's page is kept as a screenshot under
// target/e2e/screenshots/builtin-inspector/.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';

import { Person, readConsent } from './lib/browser.mjs';
import { say } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const OUT = process.env.MANDATE_E2E_OUT ?? 'target/e2e';
const PAGE_MS = 20_000;
assert.ok(BASE && PASSWORD, 'set by .ci/e2e.sh');

const person = new Person({ username: 'demo', password: PASSWORD, screenshots: path.join(OUT, 'screenshots', 'builtin-inspector'), stepTimeoutMs: PAGE_MS });
let page;

after(() => person.close());

/** Waits until the inspection is in `phase` with nothing running. */
async function settled(phase) {
  await page.waitForFunction(
    (want) => {
      const s = document.getElementById('status');
      return s && s.dataset.phase === want && !s.dataset.busy;
    },
    phase,
    { timeout: PAGE_MS },
  );
}

/** Waits until nothing runs (the status says so). */
async function idle() {
  await page.waitForFunction(() => {
    const s = document.getElementById('status');
    return s && s.dataset.phase && !s.dataset.busy;
  });
}

/** The titles of the flow's entries, in order. */
async function flowTitles() {
  return page.locator('#flow > li').evaluateAll((els) => els.map((e) => e.dataset.title));
}

/** Ticks exactly `want` on the consent page. */
async function tickOnly(p, want) {
  const { boxes } = await readConsent(p);
  for (const b of boxes) await p.setChecked(`input[name=scope][value="${b.value}"]`, want.includes(b.value));
}

/** Clicks "Open the authorization page" and consents to `want`; back on /inspector. */
async function authorizeInPage(label, want, expectAlready = []) {
  await page.locator('#authorize').waitFor({ state: 'visible' });
  await person.capture(page, `${label}-sign-in-waiting`);
  const href = await page.locator('#authorize').getAttribute('href');
  const asked = new URL(href);
  assert.equal(asked.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(asked.searchParams.get('resource'), `${BASE}/mcp`, 'RFC 8707: the token is for this server');
  await page.click('#authorize');
  await page.waitForURL((u) => u.pathname === '/consent' || u.pathname === '/login');
  await person.continueAuthorization(
    page,
    (u) => u.pathname === '/inspector',
    async (p) => {
      const consent = await readConsent(p);
      assert.deepEqual(consent.alreadyAllowed, expectAlready);
      await tickOnly(p, want);
    },
    { label },
  );
}

test('Chromium starts', async () => {
  await person.start();
  page = await person.newPage();
});

test('the operator opens /inspector, signs in, and comes back to it', { timeout: 60_000 }, async () => {
  await page.goto(`${BASE}/inspector`);
  assert.equal(new URL(page.url()).pathname, '/login', 'not signed in: the sign-in page first');
  await person.capture(page, 'sign-in');
  await page.fill('input[name=username]', 'demo');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('form[action="/login"] button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/inspector');
  await page.locator('#operator').filter({ hasText: 'signed in as demo' }).waitFor();
  assert.equal(await page.inputValue('#url'), `${BASE}/mcp`, 'the built-in MCP endpoint is offered');
  await person.capture(page, 'inspector');
});

test('connects to the demo MCP server: the 401, discovery, registration, consent to customers.read, the token', { timeout: 90_000 }, async () => {
  await page.fill('#scope', 'customers.read');
  await page.click('#connect-button');
  await authorizeInPage('connect', ['customers.read']);
  await settled('connected');
  const titles = await flowTitles();
  for (const want of [
    'MCP initialize: 401',
    'Protected resource metadata (RFC 9728): 200',
    'Authorization server metadata (RFC 8414): 200',
    'Dynamic client registration (RFC 7591): 201',
    'Code redeemed for tokens (PKCE verifier sent): 200',
    'MCP tools/list: 200',
  ]) {
    assert.ok(titles.some((t) => t.startsWith(want)), `${want} in ${JSON.stringify(titles)}`);
  }
  assert.equal(await page.locator('#granted').innerText(), 'customers.read');
  assert.equal(await page.locator('#token-format').innerText(), 'JWT');
  assert.match(await page.locator('#token-masked').innerText(), /hidden/);
  // An exchange opened: the code redemption, its secrets masked.
  const redeemed = page.locator('#flow > li.exchange', { hasText: 'Code redeemed for tokens' });
  await redeemed.locator('summary').click();
  const text = await redeemed.locator('pre').innerText();
  assert.match(text, /grant_type=authorization_code/);
  assert.match(text, /"access_token": "[^"]*hidden/);
  assert.doesNotMatch(text, /code_verifier=[A-Za-z0-9_-]{43}(&|$)/m, 'the verifier is hidden');
  assert.equal(await page.locator('#tools li', { hasText: 'send_invoice' }).locator('.badge.missing').innerText(), 'invoices.send');
  await person.capture(page, 'connected');
});

test('calls list_customers from the form generated from its input schema', { timeout: 60_000 }, async () => {
  await page.click('#tools button[data-tool="list_customers"]');
  await page.click('#call-button');
  await page.locator('#result-tool', { hasText: 'list_customers' }).waitFor();
  await idle();
  assert.equal(await page.locator('#result-outcome').innerText(), 'ok');
  assert.match(await page.locator('#result-body').innerText(), /customers/);
  await person.capture(page, 'called-list-customers');
});

test('send_invoice is refused with 403 insufficient_scope; the page offers to step up', { timeout: 60_000 }, async () => {
  await page.click('#tools button[data-tool="send_invoice"]');
  await page.fill('#arg-invoice_id', 'inv-none');
  await page.click('#call-button');
  await page.locator('#result-tool', { hasText: 'send_invoice' }).waitFor();
  await idle();
  assert.equal(await page.locator('#result-outcome').innerText(), 'refused');
  assert.equal(await page.locator('#stepup-scopes').innerText(), 'invoices.send');
  assert.ok((await flowTitles()).some((t) => t.startsWith('MCP tools/call: 403')));
  await person.capture(page, 'refused');
});

test('steps up: consents to invoices.send, and send_invoice is allowed', { timeout: 90_000 }, async () => {
  await page.click('#stepup-button');
  await authorizeInPage('step-up', ['invoices.send'], ['customers.read']);
  await page.locator('#granted', { hasText: 'invoices.send' }).waitFor();
  await idle();
  assert.equal(await page.locator('#granted').innerText(), 'customers.read invoices.send');
  await page.click('#tools button[data-tool="send_invoice"]');
  await page.fill('#arg-invoice_id', 'inv-none');
  await page.click('#call-button');
  await page.locator('#result-tool', { hasText: 'send_invoice' }).waitFor();
  await page.waitForFunction(() => document.getElementById('result-outcome').textContent !== 'refused' && !document.getElementById('status').dataset.busy);
  assert.equal(await page.locator('#result-outcome').innerText(), 'tool-error', 'allowed now: the tool itself says there is no such invoice');
  await person.capture(page, 'stepped-up');
});

test('the JSON-RPC log shows each message', async () => {
  const lines = await page.locator('#rpc > li summary').allInnerTexts();
  for (const want of ['→ initialize', '← result', '→ tools/list', '→ tools/call list_customers', '→ tools/call send_invoice']) {
    assert.ok(lines.some((l) => l.includes(want)), `${want} in ${JSON.stringify(lines)}`);
  }
  const call = page.locator('#rpc > li', { hasText: '→ tools/call list_customers' }).first();
  await call.locator('summary').click();
  assert.match(await call.locator('pre').innerText(), /"name": "list_customers"/);
  say(`JSON-RPC log: ${lines.length} messages`);
  await person.capture(page, 'json-rpc-log');
});

test('refresh: the refresh token rotates', { timeout: 60_000 }, async () => {
  await page.click('#refresh-button');
  await page.locator('#flow > li', { hasText: 'Refresh (the refresh token rotates): 200' }).waitFor();
  await idle();
  await person.capture(page, 'refreshed');
});

test("the doctor's report for the URL", { timeout: 60_000 }, async () => {
  await page.click('#doctor-button');
  await page.locator('#doctor-card').waitFor({ state: 'visible' });
  await idle();
  const results = await page.locator('#doctor td.pass, #doctor td.warn, #doctor td.fail').allInnerTexts();
  assert.ok(results.length > 10, `${results.length} checks`);
  assert.ok(!results.includes('fail'), JSON.stringify(results));
  await person.capture(page, 'doctor');
});

test("mandate's pages refuse to be framed by another site (UI-04): Chromium blocks each", { timeout: 60_000 }, async () => {
  // A page of another origin (a data: URL has an opaque one) framing mandate's pages.
  const framer = await person.newPage();
  try {
    const paths = ['/login', '/account/apps', '/account/activity', '/inspector', '/authorize?client_id=nope'];
    const html = paths.map((p, i) => `<iframe id="f${i}" src="${BASE}${p}"></iframe>`).join('');
    await framer.goto(`data:text/html,${encodeURIComponent(html)}`);
    await framer.waitForLoadState('load');
    for (const [i, p] of paths.entries()) {
      const frame = await (await framer.$(`#f${i}`)).contentFrame();
      // A blocked frame is Chromium's error page: nothing of mandate's is in it.
      const text = frame ? await frame.evaluate(() => document.body?.innerText ?? '').catch(() => '') : '';
      assert.ok(!/mandate|Sign in|Inspector/.test(text), `${p} was rendered in a frame: ${text.slice(0, 120)}`);
      const url = frame?.url() ?? '';
      assert.ok(!url.startsWith(BASE), `${p}: the frame stayed on mandate (${url})`);
    }
    await person.capture(framer, 'framing-blocked');
  } finally {
    await framer.close();
  }
});

test('payloads in reflected parameters never run in Chromium (UI-17)', { timeout: 60_000 }, async () => {
  const tab = await person.newPage();
  const dialogs = [];
  tab.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  try {
    const payload = `"><img src=x onerror=alert(1)><script>alert(2)</script>`;
    for (const url of [
      `${BASE}/authorize?response_type=code&client_id=${encodeURIComponent(payload)}&state=${encodeURIComponent(payload)}`,
      `${BASE}/authorize?response_type=code&client_id=nope&redirect_uri=${encodeURIComponent(`https://x.test/${payload}`)}&scope=${encodeURIComponent(payload)}`,
      `${BASE}/login?return=${encodeURIComponent(payload)}`,
      `${BASE}/account/apps/revoke?app=${encodeURIComponent(payload)}`,
    ]) {
      await tab.goto(url);
      await tab.waitForLoadState('load');
      assert.equal(await tab.locator('img[src="x"]').count(), 0, `markup injected at ${url}`);
    }
    await person.capture(tab, 'payloads-shown-as-text');
    assert.deepEqual(dialogs, [], 'no script ran');
  } finally {
    await tab.close();
  }
});

test('revoke: the tokens are revoked and the inspector leaves the connected apps', { timeout: 60_000 }, async () => {
  await page.click('#revoke-button');
  await settled('revoked');
  assert.ok(await page.locator('#token-card').isHidden());
  const titles = await flowTitles();
  // Two when the step-up replaced the first grant, two now.
  assert.equal(titles.filter((t) => t.startsWith('Revocation (RFC 7009): 200')).length, 4, JSON.stringify(titles));
  await person.capture(page, 'revoked');
  await page.goto(`${BASE}/account/apps`);
  assert.ok(!(await page.locator('main').innerText()).includes('mandate inspector'), 'not connected any more');
  await person.capture(page, 'connected-apps-after');
});
