//! Battery cases at the protected MCP endpoint that no other suite sends (security-tests.md):
//! JWE-shaped and nested tokens, duplicate JSON members, `crit`, scheme case, a refresh token
//! used as a bearer token, and the body cap.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_core::tokens::AccessClaims;
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CB: &str = "https://agent.test/cb";

/// A real grant's tokens for alice (customers.read): (access token, refresh token, claims).
async fn issued(s: &TestServer) -> (String, String, AccessClaims) {
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(s, &mut b, &client, CB, &["customers.read"]).await;
    let (status, tok) = redeem(s, &client, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    let at = tok["access_token"].as_str().unwrap().to_owned();
    let claims = jsonwebtoken::dangerous::insecure_decode::<AccessClaims>(&at).unwrap().claims;
    (at, tok["refresh_token"].as_str().unwrap().to_owned(), claims)
}

/// Signs `header` and `payload` (raw JSON text, so duplicate members survive) with the
/// server's current signing key.
async fn signed_raw(s: &TestServer, header: &str, payload: &str) -> String {
    let now = s.auth.now();
    let ring = s.auth.keys().ring(now).await.unwrap();
    let key = ring.signing_key(now).unwrap();
    let header = header.replace("KID", &key.kid);
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = key.signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims_json(c: &AccessClaims) -> Value {
    serde_json::to_value(c).unwrap()
}

/// `initialize` with this Authorization header value; (status, WWW-Authenticate).
async fn initialize_with_header(s: &TestServer, authorization: &str) -> (StatusCode, String) {
    let r = s
        .http
        .post(s.url("/mcp"))
        .header("authorization", authorization)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status(), challenge)
}

async fn refused_invalid_token(s: &TestServer, token: &str, why: &str) {
    let (status, challenge) = initialize_with_header(s, &format!("Bearer {token}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}");
    assert!(challenge.starts_with(r#"Bearer error="invalid_token""#), "{why}: {challenge}");
}

#[tokio::test]
async fn positive_control_signed_raw_is_accepted() {
    // The helper below forges nothing by itself: a well-formed raw token is accepted, so each
    // refusal in this file is about the one thing that test changes.
    let s = TestServer::start().await;
    let (_, _, c) = issued(&s).await;
    let token = signed_raw(&s, r#"{"alg":"ES256","typ":"at+jwt","kid":"KID"}"#, &claims_json(&c).to_string()).await;
    assert_eq!(initialize_with_header(&s, &format!("Bearer {token}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn jwe_shaped_and_nested_tokens_are_refused_jw_22() {
    let s = TestServer::start().await;
    let (at, _, c) = issued(&s).await;
    // Five segments, as a JWE compact serialization has.
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode([7u8; 32]),
        URL_SAFE_NO_PAD.encode([1u8; 12]),
        URL_SAFE_NO_PAD.encode(claims_json(&c).to_string()),
        URL_SAFE_NO_PAD.encode([2u8; 16]),
    );
    refused_invalid_token(&s, &jwe, "JWE").await;
    // A nested JWT: a signed token whose payload is another (valid) token, `cty: JWT`.
    let nested = signed_raw(&s, r#"{"alg":"ES256","typ":"at+jwt","cty":"JWT","kid":"KID"}"#, &at).await;
    refused_invalid_token(&s, &nested, "nested").await;
}

#[tokio::test]
async fn duplicate_members_and_non_utf8_headers_are_refused_jw_24() {
    let s = TestServer::start().await;
    let (_, _, c) = issued(&s).await;
    let body = claims_json(&c).to_string();
    // `aud` twice: first another resource, then ours. A parser keeping the last would accept.
    let dup_aud = body.replacen('{', r#"{"aud":"https://other.test/mcp","#, 1);
    let token = signed_raw(&s, r#"{"alg":"ES256","typ":"at+jwt","kid":"KID"}"#, &dup_aud).await;
    refused_invalid_token(&s, &token, "duplicate aud").await;
    // `alg` twice in the header.
    let token = signed_raw(&s, r#"{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"KID"}"#, &body).await;
    refused_invalid_token(&s, &token, "duplicate alg").await;
    // A header that is not UTF-8.
    let now = s.auth.now();
    let ring = s.auth.keys().ring(now).await.unwrap();
    let key = ring.signing_key(now).unwrap();
    let mut header = br#"{"alg":"ES256","typ":"at+jwt","kid":""#.to_vec();
    header.extend_from_slice(key.kid.as_bytes());
    header.extend_from_slice(b"\xff\xfe\"}");
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&body));
    let sig = key.signer.sign(input.as_bytes()).unwrap();
    refused_invalid_token(&s, &format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)), "non-UTF-8 header").await;
}

#[tokio::test]
async fn an_unknown_critical_header_is_refused_jw_26() {
    let s = TestServer::start().await;
    let (_, _, c) = issued(&s).await;
    let body = claims_json(&c).to_string();
    let token =
        signed_raw(&s, r#"{"alg":"ES256","typ":"at+jwt","kid":"KID","crit":["exp-ext"],"exp-ext":1}"#, &body).await;
    refused_invalid_token(&s, &token, "crit").await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_rs_06() {
    let s = TestServer::start().await;
    let (at, _, _) = issued(&s).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, challenge) = initialize_with_header(&s, &format!("{scheme} {at}")).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {challenge}");
    }
}

#[tokio::test]
async fn a_refresh_token_is_not_a_bearer_token_rt_13() {
    let s = TestServer::start().await;
    let (at, rt, c) = issued(&s).await;
    refused_invalid_token(&s, &rt, "refresh token as bearer").await;
    // And the other way round: the access token presented as a refresh token.
    let (status, v) = refresh(&s, &c.client_id, &at).await;
    assert_eq!((status, v["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    // Neither attempt harmed the real tokens.
    assert_eq!(refresh(&s, &c.client_id, &rt).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_20_mb_body_is_refused_with_413_rs_16() {
    let s = TestServer::start().await;
    let (at, _, _) = issued(&s).await;
    let mut mcp = McpClient::new(&s.url("/mcp"), Some(&at));
    assert_eq!(mcp.initialize().await.status, StatusCode::OK);
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"list_customers","arguments":{{"pad":"{}"}}}}}}"#,
        "a".repeat(20 * 1024 * 1024)
    );
    let r = mcp.post_raw(huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The server is still answering on a fresh request.
    assert_eq!(mcp.call("list_customers", json!({})).await.status, StatusCode::OK);
}

/// A token for `user` holding customers.read and customers.write.
async fn token_for(s: &TestServer, user: &str) -> String {
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let loc =
        consent_flow(&mut b, &Authz::new(&client, CB, &challenge), user, &["customers.read", "customers.write"]).await;
    let code = query_param(&loc, "code").unwrap();
    let (status, tok) = redeem(s, &client, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    tok["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_calls_of_two_people_never_see_each_others_data_rs_13() {
    let s = TestServer::start().await;
    let mut per_person = Vec::new();
    for (user, marker) in [("alice", "Alice-only-customer"), ("bob", "Bob-only-customer")] {
        let token = token_for(&s, user).await;
        let mut c = McpClient::new(&s.url("/mcp"), Some(&token));
        assert_eq!(c.initialize().await.status, StatusCode::OK);
        let r = c.call("create_customer", json!({"name": marker})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.message);
        per_person.push((token, marker));
    }
    // 10 sessions per person, 50 calls each: 1,000 calls, interleaved on the same server.
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let (token, mine) = per_person[worker % 2].clone();
        let theirs = per_person[(worker + 1) % 2].1;
        let url = s.url("/mcp");
        tasks.push(tokio::spawn(async move {
            let mut c = McpClient::new(&url, Some(&token));
            assert_eq!(c.initialize().await.status, StatusCode::OK);
            for _ in 0..50 {
                let text = c.call("list_customers", json!({})).await.tool_text();
                assert!(text.contains(mine), "own data missing: {text}");
                assert!(!text.contains(theirs), "another person's data in the answer: {text}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
