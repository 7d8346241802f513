// An MCP server on the official TypeScript SDK whose authorization server is mandate.
//
// The SDK's `requireBearerAuth` guards /mcp with a token verifier of ours, and
// `mcpAuthMetadataRouter` publishes RFC 9728 metadata naming mandate, so MCP clients find where
// to sign in. Two ways to verify mandate's access tokens:
//
// - JWT (the default): the signature against mandate's published keys (its JWKS), the issuer, the
//   audience (this server's URL, which mandate puts in `aud` when the client asks for it as its
//   `resource`), `typ` at+jwt and the expiry. Nothing is asked of mandate per request; a revoked
//   grant's access token stays good until it expires (`access_token_ttl`, an hour by default).
// - Introspection (RFC 7662), when MANDATE_CLIENT_ID and MANDATE_CLIENT_SECRET are set: each
//   token is sent to mandate's /introspect, as a confidential client registered for this
//   resource (`mandate clients add --confidential --resource <this server's URL>`). A revoked
//   grant's tokens are refused at once. mandate answers only for tokens issued for the resources
//   that client serves.
//
// Environment: MANDATE_ISSUER (mandate's public URL, e.g. http://127.0.0.1:8080), PORT (default
// 8000), HOST (default 127.0.0.1), and for introspection MANDATE_CLIENT_ID, MANDATE_CLIENT_SECRET.
// See README.md.
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { getOAuthProtectedResourceMetadataUrl, mcpAuthMetadataRouter } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { z } from 'zod';

const issuer = (process.env.MANDATE_ISSUER ?? '').replace(/\/+$/, '');
if (!issuer) throw new Error('MANDATE_ISSUER: mandate\'s public URL, e.g. http://127.0.0.1:8080');
const host = process.env.HOST ?? '127.0.0.1';
const port = Number(process.env.PORT ?? 8000);
const resource = new URL(`http://${host}:${port}/mcp`);
const SCOPES = ['notes.read'];

// mandate's metadata: where its JWKS and introspection endpoint are.
const metadata = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
if (metadata.issuer !== issuer) throw new Error(`${issuer} names itself ${metadata.issuer}`);

/** The AuthInfo the SDK hands to tools, from the token's claims (or introspection's answer). */
function authInfo(token, claims) {
  if (typeof claims.scope !== 'string' || typeof claims.exp !== 'number' || claims.aud === undefined) {
    throw new InvalidTokenError('no scope, exp or aud');
  }
  return {
    token,
    clientId: claims.client_id,
    scopes: claims.scope.split(' ').filter(Boolean),
    expiresAt: claims.exp,
    resource: new URL(Array.isArray(claims.aud) ? claims.aud[0] : claims.aud),
    extra: { subject: claims.sub },
  };
}

const keys = createRemoteJWKSet(new URL(metadata.jwks_uri));
const jwtVerifier = {
  async verifyAccessToken(token) {
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer,
        audience: resource.href,
        typ: 'at+jwt',
        algorithms: ['ES256', 'RS256', 'EdDSA'],
      });
      return authInfo(token, payload);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw e;
      throw new InvalidTokenError(`the token is not valid here: ${e.code ?? e.message}`);
    }
  },
};

const clientId = process.env.MANDATE_CLIENT_ID;
const clientSecret = process.env.MANDATE_CLIENT_SECRET;
const introspectionVerifier = {
  async verifyAccessToken(token) {
    const r = await fetch(metadata.introspection_endpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    if (!r.ok) throw new Error(`introspection answered ${r.status}`); // a 500 to the client, not a 401
    const answer = await r.json();
    if (answer.active !== true) throw new InvalidTokenError('the token is not active');
    if (answer.iss !== undefined && answer.iss !== issuer) throw new InvalidTokenError('another issuer');
    // Only an access token for this server: never a refresh token, never another resource's.
    if (answer.token_type === 'refresh_token' || typeof answer.aud !== 'string') throw new InvalidTokenError('not an access token for a resource');
    return authInfo(token, answer);
  },
};
const introspecting = Boolean(clientId && clientSecret);

const app = express();
app.use(express.json());
app.use(
  mcpAuthMetadataRouter({
    oauthMetadata: metadata,
    resourceServerUrl: resource,
    scopesSupported: SCOPES,
    resourceName: 'Notes (TypeScript SDK example)',
  }),
);
const auth = requireBearerAuth({
  verifier: introspecting ? introspectionVerifier : jwtVerifier,
  requiredScopes: SCOPES,
  resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(resource),
  expectedResource: resource,
});

function mcpServer() {
  const server = new McpServer({ name: 'notes-ts-sdk-example', version: '1.0.0' });
  server.registerTool(
    'hello',
    { description: 'Greets someone.', inputSchema: { name: z.string() }, annotations: { readOnlyHint: true } },
    async ({ name }, extra) => ({
      content: [{ type: 'text', text: `Hello, ${name}. (Asked by ${extra.authInfo?.clientId} for ${extra.authInfo?.extra?.subject}.)` }],
    }),
  );
  return server;
}

// Stateless: a server and a transport per request (no MCP sessions to keep).
app.post('/mcp', auth, async (req, res) => {
  const server = mcpServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
app.all('/mcp', auth, (_req, res) => res.status(405).set('allow', 'POST').end());

app.listen(port, host, () => {
  console.log(`notes (TypeScript SDK example) serving ${resource.href}, tokens from ${issuer} (${introspecting ? 'introspection' : 'JWT'})`);
});
