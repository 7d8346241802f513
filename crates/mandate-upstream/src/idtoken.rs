//! OpenID Connect ID tokens: the signature against the provider's JWKS (asymmetric algorithms
//! only), `iss` byte-identical, `aud` our client id, `nonce` the one we sent, and the lifetime
//! against mandate's clock.

use jsonwebtoken::{Validation, decode, decode_header};
use mandate_core::clock::UnixTime;
use mandate_core::secret::ct_str_eq;
use mandate_guard::KeySource;
use serde::Deserialize;

use crate::UpstreamError;

/// Seconds of clock difference tolerated.
const LEEWAY: i64 = 60;

#[derive(Debug, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

pub async fn verify(
    token: &str,
    keys: &dyn KeySource,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: UnixTime,
) -> Result<IdClaims, UpstreamError> {
    let bad = |why: &'static str| UpstreamError::BadIdToken(why);
    let header = decode_header(token).map_err(|_| bad("not a JWT"))?;
    let kid = header.kid.as_deref().ok_or(bad("no kid"))?;
    let key = keys.key(kid).await.ok_or(bad("signed with a key the provider does not publish"))?;
    if key.alg != header.alg {
        return Err(bad("the algorithm does not match the key"));
    }
    let mut v = Validation::new(key.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[client_id]);
    v.validate_exp = false;
    v.required_spec_claims = ["iss", "sub", "aud", "exp"].iter().map(|s| (*s).to_owned()).collect();
    let claims =
        decode::<IdClaims>(token, &key.key, &v).map_err(|_| bad("signature, issuer or audience is wrong"))?.claims;
    if claims.exp.saturating_add(LEEWAY) < now {
        return Err(bad("expired"));
    }
    if !claims.nonce.as_deref().is_some_and(|n| ct_str_eq(n, nonce)) {
        return Err(bad("the nonce is not the one sent"));
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(bad("no usable subject"));
    }
    Ok(claims)
}
