//! The JWKS key source against a local JWKS server that counts fetches (JW-14, RL-11).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use mandate_core::clock::OsRandom;
use mandate_core::keys::{KeyEncryptionKey, KeyRing, SigningAlg, generate_key};
use mandate_guard::{JwksKeySource, KeySource};

async fn jwks_server() -> (String, Arc<AtomicUsize>, String) {
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let key = generate_key(SigningAlg::EdDsa, &kek, &OsRandom, 0, 0).unwrap();
    let ring = KeyRing::load(std::slice::from_ref(&key), &kek, 3600).unwrap();
    let body = serde_json::to_value(ring.jwks(0)).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits, key.kid)
}

#[tokio::test]
async fn unknown_kids_cannot_cause_a_fetch_storm() {
    let (url, hits, kid) = jwks_server().await;
    let source = JwksKeySource::new(&url).unwrap();
    let key = source.key(&kid).await.expect("the published key");
    assert_eq!(key.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    for i in 0..50 {
        assert!(source.key(&format!("unknown-{i}")).await.is_none());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "inside the cooldown no refetch happens");
    assert!(source.key(&kid).await.is_some(), "known keys are served from the cache");
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_the_cooldown_has_passed() {
    let (url, hits, _) = jwks_server().await;
    let source = JwksKeySource::new(&url).unwrap().with_cooldown(Duration::ZERO);
    assert!(source.key("rotated-in").await.is_none());
    assert!(source.key("rotated-in").await.is_none());
    assert_eq!(hits.load(Ordering::SeqCst), 2, "each unknown kid may trigger a refetch after the cooldown");
}

/// A JWKS endpoint that answers its first fetch at once and holds every later one until
/// `release` is notified; `entered` is notified when a held fetch arrives.
async fn stalling_jwks_server(
    body: serde_json::Value,
) -> (String, Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (h, e, r) = (hits.clone(), entered.clone(), release.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            let (body, e, r) = (body.clone(), e.clone(), r.clone());
            async move {
                if n > 0 {
                    e.notify_one();
                    r.notified().await;
                }
                axum::Json(body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, entered, release, hits)
}

/// RL-11: while an unknown `kid` has a refetch stalled on a slow JWKS endpoint, a token signed
/// with a known key still validates (the known keys are not behind the refetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_key_validates_while_an_unknown_kid_refetch_is_stalled_rl_11() {
    use mandate_core::clock::ManualClock;
    use mandate_core::tokens::{AccessClaims, mint};
    use mandate_guard::Validator;

    let now = 1_800_000_000;
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let key = generate_key(SigningAlg::EdDsa, &kek, &OsRandom, 0, 0).unwrap();
    let ring = KeyRing::load(std::slice::from_ref(&key), &kek, 3600).unwrap();
    let (url, entered, release, hits) = stalling_jwks_server(serde_json::to_value(ring.jwks(now)).unwrap()).await;
    let source = Arc::new(JwksKeySource::new(&url).unwrap().with_cooldown(Duration::ZERO));
    let validator =
        Validator::new("https://as.test", "https://rs.test/mcp", source.clone(), Arc::new(ManualClock::new(now)));
    let token = |jti: &str| {
        let claims = AccessClaims {
            iss: "https://as.test".into(),
            sub: "alice".into(),
            aud: "https://rs.test/mcp".into(),
            client_id: "agent".into(),
            scope: "notes.read".into(),
            iat: now,
            exp: now + 600,
            jti: jti.into(),
            grant_id: String::new(),
        };
        mint(&ring, &claims, now).unwrap()
    };
    let bound = Duration::from_secs(4); // a failure bound only: nothing here waits on time
    assert_eq!(validator.validate(&token("t1")).await.unwrap().subject, "alice", "first fetch learns the key");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let unknown = tokio::spawn({
        let source = source.clone();
        async move { source.key("rotated-in").await.is_none() }
    });
    tokio::time::timeout(bound, entered.notified()).await.expect("the unknown kid's refetch reached the endpoint");

    // The refetch is stalled on the endpoint: a new token with the known key validates anyway.
    let validated = tokio::time::timeout(bound, validator.validate(&token("t2"))).await;
    assert_eq!(validated.expect("not held up by the stalled refetch").unwrap().subject, "alice");
    assert!(!unknown.is_finished(), "the refetch is still stalled");

    release.notify_one();
    assert!(tokio::time::timeout(bound, unknown).await.unwrap().unwrap(), "still unknown after the refetch");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one refetch");
}
