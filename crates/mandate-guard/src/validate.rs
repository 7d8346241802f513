//! Access-token validation (RFC 9068 §4, RFC 8725; security-tests JW-10..JW-27): compact JWS
//! only, `typ` `at+jwt`, a known `kid` used with its own algorithm, no key-carrying or critical
//! headers, valid signature, `iss` equal to the configured issuer, `aud` naming this resource,
//! `exp`/`nbf`/`iat` within a small leeway of the injected clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use jsonwebtoken::{Validation, decode, decode_header};
use mandate_core::clock::Clock;
use mandate_core::scope::ScopeSet;
use serde::Deserialize;

use crate::keys::KeySource;
use crate::principal::Principal;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY: i64 = 60;
/// Longest token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused. The description is safe to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token is not an RFC 9068 access token (typ)")]
    WrongType,
    #[error("the access token header is not allowed")]
    ForbiddenHeader,
    #[error("the access token is signed with an unknown key")]
    UnknownKey,
    #[error("the access token signature or algorithm is invalid")]
    BadSignature,
    #[error("the access token was issued by another authorization server")]
    WrongIssuer,
    #[error("the access token is for another resource")]
    WrongAudience,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was revoked")]
    Revoked,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    grant_id: Option<String>,
}

/// Tokens remembered as valid; the cache is emptied when it reaches this size.
const CACHE_ENTRIES: usize = 10_000;

/// Validates tokens for one resource from one issuer.
pub struct Validator {
    pub issuer: String,
    pub resource: String,
    keys: Arc<dyn KeySource>,
    clock: Arc<dyn Clock>,
    /// Successful validations by SHA-256 of the token (tokens themselves are never kept): a
    /// repeated token skips the signature check, never the expiry check.
    verified: Mutex<HashMap<[u8; 32], (String, Principal)>>,
}

impl Validator {
    pub fn new(
        issuer: impl Into<String>,
        resource: impl Into<String>,
        keys: Arc<dyn KeySource>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { issuer: issuer.into(), resource: resource.into(), keys, clock, verified: Mutex::new(HashMap::new()) }
    }

    pub async fn validate(&self, token: &str) -> Result<Principal, Rejection> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.verified.lock().ok().and_then(|m| m.get(&digest).cloned());
        if let Some((kid, p)) = cached {
            if p.expires_at + LEEWAY <= self.clock.now() {
                return Err(Rejection::Expired);
            }
            // The key must still be published: a withdrawn key invalidates its tokens.
            if self.keys.key(&kid).await.is_some() {
                return Ok(p);
            }
            if let Ok(mut m) = self.verified.lock() {
                m.remove(&digest);
            }
            return Err(Rejection::UnknownKey);
        }
        let (kid, principal) = self.validate_uncached(token).await?;
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= CACHE_ENTRIES {
                m.clear();
            }
            m.insert(digest, (kid, principal.clone()));
        }
        Ok(principal)
    }

    async fn validate_uncached(&self, token: &str) -> Result<(String, Principal), Rejection> {
        if token.is_empty()
            || token.len() > MAX_TOKEN_BYTES
            || token.split('.').count() != 3
            || !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(Rejection::Malformed);
        }
        // Unknown or case-mangled algorithms ("none", "NONE", "HS256") fail here or below.
        let header = decode_header(token).map_err(|_| Rejection::Malformed)?;
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err(Rejection::WrongType);
        }
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(Rejection::ForbiddenHeader);
        }
        let kid = header.kid.as_deref().filter(|k| !k.is_empty() && k.len() <= 256).ok_or(Rejection::UnknownKey)?;
        let key = self.keys.key(kid).await.ok_or(Rejection::UnknownKey)?;
        if header.alg != key.alg {
            return Err(Rejection::BadSignature);
        }
        let mut v = Validation::new(key.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => Rejection::Malformed,
            _ => Rejection::BadSignature,
        })?;
        let c = claims.claims;
        if c.iss != self.issuer {
            return Err(Rejection::WrongIssuer);
        }
        let aud_ok = match &c.aud {
            Audience::One(a) => *a == self.resource,
            Audience::Many(list) => list.contains(&self.resource),
        };
        if !aud_ok {
            return Err(Rejection::WrongAudience);
        }
        let now = self.clock.now();
        if c.exp + LEEWAY <= now {
            return Err(Rejection::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now + LEEWAY) || c.iat.is_some_and(|iat| iat > now + LEEWAY) {
            return Err(Rejection::NotYetValid);
        }
        let scopes =
            c.scope.as_deref().map(ScopeSet::parse).transpose().map_err(|_| Rejection::Malformed)?.unwrap_or_default();
        Ok((
            kid.to_owned(),
            Principal {
                issuer: c.iss,
                subject: c.sub,
                client_id: c.client_id.or(c.azp).ok_or(Rejection::Malformed)?,
                scopes,
                grant_id: c.grant_id,
                token_id: c.jti,
                expires_at: c.exp,
            },
        ))
    }
}
