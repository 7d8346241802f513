//! Introspection mode: an unreachable authorization server is a 503, not a bad token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::routing::post;
use mandate_guard::{Guard, GuardConfig, TokenCheck};

#[tokio::test]
async fn an_unreachable_introspection_endpoint_is_503_not_401() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = GuardConfig::new(&format!("{base}/mcp"), "http://127.0.0.1:1");
    let check = TokenCheck::introspection(&format!("http://{closed}/introspect"), "rs", "secret").unwrap();
    let guard = Arc::new(Guard::new(config, check));
    let app = guard.protect(axum::Router::new().route("/mcp", post(|| async { "tool" })));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = reqwest::Client::new().post(format!("{base}/mcp")).bearer_auth("opaque-token").send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let r = reqwest::Client::new().post(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED, "no token: the usual challenge");
}

#[tokio::test]
async fn without_a_default_set_the_401_challenge_names_the_published_scopes_rs5() {
    // A guard configured the way earlier releases were (scopes_supported only) keeps a scope in
    // its challenge, so SDK clients still know what to ask for.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = GuardConfig::new(&format!("{base}/mcp"), "http://127.0.0.1:1");
    config.scopes_supported = vec!["notes.read".into(), "offline_access".into(), "notes.write".into()];
    let check = TokenCheck::introspection("http://127.0.0.1:1/introspect", "rs", "secret").unwrap();
    let guard = Arc::new(Guard::new(config, check));
    let app = guard.protect(axum::Router::new().route("/mcp", post(|| async { "tool" })));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = reqwest::Client::new().post(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains(r#"scope="notes.read notes.write""#), "{challenge}");
}
