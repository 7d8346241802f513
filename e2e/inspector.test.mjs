// The official MCP Inspector (@modelcontextprotocol/inspector, its web UI) against mandate, driven
// the way a developer drives it: Chromium opens the URL the Inspector printed, adds mandate's /mcp
// with "Add Servers → Add manually" (Streamable HTTP), flips the connect switch, signs in and
// consents on mandate's pages, lists tools, calls list_customers, calls send_invoice, answers the
// Inspector's "Additional permissions required" dialog, ticks invoices.send on the consent page and
// clicks Execute again. Twice: with the default settings (protocol era "Legacy", 2025-11-25), then
// on the same entry disconnected, switched to Settings → Protocol Era → "Modern" (2026-07-28,
// sessionless) and cleared of its OAuth state, so that it registers and authorizes anew.
// Every click is on the Inspector's own UI; nothing is injected or rewritten. What the Inspector
// sent to mandate and what mandate answered is read from its page's calls to its own backend
// (lib/inspector.mjs). Run by .ci/e2e.sh (Node 22; the Inspector pinned in package-lock.json);
// screenshots in target/e2e/screenshots/inspector/.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Person, readConsent, SCOPE_DESCRIPTIONS } from './lib/browser.mjs';
import { atLeast, Inspector, InspectorTraffic, inspectorPackage } from './lib/inspector.mjs';
import { READ_SCOPES, TOOLS } from './lib/story.mjs';
import { say, scopes, withTimeout } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const OUT = process.env.MANDATE_E2E_OUT ?? path.resolve(import.meta.dirname, '../target/e2e');

const BROWSER_STEP_MS = 60_000; // a step with sign-in or consent
const STEP_MS = 20_000; // any other step
const PAGE_MS = 15_000; // one page load or click

const s = {
  inspector: new Inspector(),
  person: undefined,
  page: undefined, // the Inspector's tab
  traffic: undefined,
  opened: false,
  customers: {}, // name → id, from list_customers
  sent: 0, // invoices sent through the Inspector
  mcpUrl: `${BASE}/mcp`,
};

/** What the Inspector sent to mandate since `mark` (OAuth requests, MCP messages), one line each, no secrets. */
function transcript(mark) {
  for (const e of s.traffic.since(mark)) {
    if (e.kind === 'fetch') {
      const what = e.request?.grant_type ? ` grant_type=${e.request.grant_type}` : '';
      say(`inspector: ${e.method} ${new URL(e.url).pathname}${what} -> ${e.status}`);
    } else {
      const what = e.kind === 'connect' ? 'connect' : `${e.rpc}${e.tool ? ` ${e.tool}` : ''}`;
      const challenge = e.challenge ? ` challenge ${JSON.stringify(e.challenge)}` : '';
      say(`inspector: mcp ${what} -> ${e.ok ? 'ok' : 'not ok'}${challenge}${e.error ? ` ${e.error}` : ''}`);
    }
  }
}

/** The fetches to `pathname` on mandate since `mark`. */
function fetches(mark, pathname) {
  return s.traffic.since(mark, (e) => e.kind === 'fetch' && new URL(e.url).pathname === pathname);
}

/** Switches the Inspector to its Servers or Tools view. */
async function view(name) {
  // A segmented control: its radio input is hidden, its label is what one clicks.
  const id = await s.page.getByRole('radio', { name, exact: true }).getAttribute('id');
  await s.page.locator(`label[for="${id}"]`).click();
}

/** What the Results panel shows (its editor's text), parsed as JSON, once it replaced the tool's form. */
async function results() {
  await s.page.getByRole('button', { name: 'Execute Tool' }).waitFor({ state: 'hidden' });
  const card = s.page.locator('.mantine-Card-root').filter({ has: s.page.getByRole('heading', { name: 'Results' }) });
  await card.waitFor();
  const value = await card.locator('.ace_editor').evaluate((e) => e.env?.editor?.getValue());
  return JSON.parse(value);
}

/** The form of `tool`: the card with the Execute button and the tool's name as a text of its own. */
function toolForm(tool) {
  return s.page
    .locator('.mantine-Card-root')
    .filter({ has: s.page.getByRole('button', { name: 'Execute Tool' }) })
    .filter({ has: s.page.getByText(tool, { exact: true }) });
}

/** Selects `tool` in the Tools list, fills its form, clicks Execute Tool. */
async function execute(tool, args = {}) {
  await s.page.locator('button.list-item').filter({ has: s.page.getByText(tool, { exact: true }) }).click();
  await toolForm(tool).waitFor();
  for (const [name, value] of Object.entries(args)) {
    await s.page.getByRole('textbox', { name }).fill(value);
  }
  const mark = s.traffic.mark();
  await s.page.getByRole('button', { name: 'Execute Tool' }).click();
  return mark;
}

before(async () => {
  assert.ok(BASE, 'MANDATE_E2E_BASE names the server (run .ci/e2e.sh)');
  assert.ok(PASSWORD, 'MANDATE_E2E_PASSWORD is the demo password (run .ci/e2e.sh)');
  const pkg = await inspectorPackage();
  s.label = `@modelcontextprotocol/inspector ${pkg.version}`;
  say(`client: ${s.label} (web UI; wants Node ${pkg.engines}, running on ${process.version}); server: ${BASE}`);
  await s.inspector.start({ logFile: path.join(OUT, 'inspector.mcp-inspector.log'), timeoutMs: STEP_MS });
  s.person = new Person({
    username: 'demo',
    password: PASSWORD,
    screenshots: path.join(OUT, 'screenshots', 'inspector'),
    stepTimeoutMs: PAGE_MS,
  });
  await s.person.start();
  s.page = await s.person.newPage();
  await s.page.setViewportSize({ width: 1400, height: 900 }); // the Inspector's three columns side by side
  s.traffic = new InspectorTraffic(s.page, s.inspector.origin, BASE);
});

after(async () => {
  const quietly = (p, what) => withTimeout(p, PAGE_MS, what).catch((e) => say(`cleanup: ${e.message}`));
  await quietly(s.person?.close() ?? Promise.resolve(), 'Chromium to close');
  await quietly(s.inspector.stop(), 'the Inspector to stop');
});

test('the Inspector runs on Node it supports and opens at the URL it printed', { timeout: STEP_MS }, async () => {
  const pkg = await inspectorPackage();
  const min = pkg.engines?.match(/>=\s*([\d.]+)/)?.[1];
  assert.ok(min && atLeast(process.version, min), `Node ${process.version} satisfies ${pkg.engines}`);
  assert.match(
    s.inspector.output(),
    new RegExp(`running at:\\s+${s.inspector.origin.replaceAll('.', '\\.')}\\?MCP_INSPECTOR_API_TOKEN=<token>`),
  );
  await s.page.goto(s.inspector.url);
  await s.page.getByRole('button', { name: 'Add Servers' }).waitFor();
  s.opened = true;
});

/**
 * The story in one protocol era (the server entry's Settings → Protocol Era): 'legacy', the
 * default, adds the entry and leaves its settings alone; 'modern' then reconfigures the same entry
 * and clears its OAuth state, so the Inspector registers and authorizes anew. `customer` is whose
 * draft invoice gets sent.
 */
function story({ era, protocol, customer }) {
  const st = { connected: false };
  const label = `${era} era (${protocol})`;
  const serverId = 'mandate-demo';
  const connectSwitch = (options = {}) =>
    s.page.getByRole('switch', { name: `Connect or disconnect "${serverId}"`, ...options });
  const requireConnected = (t) => {
    if (!st.connected) {
      t.skip(`the ${label} entry never connected (see the first failure)`);
      return false;
    }
    return true;
  };

  if (era === 'legacy') {
    test(`${label}: mandate's /mcp added as a Streamable HTTP server (Add Servers → Add manually), settings left at their defaults`, { timeout: STEP_MS }, async (t) => {
      if (!s.opened) return t.skip('the Inspector did not open');
      const page = s.page;
      await page.getByRole('button', { name: 'Add Servers' }).click();
      await page.getByText('Add manually').click();
      const dialog = page.getByRole('dialog', { name: 'Add server' });
      await dialog.getByPlaceholder('my-server').fill(serverId);
      await dialog.getByRole('textbox', { name: 'Transport' }).click();
      await page.getByRole('option', { name: 'streamable-http' }).click();
      await dialog.getByRole('textbox', { name: 'URL' }).fill(s.mcpUrl);
      await s.person.capture(page, `${era}-add-server`);
      await dialog.getByRole('button', { name: 'Add', exact: true }).click();
      await connectSwitch().waitFor();
      assert.equal(await connectSwitch().isChecked(), false, 'added, not connected');
    });
  } else {
    // The Inspector keeps its tokens and registration: to see the whole flow again, the developer
    // disconnects, picks the era and clears the stored OAuth state in the entry's Settings.
    test(`${label}: the same entry disconnected; Settings → Protocol Era → Modern; OAuth Settings → Clear stored OAuth state`, { timeout: STEP_MS }, async (t) => {
      if (!s.sent) return t.skip('the legacy era story did not finish');
      const page = s.page;
      await view('Servers');
      await connectSwitch().locator('xpath=..').click();
      await connectSwitch({ checked: false }).waitFor();
      const card = page.locator('.mantine-Card-root').filter({ has: connectSwitch() }).last();
      await card.getByRole('button', { name: 'Settings' }).click();
      const settings = page.getByRole('dialog', { name: 'Server Settings' });
      await settings.getByRole('textbox', { name: 'Protocol Era' }).click();
      await page.getByRole('option', { name: /^Modern/ }).click();
      await settings.getByRole('button', { name: 'OAuth Settings' }).click();
      await s.person.capture(page, `${era}-settings`);
      const mark = s.traffic.mark();
      await settings.getByRole('button', { name: 'Clear stored OAuth state' }).click();
      await settings.getByRole('button', { name: 'Close' }).click();
      await settings.waitFor({ state: 'hidden' });
      await s.traffic.settle();
      transcript(mark); // 2.12.0 revokes nothing here (see the connected-apps step): the old app stays
    });
  }

  test(`${label}, RS2 RS1 AS2 AS5 C11 C14 C17 AS13: connecting, the Inspector is challenged, discovers, registers with the challenge's scopes; the person consents to the read scopes; the Inspector connects and lists nine tools`, { timeout: BROWSER_STEP_MS }, async (t) => {
    if (!(await connectSwitch().count()) || (await connectSwitch().isChecked())) {
      return t.skip('the server entry is not there, or still connected');
    }
    const page = s.page;
    const mark = s.traffic.mark();
    const authorizations = s.traffic.authorizations.length;
    const callbacks = s.traffic.callbacks.length;
    const signIns = s.person.signIns;
    let consent;
    // The switch's track is what one clicks (its input is visually hidden).
    await connectSwitch().locator('xpath=..').click();
    // The Inspector sends its own tab to mandate's /authorize: the sign-in form (first time) or
    // straight to the consent page (the browser session lives on).
    await page.waitForURL((u) => u.origin === BASE && u.pathname !== '/authorize');
    const { consentShown } = await s.person.continueAuthorization(
      page,
      (u) => u.origin === s.inspector.origin,
      async (p) => {
        consent = await readConsent(p);
        // Leave the defaults: the person allows what is ticked (the read scopes).
      },
    );
    await Promise.all([
      page.getByText('Authorization complete').waitFor(),
      page.getByText(`MCP ${protocol}`, { exact: true }).waitFor(),
    ]);
    await s.traffic.settle();
    transcript(mark);
    await s.person.capture(page, `${era}-connected`);

    // The first request without a token was challenged (RS2): 401 with resource_metadata and scope.
    const [challenged] = s.traffic.since(mark, (e) => e.kind === 'send' && e.challenge);
    assert.ok(challenged, 'a 401 challenge reached the Inspector');
    assert.equal(challenged.rpc, era === 'legacy' ? 'initialize' : 'server/discover');
    assert.equal(challenged.challenge.raw.httpStatus, 401);
    assert.equal(challenged.challenge.resourceMetadataUrl, `${BASE}/.well-known/oauth-protected-resource/mcp`);
    assert.deepEqual(challenged.challenge.requiredScopes, READ_SCOPES);

    // RFC 9728, then RFC 8414 (RS1, AS2), through the Inspector's backend.
    const [prm] = fetches(mark, '/.well-known/oauth-protected-resource/mcp');
    assert.equal(prm?.status, 200);
    assert.equal(prm.response.resource, s.mcpUrl);
    assert.deepEqual(prm.response.authorization_servers, [BASE]);
    const [asm] = fetches(mark, '/.well-known/oauth-authorization-server');
    assert.equal(asm?.status, 200);
    assert.equal(asm.response.issuer, BASE);
    assert.deepEqual(asm.response.code_challenge_methods_supported, ['S256']);

    // Dynamic registration with the challenge's scopes and the Inspector's redirect URI (C11, AS5).
    const reg = fetches(mark, '/register');
    assert.equal(reg.length, 1, 'one registration');
    assert.equal(reg[0].status, 201);
    assert.deepEqual(scopes(reg[0].request.scope), READ_SCOPES, 'registered with the challenge scope');
    assert.deepEqual(reg[0].request.redirect_uris, [s.inspector.redirectUri]);
    assert.equal(reg[0].request.token_endpoint_auth_method, 'none');
    assert.ok(reg[0].request.grant_types.includes('refresh_token'), 'it asks for refresh tokens');
    st.clientId = reg[0].response.client_id;
    assert.ok(st.clientId, 'a client_id was issued');
    assert.equal(reg[0].response.client_secret, undefined, 'a public client gets no secret');
    say(`registered "${reg[0].request.client_name}" ${st.clientId.slice(0, 6)}… scope "${reg[0].request.scope}" redirect ${reg[0].request.redirect_uris}`);

    // The authorization request (C14 resource, C17 S256) and its response (AS13 iss).
    assert.equal(s.traffic.authorizations.length, authorizations + 1);
    const authz = s.traffic.authorizations.at(-1);
    assert.equal(authz.response_type, 'code');
    assert.equal(authz.client_id, st.clientId);
    assert.equal(authz.redirect_uri, s.inspector.redirectUri);
    assert.equal(authz.code_challenge_method, 'S256');
    assert.equal(authz.resource, s.mcpUrl);
    assert.deepEqual(scopes(authz.scope), READ_SCOPES, 'the read scopes, nothing else (no offline_access)');
    assert.deepEqual(s.traffic.callbacks.slice(callbacks), [{ code: true, state: true, iss: BASE, error: null }]);

    // What the person saw: the sign-in form the first time, then a consent page with the read
    // scopes ticked (a new registration is a new app: nothing is already allowed).
    assert.equal(s.person.signIns, 1, 'the person signed in once in the whole run');
    assert.ok(era === 'legacy' || s.person.signIns === signIns, 'no second sign-in');
    assert.ok(consentShown && consent, 'the consent page was shown');
    assert.match(consent.heading, /MCP Inspector wants to act for you/);
    assert.deepEqual(
      consent.boxes,
      READ_SCOPES.map((value) => ({ value, checked: true })),
      'the three read scopes, ticked',
    );
    assert.deepEqual(consent.alreadyAllowed, []);

    // The code exchange, bound to the resource; a refresh token comes with it.
    const [token] = fetches(mark, '/token');
    assert.equal(token?.request.grant_type, 'authorization_code');
    assert.equal(token.request.resource, s.mcpUrl);
    assert.equal(token.request.redirect_uri, s.inspector.redirectUri);
    assert.equal(token.status, 200);
    assert.deepEqual(scopes(token.response.scope), READ_SCOPES);
    assert.equal(token.response.token_type, 'Bearer');
    assert.ok(token.response.refresh_token, 'a refresh token was issued');

    // Connected with the token.
    const done = s.traffic.since(mark, (e) => e.kind === 'send' && e.ok).map((e) => e.rpc);
    assert.ok(done.includes(era === 'legacy' ? 'initialize' : 'server/discover'), `connected: ${done}`);
    assert.ok(done.includes('tools/list'), `tools/list succeeded: ${done}`);
    st.connected = true;

    await view('Tools');
    await page.getByRole('heading', { name: `Tools (${TOOLS.length})` }).waitFor();
    const listed = await page.locator('button.list-item p:first-child').allTextContents();
    assert.deepEqual(listed.map((x) => x.trim()).sort(), TOOLS);
    await s.person.capture(page, `${era}-tools`);
  });

  test(`${label}: list_customers from the Tools view shows the demo customers`, { timeout: STEP_MS }, async (t) => {
    if (!requireConnected(t)) return;
    const mark = await execute('list_customers');
    const shown = await results();
    await s.traffic.settle();
    transcript(mark);
    await s.person.capture(s.page, `${era}-list-customers`);
    for (const c of shown.customers) s.customers[c.name] = c.id;
    const names = shown.customers.map((c) => c.name).sort();
    assert.deepEqual(names, ['Acme Corp', 'Globex']);
    say(`list_customers: ${names.join(', ')}`);
  });

  test(`${label}, RS10 RS11 C13: send_invoice is refused (403 insufficient_scope, invoices.send); the Inspector's dialog asks for the union; the consent page asks only for invoices.send; the person ticks it; Execute again sends the invoice`, { timeout: BROWSER_STEP_MS }, async (t) => {
    if (!requireConnected(t)) return;
    const page = s.page;
    await execute('list_invoices');
    const listed = (await results()).invoices;
    const draft = listed.find((i) => i.status === 'draft' && i.customer_id === s.customers[customer]);
    assert.ok(draft, `a draft invoice of ${customer} to send: ${JSON.stringify(listed)}`);
    const signIns = s.person.signIns;
    const authorizations = s.traffic.authorizations.length;

    const mark = await execute('send_invoice', { invoice_id: draft.id });
    const dialog = page.getByRole('dialog', { name: 'Additional permissions required' });
    await dialog.waitFor();
    await s.traffic.settle();
    transcript(mark);
    await s.person.capture(page, `${era}-step-up-dialog`);

    // mandate's refusal, as the Inspector received it (RS10).
    const [refused] = s.traffic.since(mark, (e) => e.kind === 'send' && e.tool === 'send_invoice');
    assert.equal(refused?.ok, false);
    assert.equal(refused.challenge?.reason, 'insufficient_scope');
    assert.equal(refused.challenge.raw.httpStatus, 403);
    const challenge = refused.challenge.raw.wwwAuthenticate;
    assert.match(challenge, /error="insufficient_scope"/);
    // RS11: what the token holds and what the tool needs, in one challenge.
    const named = (challenge.match(/scope="([^"]*)"/)?.[1] ?? '').split(' ').filter(Boolean).sort();
    assert.deepEqual(named, [...READ_SCOPES, 'invoices.send'].sort(), challenge);
    assert.ok(challenge.includes(`resource_metadata="${BASE}/.well-known/oauth-protected-resource/mcp"`), challenge);

    // The Inspector's dialog: the union, invoices.send marked new.
    const text = (await dialog.innerText()).replace(/\s+/g, ' ');
    assert.match(text, /invoices\.send NEW/i);
    for (const sc of READ_SCOPES) assert.match(text, new RegExp(`${sc.replace('.', '\\.')} ALREADY GRANTED`, 'i'));

    let consent;
    const authorize = s.traffic.mark();
    await dialog.getByRole('button', { name: 'Authorize' }).click();
    await page.waitForURL((u) => u.origin === BASE && u.pathname !== '/authorize');
    await s.person.continueAuthorization(
      page,
      (u) => u.origin === s.inspector.origin,
      async (p) => {
        consent = await readConsent(p);
        await p.check('input[name=scope][value="invoices.send"]');
      },
    );
    await page.getByText('Step-up authorization succeeded').waitFor();
    await s.traffic.settle();
    transcript(authorize);
    await s.person.capture(page, `${era}-stepped-up`);

    // The Inspector asked for the union of what it held and what the challenge named (C13) ...
    assert.equal(s.traffic.authorizations.length, authorizations + 1);
    const authz = s.traffic.authorizations.at(-1);
    assert.deepEqual(scopes(authz.scope), [...READ_SCOPES, 'invoices.send'].sort());
    assert.equal(authz.resource, s.mcpUrl);
    assert.equal(authz.client_id, st.clientId, 'the same registration');
    assert.deepEqual(fetches(authorize, '/register'), [], 'no new registration');
    // ... and the person, still signed in, was asked only for invoices.send (RS11).
    assert.equal(s.person.signIns, signIns, 'no second sign-in');
    assert.ok(consent, 'a consent page was shown');
    assert.match(consent.heading, /MCP Inspector asks for more/);
    assert.deepEqual(consent.boxes, [{ value: 'invoices.send', checked: false }], 'one checkbox, unticked');
    assert.deepEqual(consent.irreversible, ['invoices.send']);
    assert.deepEqual(consent.alreadyAllowed, READ_SCOPES);
    const tokens = fetches(mark, '/token');
    assert.deepEqual(
      tokens.map((e) => [e.request.grant_type, e.status]),
      [['authorization_code', 200]],
      'one code exchange; no refresh (a refresh cannot widen scope)',
    );
    assert.deepEqual(scopes(tokens[0].response.scope), [...READ_SCOPES, 'invoices.send'].sort());

    // The developer retries: the Inspector kept the tool and its argument.
    await view('Tools');
    await toolForm('send_invoice').waitFor();
    const field = page.getByRole('textbox', { name: 'invoice_id' });
    assert.equal(await field.inputValue(), draft.id, 'the form kept the invoice id');
    const retry = s.traffic.mark();
    await page.getByRole('button', { name: 'Execute Tool' }).click();
    const sent = await results();
    await s.traffic.settle();
    transcript(retry);
    await s.person.capture(page, `${era}-send-invoice`);
    assert.deepEqual(sent, { invoice_id: draft.id, status: 'sent' });
    say(`send_invoice: ${JSON.stringify(sent)}`);
    s.sent += 1;
  });
}

story({ era: 'legacy', protocol: '2025-11-25', customer: 'Acme Corp' });
story({ era: 'modern', protocol: '2026-07-28', customer: 'Globex' });

test('what the person sees in mandate: each Inspector entry is a connected app "MCP Inspector" with the four scopes; the activity has each refusal and each sent invoice', { timeout: STEP_MS }, async (t) => {
  if (!s.sent) return t.skip('no invoice was sent');
  const page = await s.person.newPage();
  try {
    await page.goto(`${BASE}/account/apps`);
    await s.person.capture(page, 'connected-apps');
    const text = (await page.locator('main').innerText()).replace(/\s+/g, ' ');
    assert.equal((text.match(/MCP Inspector unverified It can:/g) ?? []).length, s.sent, `${s.sent} apps named MCP Inspector: ${text}`);
    for (const sc of [...READ_SCOPES, 'invoices.send']) {
      const d = SCOPE_DESCRIPTIONS[sc];
      assert.equal(text.split(d).length - 1, s.sent, `each lists "${d}": ${text}`);
    }
    await page.goto(`${BASE}/account/activity`);
    await s.person.capture(page, 'activity');
    const activity = (await page.locator('main').innerText()).replace(/\s+/g, ' ');
    const count = (re) => (activity.match(re) ?? []).length;
    assert.equal(count(/The app calling itself “MCP Inspector” unverified sent the invoice of 1250\.00 EUR to (Acme Corp|Globex)/g), s.sent, activity);
    assert.equal(count(/The app calling itself “MCP Inspector” unverified was refused: you have not allowed it to send invoices/g), s.sent, activity);
  } finally {
    await page.close().catch(() => {});
  }
});

test('no CORS needed: the Inspector\'s page sent mandate only page loads (authorize, sign-in, consent) and their stylesheet; every OAuth and MCP request went through the Inspector\'s backend', { timeout: STEP_MS }, async (t) => {
  if (!s.sent) return t.skip('the story did not run');
  const scripted = s.traffic.browserToServer.filter((r) => r.type !== 'document' && r.type !== 'stylesheet');
  assert.deepEqual(scripted, [], `the browser fetched from mandate itself: ${JSON.stringify(scripted)}`);
  const paths = [...new Set(s.traffic.browserToServer.filter((r) => r.type === 'document').map((r) => r.path))].sort();
  assert.deepEqual(paths, ['/authorize', '/consent', '/login']);
  const kinds = [...new Set(s.traffic.browserToServer.map((r) => r.type))].sort();
  say(`the browser's requests to mandate: ${s.traffic.browserToServer.length} (${kinds.join(', ')})`);
});
