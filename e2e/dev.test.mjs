// `mandate new` and `mandate dev` as a developer uses them (docs/DEVELOPING.md), in each language:
// the generated project's own test passes; under `mandate dev` the official TypeScript SDK client
// signs in (Chromium as the person `dev`, consenting to what the challenge asks: reading), lists
// the three tools and calls one; the inspector the banner names opens for `dev` and offers the
// server's URL; the developer saves a new read-only tool in the source and `mandate dev` restarts the
// server without being asked; a new session lists the new tool and calls it with the same token.
// Run by .ci/new.sh with MANDATE_E2E_BIN (the mandate binary) and MANDATE_E2E_PYTHON (a Python with
// fastmcp); the Rust project builds against this checkout's crates (CARGO_TARGET_DIR shared).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';

import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { Person, readConsent } from './lib/browser.mjs';
import { LoopbackCallback } from './lib/callback.mjs';
import { MemoryOAuthProvider } from './lib/provider.mjs';
import { say, withTimeout } from './lib/util.mjs';

const bin = process.env.MANDATE_E2E_BIN;
const python = process.env.MANDATE_E2E_PYTHON;
const OUT = process.env.MANDATE_E2E_OUT ?? 'target/e2e';
const PAGE_MS = 15_000;
assert.ok(bin && python, 'MANDATE_E2E_BIN and MANDATE_E2E_PYTHON are set by .ci/new.sh');

async function freePort() {
  const s = createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Runs a command to completion in `cwd`; fails the test with its output when it fails. */
function run(cwd, command, args, what, timeout = 600_000) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', timeout, env: process.env });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `${what} (${command} ${args.join(' ')}) failed: ${r.error ?? ''}\n${out}`);
  say(`${what}: ok`);
  return out;
}

/** Each language: how its dependencies are installed, its own test run, the server started,
 * and a new read-only tool added to its source. */
const LANGS = {
  python: {
    install: () => {},
    test: (dir) => run(dir, python, ['-m', 'unittest', '-v'], 'the project\'s own test (python -m unittest)'),
    command: [python, 'server.py'],
    addTool: {
      file: 'server.py',
      before: 'if __name__ == "__main__":',
      code: '@mcp.tool(annotations=READS)\ndef count_notes() -> int:\n    """How many notes there are."""\n    return len(notes)\n\n\n',
    },
  },
  typescript: {
    install: (dir) => run(dir, 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], 'npm install'),
    test: (dir) => run(dir, 'npm', ['test'], 'the project\'s own test (npm test: tsc, node --test)'),
    command: [process.execPath, 'src/main.ts'],
    addTool: {
      file: 'src/server.ts',
      before: '  return server;',
      code: '  server.registerTool(\n    "count_notes",\n    { description: "How many notes there are.", annotations: READS },\n    async () => text(String(notes.length)),\n  );\n\n',
    },
  },
  rust: {
    install: () => {},
    test: (dir) => run(dir, 'cargo', ['test', '-q'], 'the project\'s own test (cargo test)'),
    command: ['cargo', 'run', '-q'],
    addTool: {
      file: 'src/notes.rs',
      before: '    #[tool(description = "Add a note."',
      code: '    #[tool(description = "How many notes there are.", annotations(read_only_hint = true))]\n    async fn count_notes(&self) -> Result<CallToolResult, McpError> {\n        let notes = self.notes.lock().map_err(|_| McpError::internal_error("the notes are unavailable", None))?;\n        Ok(said(notes.len().to_string()))\n    }\n\n',
    },
  },
};

/** `mandate dev` in `dir`, and its stdout as lines awaited one condition at a time. */
function startDev(dir, port, command) {
  const child = spawn(bin, ['dev', '--port', String(port), '--name', 'notes', '--', ...command], {
    cwd: dir,
    env: { ...process.env, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  let waiter = null;
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    say(`[mandate dev] ${l.replace(/(dev \/ )\S+/, '$1<redacted>')}`);
    lines.push(l);
    waiter?.();
  });
  readline.createInterface({ input: child.stderr }).on('line', (l) => say(`[mandate dev stderr] ${l}`));
  /** Resolves with the lines so far once one satisfies `done`. */
  const until = (done, ms, what) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          if (lines.some(done)) {
            waiter = null;
            resolve([...lines]);
          }
        };
        waiter = check;
        check();
      }),
      ms,
      what,
    );
  return { child, until, lines };
}

/** A tool result as text: its text content, else (FastMCP answers an empty list with no content)
 * its structured result as JSON. */
function textOf(result) {
  const text = (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('');
  return text || JSON.stringify(result.structuredContent?.result);
}

function valueOf(lines, label) {
  const line = lines.find((l) => l.trimStart().startsWith(label));
  assert.ok(line, `no "${label}" line in ${JSON.stringify(lines)}`);
  return line.trimStart().slice(label.length).trim();
}

for (const [lang, how] of Object.entries(LANGS)) {
  test(`mandate new --lang ${lang}: its test passes; under mandate dev an agent signs in and calls tools, and a saved tool is served without a restart by hand`, { timeout: 900_000 }, async () => {
    const parent = await fs.mkdtemp(path.join(os.tmpdir(), `mandate-new-${lang}-`));
    const dir = path.join(parent, 'notes');
    const made = run(parent, bin, ['new', 'notes', '--lang', lang], `mandate new notes --lang ${lang}`);
    assert.match(made, /mandate dev -- /);
    how.install(dir);
    how.test(dir);

    const port = await freePort();
    const dev = startDev(dir, port, how.command);
    const callback = new LoopbackCallback();
    const person = { close: async () => {} };
    let client;
    try {
      const banner = await dev.until((l) => l === 'Ctrl-C stops it.', 300_000, 'mandate dev to start');
      const resource = valueOf(banner, 'add to your MCP client:');
      assert.equal(resource, `http://127.0.0.1:${port}/mcp/notes`);
      assert.equal(valueOf(banner, 'its tools:'), '3 tools');
      const password = valueOf(banner, 'sign in as:').match(/^dev \/ (\S+)/)[1];

      await callback.start();
      const browser = new Person({ username: 'dev', password, screenshots: path.join(OUT, 'screenshots', `dev-${lang}`), stepTimeoutMs: PAGE_MS });
      person.close = () => browser.close();
      await browser.start();
      let consent;
      const provider = new MemoryOAuthProvider({
        redirectUri: callback.redirectUri,
        clientName: `mandate dev e2e (${lang})`,
        grantTypes: ['authorization_code', 'refresh_token'],
        issuer: `http://127.0.0.1:${port}`,
        authorize: async (url) => {
          assert.equal(url.searchParams.get('resource'), resource);
          await browser.authorize(url, callback.redirectUri, async (page) => {
            consent = await readConsent(page);
          });
          return callback.next(PAGE_MS);
        },
      });
      client = new Client({ name: 'mandate-dev-e2e', version: '1.0.0' });
      const first = new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider });
      await client.connect(first).then(
        () => assert.fail('connected without authorization'),
        (e) => assert.ok(e instanceof UnauthorizedError, `expected the sign-in to start: ${e}`),
      );
      assert.ok(consent, 'the person saw the consent page');
      await first.finishAuth(provider.takeResponse().code);
      await client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['add_note', 'delete_note', 'list_notes']);
      // The first sign-in asks for what the 401 challenge names: reading.
      assert.deepEqual(consent.boxes, [{ value: 'notes.read', checked: true }]);
      const listed = await withTimeout(client.callTool({ name: 'list_notes', arguments: {} }), PAGE_MS, 'list_notes');
      assert.equal(listed.isError ?? false, false, JSON.stringify(listed));
      assert.equal(textOf(listed), '[]', JSON.stringify(listed));
      await client.close();

      // The one URL to open: the inspector, for the dev person (signed in already, in this browser).
      const inspector = valueOf(banner, 'open the inspector:');
      assert.equal(inspector, `http://127.0.0.1:${port}/inspector`);
      const tab = await browser.newPage();
      await tab.goto(inspector);
      await tab.locator('#operator').filter({ hasText: 'signed in as dev' }).waitFor();
      const offered = await tab.locator('#suggestions option').evaluateAll((os) => os.map((o) => o.value));
      assert.ok(offered.includes(resource), `the inspector offers ${resource}: ${JSON.stringify(offered)}`);
      await browser.capture(tab, 'inspector');
      await tab.close();

      // The developer saves a new read-only tool; mandate dev restarts the server by itself.
      const file = path.join(dir, how.addTool.file);
      const source = await fs.readFile(file, 'utf8');
      assert.ok(source.includes(how.addTool.before), `${how.addTool.file} has ${how.addTool.before}`);
      const seen = dev.lines.length;
      await fs.writeFile(file, source.replace(how.addTool.before, how.addTool.code + how.addTool.before));
      const after = await dev.until((l, i) => i >= seen && l.startsWith('[dev] restarted'), 300_000, 'mandate dev to restart');
      assert.equal(after.at(-1), `[dev] restarted: ${resource} (4 tools)`);

      // A new session with the same token: the new tool is there and answers.
      client = new Client({ name: 'mandate-dev-e2e', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
      const again = await client.listTools();
      assert.ok(again.tools.some((t) => t.name === 'count_notes'), JSON.stringify(again.tools.map((t) => t.name)));
      const counted = await withTimeout(client.callTool({ name: 'count_notes', arguments: {} }), PAGE_MS, 'count_notes');
      assert.equal(textOf(counted), '0', 'a new session is a new process: its notes start empty');
      assert.equal(browser.signIns, 1, 'the person signed in once');
    } finally {
      await client?.close().catch(() => {});
      await person.close();
      await callback.close().catch(() => {});
      dev.child.kill('SIGTERM');
      const code = await new Promise((resolve) => {
        if (dev.child.exitCode !== null) resolve(dev.child.exitCode);
        else dev.child.once('exit', (c) => resolve(c));
      });
      assert.equal(code, 0, 'mandate dev stops on SIGTERM');
      await fs.rm(parent, { recursive: true, force: true });
    }
  });
}
