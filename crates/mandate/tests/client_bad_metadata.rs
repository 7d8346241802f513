//! The client refuses bad metadata with a clear error and a non-zero exit, before it registers,
//! opens a browser or sends anyone anywhere. A fake MCP server and authorization server on
//! loopback serve each bad document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use support::Cli;

struct Fake {
    base: String,
    _server: tokio::task::JoinHandle<()>,
}

/// Serves `/mcp` (always 401), the protected resource metadata and the authorization server
/// metadata, each edited by the test.
async fn fake(edit_prm: impl FnOnce(&str, &mut Value), edit_asm: impl FnOnce(&str, &mut Value)) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut prm =
        json!({"resource": format!("{base}/mcp"), "authorization_servers": [base], "scopes_supported": ["read"]});
    let mut asm = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    });
    edit_prm(&base, &mut prm);
    edit_asm(&base, &mut asm);
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
        .route("/.well-known/oauth-protected-resource/mcp", get(move || async move { axum::Json(prm) }))
        .route("/.well-known/oauth-authorization-server", get(move || async move { axum::Json(asm) }))
        .route(
            "/register",
            post(|| async { (StatusCode::CREATED, axum::Json(json!({"client_id": "should-not-get-here"}))) }),
        );
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Fake { base, _server: server }
}

async fn login_fails(f: &Fake) -> String {
    let url = format!("{}/mcp", f.base);
    let out = tokio::task::spawn_blocking(move || {
        Cli::new().run(&["login", &url, "--no-browser", "--allow-loopback-http", "--login-timeout", "2"])
    })
    .await
    .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.stderr.contains("Open this URL"), "nothing was opened: {out:?}");
    out.stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_authorization_endpoint_is_refused_c23() {
    let f = fake(|_, _| {}, |_, a| a["authorization_endpoint"] = json!("javascript:alert(document.cookie)")).await;
    let err = login_fails(&f).await;
    assert!(err.contains("refused the authorization endpoint javascript:"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_authorization_endpoint_is_refused_c23() {
    let f = fake(|_, _| {}, |_, a| a["authorization_endpoint"] = json!("file:///etc/passwd")).await;
    let err = login_fails(&f).await;
    assert!(err.contains("refused the authorization endpoint file:///etc/passwd"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_resource_metadata_for_another_origin_is_refused_c3() {
    let f = fake(|_, p| p["resource"] = json!("https://evil.example.com/mcp"), |_, _| {}).await;
    let err = login_fails(&f).await;
    assert!(err.contains("resource mismatch") && err.contains("evil.example.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_mismatch_is_refused_c5() {
    let f = fake(|_, _| {}, |_, a| a["issuer"] = json!("https://other-issuer.example.com")).await;
    let err = login_fails(&f).await;
    assert!(err.contains("issuer mismatch") && err.contains("other-issuer.example.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_at_a_private_address_is_refused_c22() {
    let f = fake(|_, p| p["authorization_servers"] = json!(["https://10.0.0.5/tenant"]), |_, _| {}).await;
    let err = login_fails(&f).await;
    assert!(err.contains("10.0.0.5"), "{err}");
    assert!(err.contains("private"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_server_without_s256_is_refused_c17() {
    let f = fake(
        |_, _| {},
        |_, a| a.as_object_mut().unwrap().remove("code_challenge_methods_supported").map(|_| ()).unwrap(),
    )
    .await;
    let err = login_fails(&f).await;
    assert!(err.contains("PKCE S256"), "{err}");
}
