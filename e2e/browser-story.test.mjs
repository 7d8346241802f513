// The whole story as a person clicks it, in Chromium (Debian's, driven by playwright-core,
// headless; nothing rewritten, nothing injected: the browser sends what it sends), at one window
// size (MANDATE_E2E_VIEWPORT, e.g. 1280x800 or 375x812; .ci/e2e.sh runs both, each against a
// fresh `mandate serve --demo`):
//   sign in (a wrong password first), consent to a subset with the irreversible scope unticked,
//   the agent calls tools and is refused, step-up consent shows only the new scope, the account
//   pages (navigation, Connected apps, Activity and its filter), forms posted from other origins
//   and from a sandboxed iframe to /login, /consent and the revoke action are refused, revoke
//   with confirmation (Cancel first), the agent's next MCP request gets 401, sign out.
// The agent is the official MCP TypeScript client (@modelcontextprotocol/client 2.x) with the
// suite's OAuthClientProvider; it asks for all six scopes up front through the SDK's `auth()`
// and steps up by itself. Every page is saved as a screenshot under
// target/e2e/screenshots/browser-story-<width>/.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Client, StreamableHTTPClientTransport, UnauthorizedError, auth } from '@modelcontextprotocol/client';

import { AttackerSite } from './lib/attacker.mjs';
import { Person } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { MemoryOAuthProvider } from './lib/provider.mjs';
import { Recorder } from './lib/recorder.mjs';
import { redactUrl, say, scopes, withTimeout } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const OUT = process.env.MANDATE_E2E_OUT ?? path.resolve(import.meta.dirname, '../target/e2e');
const [WIDTH, HEIGHT] = (process.env.MANDATE_E2E_VIEWPORT ?? '1280x800').split('x').map(Number);
const SUITE = `browser-story-${WIDTH}`;
const MCP = `${BASE}/mcp`;

const BROWSER_STEP_MS = 60_000; // a test that drives several pages
const PAGE_MS = 15_000; // one page load, click or tool call

const APP = 'Billing helper';
const ALL_SCOPES = ['customers.read', 'customers.write', 'invoices.read', 'invoices.send', 'todos.read', 'todos.write'];
// Left unticked by the page: what cannot be undone (sending invoices, deleting to-dos).
const IRREVERSIBLE = ['invoices.send', 'todos.write'];
// What the person allows at first: what the page ticked, less todos.read (unticked by the person).
const FIRST_GRANT = ['customers.read', 'customers.write', 'invoices.read'];
const WORDS = {
  'customers.read': 'See your customers and their details',
  'customers.write': 'Create customers in your name',
  'invoices.read': 'See your invoices',
  'invoices.send': 'Send invoices to your customers (cannot be undone)',
  'todos.read': 'See your to-do list',
  'todos.write': 'Add, complete and delete your to-dos',
};
const CROSS_SITE_REFUSAL = 'This form was submitted from another site.';

/** The visible text of `locator` (default: the page's main content), whitespace folded. */
async function textOf(page, selector = 'main') {
  return (await page.locator(selector).innerText()).replace(/\s+/g, ' ').trim();
}

/** A `WWW-Authenticate` parameter. */
function param(header, name) {
  return header?.match(new RegExp(`${name}="([^"]*)"`))?.[1];
}

/** The text of a tool result's first content block, as JSON. */
function json(result) {
  assert.ok(!result.isError, `the tool failed: ${JSON.stringify(result).slice(0, 300)}`);
  const block = result.content?.[0];
  assert.equal(block?.type, 'text');
  return JSON.parse(block.text);
}

/** Clicks `locator` and waits for the navigation it starts (the response to `method path`). */
async function clickAndWait(page, locator, method, pathname) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === pathname && r.request().method() === method),
    locator.click(),
  ]);
  await page.waitForLoadState('load');
  return response;
}

/** The account navigation is on the page: its four entries, `current` marked as the current one. */
async function assertNavigation(page, current) {
  const nav = page.getByRole('navigation', { name: 'Your account' });
  for (const name of ['Connected apps', 'Activity', 'Your apps']) {
    await nav.getByRole('link', { name, exact: true }).waitFor({ state: 'visible' });
  }
  await nav.getByRole('button', { name: /^Sign out/ }).waitFor({ state: 'visible' });
  if (current) {
    assert.equal(await nav.getByRole('link', { name: current, exact: true }).getAttribute('aria-current'), 'page');
  }
}

/** Where a page's content overflows the window sideways (a layout defect at 375 px), or undefined. */
async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= width) return undefined;
    const wide = [...document.querySelectorAll('body *')].find((e) => e.getBoundingClientRect().right > width + 1);
    return `${document.documentElement.scrollWidth}px > ${width}px${wide ? ` (${wide.tagName.toLowerCase()}.${wide.className})` : ''}`;
  });
}

const s = {
  recorder: new Recorder(),
  callback: new LoopbackCallback(),
  attacker: new AttackerSite(),
  person: undefined,
  provider: undefined,
  client: undefined,
  transport: undefined,
  connected: false,
  /** The person's behaviour on the next authorization: { decide, signIn, label }; unset, none is expected. */
  next: undefined,
  /** The SDK's HTTP traffic since `mark`, one line each (no secrets). */
  transcript(mark) {
    for (const e of this.recorder.since(mark)) {
      const what = e.rpc ? ` ${e.rpc}${e.tool ? ` ${e.tool}` : ''}` : e.grantType ? ` grant_type=${e.grantType}` : '';
      const challenge = e.wwwAuthenticate ? `  WWW-Authenticate: ${e.wwwAuthenticate}` : '';
      say(`sdk: ${e.method} ${e.path}${what} -> ${e.status}${challenge}`);
    }
  },
  /** A screenshot of `page`; a page of mandate's is checked for sideways overflow. */
  async shot(page, label) {
    await this.person.capture(page, label);
    if (new URL(page.url()).origin !== BASE) return;
    const overflow = await horizontalOverflow(page);
    assert.equal(overflow, undefined, `the ${label} page overflows the ${WIDTH} px window: ${overflow}`);
  },
  /** A tab in the person's (signed-in) profile at `pathname`. */
  async open(pathname) {
    const page = await this.person.newPage();
    const response = await page.goto(`${BASE}${pathname}`);
    assert.ok(response?.ok(), `GET ${pathname}: HTTP ${response?.status()}`);
    return page;
  },
  /** Skips `t` when the first test never connected the agent (its failure says why). */
  requireAgent(t) {
    if (this.connected) return true;
    t.skip('the agent never connected (see the first failure)');
    return false;
  },
  /** The agent's client id (registered by the SDK). */
  get clientId() {
    return this.provider.clientInformation()?.client_id;
  },
};

before(async () => {
  assert.ok(BASE, 'MANDATE_E2E_BASE names the server (run .ci/e2e.sh)');
  assert.ok(PASSWORD, 'MANDATE_E2E_PASSWORD is the demo password (run .ci/e2e.sh)');
  assert.ok(WIDTH > 0 && HEIGHT > 0, `MANDATE_E2E_VIEWPORT is WIDTHxHEIGHT, got ${process.env.MANDATE_E2E_VIEWPORT}`);
  say(`server: ${BASE}; window ${WIDTH}×${HEIGHT}`);
  await s.callback.start();
  await s.attacker.start();
  s.person = new Person({
    username: 'demo',
    password: PASSWORD,
    screenshots: path.join(OUT, 'screenshots', SUITE),
    stepTimeoutMs: PAGE_MS,
    viewport: { width: WIDTH, height: HEIGHT },
  });
  await s.person.start();
  s.provider = new MemoryOAuthProvider({
    redirectUri: s.callback.redirectUri,
    clientName: APP,
    grantTypes: ['authorization_code', 'refresh_token'],
    issuer: BASE,
    authorize: async (url) => {
      const next = s.next;
      s.next = undefined;
      if (!next) throw new Error('the person does not authorize this application again');
      say(`provider: redirectToAuthorization scope="${url.searchParams.get('scope')}"`);
      await s.person.authorize(url, s.callback.redirectUri, next.decide, next);
      return s.callback.next(PAGE_MS);
    },
  });
  s.client = new Client({ name: 'mandate-e2e-browser-story', version: '1.0.0' });
});

after(async () => {
  const quietly = (p, what) => withTimeout(p, PAGE_MS, what).catch((e) => say(`cleanup: ${e.message}`));
  await quietly(s.client?.close() ?? Promise.resolve(), 'the MCP client to close');
  await quietly(s.person?.close() ?? Promise.resolve(), 'Chromium to close');
  await quietly(s.callback.close(), 'the callback server to close');
  await quietly(s.attacker.close(), 'the attacker site to close');
});

test(`UI-19 UI-20 AS13: sign-in names the app (unverified), a wrong password keeps the username; consent says where the answer goes and for how long, what cannot be undone (invoices.send, todos.write) is unticked, the person also unticks todos.read and allows a subset (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async () => {
  const port = new URL(s.callback.redirectUri).port;
  s.next = {
    label: 'first',
    signIn: async (page) => {
      assert.equal(await textOf(page, 'h1'), 'Sign in');
      const lead = page.locator('p.lead');
      assert.match(await textOf(page, 'p.lead'), new RegExp(`^to continue to ${APP} unverified\\. `));
      assert.equal(await lead.locator('.badge.unverified').innerText(), 'unverified');
      assert.equal(await page.getByLabel('Username').getAttribute('autofocus'), '', 'the username field has the focus');

      // A wrong password: the page says so, keeps the username, still names the app.
      await page.getByLabel('Username').fill('demo');
      await page.getByLabel('Password').fill(`${PASSWORD}-wrong`);
      const refused = await clickAndWait(page, page.getByRole('button', { name: 'Sign in' }), 'POST', '/login');
      assert.equal(refused.status(), 401);
      assert.equal(await page.getByRole('alert').innerText(), 'The username or password is wrong.');
      assert.equal(await page.getByLabel('Username').inputValue(), 'demo', 'the username is kept');
      assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password is not');
      assert.match(await textOf(page, 'p.lead'), new RegExp(`^to continue to ${APP} unverified\\.`));
      await s.shot(page, 'first-sign-in-wrong-password');
      // Then the person types the right password (Person.authorize).
    },
    decide: async (page) => {
      assert.equal(await textOf(page, 'h1'), `${APP} wants to act for you`);
      assert.match(await textOf(page, 'p.badge-line'), /^unverified Its name was chosen by whoever registered it/);
      assert.equal(
        await textOf(page, 'p.redirect'),
        `After you decide, the answer goes to an app on this computer (port ${port}).`,
      );
      assert.match(await textOf(page), /It will act on mandate demo apps \(billing and todos\) with your account demo\./);
      assert.match(await textOf(page, 'p.term'), /^How long: Until you revoke it, for \d+ \w+ at most\. It also ends by itself if the app does not use it for \d+ \w+\./);

      // Every scope asked for, in words; what cannot be undone unticked and marked so.
      const boxes = page.getByRole('checkbox');
      assert.equal(await boxes.count(), ALL_SCOPES.length);
      for (const scope of ALL_SCOPES) {
        const box = page.getByRole('checkbox', { name: WORDS[scope], exact: true });
        assert.equal(await box.isChecked(), !IRREVERSIBLE.includes(scope), `${scope} ticked by default`);
      }
      for (const scope of IRREVERSIBLE) {
        const row = page.locator('.scope', { hasText: WORDS[scope] });
        assert.match(await row.innerText(), /Cannot be undone\. Left unticked/);
      }

      // A subset: the person unticks an ordinary scope too.
      await page.getByRole('checkbox', { name: WORDS['todos.read'] }).uncheck();
      // The scope id and its tools are behind "Details".
      const write = page.locator('.scope', { hasText: WORDS['customers.write'] });
      const detail = write.locator('details p');
      assert.equal(await detail.isVisible(), false, 'the details are folded');
      await write.getByText('Details').click();
      assert.equal(await textOf(page, '.scope:has-text("Create customers in your name") details p'), 'Permission customers.write, for the tools create_customer.');
      await s.shot(page, 'first-consent-chosen');
      // Then the person clicks Allow (Person.authorize).
    },
  };
  const mark = s.recorder.mark();
  const serverUrl = new URL(MCP);
  // An application that wants all six scopes from the start asks the SDK for them.
  assert.equal(await auth(s.provider, { serverUrl, scope: ALL_SCOPES.join(' '), fetchFn: s.recorder.fetch }), 'REDIRECT');
  const response = s.provider.takeResponse();
  assert.equal(
    await auth(s.provider, { serverUrl, authorizationCode: response.code, iss: response.iss, fetchFn: s.recorder.fetch }),
    'AUTHORIZED',
  );
  s.transcript(mark);
  assert.equal(response.iss, BASE, 'the authorization response names the issuer');
  assert.equal(s.person.signIns, 1);
  const asked = s.provider.authorizationUrls.at(-1).searchParams;
  assert.deepEqual(scopes(asked.get('scope')), ALL_SCOPES, 'the agent asked for all six scopes');
  assert.equal(asked.get('resource'), MCP);
  assert.deepEqual(scopes(s.provider.heldTokens().scope), FIRST_GRANT, 'the token carries what the person ticked');

  s.transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: s.provider, fetch: s.recorder.fetch });
  await withTimeout(s.client.connect(s.transport), PAGE_MS, 'the SDK to connect');
  s.connected = true;
});

test(`RS10 RS11 C13: the agent lists and creates customers, is refused send_invoice (403 insufficient_scope), steps up; the consent page has one unticked required checkbox, Allow with nothing ticked is blocked by the browser; ticked, the call succeeds (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async (t) => {
  if (!s.requireAgent(t)) return;
  const customers = json(await s.client.callTool({ name: 'list_customers', arguments: {} })).customers;
  assert.ok(Array.isArray(customers));
  const created = json(await s.client.callTool({ name: 'create_customer', arguments: { name: 'Ada Lovelace Ltd' } }));
  assert.equal(created.customer.name, 'Ada Lovelace Ltd');
  const draft = json(await s.client.callTool({ name: 'list_invoices', arguments: {} })).invoices.find((i) => i.status === 'draft');
  assert.ok(draft, 'a draft invoice to send');

  s.next = {
    label: 'step-up',
    decide: async (page) => {
      assert.equal(await textOf(page, 'h1'), `${APP} asks for more`);
      const boxes = await page.getByRole('checkbox').evaluateAll((els) => els.map((e) => ({ value: e.value, checked: e.checked, required: e.required })));
      assert.deepEqual(boxes, [{ value: 'invoices.send', checked: false, required: true }], 'exactly one checkbox: invoices.send, unticked');
      assert.equal(await textOf(page, 'fieldset.scopes legend'), 'It now also asks to:');
      const granted = page.locator('fieldset.granted');
      assert.equal(await textOf(page, 'fieldset.granted legend'), 'You already allowed it to:');
      assert.deepEqual((await granted.locator('li').allInnerTexts()).sort(), FIRST_GRANT.map((x) => WORDS[x]).sort());

      // Allow with nothing ticked: the browser refuses to submit (the checkbox is required).
      const box = page.getByRole('checkbox', { name: WORDS['invoices.send'] });
      const before = page.url();
      const posts = [];
      const onRequest = (r) => r.method() === 'POST' && posts.push(r.url());
      page.on('request', onRequest);
      // Observe the `invalid` event the browser fires when it refuses to submit.
      await box.evaluate((el) => {
        window.e2eRefused = new Promise((resolve) => el.addEventListener('invalid', () => resolve(true), { once: true }));
      });
      await page.getByRole('button', { name: 'Allow' }).click();
      assert.equal(await withTimeout(page.evaluate(() => window.e2eRefused), PAGE_MS, 'the browser to refuse the empty form'), true);
      assert.equal(await box.evaluate((el) => el.validity.valueMissing), true);
      page.off('request', onRequest);
      assert.deepEqual(posts, [], 'nothing was posted');
      assert.equal(page.url(), before, 'the page did not navigate');
      await s.shot(page, 'step-up-nothing-ticked');

      await box.check();
      await s.shot(page, 'step-up-ticked');
    },
  };
  const mark = s.recorder.mark();
  let refused;
  try {
    await s.client.callTool({ name: 'send_invoice', arguments: { invoice_id: draft.id } });
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    refused = e;
  }
  s.transcript(mark);
  assert.ok(refused, 'send_invoice went through without invoices.send');
  const [challenge] = s.recorder.since(mark, (e) => e.tool === 'send_invoice');
  assert.equal(challenge.status, 403);
  assert.equal(param(challenge.wwwAuthenticate, 'error'), 'insufficient_scope');
  // RS11: what the token holds and what the tool needs, in one challenge.
  assert.deepEqual(scopes(param(challenge.wwwAuthenticate, 'scope')), [...FIRST_GRANT, 'invoices.send'].sort());
  assert.equal(s.person.signIns, 1, 'no second sign-in: the browser session lives on');
  assert.deepEqual(
    scopes(s.provider.authorizationUrls.at(-1).searchParams.get('scope')),
    [...FIRST_GRANT, 'invoices.send'].sort(),
    'the SDK asked for the union of what it held and what the challenge named',
  );
  const response = s.provider.takeResponse();
  await s.transport.finishAuth(response.code, response.iss);
  assert.deepEqual(scopes(s.provider.heldTokens().scope), [...FIRST_GRANT, 'invoices.send'].sort());
  const sent = json(await s.client.callTool({ name: 'send_invoice', arguments: { invoice_id: draft.id } }));
  assert.deepEqual(sent, { invoice_id: draft.id, status: 'sent' });
});

test(`CA-01: the account pages: navigation on each; Connected apps lists the agent with what it can do and when it was last used; the person's own action on Your apps; Activity in plain words with the agent's name, filtered by app (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async (t) => {
  if (!s.requireAgent(t)) return;
  const page = await s.open('/account/apps');
  try {
    await assertNavigation(page, 'Connected apps');
    assert.equal(await textOf(page, 'h1'), 'Connected apps');
    const card = page.locator('.app-card', { hasText: APP });
    assert.equal(await card.count(), 1);
    assert.equal(await textOf(page, '.app-card h2'), `${APP} unverified`);
    assert.deepEqual((await card.locator('ul li').allInnerTexts()).sort(), [...FIRST_GRANT, 'invoices.send'].map((x) => WORDS[x]).sort());
    assert.match(await card.locator('.meta').innerText(), /^Allowed \d{4}-\d\d-\d\d \d\d:\d\d UTC · last used \d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
    await s.shot(page, 'connected-apps');

    // The person's own use of the demo apps, through the navigation.
    await clickAndWait(page, page.getByRole('navigation', { name: 'Your account' }).getByRole('link', { name: 'Your apps' }), 'GET', '/apps');
    await assertNavigation(page, 'Your apps');
    assert.match(await textOf(page), /Ada Lovelace Ltd/, 'the customer the agent created is there');
    await page.getByLabel('New customer').fill('Grace Hopper & Co');
    await clickAndWait(page, page.getByRole('button', { name: 'Create customer' }), 'POST', '/apps/customers');
    assert.match(await textOf(page), /Grace Hopper & Co/);
    await s.shot(page, 'your-apps');

    await clickAndWait(page, page.getByRole('navigation', { name: 'Your account' }).getByRole('link', { name: 'Activity' }), 'GET', '/account/activity');
    await assertNavigation(page, 'Activity');
    const lines = async () => (await page.locator('ol.activity li .text').allInnerTexts()).map((l) => l.replace(/\s+/g, ' '));
    const everyone = await lines();
    say(`activity: ${everyone.join(' | ')}`);
    // A self-registered client's name is quoted and marked as what it calls itself (issue 13).
    const SELF_NAMED = `The app calling itself “${APP}” unverified`;
    const self_named = `the app calling itself “${APP}” unverified`;
    const expected = [
      `${SELF_NAMED} created customer Ada Lovelace Ltd for you`,
      `${SELF_NAMED} was refused: you have not allowed it to send invoices to your customers (cannot be undone)`,
      'You created customer Grace Hopper & Co',
    ];
    for (const line of expected) assert.ok(everyone.includes(line), `the activity shows "${line}"`);
    assert.ok(everyone.some((l) => new RegExp(`^${SELF_NAMED} sent the invoice of .* to .* for you$`).test(l)), 'the activity shows the invoice sent');
    // Both consents, in words: the first whole, the step-up as what it added.
    const lower = (x) => WORDS[x][0].toLowerCase() + WORDS[x].slice(1);
    const consents = everyone.filter((l) => l.startsWith('You allowed ') || l.startsWith('You also allowed '));
    assert.deepEqual(consents, [
      `You also allowed ${self_named} to ${lower('invoices.send')}`,
      `You allowed ${self_named} to ${FIRST_GRANT.map(lower).join('; ')}`,
    ]);
    assert.ok(!everyone.some((l) => /[0-9a-f]{8}-[0-9a-f]{4}|client_id|tool\.call/.test(l)), 'no ids or event kinds');
    await s.shot(page, 'activity');

    // The filter: only what concerns the agent (the person's own customer disappears).
    await page.getByLabel('Show').selectOption({ label: `“${APP}” (unverified)` });
    await clickAndWait(page, page.getByRole('button', { name: 'Show' }), 'GET', '/account/activity');
    assert.equal(new URL(page.url()).searchParams.get('app'), s.clientId);
    const filtered = await lines();
    assert.ok(filtered.length > 0 && filtered.length < everyone.length, `${filtered.length} of ${everyone.length} lines`);
    assert.ok(filtered.every((l) => l.includes(APP)), `every line names ${APP}: ${filtered.join(' | ')}`);
    assert.ok(!filtered.includes('You created customer Grace Hopper & Co'));
    assert.equal(await page.getByLabel('Show').locator('option:checked').innerText(), `“${APP}” (unverified)`);
    await s.shot(page, 'activity-filtered');
  } finally {
    await page.close();
  }
});

/**
 * One cross-site attempt: `page` (in the victim's profile) opens the attacker's page, which posts
 * `fields` to `action`. Asserts mandate answered 403 with its cross-site refusal and, where the
 * answer can be shown, that the person sees it. Returns the request headers the browser sent.
 */
async function runAttack(page, { label, origin, framing, action, fields, plantCookie }) {
  if (plantCookie) {
    // The attacker's page plants the cookie first; wait until the browser's cookie store has it
    // for mandate's origin (a document.cookie write reaches the store asynchronously).
    await page.goto(`${s.attacker.origins[origin]}${s.attacker.plantingPage(`${plantCookie.name}=${plantCookie.value}`)}`);
    const planted = async () => (await page.context().cookies(BASE)).some((c) => c.name === plantCookie.name && c.value === plantCookie.value);
    const deadline = Date.now() + PAGE_MS;
    while (!(await planted())) {
      assert.ok(Date.now() < deadline, `the ${plantCookie.name} cookie was not planted for ${BASE}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const pathname = s.attacker.page(`${BASE}${action}`, fields, { framing });
  const url = `${s.attacker.origins[origin]}${pathname}`;
  const posted = page
    .context()
    .waitForEvent('response', { predicate: (r) => r.url() === `${BASE}${action}` && r.request().method() === 'POST', timeout: PAGE_MS });
  const popup = framing === 'sandboxed-popup' ? page.context().waitForEvent('page', { timeout: PAGE_MS }) : undefined;
  await page.goto(url);
  const response = await posted;
  const headers = await response.request().allHeaders();
  const from = framing === 'top' ? redactUrl(url) : `a ${framing} in ${s.attacker.origins[origin]}`;
  const cookies = (headers.cookie ?? '').split(/;\s*/).map((c) => c.split('=')[0]).filter(Boolean).join(', ') || 'none';
  say(`attack ${label}: POST ${action} from ${from} (Origin: ${headers.origin}, Sec-Fetch-Site: ${headers['sec-fetch-site']}, cookies: ${cookies}) -> ${response.status()}`);
  assert.equal(response.status(), 403, `${label}: HTTP ${response.status()}`);
  if (framing === 'sandboxed-iframe') {
    // mandate's pages may not be framed (frame-ancestors 'none', X-Frame-Options: DENY): the
    // browser never reads the answer's body, the frame stays empty. The status is all there is.
    assert.equal(headers.origin, 'null');
    await s.shot(page, `attack-${label}`);
    return headers;
  }
  // The person sees mandate's page saying why: the browser shows the answer at the top level.
  const shown = popup ? await popup : page;
  await shown.waitForURL(`${BASE}${action}`);
  await shown.waitForLoadState('load');
  assert.equal(await textOf(shown, 'h1'), 'Request refused');
  assert.equal(await shown.getByRole('alert').innerText(), CROSS_SITE_REFUSAL);
  await s.shot(shown, `attack-${label}`);
  if (shown !== page) await shown.close();
  return headers;
}

const FRAMINGS = [
  { origin: 'otherPort', framing: 'top', name: 'other-port' },
  { origin: 'localhost', framing: 'top', name: 'localhost' },
  { origin: 'otherPort', framing: 'sandboxed-iframe', name: 'sandboxed-iframe' },
  { origin: 'localhost', framing: 'sandboxed-popup', name: 'sandboxed-iframe-popup' },
];

test(`UI-03 UI-09: login CSRF with a planted double-submit cookie and the right password, from another port of 127.0.0.1, from localhost and from sandboxed iframes: mandate's 403 page, nobody signed in (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async () => {
  // A victim who is not signed in: a login CSRF would sign them in as someone else.
  const profile = await s.person.newProfile();
  try {
    const page = await profile.newPage();
    for (const f of FRAMINGS) {
      const planted = crypto.randomBytes(16).toString('hex');
      const headers = await runAttack(page, {
        label: `login-${f.name}`,
        origin: f.origin,
        framing: f.framing,
        action: '/login',
        fields: { csrf: planted, username: 'demo', password: PASSWORD },
        // Only a page on 127.0.0.1 can plant a cookie for mandate's host.
        plantCookie: f.origin === 'otherPort' ? { name: 'mandate_login', value: planted } : undefined,
      });
      if (f.origin === 'otherPort' && f.framing === 'top') {
        // The strongest attempt: the browser sent the planted cookie matching the form field.
        assert.match(headers.cookie ?? '', new RegExp(`(^|; )mandate_login=${planted}(;|$)`));
        assert.equal(headers['sec-fetch-site'], 'same-site');
      }
      if (f.framing !== 'top') assert.equal(headers.origin, 'null');
      const cookies = await profile.cookies(BASE);
      assert.deepEqual(cookies.filter((c) => c.name === 'mandate_session'), [], 'no session cookie');
    }
    // Still signed out: the account pages send the victim to the sign-in page.
    await page.goto(`${BASE}/account/apps`);
    assert.equal(new URL(page.url()).pathname, '/login');
  } finally {
    await profile.close();
  }
});

test(`UI-01 CA-03: consent and revoke posted from another port, from localhost and from sandboxed iframes against the signed-in person: mandate's 403 page, no code issued, the grant still works (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async (t) => {
  if (!s.requireAgent(t)) return;
  // A real pending request: the person opens an authorization URL (as a link from the agent
  // would) asking for a scope not yet allowed.
  const verifier = crypto.randomBytes(32).toString('base64url');
  const authorize = new URL(`${BASE}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: s.clientId,
    redirect_uri: s.callback.redirectUri,
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: crypto.randomBytes(16).toString('base64url'),
    scope: 'todos.write',
    resource: MCP,
  })) {
    authorize.searchParams.set(k, v);
  }
  const victim = await s.person.newPage();
  try {
    await victim.goto(authorize.href);
    assert.equal(new URL(victim.url()).pathname, '/consent');
    const request = new URL(victim.url()).searchParams.get('request');
    assert.ok(request, 'a pending request id');
    await s.shot(victim, 'attack-target-consent');

    const page = await s.person.newPage();
    for (const f of FRAMINGS) {
      await runAttack(page, {
        label: `consent-${f.name}`,
        origin: f.origin,
        framing: f.framing,
        action: '/consent',
        fields: { csrf: 'guessed', request, action: 'allow', scope: 'todos.write' },
      });
      await runAttack(page, {
        label: `revoke-${f.name}`,
        origin: f.origin,
        framing: f.framing,
        action: '/account/apps/revoke',
        fields: { csrf: 'guessed', client_id: s.clientId },
      });
    }
    await page.close();

    // Nothing changed: no code reached the client, the request is still pending, the grant works.
    assert.equal(s.callback.unread, 0, 'no authorization response was sent to the client');
    await victim.reload();
    // The person allowed this app before: the page reads as a request for more.
    assert.equal(await textOf(victim, 'h1'), `${APP} asks for more`);
    assert.deepEqual(await victim.getByRole('checkbox').evaluateAll((els) => els.map((e) => e.value)), ['todos.write']);
    const listed = json(await s.client.callTool({ name: 'list_customers', arguments: {} }));
    assert.ok(listed.customers.length >= 2);
    // The person says no to the pending request (Deny submits without ticking).
    await clickAndWait(victim, victim.getByRole('button', { name: 'Deny' }), 'POST', '/consent');
    const denied = await s.callback.next(PAGE_MS);
    assert.equal(denied.error, 'access_denied');
    assert.equal(denied.iss, BASE);
  } finally {
    await victim.close();
  }
});

test(`CA-02 RS9: revoke with confirmation: the page names the app and what it loses, Cancel keeps it working, Revoke reports it; the agent's next MCP request gets 401 invalid_token and its refresh token is refused (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async (t) => {
  if (!s.requireAgent(t)) return;
  const page = await s.open('/account/apps');
  try {
    const card = page.locator('.app-card', { hasText: APP });
    await clickAndWait(page, card.getByRole('link', { name: 'Revoke access…' }), 'GET', '/account/apps/revoke');
    await assertNavigation(page, 'Connected apps');
    assert.equal(await textOf(page, 'h1'), `Revoke ${APP}’s access?`);
    assert.match(await textOf(page), new RegExp(`${APP} unverified will no longer be able to:`));
    assert.deepEqual((await page.locator('main ul li').allInnerTexts()).sort(), [...FIRST_GRANT, 'invoices.send'].map((x) => WORDS[x]).sort());
    assert.match(await textOf(page), /Its tokens stop working at once: its next request is refused\./);
    await s.shot(page, 'revoke-confirm');

    // Cancel: back to the list, nothing revoked.
    await clickAndWait(page, page.getByRole('link', { name: 'Cancel' }), 'GET', '/account/apps');
    assert.equal(await page.locator('.app-card', { hasText: APP }).count(), 1);
    assert.equal(await page.getByRole('status').count(), 0);
    await s.shot(page, 'revoke-cancelled');
    const still = json(await s.client.callTool({ name: 'list_customers', arguments: {} }));
    assert.ok(Array.isArray(still.customers), 'the agent still works after Cancel');

    await clickAndWait(page, page.locator('.app-card', { hasText: APP }).getByRole('link', { name: 'Revoke access…' }), 'GET', '/account/apps/revoke');
    const revoked = await clickAndWait(page, page.getByRole('button', { name: 'Revoke access' }), 'POST', '/account/apps/revoke');
    assert.equal(revoked.status(), 303);
    assert.equal(new URL(page.url()).pathname, '/account/apps');
    assert.equal(
      await textOf(page, '[role=status]'),
      `${APP} unverified can no longer act for you. Its tokens were revoked: its next request is refused.`,
    );
    assert.equal(await page.locator('.app-card').count(), 0);
    assert.equal(await textOf(page, 'p.empty'), 'No application can act for you.');
    await s.shot(page, 'revoked');
  } finally {
    await page.close();
  }

  // The agent's next request: 401 invalid_token; the SDK's refresh is refused; it then wants the
  // person again, who does not come (s.next is unset).
  const mark = s.recorder.mark();
  const outcome = await s.client.callTool({ name: 'list_customers', arguments: {} }).then(
    (r) => r,
    (e) => e,
  );
  s.transcript(mark);
  assert.ok(outcome instanceof Error, `the call after revocation succeeded: ${JSON.stringify(outcome)}`);
  assert.match(outcome.message, /does not authorize this application again/);
  const [first, ...rest] = s.recorder.since(mark);
  assert.equal(first.path, '/mcp');
  assert.equal(first.tool, 'list_customers');
  assert.equal(first.status, 401);
  assert.match(first.wwwAuthenticate, /^Bearer /);
  assert.equal(param(first.wwwAuthenticate, 'error'), 'invalid_token');
  const refresh = rest.find((e) => e.grantType === 'refresh_token');
  assert.equal(refresh?.status, 400);
  assert.equal(refresh.responseJson?.error, 'invalid_grant');
  assert.ok(!rest.some((e) => e.path === '/mcp' && e.status === 200), 'no MCP request succeeded');
});

test(`UI-10: sign out through the navigation; the account pages then ask to sign in (${WIDTH} px)`, { timeout: BROWSER_STEP_MS }, async () => {
  const page = await s.open('/account/activity');
  try {
    await assertNavigation(page, 'Activity');
    await clickAndWait(page, page.getByRole('navigation', { name: 'Your account' }).getByRole('button', { name: /^Sign out/ }), 'POST', '/logout');
    assert.equal(new URL(page.url()).pathname, '/');
    assert.equal(await page.getByRole('navigation', { name: 'Your account' }).count(), 0);
    assert.deepEqual((await s.person.cookies(BASE)).filter((c) => c.name === 'mandate_session'), []);
    await s.shot(page, 'signed-out');
    await page.goto(`${BASE}/account/apps`);
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.equal(await textOf(page, 'h1'), 'Sign in');
    await s.shot(page, 'sign-in-after-sign-out');
  } finally {
    await page.close();
  }
});
