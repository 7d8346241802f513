//! Each validation rule of the resource-server layer, with its exact status and challenge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mandate_core::clock::OsRandom;
use mandate_core::keys::{KeyEncryptionKey, KeyRing, SigningAlg, generate_key};
use mandate_core::tokens::{AccessClaims, mint};
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::json;

/// A valid token for alice with customers.read, minted with the server's own signing key.
pub(crate) async fn claims(s: &TestServer) -> AccessClaims {
    let alice = s.auth.store().user_by_name("alice").await.unwrap().unwrap();
    let now = s.auth.now();
    AccessClaims {
        iss: s.base.clone(),
        sub: alice.id,
        aud: s.url("/mcp"),
        client_id: "test-client".into(),
        scope: "customers.read".into(),
        iat: now,
        exp: now + 3600,
        jti: "jti-1".into(),
        grant_id: String::new(),
    }
}

pub(crate) async fn minted(s: &TestServer, c: &AccessClaims) -> String {
    let now = s.auth.now();
    mint(&s.auth.keys().ring(now).await.unwrap(), c, now).unwrap()
}

/// Opens an MCP session with `token` and lists the tools; returns (status, WWW-Authenticate)
/// of the first refused step, or of tools/list.
pub(crate) async fn call(s: &TestServer, token: &str) -> (StatusCode, String) {
    let mut c = McpClient::new(&s.url("/mcp"), Some(token));
    let r = c.initialize().await;
    if !r.status.is_success() {
        return (r.status, r.www_authenticate());
    }
    let r = c.request("tools/list", json!({})).await;
    (r.status, r.www_authenticate())
}

pub(crate) async fn refused(s: &TestServer, token: &str, why: &str) {
    let (status, challenge) = call(s, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}");
    assert!(challenge.starts_with(r#"Bearer error="invalid_token""#), "{why}: {challenge}");
    assert!(challenge.contains("resource_metadata="), "{why}: {challenge}");
    assert!(challenge.contains(why), "{why}: {challenge}");
}

/// A token whose grant does not exist counts as revoked, so the positive cases use a real grant.
pub(crate) async fn with_real_grant(s: &TestServer, mut c: AccessClaims) -> AccessClaims {
    let client = s.register_public("https://agent.test/cb").await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(s, &mut b, &client, "https://agent.test/cb", &["customers.read"]).await;
    let (_, tok) = redeem(s, &client, "https://agent.test/cb", &code, &verifier).await;
    let real =
        jsonwebtoken::dangerous::insecure_decode::<AccessClaims>(tok["access_token"].as_str().unwrap()).unwrap().claims;
    c.grant_id = real.grant_id;
    c.client_id = real.client_id;
    c
}

#[tokio::test]
async fn a_valid_token_is_accepted_jw_27() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let (status, _) = call(&s, &minted(&s, &c).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn expiry_and_not_before_with_leeway_jw_16_jw_17() {
    let s = TestServer::start().await;
    let base = with_real_grant(&s, claims(&s).await).await;
    let now = s.auth.now();
    let ok = AccessClaims { exp: now - 30, ..base.clone() };
    assert_eq!(call(&s, &minted(&s, &ok).await).await.0, StatusCode::OK, "within leeway");
    let expired = AccessClaims { exp: now - 61, ..base.clone() };
    refused(&s, &minted(&s, &expired).await, "expired").await;
    let future = AccessClaims { iat: now + 120, ..base.clone() };
    refused(&s, &minted(&s, &future).await, "not valid yet").await;
    let soon = AccessClaims { iat: now + 8, ..base };
    assert_eq!(call(&s, &minted(&s, &soon).await).await.0, StatusCode::OK);
    // A real token expires with the injected clock.
    s.clock.advance(3600 + 61);
    refused(&s, &minted(&s, &ok).await, "expired").await;
}

#[tokio::test]
async fn audience_must_be_this_resource_jw_18_rs8() {
    let s = TestServer::start().await;
    let base = claims(&s).await;
    for aud in ["https://other.test/mcp".to_owned(), format!("{}/", s.url("/mcp")), s.url("/MCP"), String::new()] {
        let c = AccessClaims { aud, ..base.clone() };
        refused(&s, &minted(&s, &c).await, "another resource").await;
    }
}

#[tokio::test]
async fn issuer_must_match_exactly_jw_19() {
    let s = TestServer::start().await;
    let base = claims(&s).await;
    for iss in [format!("{}/", s.base), s.base.replace("http://", "https://"), "https://evil.test".into()] {
        let c = AccessClaims { iss, ..base.clone() };
        refused(&s, &minted(&s, &c).await, "another authorization server").await;
    }
}

#[tokio::test]
async fn alg_none_and_hs256_with_the_public_key_are_refused_jw_10_jw_11() {
    let s = TestServer::start().await;
    let c = claims(&s).await;
    let good = minted(&s, &c).await;
    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let payload = good.split('.').nth(1).unwrap().to_owned();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#));
        refused(&s, &format!("{h}.{payload}."), "malformed").await;
    }
    // HMAC keyed with the server's public key (the JWKS bytes a verifier might confuse).
    let jwks = s.http.get(s.url("/jwks.json")).send().await.unwrap().bytes().await.unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&jwks)).unwrap();
    refused(&s, &forged, "signature or algorithm").await;
}

#[tokio::test]
async fn unknown_kid_wrong_type_and_key_headers_are_refused_jw_13_jw_14_jw_20() {
    let s = TestServer::start().await;
    let c = claims(&s).await;
    // Signed by a key the issuer never published.
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let stranger =
        KeyRing::load(&[generate_key(SigningAlg::Es256, &kek, &OsRandom, 0, 0).unwrap()], &kek, 3600).unwrap();
    refused(&s, &mint(&stranger, &c, s.auth.now()).unwrap(), "unknown key").await;
    // typ JWT instead of at+jwt, and an embedded key, both with the real key.
    let now = s.auth.now();
    let ring = s.auth.keys().ring(now).await.unwrap();
    let key = ring.signing_key(now).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    refused(&s, &jsonwebtoken::encode(&header, &c, &key.encoding).unwrap(), "typ").await;
    header.typ = Some("at+jwt".into());
    header.jwk = Some(key.public_jwk.clone());
    refused(&s, &jsonwebtoken::encode(&header, &c, &key.encoding).unwrap(), "header is not allowed").await;
    // Garbage and injection attempts in the token itself.
    for garbage in ["abc", "a.b.c", "../../etc/passwd", &"x".repeat(9000)] {
        refused(&s, garbage, "malformed").await;
    }
}

#[tokio::test]
async fn missing_and_non_bearer_credentials_rs9() {
    let s = TestServer::start().await;
    let r = s.http.post(s.url("/mcp?access_token=abc")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(!c.contains("error="), "no credentials: a bare challenge (RFC 6750 §3.1): {c}");
    let r = s.http.post(s.url("/mcp")).header("authorization", "Basic YTpi").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
}

#[tokio::test]
async fn bad_origin_and_host_are_refused_before_auth_h2() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    let r = s
        .http
        .post(s.url("/mcp"))
        .bearer_auth(&token)
        .header("origin", "https://evil.test")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("www-authenticate").is_none());
    let r = s.http.post(s.url("/mcp")).header("host", "evil.test").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "checked before the missing token");
    let r = s
        .http
        .post(s.url("/mcp"))
        .bearer_auth(&token)
        .header("origin", s.base.clone())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::FORBIDDEN, "our own origin passes");
}

#[tokio::test]
async fn a_revoked_grant_is_refused_at_once_even_before_expiry() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    assert_eq!(call(&s, &token).await.0, StatusCode::OK);
    assert!(s.auth.revoke_grant_by_operator(&c.grant_id).await.unwrap());
    refused(&s, &token, "revoked").await;
}

/// An initialized session for alice holding only customers.read.
async fn session_with_customers_read(s: &TestServer) -> McpClient {
    let c = with_real_grant(s, claims(s).await).await;
    let mut client = McpClient::new(&s.url("/mcp"), Some(&minted(s, &c).await));
    assert_eq!(client.initialize().await.status, StatusCode::OK);
    client
}

#[tokio::test]
async fn escaped_method_names_do_not_bypass_tool_scopes() {
    let s = TestServer::start().await;
    let mut c = session_with_customers_read(&s).await;
    for method in [r#"tools\/call"#, r#"\u0074ools/call"#, "tools/call"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{{"name":"send_invoice","arguments":{{"invoice_id":"x"}}}}}}"#
        );
        let r = c.post_raw(body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method}");
        assert_eq!(r.challenge_scopes(), ["customers.read", "invoices.send"], "RS11: held ∪ needed");
    }
    let body = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"send_\u0069nvoice","arguments":{}}}"#;
    assert_eq!(c.post_raw(body.into()).await.status, StatusCode::FORBIDDEN, "escaped tool name");
    let r = c.call("no_such_tool", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "a tool outside the policy is refused as an unknown tool");
    assert_eq!(r.message["error"]["code"], -32602);
    assert_eq!(c.call("list_customers", json!({})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_session_ids_are_not_found_rs14() {
    let s = TestServer::start().await;
    let mut c = session_with_customers_read(&s).await;
    c.session = Some("made-up-session".into());
    assert_eq!(c.call("list_customers", json!({})).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn browsers_of_allowed_origins_get_cors_and_can_read_the_challenge() {
    let s = TestServer::start().await;
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/mcp"))
        .header("origin", s.base.clone())
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, mcp-session-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["access-control-allow-origin"], s.base.as_str());
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("mcp-session-id"));
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/mcp"))
        .header("origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s.http.post(s.url("/mcp")).header("origin", s.base.clone()).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["access-control-expose-headers"].to_str().unwrap().contains("www-authenticate"));
    let prm = s
        .http
        .get(s.url("/.well-known/oauth-protected-resource/mcp"))
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(prm.headers()["access-control-allow-origin"], "*", "CORS on the metadata");
    // A browser SDK sends MCP-Protocol-Version with discovery: the preflight must allow it, at both
    // well-known locations (the MCP Inspector v1 in Direct mode met a 405 here).
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let r = s
            .http
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "mcp-protocol-version")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("mcp-protocol-version"));
        assert!(r.headers().get("access-control-allow-credentials").is_none());
    }
}

#[tokio::test]
async fn introspection_mode_accepts_live_tokens_and_refuses_revoked_ones() {
    use std::sync::Arc;
    let s = TestServer::start().await;
    let (rs_id, rs_secret) = s.resource_server().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    // A second resource server, in front of a trivial handler, that introspects at mandate.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = mandate_guard::GuardConfig::new(&s.url("/mcp"), &s.base);
    config.allowed_hosts.push(base.trim_start_matches("http://").to_owned());
    let check = mandate_guard::TokenCheck::introspection(&s.url("/introspect"), &rs_id, &rs_secret).unwrap();
    let guard = Arc::new(mandate_guard::Guard::new(config, check));
    let app = guard.protect(axum::Router::new().route(
        "/mcp",
        axum::routing::post(|axum::Extension(p): axum::Extension<mandate_guard::Principal>| async move { p.subject }),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = s.http.post(format!("{base}/mcp")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), c.sub);
    assert!(s.auth.revoke_grant_by_operator(&c.grant_id).await.unwrap());
    let r = s.http.post(format!("{base}/mcp")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_step_up_challenge_never_names_offline_access_rs7_rs11() {
    // A token from an issuer that puts offline_access in `scope` (mandate's own never does).
    let s = TestServer::start().await;
    let mut c = with_real_grant(&s, claims(&s).await).await;
    c.scope = "customers.read offline_access".into();
    let token = minted(&s, &c).await;
    let mut mcp = McpClient::new(&s.url("/mcp"), Some(&token));
    assert_eq!(mcp.initialize().await.status, StatusCode::OK);
    let r = mcp.call("send_invoice", json!({"invoice_id": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.challenge_scopes(), ["customers.read", "invoices.send"], "{}", r.www_authenticate());
}

/// RV: revocation reaches streams already open: the GET event stream of a session whose grant
/// is revoked ends at once, not when the agent next sends a request.
#[tokio::test]
async fn an_open_event_stream_ends_when_its_grant_is_revoked() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    let init = s
        .http
        .post(s.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    let session = init.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = init.text().await;
    let initialized = s
        .http
        .post(s.url("/mcp"))
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(initialized.status(), StatusCode::ACCEPTED);
    let mut stream = s
        .http
        .get(s.url("/mcp"))
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // Open and quiet: nothing arrives for a while (no end either).
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), stream.chunk()).await;
    assert!(quiet.is_err() || matches!(quiet, Ok(Ok(Some(_)))), "the stream stays open: {quiet:?}");
    assert!(s.auth.revoke_grant_by_operator(&c.grant_id).await.unwrap());
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue, // keep-alive or priming events
                other => return other.map(|c| c.is_none()),
            }
        }
    })
    .await;
    assert!(matches!(ended, Ok(Ok(true)) | Ok(Err(_))), "the stream ended after the revocation: {ended:?}");
}
