//! The resource server's JWKS reading (`mandate_guard::keys_from_jwks`, after serde reads the
//! document): any document, never a panic; a key comes out only with a `kid` the document gave it,
//! an algorithm the guard verifies with (ES256, ES384, EdDSA, RS256, PS256), and a declared `alg`
//! that fits its key type.
#![no_main]

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(set) = serde_json::from_slice::<JwkSet>(data) else { return };
    let keys = mandate_guard::keys_from_jwks(&set);
    for (kid, key) in &keys {
        let jwk = set
            .keys
            .iter()
            .rev()
            .find(|j| j.common.key_id.as_deref() == Some(kid.as_str()))
            .unwrap_or_else(|| panic!("a kid the document does not hold: {kid:?}"));
        assert!(
            matches!(key.alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA | Algorithm::RS256 | Algorithm::PS256),
            "{:?}",
            key.alg
        );
        let fits = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(_) => matches!(key.alg, Algorithm::ES256 | Algorithm::ES384),
            AlgorithmParameters::OctetKeyPair(_) => key.alg == Algorithm::EdDSA,
            AlgorithmParameters::RSA(_) => matches!(key.alg, Algorithm::RS256 | Algorithm::PS256),
            _ => false,
        };
        assert!(fits || set.keys.iter().filter(|j| j.common.key_id.as_deref() == Some(kid.as_str())).count() > 1, "{:?} for {kid:?}", key.alg);
    }
    assert!(keys.len() <= set.keys.len());
});
