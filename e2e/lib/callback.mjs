// The client's loopback redirect URI: a tiny HTTP server on 127.0.0.1 that records each
// authorization response (code, state, iss, error) and answers the browser with a page.
import http from 'node:http';

import { withTimeout } from './util.mjs';

export class LoopbackCallback {
  #server;
  #received = [];
  #waiters = [];

  /** Starts listening on 127.0.0.1 (a free port); resolves to the redirect URI. */
  async start() {
    this.#server = http.createServer((req, res) => {
      const url = new URL(req.url, `http://${req.headers.host}`);
      if (url.pathname !== '/callback') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const p = url.searchParams;
      const response = {
        code: p.get('code'),
        state: p.get('state'),
        iss: p.get('iss'),
        error: p.get('error'),
        errorDescription: p.get('error_description'),
      };
      const ok = response.code && !response.error;
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
        .end(
          `<!doctype html><title>mandate e2e client</title><h1>${ok ? 'Signed in' : 'Not signed in'}</h1>` +
            `<p>${ok ? 'The client received an authorization code. You can close this window.' : 'The authorization server answered with an error.'}</p>`,
        );
      const waiter = this.#waiters.shift();
      if (waiter) waiter(response);
      else this.#received.push(response);
    });
    await new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = this.#server.address();
    this.redirectUri = `http://127.0.0.1:${port}/callback`;
    return this.redirectUri;
  }

  /** The next authorization response (one already received, or the next to arrive). */
  next(timeoutMs, what = 'the authorization response at the loopback redirect URI') {
    const ready = this.#received.shift();
    if (ready) return Promise.resolve(ready);
    return withTimeout(new Promise((resolve) => this.#waiters.push(resolve)), timeoutMs, what);
  }

  /** How many authorization responses arrived and were not taken yet. */
  get unread() {
    return this.#received.length;
  }

  async close() {
    if (!this.#server) return;
    this.#server.closeAllConnections?.();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
