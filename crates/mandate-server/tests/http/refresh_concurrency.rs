//! Refresh-token rotation under concurrency (issue 9): a burst of presentations of one token by
//! its client shares one successor and the family survives; outside the window it is reuse.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use mandate_core::secret::SecretHash;
use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

async fn issued_with(refresh_grace: i64) -> (TestServer, String, Value) {
    let s = TestServer::start_with(Options { refresh_grace, ..Options::default() }).await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (status, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    (s, client, tok)
}

/// `n` refreshes of `rt` at once, each on a connection of its own.
async fn burst(s: &TestServer, client: &str, rt: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, client, rt) = (s.url("/token"), client.to_owned(), rt.to_owned());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", client.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn err(status: StatusCode, v: &Value) -> (StatusCode, &str) {
    (status, v["error"].as_str().unwrap_or("<none>"))
}

async fn live_refresh_hashes(s: &TestServer) -> Vec<String> {
    s.db_strings("SELECT hash FROM refresh_tokens WHERE rotated_at IS NULL AND revoked_at IS NULL").await
}

async fn grants_revoked(s: &TestServer) -> i64 {
    s.db_count("SELECT COUNT(*) FROM grants WHERE revoked_at IS NOT NULL").await
}

/// 100 concurrent refreshes answered 200 with one successor; returns it.
async fn hundred_share_one_successor(s: &TestServer, client: &str, rt1: &str) -> String {
    let answers = burst(s, client, rt1, 100).await;
    let mut successors = HashSet::new();
    let mut access = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
        access.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(successors.len(), 1, "every 200 carries the same successor");
    assert_eq!(access.len(), 100, "each answer carries an access token of its own");
    let (rs, rs_secret) = s.resource_server().await;
    for at in &access {
        let info = s.introspect(&rs, &rs_secret, at).await;
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["client_id"], client);
    }
    let rt2 = successors.into_iter().next().unwrap();
    assert_ne!(rt2, rt1);
    // Exactly one successor was ever stored, and it is the family's one live token.
    assert_eq!(s.db_count("SELECT COUNT(*) FROM refresh_tokens").await, 2);
    assert_eq!(live_refresh_hashes(s).await, vec![SecretHash::of(&rt2).0]);
    assert_eq!(grants_revoked(s).await, 0, "the family is intact");
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    let refreshed: Vec<_> = events.iter().filter(|e| e.kind == "token.refreshed").collect();
    assert_eq!(refreshed.iter().filter(|e| e.detail.as_deref() == Some("rotated")).count(), 1);
    assert_eq!(
        refreshed
            .iter()
            .filter(|e| e.outcome == "success"
                && e.detail.as_deref() == Some("retry inside the grace window: the same successor was returned"))
            .count(),
        99
    );
    rt2
}

#[tokio::test]
async fn a_hundred_concurrent_refreshes_share_one_successor_then_the_original_after_the_window_is_reuse_rt_05_rt_06() {
    let (s, client, tok) = issued_with(10).await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let rt2 = hundred_share_one_successor(&s, &client, &rt1).await;
    // The window is 10 s: at +9 the original still gets the same successor, at +10 it is reuse.
    s.clock.advance(9);
    let (st, body) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["refresh_token"], rt2.as_str());
    s.clock.advance(1);
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(grants_revoked(&s).await, 1, "the family is revoked");
    let (st, v) = refresh(&s, &client, &rt2).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "the successor is refused too");
    assert!(live_refresh_hashes(&s).await.is_empty());
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    let reuse: Vec<_> = events.iter().filter(|e| e.kind == "token.reuse_detected").collect();
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].outcome, "grant_revoked");
}

#[tokio::test]
async fn after_a_burst_the_successor_refreshes_and_the_original_is_then_reuse_rt_05_rt_02() {
    let (s, client, tok) = issued_with(10).await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let rt2 = hundred_share_one_successor(&s, &client, &rt1).await;
    let (st, body) = refresh(&s, &client, &rt2).await;
    assert_eq!(st, StatusCode::OK, "the family lives on: {body}");
    let rt3 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(live_refresh_hashes(&s).await, vec![SecretHash::of(&rt3).0]);
    // Still inside rt1's window, but its successor is used: reuse.
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(grants_revoked(&s).await, 1);
    let (st, v) = refresh(&s, &client, &rt3).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

/// With no window, 50 at once: one winner, the others `invalid_grant`, nothing revoked.
async fn fifty_one_winner(s: &TestServer, client: &str, rt1: &str) -> String {
    let answers = burst(s, client, rt1, 50).await;
    let mut winners = Vec::new();
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => winners.push(body["refresh_token"].as_str().unwrap().to_owned()),
            other => assert_eq!(err(other, body), (StatusCode::BAD_REQUEST, "invalid_grant")),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one 200");
    assert_eq!(grants_revoked(s).await, 0, "the losers revoked nothing");
    assert_eq!(live_refresh_hashes(s).await, vec![SecretHash::of(&winners[0]).0]);
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "token.refreshed" && e.outcome == "refused").count(), 49);
    assert!(!events.iter().any(|e| e.kind == "token.reuse_detected"));
    winners.remove(0)
}

#[tokio::test]
async fn without_a_window_fifty_concurrent_refreshes_have_one_winner_whose_successor_works_rt_05() {
    let (s, client, tok) = issued_with(0).await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let rt2 = fifty_one_winner(&s, &client, &rt1).await;
    let (st, body) = refresh(&s, &client, &rt2).await;
    assert_eq!(st, StatusCode::OK, "the winner's successor works: {body}");
    let rt3 = body["refresh_token"].as_str().unwrap().to_owned();
    s.clock.advance(2);
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(grants_revoked(&s).await, 1, "reuse revokes the family");
    let (st, v) = refresh(&s, &client, &rt3).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn without_a_window_the_original_is_refused_harmlessly_for_a_second_then_is_reuse_rt_04_rt_05() {
    let (s, client, tok) = issued_with(0).await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let rt2 = fifty_one_winner(&s, &client, &rt1).await;
    // The next clock second is still the race (RACE_TOLERANCE = 1 s).
    s.clock.advance(1);
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(grants_revoked(&s).await, 0);
    // Two seconds after the rotation: reuse.
    s.clock.advance(1);
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(grants_revoked(&s).await, 1);
    let (st, v) = refresh(&s, &client, &rt2).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "the winner's successor is revoked too");
}

#[tokio::test]
async fn a_sealed_successor_that_does_not_open_is_a_server_error_not_a_token() {
    let (s, client, tok) = issued_with(10).await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let (st, _) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK);
    // Someone with write access to the database swaps the sealed value for one of their own
    // (nonce || "mrt_forgedsuccessortoken" || zeros): it does not open with rt1's key.
    let swapped = s
        .db_execute(
            "UPDATE refresh_tokens SET successor_sealed = 'AAAAAAAAAAAAAAAAbXJ0X2ZvcmdlZHN1Y2Nlc3NvcnRva2VuAAAAAAAAAAAAAAAAAAAA' \
             WHERE successor_sealed IS NOT NULL",
        )
        .await;
    assert_eq!(swapped, 1);
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::INTERNAL_SERVER_ERROR, "server_error"));
    assert_eq!(v["error_description"], "the server could not complete the request", "a generic body");
    assert!(v.get("refresh_token").is_none());
    assert_eq!(grants_revoked(&s).await, 0);
}

/// RL-01: the race above, a hundred times in a row on one family: each round exactly one winner,
/// one live refresh token after it, nothing revoked, and the last successor works.
#[tokio::test]
async fn a_hundred_rounds_of_fifty_concurrent_refreshes_each_have_one_winner_rl_01() {
    let (s, client, tok) = issued_with(0).await;
    let mut rt = tok["refresh_token"].as_str().unwrap().to_owned();
    for round in 0..100 {
        let answers = burst(&s, &client, &rt, 50).await;
        let mut winners = Vec::new();
        for (status, body) in &answers {
            match *status {
                StatusCode::OK => winners.push(body["refresh_token"].as_str().unwrap().to_owned()),
                other => assert_eq!(err(other, body), (StatusCode::BAD_REQUEST, "invalid_grant"), "round {round}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one 200");
        rt = winners.remove(0);
        assert_eq!(live_refresh_hashes(&s).await, vec![SecretHash::of(&rt).0], "round {round}: one live token");
    }
    assert_eq!(grants_revoked(&s).await, 0, "no round revoked the family");
    let (st, body) = refresh(&s, &client, &rt).await;
    assert_eq!(st, StatusCode::OK, "the last successor works: {body}");
}

/// RL-04: a fail point between the rotation's steps. A trigger makes the insert of the successor
/// fail after the presented token was marked rotated, inside the same transaction: the refresh
/// fails, and afterwards the presented token is still the one live token of the family (never
/// both, never none), usable once the fault is gone, with nothing revoked.
#[tokio::test]
async fn a_rotation_failing_between_its_steps_leaves_the_old_token_alone_rl_04() {
    if engine_is_postgres() {
        return; // the fail point is a SQLite trigger
    }
    let (s, client, tok) = issued_with(0).await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let rows = s.db_count("SELECT COUNT(*) FROM refresh_tokens").await;
    s.db_execute(
        "CREATE TRIGGER rl04_fail_point BEFORE INSERT ON refresh_tokens BEGIN SELECT RAISE(ABORT, 'fail point'); END",
    )
    .await;
    let (st, body) = refresh(&s, &client, &rt1).await;
    assert!(st.is_server_error(), "the refresh fails: {st} {body}");
    assert!(body.get("refresh_token").is_none() && body.get("access_token").is_none(), "{body}");
    assert_eq!(live_refresh_hashes(&s).await, vec![SecretHash::of(&rt1).0], "the old token is still the live one");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM refresh_tokens").await, rows, "no successor was stored");
    s.db_execute("DROP TRIGGER rl04_fail_point").await;
    let (st, body) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK, "the old token still works: {body}");
    assert_eq!(grants_revoked(&s).await, 0, "the failed attempt was not reuse");
    let (st, _) = refresh(&s, &client, body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK);
}
