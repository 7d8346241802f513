//! C22: a metadata URL whose host *resolves* to a private address is refused on the address the
//! client would dial, not on the name; the error says so and nothing is fetched from it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use mandate_client::{ClientError, ConnectOptions, Connection, CredentialVault, LoginMode, NetPolicy};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;

/// Resolves `as.internal.test` to a private address and everything else to loopback.
struct Rebinding;

impl Resolve for Rebinding {
    fn resolve(&self, name: Name) -> Resolving {
        let ip = if name.as_str() == "as.internal.test" { "10.0.0.5" } else { "127.0.0.1" };
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        Box::pin(async move { Ok(Box::new(vec![addr].into_iter()) as Addrs) })
    }
}

#[tokio::test]
async fn authorization_server_name_resolving_to_a_private_address_is_refused_c22() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let prm = json!({"resource": format!("{base}/mcp"), "authorization_servers": ["https://as.internal.test"]});
    let challenge = format!(r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#);
    let app = Router::new()
        .route(
            "/mcp",
            post(move || {
                let c = challenge.clone();
                async move {
                    let mut h = HeaderMap::new();
                    h.insert("www-authenticate", c.parse().unwrap());
                    (StatusCode::UNAUTHORIZED, h)
                }
            }),
        )
        .route("/.well-known/oauth-protected-resource/mcp", get(move || async move { axum::Json(prm) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut opts = ConnectOptions::new(format!("{base}/mcp"));
    opts.policy = NetPolicy { allow_loopback_http: true };
    opts.login = LoginMode::Headless;
    opts.resolver = Some(Arc::new(Rebinding));
    let conn = Connection::new(opts, Arc::new(CredentialVault::in_memory())).unwrap();
    let err = conn.login().await.unwrap_err();
    match err {
        ClientError::PrivateAddress { url } => assert!(url.contains("as.internal.test"), "{url}"),
        other => panic!("expected a private-address refusal, got {other}"),
    }
}
