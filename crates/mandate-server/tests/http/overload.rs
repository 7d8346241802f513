//! A slow or locked database and an overload (security-tests.md RL-08, RL-14): requests are
//! answered 503 `temporarily_unavailable` with `Retry-After` at the configured deadline, or at
//! once past `max_in_flight`; a request answered 503 changed nothing; the server recovers by
//! itself once the database or the load lets go. Runs on SQLite and, with
//! `MANDATE_TEST_ENGINE=postgres`, on PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{AnyConnection, Connection, Executor};

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

/// Another connection that holds the database's write lock (SQLite: `BEGIN IMMEDIATE`), or, on
/// PostgreSQL, an exclusive lock on the refresh tokens that blocks their reads and writes, until
/// [`LockHolder::release`].
struct LockHolder(AnyConnection);

impl LockHolder {
    async fn take(s: &TestServer) -> Self {
        let mut conn = AnyConnection::connect(s.db.url()).await.unwrap();
        if engine_is_postgres() {
            conn.execute("BEGIN").await.unwrap();
            conn.execute("LOCK TABLE refresh_tokens IN ACCESS EXCLUSIVE MODE").await.unwrap();
        } else {
            conn.execute("BEGIN IMMEDIATE").await.unwrap();
        }
        Self(conn)
    }

    async fn release(mut self) {
        self.0.execute("ROLLBACK").await.unwrap();
        self.0.close().await.unwrap();
    }
}

/// A server with these limits and `n` refresh tokens of alice's, each from a public client of
/// its own, with no grace window: a rotation that happened, even unanswered, makes the next
/// presentation of the old token a reuse.
async fn issued(request_timeout: Duration, max_in_flight: usize, n: usize) -> (TestServer, Vec<(String, String)>) {
    let s = TestServer::start_with(Options {
        refresh_grace: 0,
        request_timeout: Some(request_timeout),
        max_in_flight: Some(max_in_flight),
        ..Options::default()
    })
    .await;
    let mut tokens = Vec::new();
    for _ in 0..n {
        let client = s.register_public(CB).await;
        let (code, verifier) = authorize_code(&s, &mut s.browser(), &client, CB, &["customers.read"]).await;
        let (status, tok) = redeem(&s, &client, CB, &code, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{tok}");
        tokens.push((client, tok["refresh_token"].as_str().unwrap().to_owned()));
    }
    (s, tokens)
}

/// A refresh on a connection of its own: (status, Retry-After, body, how long it took).
async fn refresh_timed(url: String, client: String, rt: String) -> (StatusCode, Option<String>, Value, Duration) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let t0 = Instant::now();
    let r = http
        .post(url)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, retry, body, t0.elapsed())
}

fn assert_unavailable(status: StatusCode, retry: Option<&str>, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert_eq!(retry, Some("1"));
}

#[tokio::test]
async fn rl08_a_locked_database_is_answered_503_at_the_deadline_and_the_request_changed_nothing() {
    let deadline = Duration::from_millis(1500);
    let (s, tokens) = issued(deadline, 256, 1).await;
    let (client, rt) = &tokens[0];
    let lock = LockHolder::take(&s).await;

    let (status, retry, body, took) = refresh_timed(s.url("/token"), client.clone(), rt.clone()).await;
    assert_unavailable(status, retry.as_deref(), &body);
    assert!(took >= deadline && took < deadline * 3, "answered after {took:?}, the deadline is {deadline:?}");

    // Revoking the family meets the same lock: also 503 at the deadline, not a silent 200.
    let t0 = Instant::now();
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("token", rt.as_str()), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = r.status();
    assert_unavailable(status, retry.as_deref(), &r.json().await.unwrap());
    assert!(t0.elapsed() < deadline * 3);

    lock.release().await;

    // Neither the refresh nor the revocation answered 503 happened: the token rotates exactly
    // once now (with no grace window, a rotation that had happened would make this a reuse).
    let (status, next) = refresh(&s, client, rt).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let (status, again) = refresh(&s, client, rt).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // The pool recovered: every connection is usable again.
    for _ in 0..20 {
        let r = s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (status, _, body) =
            s.token(&[("grant_type", "refresh_token"), ("refresh_token", "unknown"), ("client_id", client)]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    }
}

#[tokio::test]
async fn rl14_requests_past_max_in_flight_are_refused_at_once_and_the_server_recovers() {
    let deadline = Duration::from_secs(5);
    let (s, tokens) = issued(deadline, 2, 3).await;
    let lock = LockHolder::take(&s).await;

    // Two refreshes take both slots and wait on the lock.
    let mut held = Vec::new();
    for (client, rt) in &tokens[..2] {
        held.push(tokio::spawn(refresh_timed(s.url("/token"), client.clone(), rt.clone())));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Ten times more at once: each is refused at once, none waits for a slot.
    let t0 = Instant::now();
    let mut shed = Vec::new();
    for _ in 0..20 {
        shed.push(tokio::spawn(refresh_timed(s.url("/token"), tokens[2].0.clone(), tokens[2].1.clone())));
    }
    for task in shed {
        let (status, retry, body, took) = task.await.unwrap();
        assert_unavailable(status, retry.as_deref(), &body);
        assert!(took < Duration::from_secs(1), "a shed request took {took:?}");
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Every authorization-server route is bounded, metadata included; the health probes are
    // not, so an orchestrator still sees the process alive during the overload.
    let r = s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    lock.release().await;

    // The two that held the slots complete once the lock is gone, well inside their deadline.
    for task in held {
        let (status, _, body, took) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(took < deadline);
    }
    // Recovered at once: the shed requests changed nothing, so the third token rotates once.
    let (status, next) = refresh(&s, &tokens[2].0, &tokens[2].1).await;
    assert_eq!(status, StatusCode::OK, "{next}");
}
