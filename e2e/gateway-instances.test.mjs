// mandate's gateway on two instances: two `mandate serve` processes on one SQLite database (one
// key file, <db>.key), each on its own port, both with the public URL of a round-robin load
// balancer (lib/balancer.mjs, run here) that sends each request to the next instance. Driven by
// the official MCP TypeScript client (@modelcontextprotocol/client 2.x), Chromium as the person.
//   everything-http  server-everything over Streamable HTTP behind the recording proxy
//                    (lib/recording-proxy.mjs): the session begun on one instance is continued on
//                    the other (its upstream session id is in the database), so requests that
//                    alternate between the instances all succeed, and the upstream sees ONE
//                    session: one `initialize`, every later request with the same Mcp-Session-Id.
//   everything       server-everything over stdio: its process lives on the instance that began
//                    the session, so a request that reaches the other instance gets HTTP 404; the
//                    client starts a new session and goes on. A stdio resource needs affinity on
//                    Mcp-Session-Id at the balancer (lib/balancer.mjs `stick`); the 404 is one
//                    request the suite sends to the other instance on purpose (`sendNext`).
// Every answer names the instance that gave it (x-e2e-backend), so the alternation is asserted.
//
// .ci/e2e.sh runs it against two instances of its own and sets: MANDATE_E2E_BASE (the public URL:
// the balancer's, on a port this suite listens on), MANDATE_E2E_BACKENDS (the two instances,
// space-separated), MANDATE_E2E_PASSWORD, MANDATE_E2E_PROXY_RECORD, MANDATE_E2E_UPSTREAM_KEY.
// Screenshots in target/e2e/screenshots/gateway-instances-demo/.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Client, SdkHttpError, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';

import { Balancer } from './lib/balancer.mjs';
import { fetchJwks, verifyJwt } from './lib/jwt.mjs';
import { Person } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { MemoryOAuthProvider } from './lib/provider.mjs';
import { Recorder } from './lib/recorder.mjs';
import { readRecords, recordWhat } from './lib/recording-proxy.mjs';
import { say, withTimeout } from './lib/util.mjs';

const BASE = process.env.MANDATE_E2E_BASE;
const BACKENDS = (process.env.MANDATE_E2E_BACKENDS ?? '').split(/\s+/).filter(Boolean);
const PASSWORD = process.env.MANDATE_E2E_PASSWORD;
const PROXY_RECORD = process.env.MANDATE_E2E_PROXY_RECORD;
const UPSTREAM_KEY = process.env.MANDATE_E2E_UPSTREAM_KEY;
// everything-http's upstream_url in the configuration (upstream_identity = true there).
const PROXIED_UPSTREAM_URL = process.env.MANDATE_E2E_PROXIED_UPSTREAM_URL;
const OUT = process.env.MANDATE_E2E_OUT ?? path.resolve(import.meta.dirname, '../target/e2e');

const BROWSER_STEP_MS = 60_000;
const STEP_MS = 20_000;
const PAGE_MS = 15_000;

const marker = (what) => `${what}-${crypto.randomBytes(6).toString('hex')}`;

function text(result) {
  assert.ok(!result?.isError, `the tool failed: ${JSON.stringify(result).slice(0, 300)}`);
  const block = result?.content?.[0];
  assert.equal(block?.type, 'text', `a text result, got ${JSON.stringify(result).slice(0, 300)}`);
  return block.text;
}

async function eventually(check, ms, what) {
  const until = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}


const balancer = BACKENDS.length === 2 ? new Balancer(BACKENDS.map((url, i) => ({ name: `instance-${i + 1}`, url }))) : undefined;
let person;
let ready = false;

before(async () => {
  assert.ok(BASE && PASSWORD, 'MANDATE_E2E_BASE and MANDATE_E2E_PASSWORD (run .ci/e2e.sh)');
  assert.ok(balancer, `MANDATE_E2E_BACKENDS names two instances: ${JSON.stringify(BACKENDS)}`);
  const url = await balancer.listen(Number(new URL(BASE).port));
  assert.equal(url, BASE, 'the balancer listens at the public URL');
  say(`balancer ${BASE} → ${BACKENDS.map((b, i) => `${balancer.backends[i]} ${b}`).join(', ')}`);
  person = new Person({ username: 'demo', password: PASSWORD, screenshots: path.join(OUT, 'screenshots', 'gateway-instances-demo'), stepTimeoutMs: PAGE_MS });
  await person.start();
});

after(async () => {
  await withTimeout(person?.close() ?? Promise.resolve(), PAGE_MS, 'Chromium to close').catch(() => {});
  await balancer?.close();
});

test('two instances, one database: both ready, both publish the same signing keys; the authorization server metadata through the balancer names the public URL', { timeout: STEP_MS }, async () => {
  const metadata = await (await fetch(`${BASE}/.well-known/oauth-authorization-server`)).json();
  assert.equal(metadata.issuer, BASE);
  const jwksPath = new URL(metadata.jwks_uri).pathname;
  const jwks = [];
  for (const b of BACKENDS) {
    const readyz = await fetch(`${b}/readyz`);
    assert.equal(readyz.status, 200, `${b}/readyz: ${await readyz.text()}`);
    jwks.push(await (await fetch(`${b}${jwksPath}`)).json());
  }
  assert.ok(jwks[0].keys?.length > 0, 'a published key');
  assert.deepEqual(jwks[1], jwks[0], 'one key ring');
  say(`keys ${jwks[0].keys.map((k) => k.kid).join(' ')} on both instances; issuer ${metadata.issuer}`);
  ready = true;
});

/** An agent for gateway resource `name`: provider, recorder, loopback callback; the person allows the default (read) scope. */
function agent(name) {
  const s = {
    name,
    mcpUrl: `${BASE}/mcp/${name}`,
    mcpPath: `/mcp/${name}`,
    recorder: new Recorder(),
    callback: new LoopbackCallback(),
    connected: false,
  };
  s.newTransport = () => new StreamableHTTPClientTransport(new URL(s.mcpUrl), { authProvider: s.provider, fetch: s.recorder.fetch });
  s.requireConnected = (t) => {
    if (s.connected) return true;
    t.skip(`the ${name} agent never connected (see the first failure)`);
    return false;
  };
  /** The recorder's MCP POSTs (requests, not notifications) since `mark`. */
  s.posts = (mark) => s.recorder.since(mark, (e) => e.path === s.mcpPath && e.method === 'POST' && e.rpc && !String(e.rpc).startsWith('notifications/'));
  s.transcript = (mark) => {
    for (const e of s.recorder.since(mark)) {
      say(`${name}: ${e.method} ${e.path}${e.rpc ? ` ${e.rpc}${e.tool ? ` ${e.tool}` : ''}` : ''} -> ${e.status} from ${e.backend ?? '?'}${e.sessionId ? ` (session ${e.sessionId.slice(0, 8)}…)` : ''}`);
    }
  };

  before(async () => {
    await s.callback.start();
    s.provider = new MemoryOAuthProvider({
      redirectUri: s.callback.redirectUri,
      clientName: `Gateway e2e agent (${name}, two instances)`,
      grantTypes: ['authorization_code', 'refresh_token'],
      issuer: BASE,
      authorize: async (url) => {
        await person.authorize(url, s.callback.redirectUri, async () => {}, { label: name });
        return s.callback.next(PAGE_MS);
      },
    });
    s.client = new Client({ name: 'mandate-e2e-instances', version: '1.0.0' }, { capabilities: {} });
  });
  after(async () => {
    await withTimeout(s.client?.close() ?? Promise.resolve(), PAGE_MS, 'the MCP client to close').catch(() => {});
    await s.callback.close();
  });

  /** 401 → discovery → registration → sign-in and consent → token → connect, all through the balancer. */
  s.connectTest = () =>
    test(`${name}: through the balancer: 401, discovery, registration, the person signs in and consents, token, connected`, { timeout: BROWSER_STEP_MS }, async (t) => {
      if (!ready) return t.skip('the instances are not ready (see the first failure)');
      const mark = s.recorder.mark();
      try {
        const first = s.newTransport();
        await assert.rejects(s.client.connect(first), UnauthorizedError);
        const response = s.provider.takeResponse();
        await first.finishAuth(response.code, response.iss);
        s.proxyMark = PROXY_RECORD ? readRecords(PROXY_RECORD).length : 0;
        s.transport = s.newTransport();
        await withTimeout(s.client.connect(s.transport), PAGE_MS, 'the SDK to connect');
      } finally {
        s.transcript(mark);
      }
      const oauth = s.recorder.since(mark, (e) => !e.path.startsWith('/mcp'));
      const answeredBy = new Set(oauth.map((e) => e.backend));
      say(`${name}: the OAuth requests (${oauth.map((e) => `${e.path} ${e.backend}`).join(', ')}) were answered by ${[...answeredBy].join(' and ')}`);
      assert.deepEqual([...answeredBy].sort(), balancer.backends, 'both instances answered the OAuth requests');
      const [init] = s.recorder.since(mark, (e) => e.path === s.mcpPath && e.rpc === 'initialize' && e.status === 200);
      assert.ok(init?.givenSessionId, 'the gateway gave a session id');
      s.session = { id: init.givenSessionId, backend: init.backend };
      s.connected = true;
      say(`${name}: initialize landed on ${init.backend}: session ${init.givenSessionId}`);
    });
  return s;
}

// ---------------------------------------------------------------------------------------------

describe('everything-http (Streamable HTTP upstream): the session continues on the other instance', () => {
  const s = agent('everything-http');

  s.connectTest();


  const echoed = [];
  test('everything-http: 8 requests in turn (tools/list, echo, resources/list, prompts/list): they alternate between the instances, each in the one session, and all succeed', { timeout: STEP_MS }, async (t) => {
    if (!s.requireConnected(t)) return;
    // The SDK opens its GET event stream after `initialized`; it takes a turn of its own.
    const stream = await eventually(() => s.recorder.entries.find((e) => e.path === s.mcpPath && e.method === 'GET'), 5_000, "the SDK's GET event stream").catch(() => undefined);
    say(`everything-http: the GET event stream: ${stream ? `${stream.status} from ${stream.backend}` : 'none opened'}`);
    const mark = s.recorder.mark();
    const balanced = balancer.mark();
    const calls = [
      async () => assert.ok((await s.client.listTools()).tools.some((x) => x.name === 'echo')),
      async () => {
        const m = marker('one');
        echoed.push(m);
        assert.equal(text(await s.client.callTool({ name: 'echo', arguments: { message: m } })), `Echo: ${m}`);
      },
      async () => assert.ok((await s.client.listResources()).resources.length > 0),
      async () => {
        const m = marker('two');
        echoed.push(m);
        assert.equal(text(await s.client.callTool({ name: 'echo', arguments: { message: m } })), `Echo: ${m}`);
      },
      async () => assert.ok((await s.client.listPrompts()).prompts.some((p) => p.name === 'simple-prompt')),
      async () => {
        const m = marker('three');
        echoed.push(m);
        assert.equal(text(await s.client.callTool({ name: 'echo', arguments: { message: m } })), `Echo: ${m}`);
      },
      async () => assert.ok((await s.client.listTools()).tools.length > 0),
      async () => {
        const m = marker('four');
        echoed.push(m);
        assert.equal(text(await s.client.callTool({ name: 'echo', arguments: { message: m } })), `Echo: ${m}`);
      },
    ];
    for (const call of calls) await withTimeout(call(), PAGE_MS, 'a request through the balancer');
    s.transcript(mark);
    const posts = s.posts(mark);
    const others = balancer.since(balanced).filter((e) => !(e.path === s.mcpPath && e.method === 'POST'));
    if (others.length) say(`everything-http: meanwhile the balancer also sent: ${others.map((e) => `${e.method} ${e.path} → ${e.backend} (${e.how})`).join(', ')}`);
    assert.equal(posts.length, calls.length, 'one POST per request');
    for (const e of posts) {
      assert.equal(e.status, 200, `${e.rpc} ${e.tool ?? ''} answered by ${e.backend}`);
      assert.equal(e.sessionId, s.session.id, `${e.rpc} was sent in the session`);
    }
    const order = posts.map((e) => e.backend);
    say(`everything-http: answered by ${order.join(', ')}`);
    for (let i = 1; i < order.length; i++) assert.notEqual(order[i], order[i - 1], `request ${i + 1} went to the other instance than request ${i}: ${order.join(', ')}`);
    assert.deepEqual([...new Set(order)].sort(), balancer.backends, 'both instances answered');
    const elsewhere = posts.filter((e) => e.backend !== s.session.backend).length;
    say(`everything-http: ${elsewhere} of ${posts.length} requests were answered by the instance that did not begin the session`);
  });

  test('everything-http: the recording proxy saw ONE upstream session for it: one initialize, every later request with the same Mcp-Session-Id (the session was continued, not re-created); X-Upstream-Key on each; the echoes crossed', { timeout: STEP_MS }, async (t) => {
    if (!PROXY_RECORD) return t.skip('MANDATE_E2E_PROXY_RECORD is unset (run .ci/e2e.sh)');
    if (!s.requireConnected(t)) return;
    // Sessions begun before (each instance's start-up tools/list, an earlier connect) may still
    // send a request (a DELETE): they are not this one.
    const all = readRecords(PROXY_RECORD);
    const earlier = new Set(all.slice(0, s.proxyMark).map((r) => r.headers['mcp-session-id']).filter(Boolean));
    const records = all.slice(s.proxyMark).filter((r) => !earlier.has(r.headers['mcp-session-id']));
    say(`everything-http: the upstream saw ${records.length} requests: ${records.map((r) => `${recordWhat(r)}${r.headers['mcp-session-id'] ? ` [${r.headers['mcp-session-id'].slice(0, 8)}…]` : ''}`).join(', ')}`);
    const initializes = records.filter((r) => recordWhat(r) === 'initialize');
    assert.equal(initializes.length, 1, 'one initialize upstream');
    assert.equal(initializes[0].headers['mcp-session-id'], undefined);
    const rest = records.filter((r) => r !== initializes[0]);
    const sessions = new Set(rest.map((r) => r.headers['mcp-session-id']));
    assert.equal(sessions.size, 1, `one upstream session id on every later request: ${[...sessions].join(', ')}`);
    assert.ok([...sessions][0], 'the later requests carry the upstream session id');
    for (const r of records) assert.equal(r.headers['x-upstream-key'], UPSTREAM_KEY, `${recordWhat(r)} #${r.seq} carried X-Upstream-Key`);
    const bodies = records.map((r) => r.body).join('\n');
    for (const m of echoed) assert.ok(bodies.includes(m), `the echo ${m} reached the upstream`);
    const held = s.provider.savedTokens.flatMap((x) => [x.access_token, x.refresh_token]).filter(Boolean);
    for (const r of records) {
      const seen = JSON.stringify(r.headers) + r.body;
      assert.ok(!held.some((tok) => seen.includes(tok)), `${recordWhat(r)} #${r.seq} carried the agent's token`);
    }
  });

  test("everything-http: upstream_identity across instances: each of the agent's requests upstream (lists and tool calls), whichever instance sent it, carried an identity token for the agent (verified with the JWKS; aud the upstream_url, the agent's sub and client_id)", { timeout: STEP_MS }, async (t) => {
    if (!PROXY_RECORD || !PROXIED_UPSTREAM_URL) return t.skip('MANDATE_E2E_PROXY_RECORD and MANDATE_E2E_PROXIED_UPSTREAM_URL are unset (run .ci/e2e.sh)');
    if (!s.requireConnected(t)) return;
    const { keys } = await fetchJwks(BASE);
    const agentClaims = verifyJwt(s.provider.heldTokens().access_token, keys).claims;
    // The handshake's own requests are gateway.test.mjs's to judge; here: the agent's requests.
    const requests = readRecords(PROXY_RECORD)
      .slice(s.proxyMark)
      .filter((r) => /^(tools\/list|tools\/call|resources\/list|prompts\/list)/.test(recordWhat(r)));
    assert.equal(requests.length, 8, 'the 8 requests reached the upstream');
    const problems = [];
    const minted = new Set();
    for (const r of requests) {
      const token = /^Bearer (\S+)$/.exec(r.headers.authorization ?? '')?.[1];
      if (!token) {
        problems.push(`${recordWhat(r)} #${r.seq}: no bearer token`);
        continue;
      }
      try {
        const { claims } = verifyJwt(token, keys);
        minted.add(claims.jti);
        if (claims.aud !== PROXIED_UPSTREAM_URL) problems.push(`${recordWhat(r)} #${r.seq}: aud ${claims.aud}`);
        if (claims.sub !== agentClaims.sub || claims.client_id !== agentClaims.client_id) {
          problems.push(`${recordWhat(r)} #${r.seq}: names ${claims.sub} / ${claims.client_id}, the agent is ${agentClaims.sub} / ${agentClaims.client_id}`);
        }
      } catch (e) {
        problems.push(`${recordWhat(r)} #${r.seq}: ${e.message}`);
      }
    }
    say(`everything-http: ${requests.length} agent requests upstream carried ${minted.size} distinct identity tokens (one per instance expected)`);
    assert.deepEqual(problems, []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('everything (stdio upstream): the session lives on one instance; the other answers 404; a new session goes on', () => {
  const s = agent('everything');
  const echo = async (what) => {
    const m = marker(what);
    assert.equal(text(await s.client.callTool({ name: 'echo', arguments: { message: m } }, { timeout: PAGE_MS })), `Echo: ${m}`);
  };
  before(() => balancer?.stick('/mcp/everything'));

  s.connectTest();

  test('everything: with affinity on Mcp-Session-Id, requests stay on the instance that began the session and succeed', { timeout: STEP_MS }, async (t) => {
    if (!s.requireConnected(t)) return;
    const mark = s.recorder.mark();
    assert.ok((await s.client.listTools()).tools.some((x) => x.name === 'echo'));
    await echo('one');
    await echo('two');
    s.transcript(mark);
    const posts = s.posts(mark);
    assert.equal(posts.length, 3);
    for (const e of posts) {
      assert.equal(e.status, 200);
      assert.equal(e.backend, s.session.backend, `${e.rpc} stayed on ${s.session.backend}`);
    }
  });

  test('everything: a request that reaches the other instance gets HTTP 404 (the SDK does not re-initialize by itself); the session still lives on the first instance; the client starts a new session and goes on', { timeout: STEP_MS }, async (t) => {
    if (!s.requireConnected(t)) return;
    const other = balancer.backends.find((b) => b !== s.session.backend);
    const mark = s.recorder.mark();
    balancer.sendNext(s.mcpPath, other);
    const outcome = await s.client.callTool({ name: 'echo', arguments: { message: 'on the other instance' } }, { timeout: PAGE_MS }).then(
      (r) => r,
      (e) => e,
    );
    await new Promise((r) => setTimeout(r, 500)); // room for anything the SDK would do by itself
    s.transcript(mark);
    assert.ok(outcome instanceof SdkHttpError, `an HTTP error from the transport, got ${outcome?.constructor?.name}: ${outcome?.message ?? JSON.stringify(outcome).slice(0, 200)}`);
    assert.equal(outcome.status, 404);
    const sent = s.recorder.since(mark);
    assert.deepEqual(
      sent.map((e) => [e.method, e.rpc, e.backend, e.status, e.sessionId]),
      [['POST', 'tools/call', other, 404, s.session.id]],
      'one request, to the other instance, in the session: 404; nothing more (no re-initialize by the SDK)',
    );
    say(`everything: ${other} answered 404 for session ${s.session.id}: ${outcome.message}`);

    // The session still lives where it began.
    const still = s.recorder.mark();
    await echo('still');
    const [back] = s.posts(still);
    assert.equal(back.backend, s.session.backend, 'affinity sends the session back to its instance');
    assert.equal(back.sessionId, s.session.id);

    // A new session: the client connects again; initialize takes its round-robin turn.
    const again = s.recorder.mark();
    s.transport = s.newTransport();
    await withTimeout(s.client.connect(s.transport), PAGE_MS, 'the SDK to connect again');
    const [init] = s.recorder.since(again, (e) => e.path === s.mcpPath && e.rpc === 'initialize');
    assert.equal(init?.status, 200, 'the new session began');
    assert.ok(init.givenSessionId && init.givenSessionId !== s.session.id, 'a new session id');
    const previous = s.session;
    s.session = { id: init.givenSessionId, backend: init.backend };
    say(`everything: new session ${s.session.id} on ${s.session.backend} (the old one, ${previous.id}, on ${previous.backend})`);
    assert.ok((await s.client.listTools()).tools.some((x) => x.name === 'echo'));
    await echo('new-one');
    await echo('new-two');
    s.transcript(again);
    const posts = s.posts(again).filter((e) => e.rpc !== 'initialize');
    assert.equal(posts.length, 3);
    for (const e of posts) {
      assert.equal(e.status, 200);
      assert.equal(e.sessionId, s.session.id);
      assert.equal(e.backend, s.session.backend);
    }
  });
});
