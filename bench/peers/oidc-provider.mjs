// Peer: panva's oidc-provider (npm, OpenID Certified), as an OAuth 2.1 authorization server for
// one MCP resource:
// - one pre-registered public client, "bench" (token_endpoint_auth_method none, the
//   authorization code and refresh token grants, redirect URI lib/common.mjs CALLBACK);
// - PKCE required for every client;
// - RFC 8707 resource indicators: one resource, <base>/mcp (the default resource, and the
//   granted one on every token request), scope mcp:tools; its access tokens are JWTs signed with
//   ES256 (as mandate's are) with aud = the resource, lifetime 1 hour;
// - a refresh token with every code redeemed (issueRefreshToken: true for a client allowed the
//   grant), rotated on every use (rotateRefreshToken: true), not bound to the sign-in session;
// - its development interactions (a sign-in form whose login is the account id, any password,
//   then a consent form): the driver signs in once per account over HTTP as a browser would, and
//   then gets each code from /auth with the session cookie and the grant remembered, no page
//   shown. findAccount accepts any account id: the driver uses one account per worker.
// Storage: in memory. By default a Map adapter written here (below), O(1) per operation, nothing
// evicted before it expires, the grant index a Set per grant, as oidc-provider's example Redis
// adapter keeps it. PEERS_OIDC_ADAPTER=bundled uses oidc-provider's own memory adapter instead: an
// LRU that holds about 1000 entries (pre-issued codes and idle grants fall out of it under load)
// and re-scans a grant's whole token list on every save (O(n) per grant), which the README
// describes as for development only.
// Run: node oidc-provider.mjs [--port N]   Prints one JSON line when ready; SIGTERM stops it.
import crypto from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

import { CALLBACK, listen, options, ready, version } from './lib/common.mjs';

const CLIENT_ID = 'bench';
const SCOPE = 'mcp:tools';

/** Token and session kinds oidc-provider indexes by grant. */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest', 'PreAuthorizedCode']);

/** An in-memory adapter on Maps: entry → { payload, expiresAt }, grant → Set of keys, session uid → id. */
function mapAdapter() {
  const entries = new Map();
  const grants = new Map();
  const sessionUids = new Map();
  const userCodes = new Map();
  const live = (key) => {
    const e = entries.get(key);
    if (e && e.expiresAt !== undefined && e.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return e;
  };
  // Expired entries go once a minute (the bundled adapter drops them when read).
  setInterval(() => {
    const now = Date.now();
    for (const [key, e] of entries) if (e.expiresAt !== undefined && e.expiresAt <= now) entries.delete(key);
  }, 60_000).unref();
  return class MapAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
      if (this.model === 'Session') sessionUids.set(payload.uid, id);
      if (payload.userCode) userCodes.set(payload.userCode, id);
      if (GRANTABLE.has(this.model) && payload.grantId) {
        let members = grants.get(payload.grantId);
        if (!members) grants.set(payload.grantId, (members = new Set()));
        members.add(key);
      }
      entries.set(key, { payload, expiresAt });
    }

    async find(id) {
      return live(this.key(id))?.payload;
    }

    async findByUid(uid) {
      const id = sessionUids.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode) {
      const id = userCodes.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id) {
      const e = live(this.key(id));
      if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id) {
      const key = this.key(id);
      const e = entries.get(key);
      entries.delete(key);
      if (e?.payload.grantId) grants.get(e.payload.grantId)?.delete(key);
      if (e?.payload.uid && sessionUids.get(e.payload.uid) === id) sessionUids.delete(e.payload.uid);
    }

    async revokeByGrantId(grantId) {
      for (const key of grants.get(grantId) ?? []) entries.delete(key);
      grants.delete(grantId);
    }
  };
}

const { port } = options();
const { base, setHandler } = await listen(port);
const resource = `${base}/mcp`;
const sign = (kty, alg, extra) => {
  const { privateKey } = crypto.generateKeyPairSync(kty, extra);
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('hex'), alg, use: 'sig' };
};
const bundled = process.env.PEERS_OIDC_ADAPTER === 'bundled';

const provider = new Provider(base, {
  ...(bundled ? {} : { adapter: mapAdapter() }),
  clients: [
    {
      client_id: CLIENT_ID,
      client_name: 'bench',
      token_endpoint_auth_method: 'none',
      redirect_uris: [CALLBACK],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
  ],
  // ES256 signs the access tokens; RS256 is there for ID tokens (none are asked for).
  jwks: { keys: [sign('ec', 'ES256', { namedCurve: 'P-256' }), sign('rsa', 'RS256', { modulusLength: 2048 })] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  scopes: [SCOPE],
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return { scope: SCOPE, audience: resource, accessTokenTTL: 3600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
      },
    },
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 30 * 86400, Interaction: 600, Session: 86400, Grant: 30 * 86400, IdToken: 3600 },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  expiresWithSession: async () => false,
  async findAccount(_ctx, id) {
    return { accountId: id, claims: async () => ({ sub: id }) };
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error:', err));
setHandler(provider.callback());
ready({
  name: 'oidc-provider',
  base,
  oidc_provider: version('oidc-provider'),
  adapter: bundled ? 'bundled memory adapter (LRU, about 1000 entries)' : 'Map adapter (bench/peers/oidc-provider.mjs)',
  client_id: CLIENT_ID,
  scope: SCOPE,
  resource,
});
