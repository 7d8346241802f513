// Another site, for the cross-site form posts of the browser suite: a Node HTTP server on
// another port of 127.0.0.1 (same-site as mandate on 127.0.0.1, not same-origin; cookies ignore
// ports, so its pages can even plant cookies for mandate's host) that is also reachable as
// http://localhost:<port> (another site altogether). Each page auto-submits a form to mandate,
// from the top-level page or from a sandboxed iframe (an opaque origin: `Origin: null`).
import http from 'node:http';

/** HTML-escapes `s` for text and double-quoted attribute values. */
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A form that posts `fields` to `action` (into `target`), submitted by a script after `delayMs`. */
function autoSubmittingForm(action, fields, delayMs, target = '_self') {
  const inputs = Object.entries(fields)
    .map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`)
    .join('');
  return (
    `<form id="f" method="post" action="${esc(action)}" target="${target}">${inputs}<button>Claim your prize</button></form>` +
    `<script>setTimeout(() => document.getElementById('f').submit(), ${delayMs});</script>`
  );
}

export class AttackerSite {
  #server;
  #pages = new Map();
  #next = 0;

  async start() {
    this.#server = http.createServer((req, res) => {
      const html = this.#pages.get(new URL(req.url, 'http://x').pathname);
      if (!html) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
    });
    await new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', resolve);
    });
    this.port = this.#server.address().port;
    /** The origins the pages are served from: same-site (another port) and cross-site. */
    this.origins = { otherPort: `http://127.0.0.1:${this.port}`, localhost: `http://localhost:${this.port}` };
  }

  /**
   * A page that posts `fields` to `action` once loaded. `framing`:
   *   'top'                the page itself submits;
   *   'sandboxed-iframe'   an `<iframe sandbox="allow-forms allow-scripts" srcdoc>` submits into
   *                        itself (the answer cannot be shown: mandate's pages refuse framing);
   *   'sandboxed-popup'    the same iframe, also allowed popups, submits into a new window (which
   *                        inherits the sandbox: still `Origin: null`), where the answer shows.
   * The iframes wait a little before submitting: an immediate submit on load is sometimes missed
   * by Playwright.
   * @returns {string} the page's path (open it on either origin)
   */
  page(action, fields, { framing = 'top' } = {}) {
    const iframe = (sandbox, target) =>
      `<iframe sandbox="${sandbox}" style="width:100%;height:300px" srcdoc="${esc(
        `<!doctype html><p>Loading your prize…</p>${autoSubmittingForm(action, fields, 300, target)}`,
      )}"></iframe>`;
    const body = {
      top: () => autoSubmittingForm(action, fields, 50),
      'sandboxed-iframe': () => iframe('allow-forms allow-scripts', '_self'),
      'sandboxed-popup': () => iframe('allow-forms allow-scripts allow-popups', '_blank'),
    }[framing]();
    return this.#add(`<h1>You won a prize</h1>${body}`);
  }

  /**
   * A page that sets the cookie `nameValue` (`name=value`) with document.cookie. Opened on
   * http://127.0.0.1:<port>, it sets the cookie for mandate's host too: cookies ignore ports.
   */
  plantingPage(nameValue) {
    return this.#add(`<h1>Welcome</h1><script>document.cookie = ${JSON.stringify(`${nameValue}; path=/; SameSite=Lax`)};</script>`);
  }

  #add(body) {
    const path = `/page-${(this.#next += 1)}`;
    this.#pages.set(path, `<!doctype html><meta charset="utf-8"><title>You won!</title>${body}`);
    return path;
  }

  async close() {
    if (!this.#server) return;
    this.#server.closeAllConnections?.();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
