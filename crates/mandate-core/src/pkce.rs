//! PKCE (RFC 7636) with S256 only (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::OAuthError;

/// `43*128unreserved` (RFC 7636 §4.1 / §4.2).
fn is_unreserved_43_128(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks the challenge of an authorization request; returns it when acceptable.
pub fn validate_challenge<'a>(challenge: Option<&'a str>, method: Option<&str>) -> Result<&'a str, OAuthError> {
    let challenge =
        challenge.ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE with S256)"))?;
    match method {
        Some("S256") => {}
        None => {
            return Err(OAuthError::invalid_request("code_challenge_method is required and must be S256"));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request("code_challenge_method must be S256"));
        }
    }
    // An S256 challenge is base64url(SHA-256) = 43 characters; accept the RFC's full range.
    if !is_unreserved_43_128(challenge) {
        return Err(OAuthError::invalid_request("code_challenge is malformed"));
    }
    Ok(challenge)
}

/// `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// True when `verifier` is well formed and hashes to `challenge` (constant-time compare).
pub fn verify(verifier: &str, challenge: &str) -> bool {
    is_unreserved_43_128(verifier) && s256(verifier).as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b_vector() {
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(s256(v), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(verify(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }

    #[test]
    fn methods_other_than_s256_are_refused_pk_03_pk_04_pk_05() {
        let ch = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(validate_challenge(Some(ch), Some("S256")).is_ok());
        for m in [Some("plain"), None, Some("s256"), Some("S512")] {
            assert!(validate_challenge(Some(ch), m).is_err(), "{m:?}");
        }
        assert!(validate_challenge(None, Some("S256")).is_err());
    }

    #[test]
    fn malformed_challenges_and_verifiers_pk_06_pk_09_pk_11() {
        for bad in ["a".repeat(42), "a".repeat(129), format!("{}+", "a".repeat(43))] {
            assert!(validate_challenge(Some(&bad), Some("S256")).is_err());
        }
        // A one-character verifier is refused even though it hashes correctly.
        assert!(!verify("a", &s256("a")));
        // The challenge itself is not a verifier.
        let ch = s256(&"v".repeat(43));
        assert!(!verify(&ch, &ch));
    }
}
