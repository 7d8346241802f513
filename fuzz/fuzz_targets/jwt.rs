//! Access-token validation in the guard (`Validator::validate`: header and claims decoding, typ,
//! kid, alg, forbidden headers, signature, iss, aud, exp/nbf/iat, scope) against one fixed
//! Ed25519 key. The first byte picks the shape of the rest:
//! - `0`: the token as given (random bytes, or a real token from the corpus);
//! - `1`: header JSON, a line break, claims JSON, signed with the fixed key;
//! - `2`: claims JSON under a correct header, signed with the fixed key.
//! Whatever is accepted must name the issuer and resource, be unexpired and carry a valid header.
#![no_main]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use mandate_core::clock::ManualClock;
use mandate_fuzz::{ISSUER, JWT_KID, JWT_PRIVATE_PEM, JWT_PUBLIC_PEM, NOW, RESOURCE, block_on, split_line};
use mandate_guard::{KeySource, LEEWAY, Validator, VerificationKey};

struct FixedKey(VerificationKey);

#[async_trait]
impl KeySource for FixedKey {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        (kid == JWT_KID).then(|| self.0.clone())
    }
}

struct Fixture {
    validator: Validator,
    signing: EncodingKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let decoding = DecodingKey::from_ed_pem(JWT_PUBLIC_PEM.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let signing = EncodingKey::from_ed_pem(JWT_PRIVATE_PEM.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let keys = Arc::new(FixedKey(VerificationKey { alg: Algorithm::EdDSA, key: decoding }));
        let validator = Validator::new(ISSUER, RESOURCE, keys, Arc::new(ManualClock::new(NOW)));
        Fixture { validator, signing }
    })
}

fn signed(f: &Fixture, header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &f.signing, Algorithm::EdDSA)
        .unwrap_or_else(|e| panic!("signing: {e}"));
    format!("{input}.{sig}")
}

/// What the checks below read of the header, parsed as the validator parses it: these members by
/// name (the validator names each of them too, so a duplicate is refused by both), every other
/// member skipped unread. serde skips an unread member without checking its UTF-8 or whether its
/// number fits an f64 (`1E800000000`): found by this target, harmless (the token is the key
/// holder's own), so the checks parse the same way, and the claims separately: a header name in
/// the claims (a `jku` claim with invalid UTF-8, found by the long run) is a member neither reads.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Header {
    alg: serde_json::Value,
    kid: serde_json::Value,
    typ: serde_json::Value,
    jku: serde_json::Value,
    jwk: serde_json::Value,
    x5u: serde_json::Value,
    x5c: serde_json::Value,
    crit: serde_json::Value,
}

/// What the checks read of the claims, parsed the same way.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Claims {
    iss: serde_json::Value,
    aud: serde_json::Value,
    exp: serde_json::Value,
    sub: serde_json::Value,
}

fn part<T: serde::de::DeserializeOwned>(token: &str, i: usize) -> T {
    let raw = token.split('.').nth(i).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(raw).unwrap_or_else(|_| panic!("accepted token with a non-base64url part"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("accepted token with a part that does not parse: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = fixture();
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let (header, claims) = split_line(rest);
            signed(f, header, claims)
        }
        _ => signed(f, br#"{"alg":"EdDSA","typ":"at+jwt","kid":"fuzz-key-1"}"#, rest),
    };
    let Ok(p) = block_on(f.validator.validate(&token)) else { return };
    // Accepted: check it against the token itself.
    let header: Header = part(&token, 0);
    let claims: Claims = part(&token, 1);
    assert_eq!(header.alg, "EdDSA");
    assert_eq!(header.kid, JWT_KID);
    let typ = header.typ.as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(typ == "at+jwt" || typ == "application/at+jwt", "{typ}");
    for (name, forbidden) in
        [("jku", &header.jku), ("jwk", &header.jwk), ("x5u", &header.x5u), ("x5c", &header.x5c), ("crit", &header.crit)]
    {
        assert!(forbidden.is_null(), "{name}");
    }
    assert_eq!(p.issuer, ISSUER);
    assert_eq!(claims.iss, ISSUER);
    let aud_ok = claims.aud == RESOURCE || claims.aud.as_array().is_some_and(|a| a.iter().any(|v| v == RESOURCE));
    assert!(aud_ok, "{}", claims.aud);
    assert!(p.expires_at + LEEWAY > NOW);
    assert_eq!(claims.exp.as_i64(), Some(p.expires_at));
    assert_eq!(claims.sub.as_str(), Some(p.subject.as_str()));
});
