//! Hardening of the guard (issue 13): a token sent two ways (RS-05), and the rate at which one
//! caller may open MCP sessions.

use mandate_guard::NewSessionLimit;
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::json;

/// A token through the whole flow (a real grant) for `user`.
async fn token_for(s: &TestServer, user: &str) -> String {
    let client = s.register_public("https://agent.test/cb").await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let loc =
        consent_flow(&mut b, &Authz::new(&client, "https://agent.test/cb", &challenge), user, &["customers.read"])
            .await;
    let code = query_param(&loc, "code").unwrap();
    let (status, tok) = redeem(s, &client, "https://agent.test/cb", &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    tok["access_token"].as_str().unwrap().to_owned()
}

fn initialize_body() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test]
async fn rs_05_a_token_in_the_header_and_in_the_query_is_invalid_request() {
    let s = TestServer::start().await;
    let token = token_for(&s, "alice").await;
    for query in ["access_token=abc", "access%5Ftoken=abc", "x=1&access_token="] {
        let r = s
            .http
            .post(s.url(&format!("/mcp?{query}")))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with(r#"Bearer error="invalid_request""#), "{query}: {challenge}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{query}");
    }
    // The same token in the header alone is accepted...
    let r = s
        .http
        .post(s.url("/mcp?x=1"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // ...and in the query alone it is never read: no credentials, a bare challenge (RS-04).
    let r = s
        .http
        .post(s.url(&format!("/mcp?access_token={token}")))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer resource_metadata=") && !challenge.contains("error="), "{challenge}");
}

#[tokio::test]
async fn initialize_is_rate_limited_per_caller() {
    let s = TestServer::start().await;
    let alice = token_for(&s, "alice").await;
    let bob = token_for(&s, "bob").await;
    let burst = NewSessionLimit::default().burst;
    for i in 0..burst {
        let mut c = McpClient::new(&s.url("/mcp"), Some(&alice));
        assert_eq!(c.initialize().await.status, StatusCode::OK, "session {i} of the burst");
    }
    // One more new session: refused before the MCP server sees it.
    let mut c = McpClient::new(&s.url("/mcp"), Some(&alice));
    let r = c.post(initialize_body()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "1", "60 a minute: one a second");
    assert!(r.headers.get("mcp-session-id").is_none());
    assert_eq!(r.message["id"], 7);
    assert_eq!(r.message["error"]["code"], -32000);
    assert!(r.message["error"]["message"].as_str().unwrap().contains("too many new MCP sessions"), "{}", r.message);

    // Requests in an existing session are not new sessions, and another person has a bucket of their own.
    let mut open = McpClient::new(&s.url("/mcp"), Some(&bob));
    assert_eq!(open.initialize().await.status, StatusCode::OK);
    assert_eq!(open.request("ping", json!({})).await.status, StatusCode::OK);

    // A second later, one more.
    s.clock.advance(1);
    let mut c = McpClient::new(&s.url("/mcp"), Some(&alice));
    assert_eq!(c.initialize().await.status, StatusCode::OK);
    let mut c = McpClient::new(&s.url("/mcp"), Some(&alice));
    assert_eq!(c.post(initialize_body()).await.status, StatusCode::TOO_MANY_REQUESTS);
}
