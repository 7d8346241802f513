// An OAuthClientProvider kept in memory, as the SDK's own examples write one. The user agent is
// pluggable: `authorize(url)` (headless Chromium in these suites) must return the authorization
// response the loopback redirect URI received. The provider checks `state` and `iss` itself
// (the SDK does not) and keeps the response for the suite to pass to `transport.finishAuth`.
import crypto from 'node:crypto';

export class MemoryOAuthProvider {
  /**
   * @param {object} o
   * @param {string} o.redirectUri the loopback callback
   * @param {string} o.clientName
   * @param {string[]} o.grantTypes the grant types to register
   * @param {string} o.issuer the authorization server the `iss` parameter must name
   * @param {(url: URL) => Promise<{code?: string, state?: string, iss?: string, error?: string}>} o.authorize
   */
  constructor({ redirectUri, clientName, grantTypes, issuer, authorize }) {
    this.redirectUri = redirectUri;
    this.clientName = clientName;
    this.grantTypes = grantTypes;
    this.issuer = issuer;
    this.userAgent = authorize;
    /** Every authorization URL the SDK asked the user agent to open. */
    this.authorizationUrls = [];
    /** Every token set the SDK saved, in order. */
    this.savedTokens = [];
    /** Every invalidateCredentials scope the SDK asked for. */
    this.invalidations = [];
    this.pendingResponse = undefined;
    this.#client = undefined;
    this.#tokens = undefined;
    this.#verifier = undefined;
    this.#state = undefined;
    this.#discovery = undefined;
  }

  #client;
  #tokens;
  #verifier;
  #state;
  #discovery;
  #rejected;
  #saveWaiters = [];

  get redirectUrl() {
    return this.redirectUri;
  }

  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this.redirectUri],
      grant_types: this.grantTypes,
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this.#state = crypto.randomBytes(24).toString('base64url');
    return this.#state;
  }

  clientInformation() {
    return this.#client;
  }

  saveClientInformation(info) {
    this.#client = info;
  }

  /**
   * The held tokens; while the held access token is the one `rejectHeldAccessToken()` marked,
   * it comes back with a broken signature, as a token the server no longer accepts would, until
   * the SDK saves new tokens.
   */
  tokens() {
    const t = this.#tokens;
    if (t && this.#rejected && t.access_token === this.#rejected) {
      const last = t.access_token.at(-2) === 'A' ? 'B' : 'A';
      return { ...t, access_token: `${t.access_token.slice(0, -2)}${last}${t.access_token.at(-1)}` };
    }
    return t;
  }

  /** From now until new tokens are saved, the access token the SDK sends is one the server refuses. */
  rejectHeldAccessToken() {
    if (!this.#tokens) throw new Error('no tokens held');
    this.#rejected = this.#tokens.access_token;
  }

  /** Resolves when the SDK next saves tokens. */
  nextSave() {
    return new Promise((resolve) => this.#saveWaiters.push(resolve));
  }

  /** The held tokens, unaltered (for the suite's assertions). */
  heldTokens() {
    return this.#tokens;
  }

  saveTokens(tokens) {
    this.#tokens = tokens;
    this.savedTokens.push(tokens);
    for (const resolve of this.#saveWaiters.splice(0)) resolve();
  }

  saveCodeVerifier(v) {
    this.#verifier = v;
  }

  codeVerifier() {
    if (!this.#verifier) throw new Error('no PKCE verifier saved');
    return this.#verifier;
  }

  saveDiscoveryState(s) {
    this.#discovery = s;
  }

  discoveryState() {
    return this.#discovery;
  }

  invalidateCredentials(scope) {
    this.invalidations.push(scope);
    if (scope === 'all' || scope === 'client') this.#client = undefined;
    if (scope === 'all' || scope === 'tokens') this.#tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this.#verifier = undefined;
    if (scope === 'all' || scope === 'discovery') this.#discovery = undefined;
  }

  async redirectToAuthorization(url) {
    this.authorizationUrls.push(new URL(url));
    this.pendingResponse = undefined;
    const expectedState = url.searchParams.get('state');
    if (!expectedState || expectedState !== this.#state) {
      throw new Error('the SDK built an authorization URL without the state this provider issued');
    }
    const response = await this.userAgent(new URL(url));
    if (response.state !== expectedState) {
      throw new Error('the authorization response carries another state (discarded)');
    }
    if (response.iss !== this.issuer) {
      throw new Error(`the authorization response names issuer ${response.iss}, expected ${this.issuer}`);
    }
    if (response.error || !response.code) {
      throw new Error(`the authorization server answered ${response.error}: ${response.errorDescription}`);
    }
    this.pendingResponse = response;
  }

  /** The last authorization response ({ code, iss, ... }); single use. */
  takeResponse() {
    const response = this.pendingResponse;
    this.pendingResponse = undefined;
    if (!response?.code) throw new Error('no authorization code was received');
    return response;
  }
}
