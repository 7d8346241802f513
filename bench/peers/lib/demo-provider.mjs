// The MCP TypeScript SDK's demo authorization provider (DemoInMemoryAuthProvider, shipped in the
// SDK's dist/esm/examples), unchanged, plus the smallest honest refresh grant, which the demo does
// not have (its exchangeRefreshToken throws): a Map of refresh token → { client, scopes,
// resource }. Redeeming a code now also issues a refresh token; a refresh issues a new access
// token and a new refresh token and deletes the old refresh token (rotation; a reused refresh
// token is refused). No reuse detection of a whole family, no expiry of refresh tokens, nothing
// persisted: it is a demo's in-memory store, as the SDK's own is.
import { randomUUID } from 'node:crypto';

import { DemoInMemoryAuthProvider } from '@modelcontextprotocol/sdk/examples/server/demoInMemoryOAuthProvider.js';
import { InvalidGrantError, InvalidScopeError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

const ACCESS_TTL_MS = 3600_000;

export class RotatingDemoProvider extends DemoInMemoryAuthProvider {
  constructor(validateResource) {
    super(validateResource);
    /** refresh token → { clientId, scopes, resource } */
    this.refreshTokens = new Map();
  }

  #issue(clientId, scopes, resource) {
    const access = randomUUID();
    this.tokens.set(access, { token: access, clientId, scopes, expiresAt: Date.now() + ACCESS_TTL_MS, resource, type: 'access' });
    const refresh = randomUUID();
    this.refreshTokens.set(refresh, { clientId, scopes, resource });
    return { access_token: access, token_type: 'bearer', expires_in: ACCESS_TTL_MS / 1000, scope: scopes.join(' '), refresh_token: refresh };
  }

  async exchangeAuthorizationCode(client, code, verifier, redirectUri, resource) {
    const tokens = await super.exchangeAuthorizationCode(client, code, verifier, redirectUri, resource);
    const data = this.tokens.get(tokens.access_token);
    const refresh = randomUUID();
    this.refreshTokens.set(refresh, { clientId: client.client_id, scopes: data.scopes, resource: data.resource });
    return { ...tokens, refresh_token: refresh };
  }

  async exchangeRefreshToken(client, refreshToken, scopes, _resource) {
    const record = this.refreshTokens.get(refreshToken);
    if (!record || record.clientId !== client.client_id) {
      throw new InvalidGrantError('Invalid refresh token');
    }
    if (scopes && !scopes.every((s) => record.scopes.includes(s))) {
      throw new InvalidScopeError('A refresh cannot widen the scope');
    }
    this.refreshTokens.delete(refreshToken);
    return this.#issue(client.client_id, scopes ?? record.scopes, record.resource);
  }
}

/** mcpAuthRouter's options with every rate limit off (the token endpoint's default is 50 requests per 15 minutes per address). */
export function noRateLimits() {
  return {
    authorizationOptions: { rateLimit: false },
    tokenOptions: { rateLimit: false },
    clientRegistrationOptions: { rateLimit: false },
    revocationOptions: { rateLimit: false },
  };
}
