//! RFC 9068 JWT access tokens: minting, and verification for introspection.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Header, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::keys::KeyRing;

/// The `typ` header of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of a mandate access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    /// The grant (and refresh family) the token belongs to; lets a resource server sharing
    /// mandate's database refuse tokens of a revoked grant at once.
    pub grant_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no signing key is active")]
    NoSigningKey,
    #[error("signing failed")]
    Sign,
    #[error("the token is not a valid access token")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// Signs `claims` with the key active at `now`.
pub fn mint(ring: &KeyRing, claims: &AccessClaims, now: UnixTime) -> Result<String, TokenError> {
    let key = ring.signing_key(now).ok_or(TokenError::NoSigningKey)?;
    let mut header = Header::new(key.alg.jwt());
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    // The compact JWS (RFC 7515 §7.1), signed with the key parsed when the ring was loaded.
    let part = |v: Vec<u8>| URL_SAFE_NO_PAD.encode(v);
    let header = serde_json::to_vec(&header).map_err(|_| TokenError::Sign)?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Sign)?;
    let signing_input = format!("{}.{}", part(header), part(payload));
    let signature = key.signer.sign(signing_input.as_bytes()).map_err(|_| TokenError::Sign)?;
    Ok(format!("{signing_input}.{}", part(signature)))
}

/// Verifies an access token this server issued: compact JWS only, `typ` `at+jwt`, a published
/// `kid` used with its own algorithm, no key-carrying or critical headers, a valid signature,
/// `iss` equal to `issuer`, and not expired at `now` (no leeway: it is our own clock).
pub fn verify(ring: &KeyRing, token: &str, issuer: &str, now: UnixTime) -> Result<AccessClaims, TokenError> {
    if token.len() > 8192
        || token.split('.').count() != 3
        || !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(TokenError::Invalid);
    }
    let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
    let typ_ok = matches!(header.typ.as_deref(), Some("at+jwt" | "application/at+jwt"));
    if !typ_ok
        || header.jku.is_some()
        || header.jwk.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
        || header.crit.is_some()
    {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.as_deref().ok_or(TokenError::Invalid)?;
    let key = ring.verification_key(kid, now).ok_or(TokenError::Invalid)?;
    if header.alg != key.alg.jwt() {
        return Err(TokenError::Invalid);
    }
    let mut validation = Validation::new(key.alg.jwt());
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data = decode::<AccessClaims>(token, &key.decoding, &validation).map_err(|_| TokenError::Invalid)?;
    if data.claims.iss != issuer {
        return Err(TokenError::Invalid);
    }
    if data.claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;
    use crate::keys::{KeyEncryptionKey, SigningAlg, generate_key};

    fn ring(alg: SigningAlg) -> KeyRing {
        let kek = KeyEncryptionKey::generate(&OsRandom);
        let k = generate_key(alg, &kek, &OsRandom, 0, 0).unwrap();
        KeyRing::load(&[k], &kek, 3600).unwrap()
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://as.test".into(),
            sub: "u1".into(),
            aud: "https://mcp.test/mcp".into(),
            client_id: "c1".into(),
            scope: "a b".into(),
            iat: 1000,
            exp: 4600,
            jti: "j1".into(),
            grant_id: "g1".into(),
        }
    }

    #[test]
    fn minted_tokens_verify_jw_01_jw_02() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
            let r = ring(alg);
            let t = mint(&r, &claims(), 1000).unwrap();
            let h = decode_header(&t).unwrap();
            assert_eq!(h.typ.as_deref(), Some("at+jwt"));
            assert_eq!(h.alg, alg.jwt());
            assert_eq!(verify(&r, &t, "https://as.test", 1001).unwrap(), claims());
            assert!(matches!(verify(&r, &t, "https://as.test/", 1001), Err(TokenError::Invalid)));
            assert!(matches!(verify(&r, &t, "https://as.test", 4600), Err(TokenError::Expired)));
        }
    }

    #[test]
    fn tampered_and_unsigned_tokens_are_refused_jw_10_jw_15() {
        let r = ring(SigningAlg::Es256);
        let t = mint(&r, &claims(), 1000).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        // alg none, no signature
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        assert!(verify(&r, &format!("{none}.{}.", parts[1]), "https://as.test", 1001).is_err());
        // payload swapped
        let mut c = claims();
        c.sub = "attacker".into();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert!(verify(&r, &format!("{}.{forged}.{}", parts[0], parts[2]), "https://as.test", 1001).is_err());
        // another key's signature
        let other = ring(SigningAlg::Es256);
        let t2 = mint(&other, &claims(), 1000).unwrap();
        assert!(verify(&r, &t2, "https://as.test", 1001).is_err());
    }
}
