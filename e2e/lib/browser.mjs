// A person at a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) opens the authorization URL, signs in on mandate's form if asked, lets the
// suite inspect and decide the consent page, and follows the redirect to the client's loopback
// redirect URI. Nothing is rewritten or injected: the browser sends what it sends.
// Every page it shows is saved as a screenshot.
import fs from 'node:fs/promises';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { redactUrl, say, withTimeout } from './util.mjs';

const CHROMIUM = process.env.MANDATE_E2E_CHROMIUM ?? '/usr/bin/chromium';
// Flags that work on a machine with no network but loopback (see the field notes).
const ARGS = [
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** The visible text of the page, on one line, for error messages. */
async function pageText(page) {
  const text = await page
    .locator('body')
    .innerText({ timeout: 2_000 })
    .catch(() => '');
  return text.replace(/\s+/g, ' ').trim().slice(0, 300) || '(empty page)';
}

export class Person {
  #browser;
  #context;
  #shot = 0;

  /**
   * @param {object} o
   * @param {string} o.username
   * @param {string} o.password
   * @param {string} o.screenshots folder for the screenshots
   * @param {number} o.stepTimeoutMs bound on each page step
   * @param {{width: number, height: number}} [o.viewport] the window size (default 900×900)
   */
  constructor({ username, password, screenshots, stepTimeoutMs, viewport = { width: 900, height: 900 } }) {
    this.username = username;
    this.password = password;
    this.screenshots = screenshots;
    this.stepTimeoutMs = stepTimeoutMs;
    this.viewport = viewport;
    /** Every page Chromium showed: { label, url (redacted), file }. */
    this.pages = [];
    /** How many times the sign-in form was submitted. */
    this.signIns = 0;
  }

  async start() {
    await fs.mkdir(this.screenshots, { recursive: true });
    this.#browser = await withTimeout(
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS }),
      this.stepTimeoutMs,
      `Chromium to start (${CHROMIUM})`,
    );
    // One profile for the whole run: the sign-in cookie lives on, as in a person's browser.
    this.#context = await this.newProfile();
    say(`Chromium ${this.#browser.version()} (${CHROMIUM}), window ${this.viewport.width}×${this.viewport.height}`);
  }

  /** A fresh profile (no cookies) in the same browser, with the same window size and timeouts. */
  async newProfile() {
    const context = await this.#browser.newContext({ viewport: this.viewport });
    context.setDefaultTimeout(this.stepTimeoutMs);
    context.setDefaultNavigationTimeout(this.stepTimeoutMs);
    return context;
  }

  /** A new tab in the person's profile (signed in once `authorize` signed in). */
  async newPage() {
    return this.#context.newPage();
  }

  /** The cookies the person's profile holds for `url`. */
  async cookies(url) {
    return this.#context.cookies(url);
  }

  async close() {
    await this.#browser?.close().catch(() => {});
  }

  /** Saves a full-page screenshot of `page` as the next numbered file, named by `label`. */
  async capture(page, label) {
    this.#shot += 1;
    const file = path.join(this.screenshots, `${String(this.#shot).padStart(2, '0')}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    const url = redactUrl(page.url());
    this.pages.push({ label, url, file });
    say(`browser: ${label} page ${url} (screenshot ${path.basename(file)})`);
  }

  /**
   * Opens `authorizationUrl` as a person would and returns once the browser reached
   * `redirectUri`. `decide(page)` runs on the consent page: it asserts what the page shows,
   * ticks what the person allows, and returns; the person then clicks Allow.
   * `options.signIn(page)`, if given, runs on the sign-in page before the person types the right
   * username and password (to read the page, or to try a wrong password first);
   * `options.label` prefixes the screenshots' names.
   * @returns {Promise<{consentShown: boolean}>}
   */
  async authorize(authorizationUrl, redirectUri, decide, { signIn, label = '' } = {}) {
    const page = await this.newPage();
    try {
      const response = await page.goto(authorizationUrl.href);
      if (!response?.ok()) {
        await this.capture(page, label ? `${label}-authorize-error` : 'authorize-error');
        throw new Error(`GET /authorize ended with HTTP ${response?.status()}: ${await pageText(page)}`);
      }
      return await this.continueAuthorization(page, (u) => u.href.startsWith(redirectUri), decide, { signIn, label });
    } finally {
      await page.close().catch(() => {});
    }
  }

  /**
   * The person's part of an authorization that `page` already reached (the app sent the tab
   * to the authorization server): signs in on mandate's form if asked, lets `decide(page)` look
   * at the consent page and tick, clicks Allow, and returns once the tab is at a URL
   * `arrived(url)` accepts (the app's redirect URI). `options` as for `authorize`.
   * @returns {Promise<{consentShown: boolean}>}
   */
  async continueAuthorization(page, arrived, decide, { signIn, label = '' } = {}) {
    const name = (what) => (label ? `${label}-${what}` : what);
    let consentShown = false;
    let url = new URL(page.url());
    if (url.pathname === '/login') {
      await this.capture(page, name('sign-in'));
      if (signIn) await signIn(page);
      await page.fill('input[name=username]', this.username);
      await page.fill('input[name=password]', this.password);
      this.signIns += 1;
      const [posted] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === '/login' && r.request().method() === 'POST'),
        page.click('form[action="/login"] button[type=submit]'),
      ]);
      await page.waitForLoadState('load');
      url = new URL(page.url());
      if (url.pathname === '/login') {
        await this.capture(page, name('sign-in-refused'));
        throw new Error(`sign-in refused (POST /login answered ${posted.status()}): ${await pageText(page)}`);
      }
    }
    if (url.pathname === '/consent') {
      consentShown = true;
      await this.capture(page, name('consent'));
      await decide(page);
      const [posted] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === '/consent' && r.request().method() === 'POST'),
        page.click('button[name=action][value=allow]'),
      ]);
      await page.waitForURL(arrived).catch(async () => {
        await this.capture(page, name('consent-refused'));
        throw new Error(
          `after Allow (POST /consent answered ${posted.status()}) the browser is at ${redactUrl(page.url())}: ${await pageText(page)}`,
        );
      });
    } else if (!arrived(url)) {
      await this.capture(page, name('unexpected'));
      throw new Error(`expected the sign-in or consent page, got ${redactUrl(page.url())}`);
    }
    await page.waitForLoadState('load');
    await this.capture(page, name('redirect-uri'));
    return { consentShown };
  }
}

/** The demo scopes as mandate's pages describe them (mandate-core scope.rs). */
export const SCOPE_DESCRIPTIONS = {
  'customers.read': 'See your customers and their details',
  'customers.write': 'Create customers in your name',
  'invoices.read': 'See your invoices',
  'invoices.send': 'Send invoices to your customers (cannot be undone)',
  'todos.read': 'See your to-do list',
  'todos.write': 'Add, complete and delete your to-dos',
};

/**
 * What a consent page shows: the scope checkboxes (ids and ticks), the scopes it lists as already
 * allowed (their ids, from `data-scope`), the ones marked irreversible, the heading.
 */
export async function readConsent(page) {
  const boxes = await page
    .locator('input[type=checkbox][name=scope]')
    .evaluateAll((els) => els.map((e) => ({ value: e.value, checked: e.checked })));
  const alreadyAllowed = await page
    .locator('fieldset.granted li[data-scope]')
    .evaluateAll((els) => els.map((e) => e.dataset.scope));
  const irreversible = await page
    .locator('.scope.irreversible input[name=scope]')
    .evaluateAll((els) => els.map((e) => e.value));
  const heading = await page.locator('h1').innerText();
  return { boxes, alreadyAllowed: alreadyAllowed.sort(), irreversible, heading };
}
