// The official MCP Inspector's web UI (@modelcontextprotocol/inspector, installed by
// e2e/package.json) as a child process on loopback, and a record of what its page asks its own
// backend to do. The Inspector's page never talks to the MCP server itself: its OAuth requests go
// through the backend's POST /api/fetch ({url, method, headers, body} in, {status, headers, body}
// out) and its MCP messages through POST /api/mcp/send (a 401/403 comes back as
// {kind: "auth_challenge"}). Reading those exchanges in the browser shows exactly what the
// Inspector sent to mandate and what mandate answered, without a proxy in between.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { say, withTimeout } from './util.mjs';

const PACKAGE = new URL('../node_modules/@modelcontextprotocol/inspector/', import.meta.url);

/** The installed Inspector's version and the Node versions it accepts. */
export async function inspectorPackage() {
  const pkg = JSON.parse(await readFile(new URL('package.json', PACKAGE), 'utf8'));
  return { version: pkg.version, engines: pkg.engines?.node };
}

/** A free TCP port on 127.0.0.1 (the Inspector needs a fixed one: its origin allow-list is derived from it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Major.minor.patch comparison: is `version` (vX.Y.Z) at least `min` (X.Y.Z)? */
export function atLeast(version, min) {
  const a = version.replace(/^v/, '').split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i += 1) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return true;
}

export class Inspector {
  #child;
  #home;
  #output = '';

  /**
   * Starts `mcp-inspector` (the web UI) on 127.0.0.1 at a free port, with a throwaway HOME,
   * secrets in memory only and no browser of its own. Resolves once it prints its URL.
   * @param {object} o
   * @param {string} o.logFile where its output goes (the session token redacted)
   * @param {number} o.timeoutMs bound on the start
   */
  async start({ logFile, timeoutMs }) {
    this.logFile = logFile;
    this.port = await freePort();
    this.origin = `http://127.0.0.1:${this.port}`;
    this.token = randomBytes(32).toString('hex');
    this.#home = await mkdtemp(path.join(os.tmpdir(), 'mandate-e2e-inspector-'));
    const bin = new URL('clients/launcher/build/index.js', PACKAGE);
    this.#child = spawn(process.execPath, [bin.pathname, '--web'], {
      cwd: this.#home,
      env: {
        ...process.env,
        HOME: this.#home,
        HOST: '127.0.0.1',
        CLIENT_PORT: String(this.port),
        MCP_SANDBOX_PORT: '0', // the MCP Apps sandbox and app origin: any free port
        MCP_APP_ORIGIN_PORT: '0',
        MCP_INSPECTOR_API_TOKEN: this.token,
        MCP_INSPECTOR_SECRET_STORE: 'memory',
        MCP_AUTO_OPEN_ENABLED: 'false',
      },
      // One process (the launcher runs the web server in-process), in our process group: a
      // timeout that kills the suite's group kills it too.
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const child = this.#child;
    process.once('exit', () => child.kill('SIGKILL'));
    const collect = (chunk) => {
      this.#output += chunk.toString();
    };
    this.#child.stdout.on('data', collect);
    this.#child.stderr.on('data', collect);
    const exited = new Promise((_, reject) => {
      this.#child.once('exit', (code, signal) =>
        reject(new Error(`the Inspector exited (${signal ?? code}) before serving:\n${this.output()}`)),
      );
    });
    exited.catch(() => {});
    const up = (async () => {
      while (!this.#output.includes('is up and running at')) {
        await new Promise((r) => setTimeout(r, 100));
        if (this.#child.exitCode !== null) break;
      }
    })();
    await withTimeout(Promise.race([up, exited]), timeoutMs, `the Inspector to serve on ${this.origin}`);
    if (this.#child.exitCode !== null) await exited;
    say(`Inspector serving ${this.origin} (pid ${this.#child.pid}, HOME ${this.#home})`);
  }

  /** What it printed, without its session token. */
  output() {
    return this.#output.replaceAll(this.token, '<token>');
  }

  /** The URL a developer opens: the printed one, with the session token. */
  get url() {
    return `${this.origin}/?MCP_INSPECTOR_API_TOKEN=${this.token}`;
  }

  /** Its redirect URI, as its OAuth settings show it. */
  get redirectUri() {
    return `${this.origin}/oauth/callback`;
  }

  async stop() {
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await withTimeout(gone, 5_000, 'the Inspector to stop').catch(() => child.kill('SIGKILL'));
    }
    if (this.logFile) await writeFile(this.logFile, this.output()).catch(() => {});
    if (this.#home) await rm(this.#home, { recursive: true, force: true }).catch(() => {});
  }
}

/** A form or JSON request body as an object; anything else as given. */
function parseBody(body) {
  if (typeof body !== 'string') return body;
  try {
    return JSON.parse(body);
  } catch {
    return Object.fromEntries(new URLSearchParams(body));
  }
}

/**
 * What the Inspector's page asked its backend to do with the MCP server, in order:
 *   { kind: 'fetch', method, url, status, request, response, wwwAuthenticate }   an OAuth request
 *   { kind: 'send', rpc, tool, ok, challenge }                                    an MCP message
 * every request the browser itself sent to `serverOrigin` (navigations, the stylesheet), the
 * authorization requests among them, and the authorization responses that reached the Inspector.
 */
export class InspectorTraffic {
  entries = [];
  browserToServer = [];
  authorizations = [];
  callbacks = [];
  #pending = new Set();

  constructor(page, inspectorOrigin, serverOrigin) {
    page.on('request', (request) => {
      const u = new URL(request.url());
      if (u.origin === serverOrigin) {
        this.browserToServer.push({ method: request.method(), path: u.pathname, type: request.resourceType() });
        if (u.pathname === '/authorize') {
          // The authorization request the Inspector built (no state or challenge kept: not needed).
          const q = u.searchParams;
          const keep = ['response_type', 'client_id', 'redirect_uri', 'scope', 'resource', 'code_challenge_method'];
          this.authorizations.push(Object.fromEntries(keep.map((k) => [k, q.get(k)])));
        }
      } else if (u.origin === inspectorOrigin && u.pathname === '/oauth/callback' && request.isNavigationRequest()) {
        // The authorization response as it reached the Inspector (which parameters, and iss).
        const q = u.searchParams;
        this.callbacks.push({ code: q.has('code'), state: q.has('state'), iss: q.get('iss'), error: q.get('error') });
      }
    });
    page.on('response', (response) => {
      const u = new URL(response.url());
      if (u.origin !== inspectorOrigin || response.request().method() !== 'POST') return;
      if (u.pathname !== '/api/fetch' && u.pathname !== '/api/mcp/send' && u.pathname !== '/api/mcp/connect') return;
      const work = this.#record(u.pathname, response).catch((e) => say(`traffic: could not read ${u.pathname}: ${e.message}`));
      this.#pending.add(work);
      work.finally(() => this.#pending.delete(work));
    });
  }

  async #record(route, response) {
    // JSON whatever content-type the page declared (its token exchange posts JSON labelled as a form).
    const sent = JSON.parse(response.request().postData() ?? '{}');
    const answer = await response.json();
    if (route === '/api/fetch') {
      const headers = answer.headers ?? {};
      this.entries.push({
        kind: 'fetch',
        method: sent.method ?? 'GET',
        url: sent.url,
        status: answer.status,
        request: parseBody(sent.body),
        response: parseBody(answer.body),
        wwwAuthenticate: headers['www-authenticate'],
      });
    } else if (route === '/api/mcp/send') {
      const m = sent.message ?? {};
      this.entries.push({
        kind: 'send',
        rpc: m.method,
        tool: m.method === 'tools/call' ? m.params?.name : undefined,
        ok: answer.ok,
        challenge: answer.kind === 'auth_challenge' ? answer.authChallenge : undefined,
        error: answer.kind === 'transport_error' ? answer.error : undefined,
      });
    } else {
      this.entries.push({
        kind: 'connect',
        ok: Boolean(answer.sessionId),
        challenge: answer.kind === 'auth_challenge' ? answer.authChallenge : undefined,
      });
    }
  }

  /** Waits for the responses still being read. */
  async settle() {
    await Promise.all([...this.#pending]);
  }

  mark() {
    return this.entries.length;
  }

  since(mark, filter = () => true) {
    return this.entries.slice(mark).filter(filter);
  }
}
