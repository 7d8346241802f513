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
