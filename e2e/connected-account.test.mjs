// Connected accounts, as a person clicks them in Chromium (Debian's, driven by playwright-core,
// headless; nothing rewritten, intercepted or injected) and an agent on the official MCP
// TypeScript SDK (@modelcontextprotocol/sdk 1.x) lives them, against `mandate serve --demo`
// (MANDATE_E2E_BASE, started by .ci/e2e.sh) and the Example Accounts it starts beside itself: a
// second, local mandate on another loopback port (MANDATE_E2E_EXAMPLE_URL, its own `demo` person
// with its own password, MANDATE_E2E_EXAMPLE_PASSWORD) playing a third-party OAuth provider. The
// main server serves <base>/mcp/example, a gateway resource in front of Example Accounts' own
// OAuth-protected /mcp, whose tool calls carry the person's own Example Accounts token.
//   1. The agent connects to /mcp/example; the person signs in at mandate; the consent page asks
//      to connect the Example Accounts account first and refuses Allow until then; the person
//      connects (mandate's connect page, then Example Accounts' own sign-in and consent, on
//      another origin), comes back to the consent page, allows; the SDK finishes its flow.
//   2. list_customers through /mcp/example answers with Example Accounts' data (a customer the
//      main server's demo data lacks): the call ran as the person there.
//   3. mandate's Connections page lists Example Accounts as connected, and Example Accounts' own
//      Connected apps page lists mandate's client; "Disconnect Example Accounts" on mandate
//      revokes it at Example Accounts, whose Connected apps page no longer lists it.
//   4. The agent's next call is a JSON-RPC error -32042 (URL elicitation required) naming the
//      connect URL, as the SDK surfaces it (UrlElicitationRequiredError, an McpError).
//   5. The person opens that URL, connects again, and the agent's call works again without a new
//      authorization of the agent.
// One `node:test` test per step, in order; every page Chromium shows is saved as a screenshot
// under target/e2e/screenshots/connected-account/, and the navigations and the SDK's HTTP
// traffic (no secrets) go to the transcript.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';

import { Person, readConsent } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { MemoryOAuthProvider } from './lib/provider.mjs';
import { Recorder } from './lib/recorder.mjs';
import { redactUrl, say, scopes, withTimeout } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const EXAMPLE = process.env.MANDATE_E2E_EXAMPLE_URL;
const EXAMPLE_PASSWORD = process.env.MANDATE_E2E_EXAMPLE_PASSWORD;
const OUT = process.env.MANDATE_E2E_OUT ?? path.resolve(import.meta.dirname, '../target/e2e');

const STEP_MS = 90_000; // a test that drives pages at both servers
const CALL_MS = 20_000; // a test of tool calls only
const PAGE_MS = 15_000; // one page load or click

const SDK_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url), 'utf8'),
).version;
const SDK_LABEL = `@modelcontextprotocol/sdk ${SDK_VERSION}`;
const AGENT = `mandate e2e connected account (${SDK_LABEL})`;

const PROVIDER = 'example';
const TITLE = 'Example Accounts';
const MCP_URL = `${BASE}/mcp/${PROVIDER}`;
const CONNECT_URL = `${BASE}/account/connections/${PROVIDER}`;
const CONNECT = `Connect your ${TITLE} account`;
const DISCONNECT = `Disconnect ${TITLE}`;
/** mandate's client at Example Accounts, as `serve --demo` registers it. */
const MANDATE_AT_EXAMPLE = 'mandate demo (connected accounts)';
/** A customer only Example Accounts' demo person has. */
const INITECH = 'Initech (kept at Example Accounts)';
const READ = `${PROVIDER}.read`;
const READ_TOOLS = ['get_customer', 'list_customers', 'list_invoices'];
const SCOPES_META = 'io.mandate/scopes';

const s = {
  recorder: new Recorder(),
  callback: new LoopbackCallback(),
  /** Chromium, and the person's one profile (their cookies at both servers). */
  person: undefined,
  provider: undefined,
  client: undefined,
  transport: undefined,
  connected: false,
  /** What the person saw during the agent's authorization (step 1). */
  seen: {},
  /** Step 3 disconnected the account; step 4's error. */
  disconnected: false,
  elicitation: undefined,
};

const origin = (href) => new URL(href).origin;
const where = (href) => (origin(href) === EXAMPLE ? 'example-accounts' : origin(href) === BASE ? 'mandate' : origin(href));

/** The visible text of `selector` (default: the page's main content), whitespace folded. */
async function textOf(page, selector = 'main') {
  return (await page.locator(selector).first().innerText()).replace(/\s+/g, ' ').trim();
}

/** The page's text for an error message. */
async function bodyText(page) {
  return (await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 400);
}

async function shot(page, label) {
  await s.person.capture(page, label);
}

/** Writes the tab's top-level navigations (and their statuses) to the transcript. */
function watch(page, who = 'person') {
  page.on('response', (r) => {
    const req = r.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    say(`${who}: ${req.method()} ${where(r.url())} ${redactUrl(r.url()).replace(/^https?:\/\/[^/]+/, '')} -> ${r.status()}`);
  });
  return page;
}

/** A new tab in the person's profile, its navigations in the transcript. */
async function newTab() {
  return watch(await s.person.newPage());
}

/** Runs `action` (a click) and waits until the tab shows the next document (after any redirects), loaded. */
async function navigate(page, action) {
  const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
  await action();
  await navigated;
  await page.waitForLoadState('load');
}

/** Runs `action` (a click on a form button) and returns the answer to the form's POST to `pathname`, once the next document loaded. */
async function post(page, pathname, action) {
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === pathname),
    navigate(page, action),
  ]);
  return answer;
}

async function goto(page, url) {
  const response = await page.goto(url);
  assert.ok(response?.ok(), `GET ${redactUrl(url)}: HTTP ${response?.status()}: ${await bodyText(page)}`);
}

/** Fails with the page's text unless the tab is at `pathname` of `base`. */
async function assertAt(page, base, pathname, what) {
  const u = new URL(page.url());
  if (u.origin !== base || u.pathname !== pathname) {
    assert.fail(`expected ${what} (${where(base)} ${pathname}), the tab is at ${redactUrl(page.url())}: ${await bodyText(page)}`);
  }
}

/** The text of the error paragraph of a mandate form page ('' when there is none). */
async function formError(page) {
  const e = page.locator('main p.error[role=alert]');
  return (await e.count()) ? (await e.innerText()).trim() : '';
}

/** Who the page's account navigation says is signed in (undefined: nobody). */
async function signedInAs(page) {
  const who = page.locator('nav.account .who');
  if ((await who.count()) === 0) return undefined;
  return (await who.innerText()).trim();
}

/**
 * The person's part at Example Accounts, from the tab its page is in: signs in there as demo with
 * Example Accounts' own password if it asks, allows if it shows its consent page, and returns
 * once the tab is back at mandate, with what Example Accounts showed.
 */
async function atExampleAccounts(page, label) {
  const shown = { signIn: false, consent: undefined };
  for (let i = 0; i < 3 && origin(page.url()) === EXAMPLE; i += 1) {
    const at = new URL(page.url()).pathname;
    if (at === '/login') {
      assert.ok(!shown.signIn, `${TITLE} asked to sign in twice: ${await formError(page)}`);
      shown.signIn = true;
      await shot(page, `${label}-example-sign-in`);
      await page.fill('input[name=username]', 'demo');
      await page.fill('input[name=password]', EXAMPLE_PASSWORD);
      const answer = await post(page, '/login', () => page.click('form[action="/login"] button[type=submit]'));
      if (origin(page.url()) === EXAMPLE && new URL(page.url()).pathname === '/login') {
        await shot(page, `${label}-example-sign-in-refused`);
        assert.fail(`${TITLE} refused the sign-in (POST /login answered ${answer.status()}): ${await bodyText(page)}`);
      }
    } else if (at === '/consent') {
      assert.ok(!shown.consent, `${TITLE} asked to consent twice`);
      await shot(page, `${label}-example-consent`);
      shown.consent = await readConsent(page);
      const answer = await post(page, '/consent', () => page.click('button[name=action][value=allow]'));
      say(`${label}: Allow at ${TITLE}: POST /consent -> ${answer.status()}`);
    } else {
      await shot(page, `${label}-example-unexpected`);
      assert.fail(`an unexpected page at ${TITLE}, ${redactUrl(page.url())}: ${await bodyText(page)}`);
    }
  }
  if (origin(page.url()) !== BASE) {
    await shot(page, `${label}-not-back`);
    assert.fail(`after ${TITLE} the tab is at ${redactUrl(page.url())}, not at mandate: ${await bodyText(page)}`);
  }
  say(
    `${label}: ${TITLE} showed ${[shown.signIn && 'its sign-in form', shown.consent && 'its consent page'].filter(Boolean).join(' and ') || 'nothing (its session and consent were remembered)'}`,
  );
  return shown;
}

/**
 * On mandate's page "Connect your Example Accounts account": presses its button, goes through
 * Example Accounts, and returns once the tab is back at mandate (where it was sent).
 */
async function connectOnConnectPage(page, label) {
  await shot(page, `${label}-connect-page`);
  assert.equal(await textOf(page, 'main h1'), CONNECT, 'mandate\'s connect page');
  const leaving = await cookieFingerprints(BASE);
  const button = page.getByRole('button', { name: CONNECT, exact: true });
  // Where the tab went: to Example Accounts, which may answer at once (the person signed in
  // there, and consented before) and send it straight back to mandate's callback.
  const visited = [];
  const onResponse = (r) => {
    if (r.request().isNavigationRequest() && r.request().frame() === page.mainFrame()) visited.push(new URL(r.url()));
  };
  page.on('response', onResponse);
  const answer = await post(page, `/account/connections/${PROVIDER}/connect`, () => button.click()).finally(() =>
    page.off('response', onResponse),
  );
  const authorizeAt = visited.find((u) => u.origin === EXAMPLE && u.pathname === '/authorize');
  if (!authorizeAt) {
    await shot(page, `${label}-connect-refused`);
    assert.fail(`POST /account/connections/${PROVIDER}/connect answered ${answer.status()}, the tab is at ${redactUrl(page.url())} and never went to ${TITLE}' /authorize: ${await bodyText(page)}`);
  }
  const shown = await atExampleAccounts(page, label);
  await shot(page, `${label}-back-at-mandate`);
  // A diagnosis aid: whether the cookies the browser held for mandate before the connect button
  // changed by the time it is back (cookies ignore ports: both servers are on 127.0.0.1).
  const back = await cookieFingerprints(BASE);
  const changed = Object.keys(leaving).filter((n) => leaving[n] !== back[n]);
  say(`${label}: cookies the browser sends mandate, before the connect button: ${JSON.stringify(leaving)}; back from ${TITLE}: ${JSON.stringify(back)}${changed.length ? `; changed meanwhile: ${changed.join(', ')}` : ''}`);
  return shown;
}

/** The cookies the person's profile sends to `url`: name → a short SHA-256 fingerprint of the value (never the value). */
async function cookieFingerprints(url) {
  const out = {};
  for (const c of await s.person.cookies(url)) out[c.name] = crypto.createHash('sha256').update(c.value).digest('hex').slice(0, 8);
  return out;
}

/** The cards of mandate's "Connected accounts" list: { title, status, text }. */
async function connectedAccounts(page) {
  return page.locator('main h2', { hasText: 'Connected accounts' }).locator('xpath=following-sibling::ul[1]/li').evaluateAll((els) =>
    els.map((li) => ({
      title: li.querySelector('h3')?.firstChild?.textContent.trim(),
      status: li.querySelector('h3 .badge')?.textContent.trim(),
      text: li.innerText.replace(/\s+/g, ' ').trim(),
    })),
  );
}

/** The app names on a Connected apps page (/account/apps). */
async function appNames(page) {
  return page.locator('main ul.apps > li.app-card h2 bdi.app').evaluateAll((els) => els.map((e) => e.textContent.trim()));
}

/**
 * Example Accounts' own Connected apps page, in the person's profile: signed in there (as demo,
 * with Example Accounts' password) if it asks. Returns the app names it lists.
 */
async function appsAtExampleAccounts(page, label) {
  await goto(page, `${EXAMPLE}/account/apps`);
  if (new URL(page.url()).pathname === '/login') {
    say(`${label}: ${TITLE} asks to sign in before showing its Connected apps`);
    await shot(page, `${label}-example-sign-in`);
    await page.fill('input[name=username]', 'demo');
    await page.fill('input[name=password]', EXAMPLE_PASSWORD);
    const answer = await post(page, '/login', () => page.click('form[action="/login"] button[type=submit]'));
    assert.equal(answer.status(), 303, `${TITLE}' sign-in: ${await bodyText(page)}`);
  }
  await assertAt(page, EXAMPLE, '/account/apps', `${TITLE}' Connected apps page`);
  assert.equal(await signedInAs(page), 'demo', `signed in at ${TITLE} as demo`);
  await shot(page, `${label}-example-connected-apps`);
  return appNames(page);
}

/** The customers on the main server's /apps (the person's own use of the demo apps there). */
async function customersAtMandate(page) {
  await goto(page, `${BASE}/apps`);
  return page
    .locator('h2', { hasText: 'Customers' })
    .locator('xpath=following-sibling::*[1]')
    .evaluate((el) => (el.tagName === 'UL' ? [...el.querySelectorAll('li')].map((li) => li.firstChild.textContent.trim()) : []));
}

/** The SDK's HTTP traffic since `mark`, one line each (no secrets). */
function transcript(mark) {
  for (const e of s.recorder.since(mark)) {
    const what = e.rpc ? ` ${e.rpc}${e.tool ? ` ${e.tool}` : ''}` : e.grantType ? ` grant_type=${e.grantType}` : '';
    const challenge = e.wwwAuthenticate ? `  WWW-Authenticate: ${e.wwwAuthenticate}` : '';
    say(`sdk: ${e.method} ${e.path}${what} -> ${e.status}${challenge}`);
  }
}

/** A `WWW-Authenticate` parameter. */
function param(header, name) {
  return header?.match(new RegExp(`${name}="([^"]*)"`))?.[1];
}

/** The text of a tool result's first content block. */
function text(result) {
  const block = result?.content?.[0];
  assert.equal(block?.type, 'text', `a text result, got ${JSON.stringify(result).slice(0, 300)}`);
  return block.text;
}

/** The customer names list_customers answers, through the agent's session. */
async function listCustomers() {
  const result = await s.client.callTool({ name: 'list_customers', arguments: {} });
  assert.ok(!result.isError, `list_customers failed: ${JSON.stringify(result).slice(0, 400)}`);
  return JSON.parse(text(result)).customers.map((c) => c.name);
}

function requireConnected(t) {
  if (!s.connected) {
    t.skip('the agent never connected (see the first failure)');
    return false;
  }
  return true;
}

const newTransport = () => new StreamableHTTPClientTransport(new URL(MCP_URL), { authProvider: s.provider, fetch: s.recorder.fetch });

/**
 * The person's part of the agent's authorization: the authorization URL in a new tab, mandate's
 * sign-in (demo, the main password), then the consent page, where the person first tries Allow,
 * then connects the Example Accounts account from the link the page offers, and is back at the
 * consent page; Person.continueAuthorization then clicks Allow and waits for the redirect URI.
 */
async function authorizeAsThePerson(url) {
  say(`provider: redirectToAuthorization scope="${url.searchParams.get('scope')}" resource=${url.searchParams.get('resource')}`);
  const page = await newTab();
  try {
    await goto(page, url.href);
    await s.person.continueAuthorization(page, (u) => u.href.startsWith(s.callback.redirectUri), (consent) => connectFromConsent(consent), {
      label: '1',
    });
  } finally {
    await page.close().catch(() => {});
  }
  return s.callback.next(PAGE_MS);
}

async function connectFromConsent(page) {
  const seen = s.seen;
  const request = new URL(page.url()).searchParams.get('request');
  assert.ok(request, `the consent page names its request: ${redactUrl(page.url())}`);
  seen.request = request;
  seen.consent = await readConsent(page);
  seen.consentText = await textOf(page);

  // The section that asks to connect first, and its link.
  const section = page.locator('main section.connect-step');
  assert.equal(await section.count(), 1, `the consent page has a section to connect first: ${seen.consentText}`);
  assert.equal(await textOf(page, 'main section.connect-step h2'), `First: connect your ${TITLE} account`);
  const link = section.getByRole('link', { name: CONNECT, exact: true });
  assert.equal(await link.count(), 1, `the section links "${CONNECT}"`);
  const href = new URL(await link.getAttribute('href'), BASE);
  assert.equal(`${href.origin}${href.pathname}`, CONNECT_URL, 'the link leads to mandate\'s connect page');
  assert.equal(href.searchParams.get('return'), `/consent?request=${request}`, 'and back to this consent page');

  // Allow before connecting: refused, on the same consent page.
  const refused = await post(page, '/consent', () => page.click('button[name=action][value=allow]'));
  await shot(page, '1-consent-allow-refused');
  seen.allowFirst = { status: refused.status(), error: await formError(page), url: page.url() };
  say(`1: Allow before connecting: POST /consent -> ${refused.status()}: ${seen.allowFirst.error}`);
  assert.equal(refused.status(), 400, `Allow before connecting: ${await bodyText(page)}`);
  assert.match(seen.allowFirst.error, new RegExp(`^Connect your ${TITLE} account first`), 'the page says why');
  assert.equal(await page.locator('main section.connect-step').count(), 1, 'the connect section is still there');

  // The person connects from the link.
  await navigate(page, () => page.locator('main section.connect-step').getByRole('link', { name: CONNECT, exact: true }).click());
  await assertAt(page, BASE, `/account/connections/${PROVIDER}`, `mandate's page "${CONNECT}"`);
  seen.connectPageText = await textOf(page);
  seen.atExampleAccounts = await connectOnConnectPage(page, '1');

  // Back at the consent page for the same request, the connect section gone.
  await assertAt(page, BASE, '/consent', 'the consent page, after connecting');
  assert.equal(new URL(page.url()).searchParams.get('request'), request, 'the consent page for the same request');
  await shot(page, '1-consent-after-connecting');
  assert.equal(await page.locator('main section.connect-step').count(), 0, 'the connect section is gone');
  assert.equal(await formError(page), '', 'no error on the consent page');
  seen.consentAfter = await readConsent(page);
  seen.connectedBeforeAllow = true;
  // Person.continueAuthorization clicks Allow now.
}

before(async () => {
  for (const [name, value] of Object.entries({ BASE, PASSWORD, EXAMPLE_URL: EXAMPLE, EXAMPLE_PASSWORD })) {
    assert.ok(value, `MANDATE_E2E_${name} is set (run .ci/e2e.sh)`);
  }
  assert.notEqual(origin(EXAMPLE), origin(BASE), `${TITLE} is another origin`);
  say(`mandate ${BASE}; ${TITLE} ${EXAMPLE}; agent ${AGENT} at ${MCP_URL}`);
  await s.callback.start();
  s.person = new Person({
    username: 'demo',
    password: PASSWORD,
    screenshots: path.join(OUT, 'screenshots', 'connected-account'),
    stepTimeoutMs: PAGE_MS,
    viewport: { width: 1280, height: 800 },
  });
  await s.person.start();
  s.provider = new MemoryOAuthProvider({
    redirectUri: s.callback.redirectUri,
    clientName: AGENT,
    grantTypes: ['authorization_code', 'refresh_token'],
    issuer: BASE,
    authorize: authorizeAsThePerson,
  });
  // An agent that handles URL-mode elicitations (MCP 2025-11-25), as the -32042 answer expects.
  s.client = new Client({ name: 'mandate-e2e-connected-account', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
});

after(async () => {
  const quietly = (p, what) => withTimeout(p, PAGE_MS, what).catch((e) => say(`cleanup: ${e.message}`));
  await quietly(s.client?.close() ?? Promise.resolve(), 'the MCP client to close');
  await quietly(s.person?.close() ?? Promise.resolve(), 'Chromium to close');
  await quietly(s.callback.close(), 'the callback server to close');
});

test(`1. ${SDK_LABEL} connects to /mcp/${PROVIDER}; the person signs in at mandate; the consent page asks to connect the ${TITLE} account first and refuses Allow until then; the person connects it (mandate's connect page, ${TITLE}' own sign-in and consent on another origin), is back at the consent page without that section, allows; the SDK finishes its flow`, { timeout: STEP_MS }, async () => {
  const mark = s.recorder.mark();
  const first = newTransport();
  try {
    await s.client.connect(first);
    assert.fail('connect succeeded without authorization');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  transcript(mark);

  // The challenge and the request the SDK built for this resource.
  const [challenged] = s.recorder.since(mark, (e) => e.path === `/mcp/${PROVIDER}`);
  assert.equal(challenged.status, 401);
  assert.equal(param(challenged.wwwAuthenticate, 'resource_metadata'), `${BASE}/.well-known/oauth-protected-resource/mcp/${PROVIDER}`);
  assert.deepEqual(scopes(param(challenged.wwwAuthenticate, 'scope')), [READ]);
  assert.equal(s.provider.authorizationUrls.length, 1, 'one authorization');
  const q = s.provider.authorizationUrls[0].searchParams;
  assert.equal(q.get('resource'), MCP_URL);
  assert.deepEqual(scopes(q.get('scope')), [READ]);

  // What the person saw: mandate's sign-in, the consent page with the connect section.
  const { seen } = s;
  assert.equal(s.person.signIns, 1, 'the person signed in once, at mandate');
  assert.ok(seen.consent, 'the consent page was shown');
  assert.ok(seen.consent.heading.includes(AGENT), `the consent page names the agent: ${seen.consent.heading}`);
  assert.deepEqual(seen.consent.boxes, [{ value: READ, checked: true }], `${READ}, ticked`);
  assert.ok(seen.connectedBeforeAllow, 'the person connected the account from the consent page');
  assert.match(seen.connectPageText, new RegExp(`Tools you allow will act for you at ${TITLE} with this account`));
  assert.equal(seen.atExampleAccounts.signIn, true, `${TITLE} asked the person to sign in there`);
  const theirs = seen.atExampleAccounts.consent;
  assert.ok(theirs, `${TITLE} showed its consent page`);
  assert.ok(theirs.heading.includes(MANDATE_AT_EXAMPLE), `${TITLE}' consent page names mandate's client: ${theirs.heading}`);
  assert.deepEqual(seen.consentAfter.boxes, [{ value: READ, checked: true }], 'the same consent page, still ticked');

  // The code exchange, and the reconnect the SDK's documentation prescribes.
  const exchange = s.recorder.mark();
  await first.finishAuth(s.provider.takeResponse().code);
  const [token] = s.recorder.since(exchange, (e) => e.path === '/token');
  assert.equal(token.grantType, 'authorization_code');
  assert.equal(token.resource, MCP_URL);
  assert.equal(token.status, 200);
  assert.deepEqual(scopes(token.responseJson.scope), [READ]);
  s.transport = newTransport();
  await s.client.connect(s.transport);
  transcript(exchange);
  const init = s.recorder.since(exchange, (e) => e.rpc === 'initialize');
  assert.deepEqual(init.map((e) => [e.status, e.sentBearer]), [[200, true]], 'initialize with the bearer token succeeded');
  s.connected = true;
  say(`connected: ${JSON.stringify(s.client.getServerVersion())}`);
});

test(`2. list_customers through /mcp/${PROVIDER} answers with ${TITLE}' data ("${INITECH}", which the main server's demo data lacks): the call ran as the person at ${TITLE}`, { timeout: CALL_MS }, async (t) => {
  if (!requireConnected(t)) return;
  const mark = s.recorder.mark();
  const { tools } = await s.client.listTools();
  const read = tools.filter((x) => READ_TOOLS.includes(x.name));
  assert.deepEqual(read.map((x) => x.name).sort(), READ_TOOLS, `the read tools: ${tools.map((x) => x.name)}`);
  for (const tool of read) assert.deepEqual(tool._meta?.[SCOPES_META], [READ], `${tool.name} needs ${READ}`);
  const names = await listCustomers();
  transcript(mark);
  say(`list_customers through /mcp/${PROVIDER}: ${names.join(', ')}`);
  assert.ok(names.includes(INITECH), `the customers at ${TITLE}: ${names}`);
  const calls = s.recorder.since(mark, (e) => e.tool === 'list_customers');
  assert.deepEqual(calls.map((e) => [e.path, e.status, e.sentBearer]), [[`/mcp/${PROVIDER}`, 200, true]]);

  // The person's own data at the main server has no such customer.
  const page = await newTab();
  try {
    const here = await customersAtMandate(page);
    await shot(page, '2-mandate-own-customers');
    assert.ok(here.length > 0 && !here.includes(INITECH), `the main server's demo customers: ${here}`);
  } finally {
    await page.close();
  }
});

test(`3. mandate's Connections page lists ${TITLE} as connected and ${TITLE}' own Connected apps page lists "${MANDATE_AT_EXAMPLE}"; "${DISCONNECT}" on mandate revokes it there: ${TITLE}' Connected apps page no longer lists it`, { timeout: STEP_MS }, async (t) => {
  if (!requireConnected(t)) return;
  const page = await newTab();
  const there = await newTab();
  try {
    await goto(page, `${BASE}/account/connections`);
    await shot(page, '3-connections');
    assert.equal(await signedInAs(page), 'demo', 'signed in at mandate as demo');
    const before = await connectedAccounts(page);
    assert.deepEqual(
      before.map((a) => [a.title, a.status]),
      [[TITLE, 'connected']],
      `one connected account: ${JSON.stringify(before)}`,
    );

    const apps = await appsAtExampleAccounts(there, '3');
    assert.ok(apps.includes(MANDATE_AT_EXAMPLE), `${TITLE}' Connected apps list mandate's client: ${apps}`);

    await goto(page, `${BASE}/account/connections`);
    const answer = await post(page, `/account/connections/${PROVIDER}/disconnect`, () =>
      page.getByRole('button', { name: DISCONNECT, exact: true }).click(),
    );
    await shot(page, '3-disconnected');
    say(`3: ${DISCONNECT}: POST /account/connections/${PROVIDER}/disconnect -> ${answer.status()}`);
    assert.equal(answer.status(), 303, `${DISCONNECT}: ${await bodyText(page)}`);
    await assertAt(page, BASE, '/account/connections', 'the Connections page');
    s.disconnected = true;
    assert.equal(await textOf(page, 'main p.success[role=status]'), `Your ${TITLE} account is disconnected.`);
    assert.deepEqual(await connectedAccounts(page), [], 'no connected account any more');
    assert.equal(
      await page.getByRole('link', { name: CONNECT, exact: true }).getAttribute('href'),
      `/account/connections/${PROVIDER}`,
      'Connections offers to connect it again',
    );

    const after = await appsAtExampleAccounts(there, '3-after');
    assert.ok(!after.includes(MANDATE_AT_EXAMPLE), `${TITLE}' Connected apps no longer list mandate's client: ${after}`);
  } finally {
    await page.close();
    await there.close();
  }
});

test(`4. the agent's next list_customers is a JSON-RPC error -32042 (URL elicitation required) with data.elicitations[0] = { mode: "url", url: "<base>/account/connections/${PROVIDER}" }, which ${SDK_LABEL} surfaces as UrlElicitationRequiredError (an McpError), not a transport error; no new authorization`, { timeout: CALL_MS }, async (t) => {
  if (!requireConnected(t)) return;
  if (!s.disconnected) return t.skip('3. did not disconnect the account');
  const authorizations = s.provider.authorizationUrls.length;
  const mark = s.recorder.mark();
  let error;
  try {
    const result = await s.client.callTool({ name: 'list_customers', arguments: {} });
    assert.fail(`list_customers succeeded after the disconnect: ${JSON.stringify(result).slice(0, 300)}`);
  } catch (e) {
    error = e;
  }
  transcript(mark);
  say(`list_customers after the disconnect: ${error?.constructor?.name} ${error?.code}: ${error?.message}; data ${JSON.stringify(error?.data)}`);
  assert.ok(!(error instanceof StreamableHTTPError), `a transport error (HTTP ${error.code}), not a JSON-RPC error: ${error.message}`);
  assert.ok(error instanceof McpError, `an McpError: ${error}`);
  assert.ok(error instanceof UrlElicitationRequiredError, `the SDK's UrlElicitationRequiredError: ${error.constructor.name}`);
  assert.equal(error.code, -32042);
  const elicitations = error.data?.elicitations;
  assert.ok(Array.isArray(elicitations) && elicitations.length === 1, `one elicitation: ${JSON.stringify(error.data)}`);
  const [e] = elicitations;
  assert.equal(e.mode, 'url');
  assert.equal(e.url, CONNECT_URL);
  assert.ok(typeof e.elicitationId === 'string' && e.elicitationId.length > 0, `an elicitation id: ${JSON.stringify(e)}`);
  assert.match(e.message, new RegExp(`your ${TITLE} account, which is not connected`), 'the message says why');
  assert.ok(error.message.includes(CONNECT_URL), `the error message carries the URL too: ${error.message}`);
  s.elicitation = e;

  // The answer was a JSON-RPC error in an HTTP 200, and the SDK did not try to authorize again.
  const calls = s.recorder.since(mark, (x) => x.tool === 'list_customers');
  assert.deepEqual(calls.map((x) => [x.path, x.status]), [[`/mcp/${PROVIDER}`, 200]]);
  assert.deepEqual(s.recorder.since(mark, (x) => x.path === '/token'), [], 'no token request');
  assert.equal(s.provider.authorizationUrls.length, authorizations, 'no new authorization');
});

test(`5. the person opens the elicitation's URL in Chromium, connects ${TITLE} again, and the agent's list_customers works again, without a new authorization of the agent`, { timeout: STEP_MS }, async (t) => {
  if (!requireConnected(t)) return;
  if (!s.elicitation) return t.skip('4. did not get the connect URL');
  const authorizations = s.provider.authorizationUrls.length;
  const signIns = s.person.signIns;
  const page = await newTab();
  try {
    await goto(page, s.elicitation.url);
    await assertAt(page, BASE, `/account/connections/${PROVIDER}`, `mandate's page "${CONNECT}"`);
    assert.equal(await page.locator('main p.success[role=status]').count(), 0, 'it does not say the account is connected');
    const shown = await connectOnConnectPage(page, '5');
    await assertAt(page, BASE, '/account/connections', 'the Connections page, after connecting');
    assert.equal(await textOf(page, 'main p.success[role=status]'), 'The account is connected.');
    const accounts = await connectedAccounts(page);
    assert.deepEqual(accounts.map((a) => [a.title, a.status]), [[TITLE, 'connected']], JSON.stringify(accounts));
    // Whatever Example Accounts asked (it remembers the person's consent: the disconnect revoked
    // mandate's tokens, not the consent), mandate's client is back in its Connected apps.
    say(`5: ${TITLE} showed ${JSON.stringify({ signIn: shown.signIn, consent: Boolean(shown.consent) })}`);
    const there = await newTab();
    try {
      const apps = await appsAtExampleAccounts(there, '5');
      assert.ok(apps.includes(MANDATE_AT_EXAMPLE), `${TITLE}' Connected apps list mandate's client again: ${apps}`);
    } finally {
      await there.close();
    }
  } finally {
    await page.close();
  }
  assert.equal(s.person.signIns, signIns, 'no new sign-in at mandate');

  const mark = s.recorder.mark();
  const names = await listCustomers();
  transcript(mark);
  say(`list_customers after connecting again: ${names.join(', ')}`);
  assert.ok(names.includes(INITECH), `the customers at ${TITLE}: ${names}`);
  assert.deepEqual(s.recorder.since(mark, (x) => x.path === '/token'), [], 'no token request');
  assert.equal(s.provider.authorizationUrls.length, authorizations, 'no new authorization of the agent');
});
