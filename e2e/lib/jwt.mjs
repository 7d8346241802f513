// JWTs as a resource server sees them: decoding (no trust), and verifying a compact JWS against
// an authorization server's JWKS with Node's own crypto (no JOSE library): the JWKS is found
// through the authorization server metadata's `jwks_uri`, the key by the header's `kid`.
import crypto from 'node:crypto';

const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

/** The header and claims of a compact JWS, unverified. */
export function decodeJwt(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error(`not a compact JWS (${parts.length} parts)`);
  return { header: b64json(parts[0]), claims: b64json(parts[1]) };
}

/** The keys the authorization server at `issuer` publishes: { jwksUri, keys }. */
export async function fetchJwks(issuer, fetchFn = fetch) {
  const metadata = await (await fetchFn(`${issuer}/.well-known/oauth-authorization-server`)).json();
  if (!metadata.jwks_uri) throw new Error('the authorization server metadata names no jwks_uri');
  const jwks = await (await fetchFn(metadata.jwks_uri)).json();
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error(`no keys at ${metadata.jwks_uri}`);
  return { jwksUri: metadata.jwks_uri, keys: jwks.keys };
}

const ALGS = {
  ES256: { hash: 'sha256', kty: 'EC', crv: 'P-256', dsaEncoding: 'ieee-p1363' },
  EdDSA: { hash: null, kty: 'OKP', crv: 'Ed25519' },
};

/**
 * Verifies the signature of `token` with the JWK of `keys` its header's `kid` names (the
 * algorithm must be the one the key is for). Returns { header, claims, jwk }; throws on any
 * mismatch. Claims are not checked here.
 */
export function verifyJwt(token, keys) {
  const [h, p, s] = String(token).split('.');
  const { header, claims } = decodeJwt(token);
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`no published key has kid ${header.kid}`);
  const alg = ALGS[header.alg];
  if (!alg) throw new Error(`unexpected alg ${header.alg}`);
  if (jwk.alg && jwk.alg !== header.alg) throw new Error(`the key ${jwk.kid} is for ${jwk.alg}, the token says ${header.alg}`);
  if (jwk.kty !== alg.kty || jwk.crv !== alg.crv) throw new Error(`the key ${jwk.kid} is ${jwk.kty}/${jwk.crv}, not for ${header.alg}`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const signature = Buffer.from(s, 'base64url');
  const ok = crypto.verify(alg.hash, Buffer.from(`${h}.${p}`), alg.dsaEncoding ? { key, dsaEncoding: alg.dsaEncoding } : key, signature);
  if (!ok) throw new Error(`the signature does not verify with key ${jwk.kid}`);
  return { header, claims, jwk };
}
