// The examples in examples/ against `mandate serve --demo` (docs/EXAMPLES.md): mandate as the
// authorization server of servers written with the official TypeScript SDK (examples/ts-sdk, by
// JWT and by introspection) and FastMCP (examples/fastmcp-jwt, by introspection; its JWT variant
// is in e2e/doctor.test.mjs). For each, the official TypeScript SDK client signs in (Chromium as
// the person), consents and calls the tool, which sees who asked; then the person revokes the
// agent on /account/apps, and its access token is refused at once where the server introspects,
// and still accepted (until it expires) where the server validates the JWT itself. Last, mandate's
// own inspector (/inspector) connects to the TypeScript SDK example as a third-party server.
// .ci/e2e.sh starts the servers (start_examples) with confidential clients it registers.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { Person, readConsent } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { MemoryOAuthProvider } from './lib/provider.mjs';
import { say, withTimeout } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const OUT = process.env.MANDATE_E2E_OUT ?? 'target/e2e';
const PAGE_MS = 15_000;
const SERVERS = [
  { name: 'TypeScript SDK, JWT', url: process.env.MANDATE_E2E_TS_JWT_URL, introspects: false },
  { name: 'TypeScript SDK, introspection', url: process.env.MANDATE_E2E_TS_INTROSPECTION_URL, introspects: true },
  { name: 'FastMCP, introspection', url: process.env.MANDATE_E2E_FASTMCP_INTROSPECTION_URL, introspects: true },
];
assert.ok(BASE && PASSWORD && SERVERS.every((s) => s.url), 'set by .ci/e2e.sh (start_examples)');

/** initialize with `token` at `url`: the HTTP status. */
async function initializeWith(url, token) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } },
    }),
  });
  await r.body?.cancel();
  return r.status;
}

const person = new Person({ username: 'demo', password: PASSWORD, screenshots: path.join(OUT, 'screenshots', 'examples'), stepTimeoutMs: PAGE_MS });
const callback = new LoopbackCallback();
const tokens = new Map();

test('Chromium starts', async () => {
  await person.start();
  await callback.start();
});

for (const s of SERVERS) {
  test(`${s.name}: the official TypeScript SDK client signs in at mandate and calls the tool, which sees who asked`, { timeout: 120_000 }, async () => {
    let consent;
    const provider = new MemoryOAuthProvider({
      redirectUri: callback.redirectUri,
      clientName: `mandate e2e (${s.name})`,
      grantTypes: ['authorization_code', 'refresh_token'],
      issuer: BASE,
      authorize: async (url) => {
        assert.equal(url.searchParams.get('resource'), s.url, 'the client asks for a token for this server');
        await person.authorize(url, callback.redirectUri, async (page) => {
          consent = await readConsent(page);
        });
        return callback.next(PAGE_MS);
      },
    });
    const client = new Client({ name: 'mandate-e2e', version: '1.0.0' });
    try {
      const first = new StreamableHTTPClientTransport(new URL(s.url), { authProvider: provider });
      await client.connect(first).then(
        () => assert.fail('connected without authorization'),
        (e) => assert.ok(e instanceof UnauthorizedError, `expected the sign-in to start: ${e}`),
      );
      assert.deepEqual(consent?.boxes, [{ value: 'notes.read', checked: true }]);
      await first.finishAuth(provider.takeResponse().code);
      await client.connect(new StreamableHTTPClientTransport(new URL(s.url), { authProvider: provider }));
      const result = await withTimeout(client.callTool({ name: 'hello', arguments: { name: 'John' } }), PAGE_MS, 'hello');
      const text = result.content[0].text;
      assert.match(text, /^Hello, John\./);
      const token = provider.savedTokens.at(-1).access_token;
      const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
      assert.equal(claims.aud, s.url);
      if (s.name.startsWith('TypeScript')) {
        // The tool read the caller from the verified token: the agent and the person.
        assert.ok(text.includes(claims.client_id) && text.includes(claims.sub), text);
      }
      say(`${s.name}: "${text}"`);
      tokens.set(s.name, { token, clientName: `mandate e2e (${s.name})` });
    } finally {
      await client.close().catch(() => {});
    }
  });
}

test('the person revokes each agent on /account/apps: introspecting servers refuse its token at once (401); JWT-validating ones accept it until it expires', { timeout: 120_000 }, async () => {
  for (const s of SERVERS) {
    const held = tokens.get(s.name);
    assert.ok(held, `${s.name} signed in above`);
    assert.equal(await initializeWith(s.url, held.token), 200, `${s.name}: the token works before`);
    const page = await person.newPage();
    try {
      assert.ok((await page.goto(`${BASE}/account/apps`))?.ok());
      const card = page.locator('.app-card', { hasText: held.clientName });
      assert.equal(await card.count(), 1, `one card for ${held.clientName}`);
      await card.getByRole('link', { name: 'Revoke access…' }).click();
      await page.waitForLoadState('load');
      const [revoked] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === '/account/apps/revoke' && r.request().method() === 'POST'),
        page.getByRole('button', { name: 'Revoke access' }).click(),
      ]);
      assert.equal(revoked.status(), 303);
      await page.waitForLoadState('load');
      await person.capture(page, `revoked-${s.introspects ? 'introspecting' : 'jwt'}-${s.name.split(',')[0].replace(/\W+/g, '-')}`);
    } finally {
      await page.close();
    }
    const after = await initializeWith(s.url, held.token);
    say(`${s.name}: after revocation the same token gets ${after}`);
    assert.equal(after, s.introspects ? 401 : 200);
  }
});

test("mandate's own inspector connects to a third-party server (the TypeScript SDK example, JWT): signs in at mandate, lists and calls its tool, revokes", { timeout: 120_000 }, async () => {
  const s = SERVERS[0];
  const page = await person.newPage();
  const status = () => page.locator('#status');
  try {
    await page.goto(`${BASE}/inspector`);
    await page.locator('#operator').filter({ hasText: 'signed in as demo' }).waitFor();
    const offered = await page.locator('#suggestions option').evaluateAll((os) => os.map((o) => o.value));
    assert.ok(offered.includes(s.url), `a resource mandate serves is offered: ${JSON.stringify(offered)}`);
    await page.fill('#url', s.url);
    await page.click('#connect-button');
    await page.locator('#authorize').waitFor({ state: 'visible' });
    await person.capture(page, 'inspector-ts-sdk-sign-in-waiting');
    await page.click('#authorize');
    await page.waitForURL((u) => u.pathname === '/consent');
    await person.continueAuthorization(page, (u) => u.pathname === '/inspector', async (p) => {
      const consent = await readConsent(p);
      assert.deepEqual(consent.boxes, [{ value: 'notes.read', checked: true }], 'what the SDK server challenges for');
    }, { label: 'inspector-ts-sdk' });
    await page.waitForFunction(() => {
      const st = document.getElementById('status');
      return st.dataset.phase === 'connected' && !st.dataset.busy;
    });
    const titles = await page.locator('#flow > li').evaluateAll((els) => els.map((e) => e.dataset.title));
    for (const want of ['MCP initialize: 401', 'Protected resource metadata (RFC 9728): 200', 'Authorization server metadata (RFC 8414): 200', 'MCP tools/list: 200']) {
      assert.ok(titles.some((t) => t.startsWith(want)), `${want} in ${JSON.stringify(titles)}`);
    }
    // The 401 came from the SDK's requireBearerAuth, naming its own resource metadata.
    const first = page.locator('#flow > li.exchange', { hasText: 'MCP initialize: 401' }).first();
    await first.locator('summary').click();
    assert.match(await first.locator('pre').innerText(), /www-authenticate: Bearer .*resource_metadata=/i);
    await page.click('#tools button[data-tool="hello"]');
    await page.fill('#arg-name', 'John');
    await page.click('#call-button');
    await page.locator('#result-tool', { hasText: 'hello' }).waitFor();
    await page.waitForFunction(() => !document.getElementById('status').dataset.busy && document.getElementById('result-outcome').textContent);
    assert.equal(await page.locator('#result-outcome').innerText(), 'ok');
    assert.match(await page.locator('#result-body').innerText(), /Hello, John\./);
    await person.capture(page, 'inspector-ts-sdk-called');
    await page.click('#revoke-button');
    await page.waitForFunction(() => document.getElementById('status').dataset.phase === 'revoked');
    assert.ok(await status().innerText().then((t) => t.includes('revoked')));
    await person.capture(page, 'inspector-ts-sdk-revoked');
  } finally {
    await page.close();
  }
});

test('Chromium stops', async () => {
  await person.close();
  await callback.close();
});
