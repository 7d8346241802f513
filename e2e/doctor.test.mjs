// `mandate doctor` against real MCP servers from the registries (docs/DOCTOR.md): mandate itself
// (`serve --demo`), the MCP TypeScript SDK's OAuth example server (`simpleStreamableHttp.js
// --oauth`: its own in-memory authorization server), and a FastMCP server validating mandate's JWTs
// (examples/fastmcp-jwt, started by .ci/e2e.sh with mandate configured as its authorization
// server). Each report is checked check by check: what passes, and the exact warnings each server
// earns. Run by .ci/e2e.sh.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { Person, readConsent } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { MemoryOAuthProvider } from './lib/provider.mjs';
import { say, withTimeout } from './lib/util.mjs';

const base = process.env.MANDATE_E2E_BASE;
const bin = process.env.MANDATE_E2E_BIN;
const fastmcp = process.env.MANDATE_E2E_FASTMCP_URL;
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const OUT = process.env.MANDATE_E2E_OUT ?? 'target/e2e';
const PAGE_MS = 15_000;
assert.ok(base && bin && fastmcp, 'MANDATE_E2E_BASE, MANDATE_E2E_BIN and MANDATE_E2E_FASTMCP_URL are set by .ci/e2e.sh');

function doctor(url, ...args) {
  const r = spawnSync(bin, ['doctor', url, '--json', ...args], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, `mandate doctor ran: ${r.error}`);
  const report = JSON.parse(r.stdout);
  const byId = Object.fromEntries(report.checks.map((c) => [c.id, c]));
  const text = spawnSync(bin, ['doctor', url, ...args], { encoding: 'utf8', timeout: 60_000 }).stdout;
  say(`mandate doctor ${url} ${args.join(' ')} -> exit ${r.status}\n${text}`);
  return { status: r.status, report, byId };
}

/// Every check that did not pass, as "id=status".
function notPassed(report) {
  return report.checks.filter((c) => c.status !== 'pass').map((c) => `${c.id}=${c.status}`).sort();
}

async function freePort() {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  return port;
}

test('mandate itself (its Example Accounts gateway resource): every check passes for a browser origin it allows', () => {
  // This mandate's [[resources]] is the FastMCP example's, so it serves no demo /mcp; its
  // gateway resource (served by mandate, guarded the same way) is what the doctor looks at. The
  // built-in /mcp is diagnosed in crates/mandate-doctor/tests/doctor.rs.
  const { status, report, byId } = doctor(`${base}/mcp/example`, '--origin', base);
  assert.deepEqual(notPassed(report), []);
  assert.equal(status, 0);
  assert.equal(byId['as.issuer'].saw, base);
  // The MCP Inspector's origin is not one this server allows: a warning that says how to allow it.
  const inspector = doctor(`${base}/mcp/example`);
  assert.deepEqual(notPassed(inspector.report), ['cors=warn']);
  assert.equal(inspector.status, 1);
  assert.match(inspector.byId.cors.fix, /mcp_allowed_origins/);
});

test('the TypeScript SDK OAuth example server: works for clients, with the warnings it earns', async () => {
  const [mcpPort, authPort] = [await freePort(), await freePort()];
  const script = fileURLToPath(
    new URL('./node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js', import.meta.url),
  );
  const child = spawn(process.execPath, [script, '--oauth'], {
    env: { ...process.env, MCP_PORT: String(mcpPort), MCP_AUTH_PORT: String(authPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    for (let i = 0; i < 100 && !out.includes(`listening on port ${mcpPort}`); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(out, new RegExp(`listening on port ${mcpPort}`));
    const { status, report, byId } = doctor(`http://localhost:${mcpPort}/mcp`);
    // No failure: a spec-following client can sign in. The warnings are real: no scope in the
    // challenge, no CORS on /mcp, no RFC 9207 `iss`, and opaque tokens (no JWKS; introspection).
    assert.deepEqual(notPassed(report), ['as.iss=warn', 'challenge.scope=warn', 'cors=warn', 'jwks=warn']);
    assert.equal(status, 1);
    assert.equal(byId['as.issuer'].saw, `http://localhost:${authPort}/`);
    assert.equal(byId['as.pkce'].status, 'pass');
    assert.equal(byId['prm.resource'].status, 'pass');
  } finally {
    child.kill();
  }
});

test('a FastMCP server validating mandate JWTs (examples/fastmcp-jwt): mandate is its authorization server', () => {
  const { status, report, byId } = doctor(fastmcp);
  // FastMCP's challenge names no scope and its /mcp answers no CORS preflight; everything about
  // the authorization server (mandate) passes, the resource's scopes included (configured in
  // mandate's [[resources]]).
  assert.deepEqual(notPassed(report), ['challenge.scope=warn', 'cors=warn']);
  assert.equal(status, 1);
  assert.deepEqual(byId['prm.authorization_servers'].saw, base);
  for (const id of ['as.issuer', 'as.pkce', 'as.iss', 'as.registration', 'as.scopes', 'jwks']) {
    assert.equal(byId[id].status, 'pass', id);
  }
});

test('the FastMCP example answers a TypeScript SDK client signed in at mandate, and refuses a bearer mandate did not sign', { timeout: 120_000 }, async () => {
  // The official TypeScript SDK client: it reads FastMCP's 401 and metadata, registers at mandate,
  // sends the person (Chromium) to sign in and consent, and calls the tool with mandate's JWT,
  // which FastMCP validates with mandate's JWKS (issuer, audience = its URL, ES256).
  const callback = new LoopbackCallback();
  await callback.start();
  const person = new Person({
    username: 'demo',
    password: PASSWORD,
    screenshots: path.join(OUT, 'screenshots', 'fastmcp-example'),
    stepTimeoutMs: PAGE_MS,
  });
  await person.start();
  let consent;
  const provider = new MemoryOAuthProvider({
    redirectUri: callback.redirectUri,
    clientName: 'mandate e2e (FastMCP example)',
    grantTypes: ['authorization_code', 'refresh_token'],
    issuer: base,
    authorize: async (url) => {
      assert.equal(url.searchParams.get('resource'), fastmcp, 'the client asks for a token for the FastMCP server');
      await person.authorize(url, callback.redirectUri, async (page) => {
        consent = await readConsent(page);
      });
      return callback.next(PAGE_MS);
    },
  });
  const client = new Client({ name: 'mandate-e2e', version: '1.0.0' });
  try {
    const first = new StreamableHTTPClientTransport(new URL(fastmcp), { authProvider: provider });
    await client.connect(first).then(
      () => assert.fail('connected without authorization'),
      (e) => assert.ok(e instanceof UnauthorizedError, `expected the sign-in to start: ${e}`),
    );
    assert.ok(consent, 'the person saw the consent page');
    assert.deepEqual(consent.boxes, [{ value: 'notes.read', checked: true }]);
    await first.finishAuth(provider.takeResponse().code);
    await client.connect(new StreamableHTTPClientTransport(new URL(fastmcp), { authProvider: provider }));
    const result = await withTimeout(client.callTool({ name: 'hello', arguments: { name: 'John' } }), PAGE_MS, 'hello');
    assert.equal(result.content[0].text, 'Hello, John.');
    const token = provider.savedTokens.at(-1).access_token;
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    assert.equal(claims.iss, base);
    assert.equal(claims.aud, fastmcp);
    assert.equal(claims.scope, 'notes.read');
    say(`FastMCP answered "${result.content[0].text}" with a token from ${claims.iss} for ${claims.aud}`);
    // A bearer mandate did not sign is refused.
    const wrong = await fetch(fastmcp, {
      method: 'POST',
      headers: { authorization: 'Bearer not.a.jwt', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(wrong.status, 401);
  } finally {
    await client.close().catch(() => {});
    await person.close();
    await callback.close();
  }
});
