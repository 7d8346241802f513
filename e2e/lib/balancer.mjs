// A small HTTP load balancer (node:http) in front of several mandate instances, for the
// several-instances suite: each request goes to the next backend in turn (round robin over every
// request, whoever sends it), with the Host header as the client sent it (mandate's public URL is
// the balancer's), the request and response bodies streamed both ways (event streams included: a
// GET event stream stays on the backend that answered it, as long as it lasts). Each answer
// carries `x-e2e-backend: <backend name>` so a client can see who answered, and the balancer keeps
// a log of every request (backend, method, path, JSON-RPC method, Mcp-Session-Id sent and given,
// status) for the suite to assert on.
//
// Two deviations from plain round robin, both explicit:
//   stick(path)              affinity on Mcp-Session-Id for requests to exactly `path`: a request
//                            whose session id a backend gave out goes to that backend (others,
//                            an `initialize` among them, take their round-robin turn);
//   sendNext(path, backend)  the next request to `path` goes to `backend`, whatever the turn or
//                            the affinity (as when a balancer loses its affinity table);
//   keepHandshake(path)      the first request in each new session at `path` goes to the
//                            instance that gave the session id.
import http from 'node:http';

import { endToEnd } from './recording-proxy.mjs';


/** The JSON-RPC method(s) of a request body, or `response` for a client's answer. */
function rpcOf(body) {
  if (!body) return undefined;
  try {
    const m = JSON.parse(body);
    const one = Array.isArray(m) ? m[0] : m;
    if (!one?.method) return 'response';
    return one.method === 'tools/call' ? `tools/call ${one.params?.name}` : one.method;
  } catch {
    return undefined;
  }
}

export class Balancer {
  /** Every request, in the order they arrived: { seq, backend, method, path, rpc, sessionId, givenSessionId, status, how }. */
  log = [];

  #server;
  #backends;
  #turn = 0;
  #seq = 0;
  /** path → Map(session id → backend index) */
  #sticky = new Map();
  /** path → backend index, for the next request */
  #forced = new Map();
  /** path → Map(session id → backend index), for the first request in each new session */
  #handshake = new Map();
  #agent = new http.Agent({ keepAlive: true });

  /**
   * @param {Array<{name: string, url: string}>} backends http:// origins
   */
  constructor(backends) {
    if (backends.length < 2) throw new Error('a balancer needs two backends at least');
    this.#backends = backends.map((b) => ({ name: b.name, url: new URL(b.url) }));
  }

  /** The backends' names, in turn order. */
  get backends() {
    return this.#backends.map((b) => b.name);
  }

  /** Listens on 127.0.0.1:`port` (0: a free one); resolves to the balancer's origin. */
  async listen(port = 0) {
    this.#server = http.createServer((req, res) => this.#handle(req, res));
    await new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', resolve);
    });
    this.url = `http://127.0.0.1:${this.#server.address().port}`;
    return this.url;
  }

  /** Affinity on Mcp-Session-Id for requests to exactly `path`. */
  stick(path) {
    if (!this.#sticky.has(path)) this.#sticky.set(path, new Map());
  }

  /**
   * The first request in each session given out at `path` from now on (the client's
   * `notifications/initialized`) goes to the instance that gave the session id; the rest take
   * their turn.
   */
  keepHandshake(path) {
    if (!this.#handshake.has(path)) this.#handshake.set(path, new Map());
  }

  /** The next request to `path` goes to the backend named `name`. */
  sendNext(path, name) {
    const i = this.#backends.findIndex((b) => b.name === name);
    if (i < 0) throw new Error(`no backend ${name}`);
    this.#forced.set(path, i);
  }

  /** The log entries since `mark` (an index from `mark()`). */
  since(mark, filter = () => true) {
    return this.log.slice(mark).filter(filter);
  }

  mark() {
    return this.log.length;
  }

  #choose(path, sessionId) {
    if (this.#forced.has(path)) {
      const i = this.#forced.get(path);
      this.#forced.delete(path);
      return { i, how: 'sent there by the suite' };
    }
    const handshake = sessionId ? this.#handshake.get(path) : undefined;
    if (handshake?.has(sessionId)) {
      const i = handshake.get(sessionId);
      handshake.delete(sessionId);
      return { i, how: 'handshake kept together' };
    }
    const pinned = sessionId ? this.#sticky.get(path)?.get(sessionId) : undefined;
    if (pinned !== undefined) return { i: pinned, how: 'affinity' };
    const i = this.#turn % this.#backends.length;
    this.#turn += 1;
    return { i, how: 'round robin' };
  }

  #handle(req, res) {
    const path = new URL(req.url, 'http://x').pathname;
    const sessionId = req.headers['mcp-session-id'];
    const { i, how } = this.#choose(path, sessionId);
    const backend = this.#backends[i];
    const entry = { seq: (this.#seq += 1), backend: backend.name, how, method: req.method, path, sessionId, status: undefined };
    this.log.push(entry);
    const chunks = [];
    const forward = http.request(
      {
        host: backend.url.hostname,
        port: backend.url.port,
        method: req.method,
        path: req.url,
        // The Host header as the client sent it: mandate checks it against its public URL.
        headers: endToEnd(req.headers),
        agent: this.#agent,
      },
      (answer) => {
        entry.status = answer.statusCode;
        const given = answer.headers['mcp-session-id'];
        if (given) {
          entry.givenSessionId = given;
          this.#sticky.get(path)?.set(given, i);
          if (!sessionId) this.#handshake.get(path)?.set(given, i);
        }
        res.writeHead(answer.statusCode ?? 502, { ...endToEnd(answer.headers), 'x-e2e-backend': backend.name });
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    forward.on('error', (e) => {
      entry.status ??= 502;
      entry.error = e.message;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain', 'x-e2e-backend': backend.name });
      res.end(`balancer: ${backend.name}: ${e.message}`);
    });
    // A client that goes away (an event stream closed) takes the backend request with it.
    res.on('close', () => {
      if (!res.writableFinished) forward.destroy();
    });
    req.on('data', (c) => {
      chunks.push(c);
      forward.write(c);
    });
    req.on('end', () => {
      forward.end();
      entry.rpc = rpcOf(Buffer.concat(chunks).toString('utf8'));
    });
  }

  async close() {
    if (!this.#server) return;
    this.#server.closeAllConnections?.();
    await new Promise((resolve) => this.#server.close(() => resolve()));
    this.#agent.destroy();
  }
}
