// An observing `fetch` for the SDK's `fetch` option: it passes every request through unchanged
// and keeps a record of what the SDK asked and what the server answered, so the suite can assert
// the protocol the real client spoke (discovery, registration body, grant types, challenges).
// It never prints or stores a token: token responses are reduced to their non-secret fields, and
// a refresh token sent is kept only as a short SHA-256 fingerprint (to tell two apart).
import crypto from 'node:crypto';

import { withTimeout } from './util.mjs';

/** An MCP endpoint: the demo's /mcp, or a gateway resource's /mcp/NAME. */
function isMcp(pathname) {
  return pathname === '/mcp' || pathname.startsWith('/mcp/');
}

function bodyText(body) {
  if (body == null) return undefined;
  if (typeof body === 'string') return body;
  if (body instanceof URLSearchParams) return body.toString();
  return undefined;
}

export class Recorder {
  /** @type {Array<object>} */
  entries = [];

  #plan;

  /**
   * Network timing, not content: of the next two refresh_token requests, the second goes out
   * only once the server has answered the first, and the SDK gets the first answer only after
   * `releaseFirst` resolves (or `timeoutMs` passes). With `releaseFirst` = "the SDK saved the
   * second answer", the SDK receives the two rotations in the opposite order.
   */
  holdRefreshes(releaseFirst, timeoutMs) {
    let answered;
    const firstAnswered = new Promise((resolve) => {
      answered = resolve;
    });
    this.#plan = { next: 0, answered, firstAnswered, releaseFirst, timeoutMs };
  }

  get fetch() {
    return async (input, init) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
      const method = (init?.method ?? 'GET').toUpperCase();
      const entry = { method, url: url.href, path: url.pathname };
      const text = bodyText(init?.body);
      if (url.pathname === '/register' && text) entry.requestJson = JSON.parse(text);
      if (url.pathname === '/token' && text) {
        const form = new URLSearchParams(text);
        entry.grantType = form.get('grant_type');
        entry.requestScope = form.get('scope');
        entry.resource = form.get('resource');
        const rt = form.get('refresh_token');
        if (rt) entry.refreshTokenFingerprint = crypto.createHash('sha256').update(rt).digest('hex').slice(0, 12);
      }
      if (isMcp(url.pathname) && text) {
        try {
          const msg = JSON.parse(text);
          entry.rpc = Array.isArray(msg) ? msg.map((m) => m.method) : msg.method;
          entry.tool = msg?.params?.name;
        } catch {
          // not JSON: recorded without the method
        }
      }
      const headers = new Headers(init?.headers);
      entry.sentBearer = /^Bearer /.test(headers.get('authorization') ?? '');
      const plan = entry.grantType === 'refresh_token' ? this.#plan : undefined;
      const turn = plan ? plan.next++ : undefined;
      if (turn === 1) {
        this.#plan = undefined;
        await withTimeout(plan.firstAnswered, plan.timeoutMs, 'the first refresh to be answered');
      }
      const response = await fetch(input, init);
      entry.status = response.status;
      entry.wwwAuthenticate = response.headers.get('www-authenticate');
      // Behind the several-instances suite's balancer (lib/balancer.mjs): which instance answered.
      const backend = response.headers.get('x-e2e-backend');
      if (backend) entry.backend = backend;
      const session = response.headers.get('mcp-session-id');
      if (session) entry.givenSessionId = session;
      if (headers.get('mcp-session-id')) entry.sessionId = headers.get('mcp-session-id');
      if (!isMcp(url.pathname)) {
        const json = await response
          .clone()
          .json()
          .catch(() => undefined);
        if (url.pathname === '/token' && json) {
          entry.responseJson = {
            token_type: json.token_type,
            scope: json.scope,
            expires_in: json.expires_in,
            has_access_token: typeof json.access_token === 'string',
            has_refresh_token: typeof json.refresh_token === 'string',
            error: json.error,
          };
        } else {
          entry.responseJson = json;
        }
      }
      this.entries.push(entry);
      if (turn === 0) {
        plan.answered();
        await withTimeout(plan.releaseFirst, plan.timeoutMs, 'the release of the first refresh answer').catch(() => {});
      }
      return response;
    };
  }

  /** Entries recorded since `mark` (an index from `mark()`), optionally filtered. */
  since(mark, filter = () => true) {
    return this.entries.slice(mark).filter(filter);
  }

  mark() {
    return this.entries.length;
  }
}
