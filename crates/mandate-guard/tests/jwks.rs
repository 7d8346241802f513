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
