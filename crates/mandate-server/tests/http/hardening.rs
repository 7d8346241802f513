//! Issue 13, the HTTP layer: request-head limits (FZ-01), keep-alive after a response sent
//! before the request body was read, storage faults (RL-07), anonymous `/authorize` bounded
//! per address, and client-chosen names marked as such in the trail.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

#[tokio::test]
async fn fz_01_a_64_kb_cookie_gets_431_a_100_kb_query_414_and_the_server_stays_up() {
    let s = TestServer::start().await;
    let big_cookie = format!("junk={}", "a".repeat(64 * 1024));
    let r = s.http.get(s.url("/login")).header("cookie", big_cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // 20 KB of query: over the 16 KB limit.
    let r = s.http.get(s.url(&format!("/authorize?state={}", "q".repeat(20 * 1024)))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    // 100 KB (more than an HTTP client library will send): the same answer, on a raw connection.
    let host = s.base.trim_start_matches("http://");
    let line = format!("GET /authorize?state={} HTTP/1.1\r\nHost: {host}\r\n\r\n", "q".repeat(100 * 1024));
    let reply = exchange(&s, &[line.as_bytes()]).await;
    assert!(reply.starts_with("HTTP/1.1 414 "), "{}", &reply[..reply.len().min(300)]);
    // Ordinary large heads still pass: a 12 KB cookie, an 8 KB query.
    let r =
        s.http.get(s.url("/login")).header("cookie", format!("junk={}", "a".repeat(12 * 1024))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.http.get(s.url(&format!("/healthz?pad={}", "q".repeat(8 * 1024)))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Still serving.
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Everything the server sends on one connection until it closes it (or 5 s pass).
async fn exchange(s: &TestServer, parts: &[&[u8]]) -> String {
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    for p in parts {
        tcp.write_all(p).await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn unauthenticated_mcp_post(s: &TestServer, content_length: usize) -> String {
    let host = s.base.trim_start_matches("http://");
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_401_sent_before_the_body_arrived_says_connection_close() {
    let s = TestServer::start().await;
    // The head and a few bytes of a 5,000-byte body: the 401 is answered before the rest comes.
    let head = unauthenticated_mcp_post(&s, 5000);
    let reply = exchange(&s, &[head.as_bytes(), b"{\"jsonrpc\""]).await;
    assert!(reply.starts_with("HTTP/1.1 401 "), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{reply}");
}

#[tokio::test]
async fn pipelined_request_after_an_unread_body_is_answered_or_the_first_response_says_close() {
    let s = TestServer::start().await;
    let body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
    let first = format!("{}{body}", unauthenticated_mcp_post(&s, body.len()));
    let second =
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.base.trim_start_matches("http://"));
    let reply = exchange(&s, &[first.as_bytes(), second.as_bytes()]).await;
    assert!(reply.starts_with("HTTP/1.1 401 "), "{reply}");
    let responses = reply.matches("HTTP/1.1 ").count();
    let first_head = reply.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    // Either the second request is answered, or the client was told not to reuse the connection.
    assert!(
        (responses == 2 && reply.contains("HTTP/1.1 200 ")) || first_head.contains("\r\nconnection: close"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_413_for_a_body_over_the_limit_says_connection_close() {
    let s = TestServer::start().await;
    let head = "POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200000\r\n\r\n";
    let reply = exchange(&s, &[head.as_bytes(), b"grant_type=x"]).await;
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{reply}");
}

fn sqlite_file(s: &TestServer) -> Option<PathBuf> {
    s.db.url().strip_prefix("sqlite://").map(PathBuf::from)
}

async fn status(s: &TestServer, path: &str) -> StatusCode {
    s.http.get(s.url(path)).send().await.unwrap().status()
}

async fn register(s: &TestServer) -> (StatusCode, Value) {
    let body = json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": "Late agent"});
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// While the fault lasts: not ready (503), alive (200), and OAuth endpoints that write answer
/// `503 temporarily_unavailable`, never a token that would not survive a restart.
async fn assert_fails_closed(s: &TestServer, client: &str, code: &str, verifier: &str) {
    assert_eq!(status(s, "/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status(s, "/healthz").await, StatusCode::OK);
    let (st, body) = redeem(s, client, CB, code, verifier).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none());
    let (st, body) = register(s).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[cfg(unix)]
#[tokio::test]
async fn rl_07_a_read_only_database_file_fails_closed_with_503_and_recovers_without_restart() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    let Some(file) = sqlite_file(&s) else { return }; // a SQLite file fault; PostgreSQL has none
    let mut b = s.browser();
    let client = s.register_public(CB).await;
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    assert_eq!(status(&s, "/readyz").await, StatusCode::OK);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert_fails_closed(&s, &client, &code, &verifier).await;

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(status(&s, "/readyz").await, StatusCode::OK);
    // The refused exchange changed nothing: the code still works, once.
    let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert!(tok["access_token"].is_string());
    assert_eq!(register(&s).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn rl_07_a_deleted_database_file_fails_closed_with_503_and_issues_no_token() {
    let s = TestServer::start().await;
    let Some(file) = sqlite_file(&s) else { return }; // a SQLite file fault; PostgreSQL has none
    let mut b = s.browser();
    let client = s.register_public(CB).await;
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let kept = file.with_extension("kept");
    std::fs::hard_link(&file, &kept).unwrap();

    std::fs::remove_file(&file).unwrap();
    assert_fails_closed(&s, &client, &code, &verifier).await;
    // A new, empty file at the path is not the database either.
    std::fs::write(&file, b"").unwrap();
    assert_eq!(status(&s, "/readyz").await, StatusCode::SERVICE_UNAVAILABLE);

    // The same file linked back: ready again, and the code was never used.
    std::fs::remove_file(&file).unwrap();
    std::fs::hard_link(&kept, &file).unwrap();
    assert_eq!(status(&s, "/readyz").await, StatusCode::OK);
    let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
}

#[tokio::test]
async fn anonymous_authorize_is_rate_limited_per_address_and_pending_requests_stay_bounded() {
    let s = TestServer::start_with(Options { authorize_burst: 5, ..Options::default() }).await;
    let client = s.register_public(CB).await;
    let (_, challenge) = pkce();
    let url = Authz::new(&client, CB, &challenge).url();
    let before = s.db_count("SELECT COUNT(*) FROM pending_authorizations").await;
    for _ in 0..5 {
        let r = s.http.get(s.url(&url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    for _ in 0..50 {
        let r = s.http.get(s.url(&url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait >= 1);
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM pending_authorizations").await, before + 5);
}

#[tokio::test]
async fn a_signed_in_persons_authorizations_are_not_counted_against_the_address() {
    let s = TestServer::start_with(Options { authorize_burst: 3, ..Options::default() }).await;
    let client = s.register_public(CB).await;
    let (_, challenge) = pkce();
    let url = Authz::new(&client, CB, &challenge).url();
    // A person signed in, behind the same address as everyone else (one NAT, one proxy): each
    // authorization is answered, far past the anonymous budget.
    let mut b = s.browser();
    b.login("alice", None).await;
    for i in 0..10 {
        let r = b.get(&url).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "request {i}: {}", r.body);
        assert!(r.location.as_deref().is_some_and(|l| l.starts_with("/consent")), "{:?}", r.location);
    }
    // Anonymous requests from that address have their own budget: 3, then 429 with a page
    // that says how long to wait.
    for _ in 0..3 {
        assert_eq!(s.http.get(s.url(&url)).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    }
    let r = s.http.get(s.url(&url)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(r.text().await.unwrap().contains("too many requests to connect an app"));
}

#[tokio::test]
async fn anonymous_authorizations_from_everywhere_together_are_bounded() {
    // Three a minute from all addresses together; each address alone is far within its budget.
    let s = TestServer::start_with(Options {
        trust_forwarded_for: true,
        anonymous_authorizations_per_minute: 3,
        ..Options::default()
    })
    .await;
    let client = s.register_public(CB).await;
    let (_, challenge) = pkce();
    let url = Authz::new(&client, CB, &challenge).url();
    let before = s.db_count("SELECT COUNT(*) FROM pending_authorizations").await;
    let from = |i: u32| format!("198.51.100.{i}");
    for i in 0..3 {
        let r = s.http.get(s.url(&url)).header("x-forwarded-for", from(i)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    for i in 3..20 {
        let r = s
            .http
            .get(s.url(&url))
            .header("x-forwarded-for", from(i))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "address {i}");
        assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        let page = visible_text(&r.text().await.unwrap());
        assert!(page.contains("This server is receiving too many requests to connect apps right now."), "{page}");
    }
    assert_eq!(
        s.db_count("SELECT COUNT(*) FROM pending_authorizations").await,
        before + 3,
        "nothing stored past the bound"
    );
    // A signed-in person is not counted, and still gets through.
    let mut b = s.browser();
    b.login("alice", None).await;
    let r = b.get(&url).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.as_deref().is_some_and(|l| l.starts_with("/consent")), "{:?}", r.location);
}

fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn trail_x_a_client_name_reading_as_a_sentence_is_quoted_and_marked_as_the_apps_own() {
    let s = TestServer::start().await;
    let body = json!({
        "redirect_uris": [CB], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "You created customer Payroll. Also",
    });
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let client = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let mut mcp = McpClient::new(&s.resource(), tok["access_token"].as_str());
    mcp.initialize().await;
    mcp.call("create_customer", json!({"name": "Amazon"})).await;

    let page = b.get("/account/activity").await;
    assert_eq!(page.status, StatusCode::OK);
    let seen = visible_text(&page.body);
    assert!(
        seen.contains(
            "The app calling itself “You created customer Payroll. Also” unverified created customer Amazon for you"
        ),
        "{seen}"
    );
    assert!(
        seen.contains("You allowed the app calling itself “You created customer Payroll. Also” unverified to"),
        "{seen}"
    );
    // Never as a sentence of its own: every occurrence is quoted and labelled.
    assert_eq!(
        seen.matches("You created customer Payroll").count(),
        seen.matches("calling itself “You created customer Payroll").count()
            + seen.matches("“You created customer Payroll. Also” (unverified)").count(),
        "{seen}"
    );
    assert!(page.body.contains(r#"(unverified)</option>"#), "the filter marks it too");
}
