//! Sessions leave this process's memory when the database drops them: past the per-person cap
//! (RS14), or closed by their client. What they cost in memory is measured in
//! docs/BENCHMARKS.md, not here: these tests count the sessions rmcp holds (the live-session
//! level of `/metrics`) and read what a request with a dropped session's id gets.

use mandate_guard::SESSIONS_PER_USER;
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::json;

/// A token for alice through the whole flow (a real grant).
async fn alice_token(s: &TestServer) -> String {
    let client = s.register_public("https://agent.test/cb").await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(s, &mut b, &client, "https://agent.test/cb", &["customers.read"]).await;
    let (status, tok) = redeem(s, &client, "https://agent.test/cb", &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    tok["access_token"].as_str().unwrap().to_owned()
}

async fn open(s: &TestServer, token: &str) -> McpClient {
    let mut c = McpClient::new(&s.url("/mcp"), Some(token));
    assert_eq!(c.initialize().await.status, StatusCode::OK);
    c
}

/// Sessions of the demo apps held in this process's memory.
fn in_memory(s: &TestServer) -> u64 {
    s.auth.counters().mcp_sessions(&s.resource()).get()
}

async fn close(c: &McpClient) -> StatusCode {
    let mut req = reqwest::Client::new()
        .delete(&c.url)
        .bearer_auth(c.token.as_deref().unwrap())
        .header("mcp-session-id", c.session.as_deref().unwrap());
    if let Some(p) = &c.protocol {
        req = req.header("mcp-protocol-version", p);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn a_session_dropped_by_the_cap_leaves_memory_at_once_rs14() {
    let s = TestServer::start().await;
    let token = alice_token(&s).await;
    let mut earlier = Vec::new();
    for _ in 0..SESSIONS_PER_USER {
        earlier.push(open(&s, &token).await);
    }
    assert_eq!(in_memory(&s), SESSIONS_PER_USER as u64, "at the cap, nothing dropped yet");
    // One more: one of the earlier sessions is dropped from the database (the least recently
    // used; here all were used in the same second), and from memory before the new session's
    // initialize is answered.
    let mut newest = open(&s, &token).await;
    assert_eq!(in_memory(&s), SESSIONS_PER_USER as u64, "the dropped session is not held any more");
    assert_eq!(
        newest.request("ping", json!({})).await.status,
        StatusCode::OK,
        "the new session is never the one dropped"
    );
    let mut answers = Vec::new();
    for c in &mut earlier {
        answers.push(c.request("ping", json!({})).await.status);
    }
    assert_eq!(answers.iter().filter(|s| **s == StatusCode::NOT_FOUND).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|s| **s == StatusCode::OK).count(), SESSIONS_PER_USER - 1, "{answers:?}");

    // Closing releases the rest.
    let mut closed = 0;
    for c in earlier.iter().chain([&newest]) {
        closed += usize::from(close(c).await.is_success());
    }
    assert_eq!(closed, SESSIONS_PER_USER);
    assert_eq!(in_memory(&s), 0);
    assert_eq!(newest.request("ping", json!({})).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_people_keep_their_sessions_when_one_reaches_the_cap() {
    let s = TestServer::start().await;
    let alice = alice_token(&s).await;
    // Bob's session: opened with a token minted for bob on the same grant machinery.
    let bob_client = s.register_public("https://agent.test/cb").await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let loc =
        consent_flow(&mut b, &Authz::new(&bob_client, "https://agent.test/cb", &challenge), "bob", &["customers.read"])
            .await;
    let code = query_param(&loc, "code").unwrap();
    let (_, tok) = redeem(&s, &bob_client, "https://agent.test/cb", &code, &verifier).await;
    let mut bobs = open(&s, tok["access_token"].as_str().unwrap()).await;
    for _ in 0..=SESSIONS_PER_USER {
        open(&s, &alice).await;
    }
    assert_eq!(in_memory(&s), SESSIONS_PER_USER as u64 + 1, "alice's cap, and bob's session");
    assert_eq!(bobs.request("ping", json!({})).await.status, StatusCode::OK);
}
