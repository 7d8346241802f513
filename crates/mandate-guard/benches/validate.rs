//! Token validation cost at the resource server: a fresh token (full ES256/EdDSA verification)
//! and a repeated one (served by the verified-token cache).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mandate_core::clock::{OsRandom, SystemClock};
use mandate_core::keys::{KeyEncryptionKey, KeyRing, SigningAlg, generate_key};
use mandate_core::tokens::{AccessClaims, mint};
use mandate_guard::{KeySource, Validator, VerificationKey, keys_from_jwks};

struct Static(HashMap<String, VerificationKey>);

#[async_trait]
impl KeySource for Static {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        self.0.get(kid).cloned()
    }
}

fn setup(alg: SigningAlg) -> (Validator, KeyRing) {
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let ring = KeyRing::load(&[generate_key(alg, &kek, &OsRandom, 0, 0).unwrap()], &kek, 3600).unwrap();
    let keys = Arc::new(Static(keys_from_jwks(&ring.jwks(0))));
    (Validator::new("https://as.test", "https://mcp.test/mcp", keys, Arc::new(SystemClock)), ring)
}

fn token(ring: &KeyRing, jti: u64) -> String {
    let now = mandate_core::clock::Clock::now(&SystemClock);
    let claims = AccessClaims {
        iss: "https://as.test".into(),
        sub: "user-1".into(),
        aud: "https://mcp.test/mcp".into(),
        client_id: "client-1".into(),
        scope: "customers.read customers.write".into(),
        iat: now,
        exp: now + 3600,
        jti: format!("jti-{jti}"),
        grant_id: "grant-1".into(),
    };
    mint(ring, &claims, now).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (name, alg) in [("ES256", SigningAlg::Es256), ("EdDSA", SigningAlg::EdDsa)] {
        let (validator, ring) = setup(alg);
        // Fresh tokens: each iteration verifies a token never seen before (minted outside the
        // measurement).
        let mut n = 0u64;
        c.bench_function(&format!("validate {name}, fresh token"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    token(&ring, n)
                },
                |t| rt.block_on(validator.validate(&t)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let repeated = token(&ring, 999_999);
        rt.block_on(validator.validate(&repeated)).unwrap();
        c.bench_function(&format!("validate {name}, repeated token (cache)"), |b| {
            b.iter(|| rt.block_on(validator.validate(&repeated)).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
