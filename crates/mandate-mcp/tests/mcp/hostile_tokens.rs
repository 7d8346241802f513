//! The attack battery's hostile access tokens and Authorization headers, black-box at /mcp, each
//! with its exact status and challenge: algorithms outside the allowlist (JW-12), key-carrying
//! headers with a listener counting fetches (JW-13), hostile `kid`s (JW-14), signature faults
//! (JW-15), `typ` (JW-20), format confusion (JW-23), oversized tokens (JW-25), tokens in a form
//! body (RS-04) and malformed headers (RS-07).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use mandate_core::tokens::AccessClaims;
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::validation::{call, claims, minted, refused, with_real_grant};

/// A token with `header` (raw JSON) over `claims`, signed by the server's own signing key.
async fn signed_with_header(s: &TestServer, header: &Value, c: &AccessClaims) -> String {
    let now = s.auth.now();
    let ring = s.auth.keys().ring(now).await.unwrap();
    let key = ring.signing_key(now).unwrap();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(c).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, Algorithm::ES256).unwrap();
    format!("{message}.{sig}")
}

async fn kid(s: &TestServer) -> String {
    let now = s.auth.now();
    s.auth.keys().ring(now).await.unwrap().signing_key(now).unwrap().kid.clone()
}

/// Sends `initialize` with the raw Authorization header value `authorization`.
async fn with_header(s: &TestServer, authorization: &[u8]) -> (StatusCode, String) {
    let r = s
        .http
        .post(s.url("/mcp"))
        .header("authorization", reqwest::header::HeaderValue::from_bytes(authorization).unwrap())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status(), challenge)
}

#[tokio::test]
async fn algorithms_outside_the_allowlist_or_not_the_keys_are_refused_jw_12() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let kid = kid(&s).await;
    // The real key's kid with another algorithm named: refused before any verification.
    for alg in ["PS256", "RS384", "RS256", "ES384", "EdDSA", "HS512"] {
        let token = signed_with_header(&s, &json!({"alg": alg, "typ": "at+jwt", "kid": kid}), &c).await;
        refused(&s, &token, "signature or algorithm").await;
    }
    // The positive control: the same construction with the key's own algorithm is accepted.
    let token = signed_with_header(&s, &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}), &c).await;
    assert_eq!(call(&s, &token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn key_carrying_headers_are_refused_and_never_fetched_jw_13() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let kid = kid(&s).await;
    // A listener that counts every connection made to it.
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bait = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let now = s.auth.now();
    let jwk = s.auth.keys().ring(now).await.unwrap().signing_key(now).unwrap().public_jwk.clone();
    for extra in [
        json!({"jku": bait}),
        json!({"x5u": bait}),
        json!({"x5c": ["MIIBszCCAVmgAwIBAgIU"]}),
        json!({"jwk": jwk}),
        json!({"crit": ["exp"], "exp": 1}),
    ] {
        let mut header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        let token = signed_with_header(&s, &header, &c).await;
        let (status, challenge) = call(&s, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{extra}");
        assert!(challenge.starts_with(r#"Bearer error="invalid_token""#), "{extra}: {challenge}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "jku/x5u are never followed");
}

#[tokio::test]
async fn hostile_kids_are_unknown_keys_never_errors_jw_14() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let long = "k".repeat(64 * 1024);
    for hostile in ["../../etc/passwd", "' OR '1'='1", "kid\u{0}nul", "", long.as_str()] {
        let token = signed_with_header(&s, &json!({"alg": "ES256", "typ": "at+jwt", "kid": hostile}), &c).await;
        let (status, challenge) = call(&s, &token).await;
        if hostile.len() > 1000 {
            // A 64 KB kid makes a header over the request-head limit: refused before any parsing.
            assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "a 64 KB kid");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{hostile:?}");
        assert!(challenge.contains("unknown key") || challenge.contains("malformed"), "{hostile:?}: {challenge}");
    }
    // No kid at all.
    let token = signed_with_header(&s, &json!({"alg": "ES256", "typ": "at+jwt"}), &c).await;
    refused(&s, &token, "invalid_token").await;
}

#[tokio::test]
async fn signature_faults_are_refused_jw_15() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let good = minted(&s, &c).await;
    assert_eq!(call(&s, &good).await.0, StatusCode::OK, "the positive control");
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 0x01;
    let flipped = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&raw));
    let truncated = format!("{head}.{}", &sig[..sig.len() - 4]);
    let short = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&raw[..63]));
    let long = format!("{head}.{}", URL_SAFE_NO_PAD.encode([raw.as_slice(), &[0u8]].concat()));
    for (what, token) in [("a flipped bit", flipped), ("truncated", truncated), ("63 bytes", short), ("65 bytes", long)]
    {
        let (status, challenge) = call(&s, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(challenge.starts_with(r#"Bearer error="invalid_token""#), "{what}: {challenge}");
    }
}

#[tokio::test]
async fn only_access_token_types_are_accepted_jw_20() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let kid = kid(&s).await;
    for typ in [json!("JWT"), json!("dpop+jwt"), json!("secevent+jwt"), json!(""), json!(1)] {
        let token = signed_with_header(&s, &json!({"alg": "ES256", "typ": typ, "kid": kid}), &c).await;
        let (status, _) = call(&s, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "typ {typ}");
    }
    let token = signed_with_header(&s, &json!({"alg": "ES256", "kid": kid}), &c).await;
    refused(&s, &token, "typ").await;
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let token = signed_with_header(&s, &json!({"alg": "ES256", "typ": typ, "kid": kid}), &c).await;
        assert_eq!(
            call(&s, &token).await.0,
            StatusCode::OK,
            "typ {typ} (RFC 9068 §4; media types are case-insensitive)"
        );
    }
}

#[tokio::test]
async fn anything_but_a_compact_jws_of_base64url_is_refused_jw_23() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let good = minted(&s, &c).await;
    let parts: Vec<&str> = good.split('.').collect();
    let json_serialization = json!({"payload": parts[1], "protected": parts[0], "signature": parts[2]}).to_string();
    for (what, token) in [
        ("JWS JSON serialization", json_serialization),
        ("padding", format!("{}=.{}.{}", parts[0], parts[1], parts[2])),
        ("a quote", format!("{}\".{}.{}", parts[0], parts[1], parts[2])),
        ("a brace", format!("{{{}.{}.{}", parts[0], parts[1], parts[2])),
        ("four segments", format!("{good}.x")),
        ("five segments (JWE shape)", format!("{good}.x.y")),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
    ] {
        let (status, challenge) = call(&s, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(challenge.starts_with(r#"Bearer error="invalid_token""#), "{what}: {challenge}");
    }
    // A space inside the credentials is not a token68 (RFC 6750 §2.1): refused as a request.
    let (status, challenge) = with_header(&s, format!("Bearer {} {}", parts[0], parts[1]).as_bytes()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a space");
    assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
}

#[tokio::test]
async fn oversized_tokens_are_refused_quickly_jw_25() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let kid = kid(&s).await;
    // A 300 KB header inside the token: over the request-head limit, 431 before any decoding.
    let big = signed_with_header(
        &s,
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "pad": "p".repeat(300 * 1024)}),
        &c,
    )
    .await;
    let started = std::time::Instant::now();
    let (status, _) = with_header(&s, format!("Bearer {big}").as_bytes()).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // 8 MB: the same, without reading it all into a token.
    let huge = format!("Bearer {}", "A".repeat(8 * 1024 * 1024));
    let r = s.http.post(s.url("/mcp")).header("authorization", huge).json(&json!({})).send().await;
    match r {
        Ok(r) => assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        // The server may close the connection while the client is still sending 8 MB.
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "bounded time");
    // The server is still there.
    assert_eq!(call(&s, &minted(&s, &c).await).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_token_in_a_form_body_is_not_accepted_rs_04() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    let r = s
        .http
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .form(&[("access_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(!challenge.contains("error="), "no credentials were presented where they count: {challenge}");
}

#[tokio::test]
async fn malformed_authorization_headers_are_refused_never_a_server_error_rs_07() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    for (value, status) in [
        (b"Bearer".to_vec(), StatusCode::UNAUTHORIZED),
        (b"Bearer ".to_vec(), StatusCode::UNAUTHORIZED),
        (b"Bearer  a b".to_vec(), StatusCode::UNAUTHORIZED),
        (b"Basic YTpi".to_vec(), StatusCode::UNAUTHORIZED),
        ("Bearer t\u{f6}ken".as_bytes().to_vec(), StatusCode::UNAUTHORIZED),
        (b"Bearer \xff\xfe".to_vec(), StatusCode::UNAUTHORIZED),
        // 16 KB is within the request-head limit (32 KB): an unknown token like any other.
        (format!("Bearer {}", "a".repeat(16 * 1024)).into_bytes(), StatusCode::UNAUTHORIZED),
        (format!("Bearer {}", "a".repeat(40 * 1024)).into_bytes(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ] {
        let (got, challenge) = with_header(&s, &value).await;
        let shown = String::from_utf8_lossy(&value[..value.len().min(20)]).into_owned();
        assert_eq!(got, status, "{shown:?}");
        if status == StatusCode::UNAUTHORIZED {
            assert!(challenge.starts_with("Bearer "), "{shown:?}: {challenge}");
        }
    }
    // RS-06 alongside: the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        assert_eq!(with_header(&s, format!("{scheme} {token}").as_bytes()).await.0, StatusCode::OK, "{scheme}");
    }
}

/// JW-24's cousin in the JSON-RPC body: a `tools/call` naming its tool twice. The guard and the
/// MCP server must not read it two ways (one checking the scope of the tool named first, the
/// other calling the one named last): such a body is refused before anything runs.
#[tokio::test]
async fn a_tool_named_twice_is_refused_not_read_two_ways() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await; // customers.read only
    let mut client = McpClient::new(&s.url("/mcp"), Some(&token));
    assert!(client.initialize().await.status.is_success());
    for body in [
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send_invoice","name":"list_customers","arguments":{"invoice_id":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_customers","name":"send_invoice","arguments":{"invoice_id":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","method":"tools/list","params":{"name":"send_invoice"}}"#,
    ] {
        let r = client.post_raw(body.to_owned()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.message);
        assert_eq!(r.message["error"]["code"], -32700, "{body}: {:?}", r.message);
        assert!(r.message["error"]["message"].as_str().unwrap().contains("appears twice"), "{:?}", r.message);
    }
    // The session goes on: the same call, named once, works.
    let r = client.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let sent = s.db_count("SELECT COUNT(*) FROM demo_invoices WHERE status = 'sent'").await;
    assert_eq!(sent, 0, "nothing was sent");
}

/// RS-14: every request is authorized, not just the session's first: a token that expires while
/// its session is open stops working at the next request.
#[tokio::test]
async fn a_token_that_expires_inside_an_open_session_is_refused_at_the_next_request_rs_14() {
    let s = TestServer::start().await;
    let mut c = with_real_grant(&s, claims(&s).await).await;
    c.exp = s.auth.now() + 120;
    let token = minted(&s, &c).await;
    let mut client = McpClient::new(&s.url("/mcp"), Some(&token));
    assert!(client.initialize().await.status.is_success());
    assert_eq!(client.request("tools/list", json!({})).await.status, StatusCode::OK);
    s.clock.advance(120 + 61); // past the 60 s leeway
    let r = client.request("tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.www_authenticate().starts_with(r#"Bearer error="invalid_token""#), "{}", r.www_authenticate());
}

/// RS-15: bodies that are not JSON-RPC, and a client that goes away mid-request, leave the
/// session and the server answering.
#[tokio::test]
async fn broken_bodies_and_abandoned_requests_leave_the_session_working_rs_15() {
    let s = TestServer::start().await;
    let c = with_real_grant(&s, claims(&s).await).await;
    let token = minted(&s, &c).await;
    let mut client = McpClient::new(&s.url("/mcp"), Some(&token));
    assert!(client.initialize().await.status.is_success());
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"#.to_owned(),
        "not json".to_owned(),
        String::from_utf8_lossy(b"\xff\xfe{}").into_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
    ] {
        let r = client.post_raw(body.clone()).await;
        assert!(r.status.is_client_error(), "{body:?}: {}", r.status);
    }
    // Invalid UTF-8 as raw bytes (post_raw takes text): straight through reqwest.
    let r = s
        .http
        .post(s.url("/mcp"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", client.session.clone().unwrap())
        .body(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\xff\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // A request abandoned by its client before the answer.
    let abandoned = tokio::spawn({
        let url = s.url("/mcp");
        let (token, session) = (token.clone(), client.session.clone().unwrap());
        async move {
            let _ = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "list_customers", "arguments": {}}}))
                .send()
                .await;
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    abandoned.abort();
    // The session goes on.
    let r = client.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.message);
    assert!(r.message["result"].is_object(), "{:?}", r.message);
}
