// An OpenID provider for mandate's federated sign-in: panva's oidc-provider (npm, OpenID
// Certified), unchanged, with its in-memory adapter and its development interaction pages (a
// sign-in form whose "login" is the account id, any password; then a consent page with a
// "Continue" button). One confidential client, "mandate" (client_secret_basic, the authorization
// code and refresh token grants, the redirect URIs given), PKCE required for every client, RFC
// 7009 revocation on, RFC 9207 `iss` in every authorization response (always on in 9.x). Its
// accounts are fixed (ACCOUNTS): two of them share an e-mail address and a preferred_username,
// as an attacker's account would; one has an e-mail address the provider did not verify
// (email_verified false).
//
// Its issuer is http://localhost:PORT while it listens on 127.0.0.1 only: to the browser the
// provider is then another site than mandate on http://127.0.0.1:PORT, as a real provider is
// (cookies with SameSite=Strict would not come back with the provider's redirect), and the two
// servers' cookies stay apart (on one host, cookies ignore the port).
//
// What it did is appended to an events file, one JSON object a line (never a token, code or
// secret): every HTTP request (method, path, status, the client authentication scheme on the
// token and revocation endpoints), the authorization requests it accepted (client, scope, PKCE
// method, whether state and nonce came), the interactions it started (login, consent), the grants
// (grant_type, account) and the tokens issued, consumed and destroyed (kind, account). The suite
// reads it with readEvents.
//
// ID tokens carry the profile and e-mail claims only with --claims-in-id-token: by default, as
// OpenID Connect Core 5.4 says for a response type that issues an access token, the ID token has
// `sub` (and the protocol claims) and the userinfo endpoint has the rest (oidc-provider's
// conformIdTokenClaims, on by default; Okta does the same; Google and others put them in both).
//
// Run: IDP_CLIENT_SECRET=… node e2e/lib/oidc-provider.mjs --redirect-uri URI [--redirect-uri URI]…
//        [--events FILE] [--port PORT] [--claims-in-id-token]
// Prints "oidc-provider issuer http://localhost:PORT" once it listens; SIGTERM stops it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

import Provider from 'oidc-provider';

/** The provider's accounts: id (the "login" on its sign-in page) → claims. */
export const ACCOUNTS = {
  'alice-idp': { email: 'shared@example.com', email_verified: true, preferred_username: 'alice.idp', name: 'Alice at the IdP' },
  // Another person's account reusing alice-idp's e-mail address and preferred_username.
  'mallory-idp': { email: 'shared@example.com', email_verified: true, preferred_username: 'alice.idp', name: 'Mallory' },
  'bob-idp': { email: 'bob@example.com', email_verified: true, preferred_username: 'bob.idp', name: 'Bob at the IdP' },
  'carol-idp': { email: 'carol@example.com', email_verified: true, preferred_username: 'carol.idp', name: 'Carol at the IdP' },
  // An e-mail address the provider says it did not verify.
  'dave-idp': { email: 'dave@example.com', email_verified: false, preferred_username: 'dave.idp', name: 'Dave at the IdP' },
};

export const CLIENT_ID = 'mandate';

/** The lines of an events file as objects (none yet: []). */
export function readEvents(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return [];
    throw e;
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

/**
 * Starts the provider. Resolves to { issuer, events, close }: `events` is the in-memory list of
 * what was recorded (also appended to `eventsFile` when given).
 * @param {object} o
 * @param {string} o.clientSecret the "mandate" client's secret
 * @param {string[]} o.redirectUris the client's redirect URIs (exact match)
 * @param {string} [o.eventsFile]
 * @param {number} [o.port] default: a free port
 * @param {boolean} [o.claimsInIdToken] put the scopes' claims in ID tokens too (default: userinfo only)
 */
export async function startOidcProvider({ clientSecret, redirectUris, eventsFile, port = 0, claimsInIdToken = false }) {
  if (!clientSecret) throw new Error('the client secret is required');
  if (!redirectUris?.length) throw new Error('at least one redirect URI is required');
  const events = [];
  const record = (event) => {
    const line = { at: new Date().toISOString(), ...event };
    events.push(line);
    if (eventsFile) fs.appendFileSync(eventsFile, `${JSON.stringify(line)}\n`);
  };

  // Listen first: the issuer names the port.
  let handler = (_req, res) => res.writeHead(503).end();
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const issuer = `http://localhost:${server.address().port}`;

  // A signing key of its own (not the quick-start development keys).
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        client_name: 'mandate',
        redirect_uris: redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingKey] },
    conformIdTokenClaims: !claimsInIdToken,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      // Only the client a token was issued to may revoke it.
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      userinfo: { enabled: true },
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
    },
    // Lifetimes in seconds, stated (the defaults warn).
    ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400 },
    // A refresh token for every client allowed the grant, as most providers do (the default
    // wants the offline_access scope).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    async findAccount(_ctx, id) {
      const claims = ACCOUNTS[id];
      if (!claims) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
    },
  });

  // What crossed the provider: every request, with the client authentication scheme where one
  // authenticates (never the credentials).
  provider.use(async (ctx, next) => {
    await next();
    const scheme = ctx.get('authorization').split(' ')[0] || undefined;
    const auth = ['/token', '/token/revocation', '/token/introspection'].includes(ctx.path)
      ? { clientAuth: scheme ?? (ctx.oidc?.body?.client_secret ? 'client_secret_post' : 'none') }
      : {};
    record({ event: 'request', method: ctx.method, path: ctx.path, status: ctx.status, ...auth });
  });
  provider.on('authorization.accepted', (ctx) => {
    const p = ctx.oidc.params;
    record({
      event: 'authorization.accepted',
      clientId: p.client_id,
      scope: p.scope,
      responseType: p.response_type,
      codeChallengeMethod: p.code_challenge_method,
      hasCodeChallenge: Boolean(p.code_challenge),
      hasState: Boolean(p.state),
      hasNonce: Boolean(p.nonce),
      redirectUri: p.redirect_uri,
    });
  });
  provider.on('interaction.started', (_ctx, prompt) => record({ event: 'interaction.started', prompt: prompt.name }));
  provider.on('authorization.success', (ctx) => record({ event: 'authorization.success', accountId: ctx.oidc.session?.accountId }));
  provider.on('authorization.error', (_ctx, err) => record({ event: 'authorization.error', error: err.error, description: err.error_description }));
  provider.on('grant.success', (ctx) => {
    const token = ctx.oidc.entities.AccessToken;
    record({ event: 'grant.success', grantType: ctx.oidc.params.grant_type, clientId: ctx.oidc.client?.clientId, accountId: token?.accountId });
  });
  provider.on('grant.error', (ctx, err) => record({ event: 'grant.error', grantType: ctx.oidc.params?.grant_type, error: err.error, description: err.error_description }));
  for (const kind of ['access_token', 'refresh_token', 'authorization_code']) {
    for (const what of ['saved', 'consumed', 'destroyed']) {
      provider.on(`${kind}.${what}`, (token) => record({ event: `${kind}.${what}`, accountId: token.accountId, clientId: token.clientId }));
    }
  }
  provider.on('grant.revoked', (_ctx, grantId) => record({ event: 'grant.revoked', grant: Boolean(grantId) }));
  provider.on('userinfo.error', (_ctx, err) => record({ event: 'userinfo.error', error: err.error }));
  provider.on('revocation.error', (_ctx, err) => record({ event: 'revocation.error', error: err.error }));
  provider.on('server_error', (_ctx, err) => record({ event: 'server_error', message: String(err?.message ?? err) }));

  handler = provider.callback();
  const close = async () => {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  };
  return { issuer, events, provider, close };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      'redirect-uri': { type: 'string', multiple: true },
      events: { type: 'string' },
      port: { type: 'string', default: '0' },
      'claims-in-id-token': { type: 'boolean', default: false },
    },
  });
  const clientSecret = process.env.IDP_CLIENT_SECRET;
  if (!clientSecret) {
    console.error('set IDP_CLIENT_SECRET to the client secret');
    process.exit(2);
  }
  const { issuer, close } = await startOidcProvider({
    clientSecret,
    redirectUris: values['redirect-uri'] ?? [],
    eventsFile: values.events,
    port: Number(values.port),
    claimsInIdToken: values['claims-in-id-token'],
  });
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => close().then(() => process.exit(0)));
  }
  console.log(`oidc-provider issuer ${issuer}`);
  console.log(`client ${CLIENT_ID}, redirect URIs: ${values['redirect-uri'].join(' ')}`);
  console.log(`accounts: ${Object.keys(ACCOUNTS).join(', ')} (any password)`);
  console.log(`profile and e-mail claims: ${values['claims-in-id-token'] ? 'in ID tokens and at userinfo' : 'at userinfo (ID tokens: sub)'}`);
}
