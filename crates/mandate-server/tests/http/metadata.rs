//! The public documents: snapshots and headers (AS2–AS4, MD-01, MD-02, MD-04).

use reqwest::StatusCode;
use serde_json::Value;

use mandate_testkit::*;

async fn document(s: &TestServer, path: &str) -> Value {
    let r = s.http.get(s.url(path)).header("origin", "https://inspector.test").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "*", "CORS on public documents");
    let text = r.text().await.unwrap().replace(&s.base, "http://AS");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn oauth_authorization_server_metadata_snapshot() {
    let s = TestServer::start().await;
    insta::assert_json_snapshot!(
        "oauth-authorization-server",
        document(&s, "/.well-known/oauth-authorization-server").await
    );
}

#[tokio::test]
async fn openid_configuration_snapshot_is_the_same_document() {
    let s = TestServer::start().await;
    let oidc = document(&s, "/.well-known/openid-configuration").await;
    insta::assert_json_snapshot!("openid-configuration", oidc);
    assert_eq!(oidc, document(&s, "/.well-known/oauth-authorization-server").await);
}

/// Every scope of the resource in `scopes_supported`; the 401 challenge keeps the default set;
/// no `offline_access` in either (RS1, RS4, RS7).
#[tokio::test]
async fn protected_resource_metadata_snapshot_rs1_rs4_rs7() {
    let s = TestServer::start().await;
    let prm = document(&s, "/.well-known/oauth-protected-resource/mcp").await;
    insta::assert_json_snapshot!("oauth-protected-resource", prm);
    assert_eq!(prm, document(&s, "/.well-known/oauth-protected-resource").await, "the root form is the same");
    let all = s.auth.resources.all_scopes();
    let listed: Vec<&str> = prm["scopes_supported"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(listed, all.iter().collect::<Vec<_>>(), "every scope of the resource");
    assert!(!listed.contains(&"offline_access"));
    let r = s.http.post(s.url("/mcp")).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.ends_with(r#"scope="customers.read invoices.read todos.read""#), "the default set: {challenge}");
}

#[tokio::test]
async fn issuer_is_byte_identical_to_the_public_url_md_02() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issuer"], s.base);
    // MD-05: a spoofed Host header changes nothing.
    let r =
        s.http.get(s.url("/.well-known/oauth-authorization-server")).header("host", "evil.test").send().await.unwrap();
    let v2: Value = r.json().await.unwrap();
    assert_eq!(v2["issuer"], s.base);
}

#[tokio::test]
async fn jwks_publishes_only_public_keys_and_follows_rotation_md_04() {
    let s = TestServer::start().await;
    let jwks: Value = s.http.get(s.url("/jwks.json")).send().await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none());
    let active = keys[0]["kid"].clone();

    // Rotate: the next key is published before it signs.
    let next = s.auth.rotate_key().await.unwrap();
    s.clock.advance(6);
    let jwks: Value = s.http.get(s.url("/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let client = s.register_public("https://agent.test/cb").await;
    let mut b = s.browser();
    let (code, verifier) =
        authorize_code(&s, &mut b, &client, "https://agent.test/cb", &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &client, "https://agent.test/cb", &code, &verifier).await;
    let kid = jsonwebtoken::decode_header(tok["access_token"].as_str().unwrap()).unwrap().kid.unwrap();
    assert_eq!(Value::String(kid), active, "the old key still signs during the activation delay");

    // After activation the new key signs; the old one stays published for its tokens.
    s.clock.advance(600);
    let (code, verifier) =
        authorize_code(&s, &mut b, &client, "https://agent.test/cb", &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &client, "https://agent.test/cb", &code, &verifier).await;
    let kid = jsonwebtoken::decode_header(tok["access_token"].as_str().unwrap()).unwrap().kid.unwrap();
    assert_eq!(kid, next.kid);
    let jwks: Value = s.http.get(s.url("/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    // Once its last token has expired the old key is withdrawn.
    s.clock.advance(3600 + 301);
    let jwks: Value = s.http.get(s.url("/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn authorize_has_no_cors_az_16() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/authorize")).header("origin", "https://evil.test").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn machine_endpoints_allow_browser_clients_without_credentials() {
    let s = TestServer::start().await;
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/token"))
        .header("origin", "https://inspector.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    // Discovery from a browser SDK carries MCP-Protocol-Version.
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/.well-known/oauth-authorization-server"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("mcp-protocol-version"));
    let r = s.http.get(s.url("/account/apps")).header("origin", "https://evil.test").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "no CORS on browser pages");
}
