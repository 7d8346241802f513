//! RL-09: the authorization server and the resource server on clocks of their own. A token is
//! minted on the issuer's clock and validated on the resource server's, set ahead or behind:
//! within the 60 s leeway it is accepted, past it refused (a token not yet valid, or expired).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use mandate_core::clock::{ManualClock, OsRandom};
use mandate_core::keys::{KeyEncryptionKey, KeyRing, SigningAlg, generate_key};
use mandate_core::tokens::{AccessClaims, mint};
use mandate_guard::{KeySource, LEEWAY, Rejection, Validator, VerificationKey};

const AS_NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://as.test";
const RESOURCE: &str = "https://mcp.test/mcp";

/// The issuer's published keys, as a resource server holds them.
struct Published(Arc<KeyRing>);

#[async_trait]
impl KeySource for Published {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        let k = self.0.verification_key(kid, AS_NOW)?;
        Some(VerificationKey { alg: k.alg.jwt(), key: k.decoding.clone() })
    }
}

fn ring() -> Arc<KeyRing> {
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let key = generate_key(SigningAlg::Es256, &kek, &OsRandom, 0, 0).unwrap();
    Arc::new(KeyRing::load(std::slice::from_ref(&key), &kek, 3600).unwrap())
}

/// A token issued at the issuer's `AS_NOW`, living `ttl` seconds.
fn issued(ring: &KeyRing, ttl: i64) -> String {
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: "person".into(),
        aud: RESOURCE.into(),
        client_id: "agent".into(),
        scope: "notes.read".into(),
        iat: AS_NOW,
        exp: AS_NOW + ttl,
        jti: "j".into(),
        grant_id: "g".into(),
    };
    mint(ring, &claims, AS_NOW).unwrap()
}

/// Validates `token` on a resource server whose clock reads `rs_now`.
async fn at(ring: Arc<KeyRing>, token: &str, rs_now: i64) -> Result<(), Rejection> {
    let v = Validator::new(ISSUER, RESOURCE, Arc::new(Published(ring)), Arc::new(ManualClock::new(rs_now)));
    v.validate(token).await.map(|_| ())
}

#[tokio::test]
async fn a_resource_server_behind_or_ahead_of_the_issuer_within_the_leeway_accepts_rl_09() {
    assert_eq!(LEEWAY, 60);
    let r = ring();
    let token = issued(&r, 300);
    // Behind: the token's iat is in the resource server's future.
    for skew in [-1, -30, -59] {
        assert!(at(r.clone(), &token, AS_NOW + skew).await.is_ok(), "{skew} s behind");
    }
    // Ahead, near the end of the token's life: still inside exp + leeway.
    for skew in [1, 200, 300 + 59] {
        assert!(at(r.clone(), &token, AS_NOW + skew).await.is_ok(), "{skew} s ahead");
    }
}

#[tokio::test]
async fn past_the_leeway_either_way_the_token_is_refused_rl_09() {
    let r = ring();
    let token = issued(&r, 300);
    // Far behind: issued "in the future".
    let e = at(r.clone(), &token, AS_NOW - 61).await.err();
    assert!(matches!(e, Some(Rejection::NotYetValid)), "{e:?}");
    // Ahead past exp + leeway: expired.
    let e = at(r.clone(), &token, AS_NOW + 300 + 60).await.err();
    assert!(matches!(e, Some(Rejection::Expired)), "{e:?}");
}
