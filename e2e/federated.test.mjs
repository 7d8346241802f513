// Federated sign-in, as people click it in Chromium (Debian's, driven by playwright-core,
// headless; nothing rewritten, intercepted or injected), with panva's oidc-provider (OpenID
// Certified; e2e/lib/oidc-provider.mjs) as the identity provider "Example ID" of three
// `mandate serve --demo`, all started by .ci/e2e.sh: MANDATE_E2E_BASE with the password form
// too, MANDATE_E2E_BASE_2 with `password_login = false`, MANDATE_E2E_BASE_3 with the password
// form and `create_people = false` on the provider. The suite reads and adds people with
// `mandate users` (MANDATE_E2E_BIN) on the first and third mandates' databases.
//   a. Someone new clicks "Continue with Example ID", signs in and consents at the provider as
//      alice-idp, comes back signed in as a new person (named from preferred_username), whose
//      Connections page lists the Example ID sign-in method.
//   b. Signed out and back through the provider: the same person (by the provider's subject).
//   c. mallory-idp, with alice-idp's e-mail address and preferred_username, gets a person of
//      their own (alice.idp-2) that sees none of alice.idp's data; the password user is untouched.
//   d. The password user links an Example ID account (bob-idp) from Connections ("Link Example
//      ID", then "Continue to Example ID" on mandate's page that says what happens), signs in at
//      the provider, confirms "Link" on mandate's page, and from then on "Continue with Example
//      ID" as bob-idp signs in as them.
//   e. An agent's authorization (a public client with a loopback redirect URI and PKCE) through
//      federated sign-in: /authorize, "Continue with Example ID", mandate's consent page for that
//      request, the code with `iss` at the redirect URI, a token that lists the person's data.
//   f. The providers-only mandate: no password field, only the provider's button, which works.
//   g. A sign-in never switches people: the password user, signed in, is sent straight to
//      /login/with/idp (as a page elsewhere could) and signs in at the provider as alice-idp,
//      whom another person has: 409, and the password user is still the one signed in.
//   h. An unlinked account while signed in: the password user, signed in, at /login/with/idp as
//      carol-idp, whom nobody has: 403; nobody is created and nothing linked; signed out,
//      "Continue with Example ID" as carol-idp then creates a new person, carol.idp.
//   i. create_people = false (the third mandate): "Continue with Example ID" as an account nobody
//      has there: 403, nobody created, nobody signed in.
//   j. An e-mail address the provider did not verify (dave-idp, email_verified false) is not
//      shown: the password user of the third mandate links dave-idp from Connections; mandate's
//      link page and Connections show no address; then dave-idp signs them in (create_people =
//      false leaves linked people alone).
//   k. A link answered after its person signed out (in another tab): 403, nothing linked, and the
//      provider's code is never redeemed.
// The provider's record of what crossed it (MANDATE_E2E_IDP_EVENTS, no secrets) shows what
// mandate sent: PKCE S256, state, nonce, client_secret_basic. Every page is saved as a
// screenshot under target/e2e/screenshots/federated/.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

import { Person, readConsent } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { fetchJwks, verifyJwt } from './lib/jwt.mjs';
import { ACCOUNTS, readEvents } from './lib/oidc-provider.mjs';
import { redactUrl, say, scopes, withTimeout } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const BASE_2 = process.env.MANDATE_E2E_BASE_2;
const BASE_3 = process.env.MANDATE_E2E_BASE_3;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const PASSWORD_3 = process.env.MANDATE_E2E_PASSWORD_3;
const BIN = process.env.MANDATE_E2E_BIN;
const DATABASE = process.env.MANDATE_E2E_DATABASE;
const DATABASE_3 = process.env.MANDATE_E2E_DATABASE_3;
const IDP = process.env.MANDATE_E2E_IDP_ISSUER;
const IDP_EVENTS = process.env.MANDATE_E2E_IDP_EVENTS;
const OUT = process.env.MANDATE_E2E_OUT ?? path.resolve(import.meta.dirname, '../target/e2e');

const STEP_MS = 90_000; // a test that drives several pages at two servers
const PAGE_MS = 15_000; // one page load or click

const DEMO_USER = 'demo'; // the password user `mandate serve --demo` seeds
const TITLE = 'Example ID';
const CONTINUE = `Continue with ${TITLE}`;
const ALICE_CUSTOMER = 'Alice IdP Private Ltd';
const AGENT = 'Federated helper';
// What mandate says when it refuses a provider's answer (crates/mandate-server/src/routes/upstream.rs).
const SIGNED_IN_AS_OTHER = 'You are signed in here as someone else. Sign out first, then continue with the other account.';
const NOT_LINKED = `This ${TITLE} account does not sign anyone in here. To use it, sign in another way and link it from Connections.`;
const SIGNED_OUT = `You are no longer signed in here. Sign in and connect your ${TITLE} account again.`;

const s = {
  person: undefined,
  callback: new LoopbackCallback(),
  /** Browser profiles (contexts) and a tab in each: who is signed in there. */
  alice: undefined,
  mallory: undefined,
  demo: undefined,
  /** The usernames mandate gave the provider's accounts. */
  usernames: {},
};

const origin = (href) => new URL(href).origin;

/** The visible text of `selector` (default: the page's main content), whitespace folded. */
async function textOf(page, selector = 'main') {
  return (await page.locator(selector).first().innerText()).replace(/\s+/g, ' ').trim();
}

/** The page's text for an error message. */
async function bodyText(page) {
  return (await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 400);
}

/** What the provider recorded (its events file). */
function idpEvents(since = 0) {
  return readEvents(IDP_EVENTS).slice(since);
}

/** A new profile (no cookies) with one tab, whose navigations are written to the transcript. */
async function profile(who) {
  const context = await s.person.newProfile();
  const page = await context.newPage();
  page.on('response', (r) => {
    const req = r.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    const at = { [IDP]: 'idp', [BASE_2]: 'mandate-2', [BASE_3]: 'mandate-3' }[origin(r.url())] ?? 'mandate';
    say(`${who}: ${req.method()} ${at} ${redactUrl(r.url()).replace(/^https?:\/\/[^/]+/, '')} -> ${r.status()}`);
  });
  return { context, page, who };
}

async function shot(page, label) {
  await s.person.capture(page, label);
}

/** Runs `action` (a click) and waits until the tab shows the next document (after any redirects), loaded. */
async function navigate(page, action) {
  const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
  await action();
  await navigated;
  await page.waitForLoadState('load');
}

async function goto(page, url) {
  const response = await page.goto(url);
  assert.ok(response?.ok(), `GET ${redactUrl(url)}: HTTP ${response?.status()}: ${await bodyText(page)}`);
}

/** Who the page's account navigation says is signed in (undefined: nobody). */
async function signedInAs(page) {
  const who = page.locator('nav.account .who');
  if ((await who.count()) === 0) return undefined;
  return (await who.innerText()).trim();
}

function nav(page) {
  return page.getByRole('navigation', { name: 'Your account' });
}

async function signOut(page, label) {
  await navigate(page, () => nav(page).getByRole('button', { name: /^Sign out/ }).click());
  await shot(page, `${label}-signed-out`);
  assert.equal(await signedInAs(page), undefined, `nobody is signed in after Sign out (at ${redactUrl(page.url())})`);
}

/**
 * The person's part at the provider, from the tab the provider's page is in: signs in as
 * `account` if the provider asks (its development sign-in form: the account id, any password),
 * consents if it asks ("Continue"), and returns once the tab is back at mandate (`base`), with
 * which pages the provider showed.
 */
async function atProvider(page, base, account, label) {
  const shown = { login: false, consent: false };
  for (let i = 0; i < 3 && origin(page.url()) === IDP; i += 1) {
    if ((await page.locator('input[name=login]').count()) > 0) {
      assert.ok(!shown.login, 'the provider asked to sign in twice');
      shown.login = true;
      await shot(page, `${label}-idp-sign-in`);
      await page.fill('input[name=login]', account);
      await page.fill('input[name=password]', 'any password will do');
      await navigate(page, () => page.getByRole('button', { name: 'Sign-in' }).click());
    } else if ((await page.locator('input[name=prompt][value=consent]').count()) > 0) {
      assert.ok(!shown.consent, 'the provider asked to consent twice');
      shown.consent = true;
      await shot(page, `${label}-idp-consent`);
      await navigate(page, () => page.getByRole('button', { name: 'Continue' }).click());
    } else {
      await shot(page, `${label}-idp-unexpected`);
      assert.fail(`an unexpected page at the provider, ${redactUrl(page.url())}: ${await bodyText(page)}`);
    }
  }
  if (origin(page.url()) !== base) {
    await shot(page, `${label}-not-back`);
    assert.fail(`after the provider the tab is at ${redactUrl(page.url())}, not at mandate: ${await bodyText(page)}`);
  }
  say(`${label}: the provider showed ${[shown.login && 'its sign-in form', shown.consent && 'its consent page'].filter(Boolean).join(' and ') || 'nothing (its session and grant were remembered)'}`);
  return shown;
}

/**
 * From mandate's sign-in page at `base`: "Continue with Example ID", the provider as `account`,
 * back at mandate. Returns what the provider showed.
 */
async function continueWithProvider(page, base, account, label) {
  const button = page.getByRole('link', { name: CONTINUE, exact: true });
  await button.waitFor({ state: 'visible' });
  await navigate(page, () => button.click());
  const shown = await atProvider(page, base, account, label);
  await shot(page, `${label}-back-at-mandate`);
  return shown;
}

/** Fails with the page's text unless the tab is at `pathname` of mandate. */
async function assertAt(page, base, pathname, what) {
  const u = new URL(page.url());
  if (u.origin !== base || u.pathname !== pathname) {
    assert.fail(`expected ${what} (${pathname}), the tab is at ${redactUrl(page.url())}: ${await bodyText(page)}`);
  }
}

/** The sign-in methods a Connections page lists: the text of each card under "Sign-in methods". */
async function signInMethods(page) {
  return page
    .locator('h2', { hasText: 'Sign-in methods' })
    .locator('xpath=following-sibling::*[1]')
    .evaluate((el) => (el.tagName === 'UL' ? [...el.querySelectorAll('li')].map((li) => li.innerText.replace(/\s+/g, ' ').trim()) : []));
}

/** The customers on /apps (the person's own use of the demo apps). */
async function customers(page, base) {
  await goto(page, `${base}/apps`);
  return page
    .locator('h2', { hasText: 'Customers' })
    .locator('xpath=following-sibling::*[1]')
    .evaluate((el) => (el.tagName === 'UL' ? [...el.querySelectorAll('li')].map((li) => li.firstChild.textContent.trim()) : []));
}

/** The app names on /account/apps. */
async function connectedApps(page) {
  await goto(page, `${BASE}/account/apps`);
  return textOf(page);
}

/** Signs `username` in with the password form of mandate at `base`. */
async function signInWithPassword(page, base, username, password, label) {
  await goto(page, `${base}/login`);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await navigate(page, () => page.locator('form[action="/login"] button[type=submit]').click());
  await shot(page, `${label}-signed-in`);
  assert.equal(await signedInAs(page), username, `signed in with the password: ${await bodyText(page)}`);
}

/**
 * From Connections at `base`: "Link Example ID", then "Continue to Example ID" on mandate's page
 * that says what happens; returns once the tab is at the provider.
 */
async function startLink(page, base, label) {
  await goto(page, `${base}/account/connections`);
  const link = page.getByRole('link', { name: `Link ${TITLE}`, exact: true }).or(page.getByRole('button', { name: `Link ${TITLE}`, exact: true }));
  await link.waitFor({ state: 'visible' });
  await navigate(page, () => link.click());
  await assertAt(page, base, `/account/connections/idp/link`, 'the page before the provider');
  await shot(page, `${label}-link-start`);
  const [started] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/account/connections/idp/link'),
    navigate(page, () => page.getByRole('button', { name: `Continue to ${TITLE}`, exact: true }).click()),
  ]);
  if (origin(page.url()) !== IDP) {
    await shot(page, `${label}-link-refused`);
    assert.fail(`POST /account/connections/idp/link answered ${started.status()}, the tab is at ${redactUrl(page.url())}: ${await bodyText(page)}`);
  }
}

/**
 * From a tab at the provider: the person's part there as `account` (atProvider), and mandate's
 * answer at its callback: its HTTP status and the error message the page shows (if any).
 */
async function answerAtCallback(page, base, account, label) {
  const answered = page.waitForResponse(
    (r) => r.request().isNavigationRequest() && r.url().startsWith(`${base}/upstream/idp/callback?`),
    { timeout: STEP_MS },
  );
  const shown = await atProvider(page, base, account, label);
  const response = await answered;
  await shot(page, `${label}-answer`);
  const error = page.locator('main p.error');
  const message = (await error.count()) > 0 ? await textOf(page, 'main p.error') : undefined;
  say(`${label}: mandate answered the provider's redirect with ${response.status()}${message ? `: ${message}` : ''}`);
  return { shown, status: response.status(), message };
}

/** The usernames `mandate users list` prints for `database`. */
async function usernames(database) {
  const { stdout } = await promisify(execFile)(BIN, ['users', 'list', '--database', database], { timeout: PAGE_MS });
  const [header, ...rows] = stdout.split('\n').filter(Boolean);
  assert.match(header, /^ID\s+USERNAME\s/, `mandate users list: ${stdout}`);
  return rows.map((row) => row.trim().split(/\s+/)[1]).sort();
}

before(async () => {
  for (const [name, value] of Object.entries({ BASE, BASE_2, BASE_3, PASSWORD, PASSWORD_3, BIN, DATABASE, DATABASE_3, IDP, IDP_EVENTS })) {
    assert.ok(value, `MANDATE_E2E_${name} is set (run .ci/e2e.sh)`);
  }
  say(`mandate ${BASE} (password and ${TITLE}), mandate ${BASE_2} (${TITLE} only), mandate ${BASE_3} (password and ${TITLE}, create_people = false), oidc-provider ${IDP}`);
  await s.callback.start();
  s.person = new Person({
    username: DEMO_USER,
    password: PASSWORD,
    screenshots: path.join(OUT, 'screenshots', 'federated'),
    stepTimeoutMs: PAGE_MS,
    viewport: { width: 1280, height: 800 },
  });
  await s.person.start();
});

after(async () => {
  const quietly = (p, what) => withTimeout(p, PAGE_MS, what).catch((e) => say(`cleanup: ${e.message}`));
  await quietly(s.person?.close() ?? Promise.resolve(), 'Chromium to close');
  await quietly(s.callback.close(), 'the callback server to close');
});

test(`a. federated sign-in: someone new clicks "${CONTINUE}", signs in and consents at oidc-provider as alice-idp, and is back signed in as a new person named from preferred_username; mandate sent PKCE S256, state and nonce, and authenticated with client_secret_basic; Connections lists the ${TITLE} sign-in method`, { timeout: STEP_MS }, async () => {
  s.alice = await profile('alice-idp');
  const { page } = s.alice;
  await goto(page, `${BASE}/login`);
  await shot(page, 'a-login');
  assert.equal(await page.getByRole('link', { name: CONTINUE, exact: true }).getAttribute('href'), '/login/with/idp');
  assert.equal(await page.locator('form[action="/login"] input[name=password]').count(), 1, 'the password form is offered too');

  const mark = idpEvents().length;
  const shown = await continueWithProvider(page, BASE, 'alice-idp', 'a');
  assert.deepEqual(shown, { login: true, consent: true }, 'a fresh browser signs in and consents at the provider');
  await assertAt(page, BASE, '/account/apps', 'the Connected apps page of the new person');
  const username = await signedInAs(page);
  assert.ok(username, `signed in: ${await bodyText(page)}`);
  s.usernames['alice-idp'] = username; // for the next tests, whatever the name (checked last)
  await nav(page).getByRole('link', { name: 'Connections', exact: true }).waitFor({ state: 'visible' });

  // What mandate sent the provider.
  const events = idpEvents(mark);
  const accepted = events.filter((e) => e.event === 'authorization.accepted');
  assert.equal(accepted.length, 1, 'one authorization request');
  const [a] = accepted;
  assert.equal(a.clientId, 'mandate');
  assert.equal(a.responseType, 'code');
  assert.equal(a.redirectUri, `${BASE}/upstream/idp/callback`);
  assert.deepEqual(scopes(a.scope), ['email', 'openid', 'profile']);
  assert.equal(a.codeChallengeMethod, 'S256');
  assert.ok(a.hasCodeChallenge && a.hasState && a.hasNonce, `PKCE, state and nonce: ${JSON.stringify(a)}`);
  const tokenRequests = events.filter((e) => e.event === 'request' && e.path === '/token');
  assert.deepEqual(
    tokenRequests.map((e) => [e.method, e.status, e.clientAuth]),
    [['POST', 200, 'Basic']],
    'one code exchange, with HTTP Basic client authentication',
  );
  assert.deepEqual(
    events.filter((e) => e.event === 'grant.success').map((e) => [e.grantType, e.accountId]),
    [['authorization_code', 'alice-idp']],
  );
  assert.deepEqual(events.filter((e) => e.event.endsWith('.error') || e.event === 'server_error'), [], 'no error at the provider');

  // Connections: the sign-in method, with the provider's e-mail address.
  await navigate(page, () => nav(page).getByRole('link', { name: 'Connections', exact: true }).click());
  await assertAt(page, BASE, '/account/connections', 'the Connections page');
  await shot(page, 'a-connections');
  assert.equal(await nav(page).getByRole('link', { name: 'Connections', exact: true }).getAttribute('aria-current'), 'page');
  const methods = await signInMethods(page);
  assert.equal(methods.length, 1, `one sign-in method: ${JSON.stringify(methods)}`);
  assert.ok(methods[0].includes(TITLE), `the ${TITLE} method: ${methods[0]}`);
  const method = methods[0];

  // Something of this person's own, for the others not to see.
  assert.deepEqual(await customers(page, BASE), [], 'a new person has no customers');
  await page.fill('#customer-name', ALICE_CUSTOMER);
  await navigate(page, () => page.getByRole('button', { name: 'Create customer' }).click());
  assert.deepEqual(await customers(page, BASE), [ALICE_CUSTOMER]);
  await shot(page, 'a-own-customer');

  // What mandate knows of the provider's account, checked last (the rest does not depend on it):
  // its e-mail address and preferred_username, which the provider's userinfo endpoint has (an ID
  // token from a code flow need not: OpenID Connect Core 5.4).
  assert.ok(method.includes(ACCOUNTS['alice-idp'].email), `the ${TITLE} method shows the e-mail address: ${method}`);
  assert.equal(username, ACCOUNTS['alice-idp'].preferred_username, 'the new person is named from preferred_username');
});

test('b. linked by subject: signed out, "Continue with Example ID" as alice-idp again is the same person', { timeout: STEP_MS }, async (t) => {
  if (!s.usernames['alice-idp']) return t.skip('a. did not sign alice-idp in');
  const { page } = s.alice;
  await goto(page, `${BASE}/account/apps`);
  await signOut(page, 'b');
  await goto(page, `${BASE}/login`);
  const mark = idpEvents().length;
  await continueWithProvider(page, BASE, 'alice-idp', 'b');
  await assertAt(page, BASE, '/account/apps', 'the Connected apps page');
  assert.equal(await signedInAs(page), s.usernames['alice-idp'], 'the same person as before');
  assert.deepEqual(await customers(page, BASE), [ALICE_CUSTOMER], 'with their own data');
  assert.deepEqual(
    idpEvents(mark).filter((e) => e.event === 'grant.success').map((e) => e.accountId),
    ['alice-idp'],
    'the provider signed alice-idp in again',
  );
  await goto(page, `${BASE}/account/connections`);
  assert.equal((await signInMethods(page)).length, 1, 'still one sign-in method');
});

test('c. no takeover by e-mail: mallory-idp, with alice-idp\'s e-mail address and preferred_username, becomes a different person who sees none of alice.idp\'s data; the password user is untouched', { timeout: STEP_MS }, async (t) => {
  if (!s.usernames['alice-idp']) return t.skip('a. did not sign alice-idp in');
  assert.equal(ACCOUNTS['mallory-idp'].email, ACCOUNTS['alice-idp'].email);
  assert.equal(ACCOUNTS['mallory-idp'].preferred_username, ACCOUNTS['alice-idp'].preferred_username);
  s.mallory = await profile('mallory-idp');
  const { page } = s.mallory;
  await goto(page, `${BASE}/login`);
  const mark = idpEvents().length;
  const shown = await continueWithProvider(page, BASE, 'mallory-idp', 'c');
  assert.equal(shown.login, true, 'a fresh browser signs in at the provider');
  await assertAt(page, BASE, '/account/apps', 'the Connected apps page of a new person');
  assert.deepEqual(
    idpEvents(mark).filter((e) => e.event === 'grant.success').map((e) => e.accountId),
    ['mallory-idp'],
    'the provider signed mallory-idp in',
  );
  const username = await signedInAs(page);
  assert.notEqual(username, s.usernames['alice-idp'], 'not alice.idp');
  assert.equal(username, `${s.usernames['alice-idp']}-2`, 'the name made unique with -2');
  s.usernames['mallory-idp'] = username;
  assert.deepEqual(await customers(page, BASE), [], `none of ${s.usernames['alice-idp']}'s customers`);
  await shot(page, 'c-mallory-apps');
  await goto(page, `${BASE}/account/connections`);
  await shot(page, 'c-mallory-connections');
  const methods = await signInMethods(page);
  assert.equal(methods.length, 1);
  assert.ok(methods[0].includes(TITLE), methods[0]);

  // alice.idp is still alice.idp, with their data.
  await goto(s.alice.page, `${BASE}/account/apps`);
  assert.equal(await signedInAs(s.alice.page), s.usernames['alice-idp']);
  assert.deepEqual(await customers(s.alice.page, BASE), [ALICE_CUSTOMER]);

  // The password user: signs in with the password, has no sign-in method but the password, and
  // their demo data.
  s.demo = await profile(DEMO_USER);
  const demo = s.demo.page;
  await goto(demo, `${BASE}/login`);
  await demo.fill('input[name=username]', DEMO_USER);
  await demo.fill('input[name=password]', PASSWORD);
  await navigate(demo, () => demo.locator('form[action="/login"] button[type=submit]').click());
  await shot(demo, 'c-demo-signed-in');
  assert.equal(await signedInAs(demo), DEMO_USER, `signed in with the password: ${await bodyText(demo)}`);
  await goto(demo, `${BASE}/account/connections`);
  await shot(demo, 'c-demo-connections');
  assert.deepEqual(await signInMethods(demo), [], 'no provider is linked to the password user');
  assert.match(await textOf(demo), /You sign in with your password only\./);
  const theirs = await customers(demo, BASE);
  assert.ok(theirs.includes('Acme Corp') && !theirs.includes(ALICE_CUSTOMER), `the demo customers: ${theirs}`);
});

test(`d. linking while signed in: the password user clicks "Link ${TITLE}" on Connections, signs in at the provider as bob-idp, confirms "Link" on mandate's page; then, signed out, "${CONTINUE}" as bob-idp signs in as the password user`, { timeout: STEP_MS }, async (t) => {
  if (!s.demo) return t.skip('c. did not sign the password user in');
  const { page } = s.demo;
  const mark = idpEvents().length;
  // mandate says what happens next; the person goes on to the provider.
  await startLink(page, BASE, 'd');
  const shown = await atProvider(page, BASE, 'bob-idp', 'd');
  assert.equal(shown.login, true, 'this browser signs in at the provider for the first time');
  await shot(page, 'd-confirm-link');
  assert.deepEqual(
    idpEvents(mark).filter((e) => e.event === 'grant.success').map((e) => e.accountId),
    ['bob-idp'],
  );

  // mandate asks before linking, names who is signed in and the provider's account.
  const confirm = page.getByRole('button', { name: 'Link', exact: true });
  if ((await confirm.count()) === 0) assert.fail(`no confirmation page with a "Link" button at ${redactUrl(page.url())}: ${await bodyText(page)}`);
  const text = await textOf(page);
  assert.match(await textOf(page, 'h1'), new RegExp(`${TITLE}`));
  assert.ok(text.includes(DEMO_USER), `the page names the signed-in person: ${text}`);
  const namesAccount = text.includes(ACCOUNTS['bob-idp'].email); // checked last
  await navigate(page, () => confirm.click());
  await shot(page, 'd-linked');
  assert.equal(await signedInAs(page), DEMO_USER, `still signed in as the password user: ${await bodyText(page)}`);
  await goto(page, `${BASE}/account/connections`);
  await shot(page, 'd-connections');
  const methods = await signInMethods(page);
  assert.equal(methods.length, 1, `one sign-in method: ${JSON.stringify(methods)}`);
  assert.ok(methods[0].includes(TITLE), methods[0]);
  const method = methods[0];

  await signOut(page, 'd');
  await goto(page, `${BASE}/login`);
  await continueWithProvider(page, BASE, 'bob-idp', 'd-again');
  await assertAt(page, BASE, '/account/apps', 'the Connected apps page');
  assert.equal(await signedInAs(page), DEMO_USER, `bob-idp signs in as ${DEMO_USER}`);
  const theirs = await customers(page, BASE);
  assert.ok(theirs.includes('Acme Corp'), `the password user's data: ${theirs}`);

  // The provider's account by its e-mail address, on the confirmation page and in Connections.
  assert.ok(namesAccount, `the confirmation page names the provider's account by its e-mail address: ${text}`);
  assert.ok(method.includes(ACCOUNTS['bob-idp'].email), `the ${TITLE} method shows the e-mail address: ${method}`);
});

test('e. an agent\'s authorization through federated sign-in: /authorize, the sign-in page\'s provider button keeps the request, mandate\'s consent page for it after the provider, the code with iss at the loopback redirect URI, a token that reads the federated person\'s data', { timeout: STEP_MS }, async (t) => {
  if (!s.usernames['alice-idp']) return t.skip('a. did not sign alice-idp in');
  // A public client with a loopback redirect URI, registered as MCP clients do (RFC 7591).
  const registered = await fetch(`${BASE}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: AGENT,
      redirect_uris: [s.callback.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  assert.equal(registered.status, 201, await registered.clone().text());
  const { client_id: clientId } = await registered.json();
  const verifier = crypto.randomBytes(32).toString('base64url');
  const state = crypto.randomBytes(16).toString('base64url');
  const authorize = new URL(`${BASE}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: s.callback.redirectUri,
    scope: 'customers.read',
    state,
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    resource: `${BASE}/mcp`,
  })) {
    authorize.searchParams.set(k, v);
  }

  const agent = await profile('agent-alice-idp');
  const { page } = agent;
  await goto(page, authorize.href);
  await shot(page, 'e-login');
  await assertAt(page, BASE, '/login', 'the sign-in page');
  const request = new URL(page.url()).searchParams.get('request');
  assert.ok(request, `the sign-in page carries the request: ${redactUrl(page.url())}`);
  assert.match(await textOf(page, 'p.lead'), new RegExp(`^to continue to ${AGENT}`));
  assert.equal(
    await page.getByRole('link', { name: CONTINUE, exact: true }).getAttribute('href'),
    `/login/with/idp?request=${encodeURIComponent(request)}`,
    'the provider button keeps the request',
  );
  await continueWithProvider(page, BASE, 'alice-idp', 'e');
  await assertAt(page, BASE, '/consent', 'the consent page');
  assert.equal(new URL(page.url()).searchParams.get('request'), request, 'the consent page is for the same request');
  const consentText = await textOf(page);
  assert.ok(consentText.includes(`with your account ${s.usernames['alice-idp']}.`), `the consent page names alice-idp's person: ${consentText}`);
  const consent = await readConsent(page);
  assert.ok(consent.heading.includes(AGENT), `the consent page names the app: ${consent.heading}`);
  assert.deepEqual(consent.boxes, [{ value: 'customers.read', checked: true }]);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(s.callback.redirectUri), { waitUntil: 'load' }),
    page.click('button[name=action][value=allow]'),
  ]);
  await shot(page, 'e-redirect-uri');
  const answer = await s.callback.next(PAGE_MS);
  assert.equal(answer.error, null, `no error: ${answer.error} ${answer.errorDescription}`);
  assert.ok(answer.code, 'a code');
  assert.equal(answer.state, state);
  assert.equal(answer.iss, BASE, 'RFC 9207 iss');

  const tokenResponse = await fetch(`${BASE}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: answer.code,
      redirect_uri: s.callback.redirectUri,
      client_id: clientId,
      code_verifier: verifier,
      resource: `${BASE}/mcp`,
    }),
  });
  const token = await tokenResponse.json();
  assert.equal(tokenResponse.status, 200, JSON.stringify(token));
  assert.deepEqual(scopes(token.scope), ['customers.read']);
  const { keys } = await fetchJwks(BASE);
  const { claims } = verifyJwt(token.access_token, keys);
  assert.equal(claims.iss, BASE);
  assert.equal(claims.aud, `${BASE}/mcp`);

  // The agent acts as alice-idp's person: their customer, not the demo's.
  const client = new Client({ name: 'mandate-e2e-federated', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${BASE}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token.access_token}` } } }),
  );
  try {
    const result = await client.callTool({ name: 'list_customers', arguments: {} });
    assert.ok(!result.isError, JSON.stringify(result));
    const names = JSON.parse(result.content[0].text).customers.map((c) => c.name);
    assert.deepEqual(names, [ALICE_CUSTOMER]);
    say(`list_customers for the agent: ${names.join(', ')}`);
  } finally {
    await client.close();
  }

  // The app is alice.idp's, not mallory's.
  assert.match(await connectedApps(s.alice.page), new RegExp(AGENT), `${AGENT} is among alice.idp's connected apps`);
  await shot(s.alice.page, 'e-alice-connected-apps');
  if (s.mallory) {
    assert.doesNotMatch(await connectedApps(s.mallory.page), new RegExp(AGENT), `${AGENT} is not among mallory's`);
    assert.equal(await signedInAs(s.mallory.page), s.usernames['mallory-idp']);
  }
  await agent.context.close();
});

test(`f. with password_login = false the sign-in page has no password field, only "${CONTINUE}", which signs in`, { timeout: STEP_MS }, async () => {
  const { page, context } = await profile('providers-only');
  await goto(page, `${BASE_2}/login`);
  await shot(page, 'f-login');
  assert.equal(await page.locator('input[type=password]').count(), 0, 'no password field');
  assert.equal(await page.locator('input[name=username]').count(), 0, 'no username field');
  assert.equal(await page.locator('form[action="/login"]').count(), 0, 'no password form');
  const buttons = await page.locator('main a, main button').evaluateAll((els) => els.map((e) => e.innerText.trim()));
  assert.deepEqual(buttons, [CONTINUE], 'the provider button only');
  assert.equal(await page.getByRole('link', { name: CONTINUE, exact: true }).getAttribute('href'), '/login/with/idp');

  await continueWithProvider(page, BASE_2, 'alice-idp', 'f');
  await assertAt(page, BASE_2, '/account/apps', 'the Connected apps page');
  assert.equal(await signedInAs(page), ACCOUNTS['alice-idp'].preferred_username, 'a person of this server\'s own');
  await context.close();
});

test(`g. a sign-in never switches people: ${DEMO_USER}, signed in, is sent straight to /login/with/idp and signs in at the provider as alice-idp, whom another person has: 409 "${SIGNED_IN_AS_OTHER}", and ${DEMO_USER} is still the one signed in`, { timeout: STEP_MS }, async (t) => {
  if (!s.usernames['alice-idp']) return t.skip('a. did not sign alice-idp in');
  const { page, context } = await profile(`${DEMO_USER}-g`);
  await signInWithPassword(page, BASE, DEMO_USER, PASSWORD, 'g');
  // Signed in, the sign-in page sends them on (it offers no provider button then); a link on a
  // page elsewhere can still point at the button's address.
  await goto(page, `${BASE}/login`);
  assert.notEqual(new URL(page.url()).pathname, '/login', 'a signed-in person\'s /login redirects away');
  const mark = idpEvents().length;
  await goto(page, `${BASE}/login/with/idp`);
  assert.equal(origin(page.url()), IDP, `/login/with/idp sends the browser to the provider: ${redactUrl(page.url())}`);
  const answer = await answerAtCallback(page, BASE, 'alice-idp', 'g');
  assert.deepEqual(
    idpEvents(mark).filter((e) => e.event === 'grant.success').map((e) => e.accountId),
    ['alice-idp'],
    'the provider signed alice-idp in',
  );
  assert.equal(answer.status, 409, `409 Conflict: ${await bodyText(page)}`);
  assert.equal(answer.message, SIGNED_IN_AS_OTHER);

  // Still the password user, with their data; alice.idp is untouched.
  await goto(page, `${BASE}/account/apps`);
  await shot(page, 'g-still-demo');
  assert.equal(await signedInAs(page), DEMO_USER, `still ${DEMO_USER}: ${await bodyText(page)}`);
  const theirs = await customers(page, BASE);
  assert.ok(theirs.includes('Acme Corp') && !theirs.includes(ALICE_CUSTOMER), `${DEMO_USER}'s customers: ${theirs}`);
  await goto(s.alice.page, `${BASE}/account/apps`);
  assert.equal(await signedInAs(s.alice.page), s.usernames['alice-idp']);
  await context.close();
});

test(`h. an unlinked account while signed in: ${DEMO_USER}, signed in, at /login/with/idp as carol-idp, whom nobody has: 403 "${NOT_LINKED}"; nobody is created and nothing is linked to ${DEMO_USER}; signed out, "${CONTINUE}" as carol-idp then creates a new person`, { timeout: STEP_MS }, async () => {
  const { page, context } = await profile(`${DEMO_USER}-h`);
  await signInWithPassword(page, BASE, DEMO_USER, PASSWORD, 'h');
  await goto(page, `${BASE}/account/connections`);
  const methodsBefore = await signInMethods(page);
  const people = await usernames(DATABASE);
  assert.ok(people.includes(DEMO_USER) && !people.some((u) => u.startsWith('carol')), `the people before: ${people}`);

  const mark = idpEvents().length;
  await goto(page, `${BASE}/login/with/idp`);
  assert.equal(origin(page.url()), IDP, `/login/with/idp sends the browser to the provider: ${redactUrl(page.url())}`);
  const answer = await answerAtCallback(page, BASE, 'carol-idp', 'h');
  assert.deepEqual(
    idpEvents(mark).filter((e) => e.event === 'grant.success').map((e) => e.accountId),
    ['carol-idp'],
    'the provider signed carol-idp in',
  );
  assert.equal(answer.status, 403, `403 Forbidden: ${await bodyText(page)}`);
  assert.equal(answer.message, NOT_LINKED);

  // Still the password user; their sign-in methods as before (no carol-idp); nobody new.
  await goto(page, `${BASE}/account/connections`);
  await shot(page, 'h-connections');
  assert.equal(await signedInAs(page), DEMO_USER, `still ${DEMO_USER}: ${await bodyText(page)}`);
  const methods = await signInMethods(page);
  assert.deepEqual(methods, methodsBefore, `${DEMO_USER}'s sign-in methods are unchanged`);
  assert.ok(!methods.some((m) => m.includes(ACCOUNTS['carol-idp'].email)), `carol-idp is not linked: ${JSON.stringify(methods)}`);
  assert.deepEqual(await usernames(DATABASE), people, 'nobody was created');

  // Signed out, carol-idp signs in as a new person of their own.
  await signOut(page, 'h');
  await goto(page, `${BASE}/login`);
  await continueWithProvider(page, BASE, 'carol-idp', 'h-again');
  await assertAt(page, BASE, '/account/apps', 'the Connected apps page of a new person');
  assert.equal(await signedInAs(page), ACCOUNTS['carol-idp'].preferred_username, 'a new person named from preferred_username');
  assert.deepEqual(await customers(page, BASE), [], 'a new person has no customers');
  assert.deepEqual(await usernames(DATABASE), [...people, ACCOUNTS['carol-idp'].preferred_username].sort(), 'one person more: carol.idp');
  await context.close();
});

test(`i. with create_people = false, "${CONTINUE}" as an account nobody has there: 403 "${NOT_LINKED}", nobody created, nobody signed in`, { timeout: STEP_MS }, async () => {
  const { page, context } = await profile('create-people-false');
  await goto(page, `${BASE_3}/login`);
  await shot(page, 'i-login');
  assert.equal(await page.locator('form[action="/login"] input[name=password]').count(), 1, 'the password form');
  const people = await usernames(DATABASE_3);
  assert.deepEqual(people, [DEMO_USER], 'the third mandate has its demo user only');
  const button = page.getByRole('link', { name: CONTINUE, exact: true });
  assert.equal(await button.getAttribute('href'), '/login/with/idp');
  await navigate(page, () => button.click());
  const answer = await answerAtCallback(page, BASE_3, 'alice-idp', 'i');
  assert.deepEqual(answer.shown, { login: true, consent: true }, 'a fresh browser signs in and consents at the provider');
  assert.equal(answer.status, 403, `403 Forbidden: ${await bodyText(page)}`);
  assert.equal(answer.message, NOT_LINKED);
  assert.equal(await signedInAs(page), undefined, 'nobody signed in on the error page');

  // No session: the account pages send the browser to sign in.
  await goto(page, `${BASE_3}/account/apps`);
  await shot(page, 'i-no-session');
  await assertAt(page, BASE_3, '/login', 'the sign-in page');
  assert.equal(await signedInAs(page), undefined, 'nobody is signed in');
  assert.deepEqual(await usernames(DATABASE_3), people, 'nobody was created');
  await context.close();
});

test(`j. an e-mail address the provider did not verify is not shown: ${DEMO_USER} of the third mandate links dave-idp (email_verified false) from Connections; the link page and Connections show no address; then "${CONTINUE}" as dave-idp signs ${DEMO_USER} in there`, { timeout: STEP_MS }, async () => {
  assert.equal(ACCOUNTS['dave-idp'].email_verified, false);
  const unverified = ACCOUNTS['dave-idp'].email;
  const { page, context } = await profile(`${DEMO_USER}-3`);
  await signInWithPassword(page, BASE_3, DEMO_USER, PASSWORD_3, 'j');
  await goto(page, `${BASE_3}/account/connections`);
  assert.deepEqual(await signInMethods(page), [], 'nothing linked yet');
  await startLink(page, BASE_3, 'j');
  const shown = await atProvider(page, BASE_3, 'dave-idp', 'j');
  assert.equal(shown.login, true, 'a fresh browser signs in at the provider');
  await shot(page, 'j-confirm-link');

  const confirm = page.getByRole('button', { name: 'Link', exact: true });
  if ((await confirm.count()) === 0) assert.fail(`no confirmation page with a "Link" button at ${redactUrl(page.url())}: ${await bodyText(page)}`);
  const text = await textOf(page);
  assert.ok(text.includes(`You are signed in as ${DEMO_USER}.`), `the page names the signed-in person: ${text}`);
  assert.ok(!text.includes(unverified) && !text.includes('@'), `no e-mail address on the link page: ${text}`);
  assert.ok(text.includes(`The ${TITLE} account is not linked to anyone.`), `the account, without an address: ${text}`);
  assert.ok(!(await bodyText(page)).includes(unverified), 'nowhere on the page');

  await navigate(page, () => confirm.click());
  await assertAt(page, BASE_3, '/account/connections', 'the Connections page');
  await shot(page, 'j-linked');
  assert.ok((await textOf(page)).includes(`You can now sign in with ${TITLE}.`), await textOf(page));
  const methods = await signInMethods(page);
  assert.equal(methods.length, 1, `one sign-in method: ${JSON.stringify(methods)}`);
  assert.ok(methods[0].includes(TITLE), methods[0]);
  assert.ok(!methods[0].includes(unverified) && !methods[0].includes('@'), `no e-mail address in Connections: ${methods[0]}`);

  // create_people = false leaves linked people alone: dave-idp signs the password user in.
  await signOut(page, 'j');
  await goto(page, `${BASE_3}/login`);
  await continueWithProvider(page, BASE_3, 'dave-idp', 'j-again');
  await assertAt(page, BASE_3, '/account/apps', 'the Connected apps page');
  assert.equal(await signedInAs(page), DEMO_USER, `dave-idp signs in as ${DEMO_USER}`);
  assert.deepEqual(await usernames(DATABASE_3), [DEMO_USER], 'nobody was created');
  await context.close();
});

test('k. a link answered after its person signed out in another tab: 403 "You are no longer signed in here…", nothing linked, and the provider\'s code is never redeemed', { timeout: STEP_MS }, async () => {
  // A second password user on the third mandate (`mandate users add`), with nothing linked.
  const username = 'erin';
  const password = crypto.randomBytes(24).toString('base64url');
  await new Promise((resolve, reject) => {
    const child = execFile(BIN, ['users', 'add', username, '--password-stdin', '--database', DATABASE_3], { timeout: PAGE_MS }, (e, _out, err) =>
      e ? reject(new Error(`mandate users add: ${e.message} ${err}`)) : resolve(),
    );
    child.stdin.end(`${password}\n`);
  });
  const { page, context } = await profile(username);
  await signInWithPassword(page, BASE_3, username, password, 'k');
  await startLink(page, BASE_3, 'k');

  // Meanwhile, in another tab of the same browser: Sign out.
  const other = await context.newPage();
  await goto(other, `${BASE_3}/account/apps`);
  assert.equal(await signedInAs(other), username);
  await signOut(other, 'k-other-tab');
  await other.close();

  const mark = idpEvents().length;
  const answer = await answerAtCallback(page, BASE_3, 'bob-idp', 'k');
  assert.equal(answer.status, 403, `403 Forbidden: ${await bodyText(page)}`);
  assert.equal(answer.message, SIGNED_OUT);
  const events = idpEvents(mark);
  assert.deepEqual(
    events.filter((e) => e.event === 'authorization.success').map((e) => e.accountId),
    ['bob-idp'],
    'the provider sent bob-idp\'s answer',
  );
  assert.deepEqual(
    events.filter((e) => (e.event === 'request' && e.path === '/token') || e.event === 'grant.success'),
    [],
    'mandate did not redeem the code',
  );

  // Signed in again: nothing was linked.
  await signInWithPassword(page, BASE_3, username, password, 'k-again');
  await goto(page, `${BASE_3}/account/connections`);
  await shot(page, 'k-connections');
  assert.deepEqual(await signInMethods(page), [], 'nothing linked');
  await context.close();
});
