//! The SQL store against a real SQLite file, and against PostgreSQL when
//! `MANDATE_TEST_POSTGRES_URL` is set (each test in a database of its own): one query path, the
//! same assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;

use mandate_core::model::{
    AuditEvent, AuditFilter, AuthorizationCode, Grant, RefreshToken, RetryWindow, RotateOutcome,
};
use mandate_core::secret::SecretHash;
use mandate_core::store::{AuditStore, GrantStore, LoginThrottleStore, MaintenanceStore};
use mandate_store::{OpenError, SqlStore, migration_names};

fn rt(hash: &str, parent: Option<&str>, now: i64) -> RefreshToken {
    common::refresh_token(hash, "g1", parent, now)
}

async fn active_grant(s: &SqlStore) {
    pending_grant(s).await;
    assert!(s.activate_grant("g1", Some(&rt("r0", None, 0)), 0).await.unwrap());
}

async fn pending_grant(s: &SqlStore) {
    common::pending_grant_with_code(s, "u1", "g1", "code").await;
}

#[test]
fn migrations_are_in_lockstep() {
    let (sqlite, postgres) = migration_names();
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
}

async fn codes_are_consumed_exactly_once(s: SqlStore) {
    active_grant(&s).await;
    let h = SecretHash("code".into());
    let results = futures_all(&s, &h).await;
    assert_eq!(results.iter().filter(|r| **r).count(), 1);
    // A second activation of the same grant is refused.
    assert!(!s.activate_grant("g1", None, 1).await.unwrap());
}

async fn futures_all(s: &SqlStore, h: &SecretHash) -> Vec<bool> {
    let mut handles = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let h = h.clone();
        handles.push(tokio::spawn(async move { s.consume_code(&h, 5).await.unwrap() }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn live_tokens(s: &SqlStore) -> i64 {
    use sqlx::Row;
    sqlx::query(
        "SELECT COUNT(*) AS n FROM refresh_tokens WHERE grant_id = 'g1' AND rotated_at IS NULL AND revoked_at IS NULL",
    )
    .fetch_one(s.pool())
    .await
    .unwrap()
    .try_get::<i64, _>("n")
    .unwrap()
}

/// The window core computes at `now` for a grace of `grace` seconds.
fn window(now: i64, grace: i64) -> RetryWindow {
    RetryWindow {
        successor_since: (grace > 0).then(|| now - grace + 1),
        race_since: now - mandate_core::service::RACE_TOLERANCE,
    }
}

fn h(s: &str) -> SecretHash {
    SecretHash(s.into())
}

/// Presents `presented` at `now` with a fresh candidate successor `next` (sealed as "sealed-<next>").
async fn present(s: &SqlStore, presented: &str, next: &str, now: i64, grace: i64) -> RotateOutcome {
    let sealed = (grace > 0).then(|| format!("sealed-{next}"));
    s.rotate_refresh(
        &h(presented),
        &rt(next, Some(presented), now),
        sealed.as_deref(),
        now,
        window(now, grace),
        Box::new(|_| None),
    )
    .await
    .unwrap()
}

async fn sealed_on(s: &SqlStore, hash: &str) -> Option<String> {
    use sqlx::Row;
    sqlx::query("SELECT successor_sealed FROM refresh_tokens WHERE hash = $1")
        .bind(hash)
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get::<Option<String>, _>("successor_sealed")
        .unwrap()
}

async fn token_rows(s: &SqlStore) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM refresh_tokens").fetch_one(s.pool()).await.unwrap().try_get("n").unwrap()
}

async fn grant_revoked(s: &SqlStore) -> bool {
    s.grant("g1").await.unwrap().unwrap().revoked_at.is_some()
}

async fn storm(s: &Arc<SqlStore>, n: usize, grace: i64) -> Vec<(usize, RotateOutcome)> {
    let mut handles = Vec::new();
    for i in 0..n {
        let s = s.clone();
        handles.push(tokio::spawn(async move { (i, present(&s, "r0", &format!("r1-{i}"), 10, grace).await) }));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await.unwrap());
    }
    outcomes
}

async fn a_hundred_concurrent_refreshes_share_one_successor_rt_05_rt_06(s: SqlStore) {
    active_grant(&s).await;
    let s = Arc::new(s);
    let outcomes = storm(&s, 100, 10).await;
    let winners: Vec<usize> = outcomes.iter().filter(|(_, o)| *o == RotateOutcome::Rotated).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let expected = RotateOutcome::Retry {
        successor: h(&format!("r1-{}", winners[0])),
        sealed: format!("sealed-r1-{}", winners[0]),
    };
    for (i, o) in &outcomes {
        if *i != winners[0] {
            assert_eq!(*o, expected, "every other presentation gets the winner's successor");
        }
    }
    assert!(!grant_revoked(&s).await, "family intact");
    assert_eq!(live_tokens(&s).await, 1, "exactly one live successor");
    assert_eq!(token_rows(&s).await, 2, "exactly one successor was ever stored");
}

async fn without_a_window_concurrent_losers_are_refused_and_the_family_survives_rt_05(s: SqlStore) {
    active_grant(&s).await;
    let s = Arc::new(s);
    let outcomes = storm(&s, 50, 0).await;
    let count = |o: RotateOutcome| outcomes.iter().filter(|(_, x)| *x == o).count();
    assert_eq!(count(RotateOutcome::Rotated), 1, "{outcomes:?}");
    assert_eq!(count(RotateOutcome::RaceLost), 49, "{outcomes:?}");
    assert!(!grant_revoked(&s).await, "the winner's family survives");
    assert_eq!(live_tokens(&s).await, 1);
    assert_eq!(sealed_on(&s, "r0").await, None, "nothing is sealed without a window");
}

async fn rotation_keeps_the_successor_sealed_on_the_rotated_token_rt_01(s: SqlStore) {
    active_grant(&s).await;
    assert_eq!(present(&s, "r0", "r1", 10, 10).await, RotateOutcome::Rotated);
    let r0 = s.refresh_token(&h("r0")).await.unwrap().unwrap();
    assert_eq!(r0.rotated_at, Some(10));
    assert_eq!(sealed_on(&s, "r0").await.as_deref(), Some("sealed-r1"));
    let r1 = s.refresh_token(&h("r1")).await.unwrap().unwrap();
    assert_eq!(r1.parent_hash, Some(h("r0")));
    assert_eq!(sealed_on(&s, "r1").await, None);
    assert_eq!(live_tokens(&s).await, 1);
}

async fn a_replay_inside_the_window_returns_the_same_successor_and_inserts_nothing_rt_06_rt_07(s: SqlStore) {
    active_grant(&s).await;
    assert_eq!(present(&s, "r0", "r1", 10, 10).await, RotateOutcome::Rotated);
    // Up to the last second of the 10 s window (rotated_at 10 > 19 - 10).
    for now in [10, 15, 19] {
        assert_eq!(
            present(&s, "r0", &format!("r1-{now}"), now, 10).await,
            RotateOutcome::Retry { successor: h("r1"), sealed: "sealed-r1".into() },
            "at {now}"
        );
    }
    assert_eq!(token_rows(&s).await, 2, "no candidate successor was stored");
    assert_eq!(live_tokens(&s).await, 1);
    assert!(!grant_revoked(&s).await);
    assert_eq!(sealed_on(&s, "r0").await.as_deref(), Some("sealed-r1"), "the sealed successor is unchanged");
}

async fn a_replay_after_the_window_is_reuse_rt_02_rt_06(s: SqlStore) {
    active_grant(&s).await;
    assert_eq!(present(&s, "r0", "r1", 10, 10).await, RotateOutcome::Rotated);
    assert_eq!(present(&s, "r0", "r1b", 20, 10).await, RotateOutcome::ReuseDetected);
    assert!(grant_revoked(&s).await);
    assert_eq!(live_tokens(&s).await, 0, "the successor is revoked with the family");
    assert_eq!(sealed_on(&s, "r0").await, None, "a revoked family keeps no sealed successor");
    // The revoked successor is inactive now.
    assert_eq!(present(&s, "r1", "r2", 21, 10).await, RotateOutcome::Inactive);
}

async fn a_replay_after_the_successor_was_used_is_reuse_rt_02_rt_03(s: SqlStore) {
    active_grant(&s).await;
    assert_eq!(present(&s, "r0", "r1", 10, 10).await, RotateOutcome::Rotated);
    assert_eq!(present(&s, "r1", "r2", 11, 10).await, RotateOutcome::Rotated);
    // Inside r0's window, but its successor is spent: reuse.
    assert_eq!(present(&s, "r0", "r1b", 12, 10).await, RotateOutcome::ReuseDetected);
    assert!(grant_revoked(&s).await);
    assert_eq!(live_tokens(&s).await, 0, "r2 is revoked too");
}

async fn the_sealed_successor_is_cleared_when_the_successor_rotates(s: SqlStore) {
    active_grant(&s).await;
    present(&s, "r0", "r1", 10, 10).await;
    assert!(sealed_on(&s, "r0").await.is_some());
    assert_eq!(present(&s, "r1", "r2", 11, 10).await, RotateOutcome::Rotated);
    assert_eq!(sealed_on(&s, "r0").await, None, "r0 can no longer lead forward");
    assert_eq!(sealed_on(&s, "r1").await.as_deref(), Some("sealed-r2"));
    // A retry of r1 still gets r2 back.
    assert_eq!(
        present(&s, "r1", "r2b", 12, 10).await,
        RotateOutcome::Retry { successor: h("r2"), sealed: "sealed-r2".into() }
    );
}

async fn without_a_window_a_race_loser_is_refused_then_a_late_replay_is_reuse_rt_04_rt_05(s: SqlStore) {
    active_grant(&s).await;
    assert_eq!(present(&s, "r0", "r1", 10, 0).await, RotateOutcome::Rotated);
    // The same second and the next: a concurrent request that lost the race.
    assert_eq!(present(&s, "r0", "r1b", 10, 0).await, RotateOutcome::RaceLost);
    assert_eq!(present(&s, "r0", "r1c", 11, 0).await, RotateOutcome::RaceLost);
    assert!(!grant_revoked(&s).await, "no revocation");
    assert_eq!(live_tokens(&s).await, 1);
    assert_eq!(token_rows(&s).await, 2);
    // Two seconds later: reuse.
    assert_eq!(present(&s, "r0", "r1d", 12, 0).await, RotateOutcome::ReuseDetected);
    assert!(grant_revoked(&s).await);
    assert_eq!(live_tokens(&s).await, 0);
}

async fn without_a_window_a_replay_after_the_successor_was_used_is_reuse_rt_04(s: SqlStore) {
    // RT1 → RT2 → RT3 in one second, then RT1 again: reuse, RT3 revoked.
    active_grant(&s).await;
    assert_eq!(present(&s, "r0", "r1", 10, 0).await, RotateOutcome::Rotated);
    assert_eq!(present(&s, "r1", "r2", 10, 0).await, RotateOutcome::Rotated);
    assert_eq!(present(&s, "r0", "r1b", 10, 0).await, RotateOutcome::ReuseDetected);
    assert!(grant_revoked(&s).await);
    assert_eq!(live_tokens(&s).await, 0);
}

async fn a_refresh_locks_the_grant_row_and_leaves_last_used_alone(s: SqlStore) {
    use sqlx::Acquire;
    active_grant(&s).await;
    let before = s.grant("g1").await.unwrap().unwrap().last_used_at;
    // Another family operation holds the grant row (PostgreSQL row lock; SQLite write lock).
    let mut conn = s.pool().acquire().await.unwrap();
    let mut holder = conn.begin().await.unwrap();
    sqlx::query("UPDATE grants SET scope = scope WHERE id = 'g1'").execute(&mut *holder).await.unwrap();
    let store = Arc::new(s.clone());
    let mut rotation = tokio::spawn(async move { present(&store, "r0", "r1", 10, 10).await });
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut rotation).await.is_err(),
        "the rotation waits for the grant row"
    );
    holder.commit().await.unwrap();
    drop(conn);
    // Once it has the lock, the no-op update matched the live grant: the rotation proceeds.
    assert_eq!(rotation.await.unwrap(), RotateOutcome::Rotated);
    assert_eq!(s.grant("g1").await.unwrap().unwrap().last_used_at, before, "a refresh is not MCP use");
    // A revoked grant matches nothing: nothing is rotated.
    s.revoke_grant("g1", 11).await.unwrap();
    assert_eq!(present(&s, "r1", "r2", 12, 10).await, RotateOutcome::Inactive);
}

async fn purge_removes_only_what_can_no_longer_be_used(s: SqlStore) {
    active_grant(&s).await;
    // The live refresh token (expires at 1000) and the active grant survive a purge at 500.
    assert_eq!(s.purge_expired(500, 490).await.unwrap(), 0);
    assert!(s.refresh_token(&SecretHash("r0".into())).await.unwrap().is_some());
    // Past its expiry (and the code's one-day grace) both the token and the code go; the grant stays.
    let removed = s.purge_expired(200_000, 199_990).await.unwrap();
    assert_eq!(removed, 2);
    assert!(s.refresh_token(&SecretHash("r0".into())).await.unwrap().is_none());
    assert!(s.grant("g1").await.unwrap().is_some());
}

async fn a_revoked_grant_is_collected_once_nothing_refers_to_it_rl_13(s: SqlStore) {
    active_grant(&s).await;
    assert!(s.revoke_grant("g1", 10).await.unwrap());
    // Its refresh token (expiring at 1000) and its code (kept a day past its expiry, so that a
    // replay still gets a precise answer) still refer to it: it stays.
    assert_eq!(s.purge_expired(500, 490).await.unwrap(), 0);
    assert!(s.grant("g1").await.unwrap().is_some());
    // Once both are gone, so is the grant; an access token naming it is still refused.
    assert_eq!(s.purge_expired(200_000, 199_990).await.unwrap(), 3);
    assert!(s.grant("g1").await.unwrap().is_none());
    assert!(s.access_revoked(Some("g1"), None).await.unwrap());
}

async fn audit_events_past_their_retention_are_deleted_in_batches(s: SqlStore) {
    let event = |id: usize, at: i64| AuditEvent {
        id: format!("e{id}"),
        at,
        kind: "token.issued".into(),
        outcome: "success".into(),
        user_id: Some("u1".into()),
        client_id: None,
        grant_id: None,
        detail: None,
    };
    // 12,000 old events (more than two batches) and three recent ones.
    let old: Vec<AuditEvent> = (0..12_000).map(|i| event(i, 100 + i64::try_from(i % 50).unwrap())).collect();
    for chunk in old.chunks(1000) {
        s.append_all(chunk).await.unwrap();
    }
    s.append_all(&[event(20_000, 5_000), event(20_001, 5_001), event(20_002, 9_000)]).await.unwrap();
    // A limit stops a run part-way (the next run goes on), oldest first.
    assert_eq!(s.purge_audit(1_000, 7_000).await.unwrap(), 7_000);
    assert_eq!(s.purge_audit(1_000, 100_000).await.unwrap(), 5_000);
    assert_eq!(s.purge_audit(1_000, 100_000).await.unwrap(), 0);
    let left = s.events(&AuditFilter { limit: 100, ..AuditFilter::default() }).await.unwrap();
    let ids: Vec<&str> = left.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e20000", "e20001", "e20002"], "only events at or after the cutoff are kept");
    assert_eq!(s.purge_audit(5_001, 100_000).await.unwrap(), 1);
}

async fn purge_clears_sealed_successors_whose_window_has_passed(s: SqlStore) {
    active_grant(&s).await;
    present(&s, "r0", "r1", 10, 10).await;
    // At 19 the window (10 s) is open: rotated_at 10 > 19 - 10.
    assert_eq!(s.purge_expired(19, 9).await.unwrap(), 0);
    assert!(sealed_on(&s, "r0").await.is_some());
    // At 20 it has passed.
    assert_eq!(s.purge_expired(20, 10).await.unwrap(), 1);
    assert_eq!(sealed_on(&s, "r0").await, None);
    // Without the sealed value, a presentation inside a (longer) window is refused, not answered.
    assert_eq!(present(&s, "r0", "r1b", 21, 60).await, RotateOutcome::RaceLost);
    assert!(!grant_revoked(&s).await);
}

async fn a_family_revocation_clears_the_sealed_successor(s: SqlStore) {
    active_grant(&s).await;
    present(&s, "r0", "r1", 10, 10).await;
    assert!(s.revoke_grant("g1", 11).await.unwrap());
    assert_eq!(sealed_on(&s, "r0").await, None);
    assert_eq!(present(&s, "r0", "r1b", 12, 10).await, RotateOutcome::Inactive);
}

async fn one_query_answers_whether_an_access_token_is_revoked(s: SqlStore) {
    active_grant(&s).await;
    assert!(!s.access_revoked(Some("g1"), Some("j1")).await.unwrap());
    assert!(!s.access_revoked(None, None).await.unwrap());
    assert!(s.access_revoked(Some("no-such-grant"), None).await.unwrap());
    s.revoke_access_token("j1", 10_000).await.unwrap();
    assert!(s.access_revoked(Some("g1"), Some("j1")).await.unwrap());
    assert!(!s.access_revoked(Some("g1"), Some("j2")).await.unwrap());
    s.revoke_grant("g1", 5).await.unwrap();
    assert!(s.access_revoked(Some("g1"), Some("j2")).await.unwrap());
}

async fn concurrent_login_failures_all_count_ui_12(s: SqlStore) {
    let s = Arc::new(s);
    let mut handles = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        handles.push(tokio::spawn(async move { s.record_login_failure("alice", 100, 0).await.unwrap() }));
    }
    let mut counts = Vec::new();
    for h in handles {
        counts.push(h.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<i64>>(), "every failure counted exactly once");
    // A failure after the window starts a new count.
    assert_eq!(s.record_login_failure("alice", 10_000, 9_000).await.unwrap(), 1);
    s.lock_login("alice", 10_060).await.unwrap();
    assert_eq!(s.login_locked_until("alice").await.unwrap(), Some(10_060));
    s.clear_login_failures("alice").await.unwrap();
    assert_eq!(s.login_locked_until("alice").await.unwrap(), None);
}

on_both_engines!(
    concurrent_login_failures_all_count_ui_12,
    codes_are_consumed_exactly_once,
    a_hundred_concurrent_refreshes_share_one_successor_rt_05_rt_06,
    without_a_window_concurrent_losers_are_refused_and_the_family_survives_rt_05,
    rotation_keeps_the_successor_sealed_on_the_rotated_token_rt_01,
    a_replay_inside_the_window_returns_the_same_successor_and_inserts_nothing_rt_06_rt_07,
    a_replay_after_the_window_is_reuse_rt_02_rt_06,
    a_replay_after_the_successor_was_used_is_reuse_rt_02_rt_03,
    the_sealed_successor_is_cleared_when_the_successor_rotates,
    without_a_window_a_race_loser_is_refused_then_a_late_replay_is_reuse_rt_04_rt_05,
    without_a_window_a_replay_after_the_successor_was_used_is_reuse_rt_04,
    a_refresh_locks_the_grant_row_and_leaves_last_used_alone,
    purge_removes_only_what_can_no_longer_be_used,
    a_revoked_grant_is_collected_once_nothing_refers_to_it_rl_13,
    audit_events_past_their_retention_are_deleted_in_batches,
    purge_clears_sealed_successors_whose_window_has_passed,
    a_family_revocation_clears_the_sealed_successor,
    one_query_answers_whether_an_access_token_is_revoked,
    a_schema_newer_than_this_build_is_refused,
    a_code_is_redeemed_once_with_its_grant_in_one_transaction,
    mcp_sessions_keep_their_owner_and_are_bounded_rs14,
    the_database_answers_a_ping
);

async fn a_schema_newer_than_this_build_is_refused(s: SqlStore) {
    let status = s.schema_status().await.unwrap();
    assert!(status.pending().is_empty() && status.unknown().is_empty(), "{status:?}");
    assert_eq!(status.current(), *status.known.iter().max().unwrap());
    // A later mandate applied a migration this build does not have.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, 0)",
    )
    .bind(29_990_101_000_000_i64)
    .bind("from the future")
    .bind(vec![0_u8; 48])
    .execute(s.pool())
    .await
    .unwrap();
    match s.migrate().await {
        Err(OpenError::SchemaNewer { applied, known }) => {
            assert_eq!(applied, 29_990_101_000_000);
            assert!(known < applied);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn mcp_sessions_keep_their_owner_and_are_bounded_rs14(s: SqlStore) {
    use mandate_core::store::McpSessionStore;
    s.save_mcp_session_state("s1", r#"{"initialize_params":{}}"#, 100).await.unwrap();
    s.bind_mcp_session("s1", "alice", 100, 3).await.unwrap();
    // A second bind cannot take the session over.
    s.bind_mcp_session("s1", "mallory", 101, 3).await.unwrap();
    assert_eq!(s.touch_mcp_session("s1", 102, 0).await.unwrap().as_deref(), Some("alice"));
    assert!(s.mcp_session_state("s1", 0).await.unwrap().unwrap().contains("initialize_params"));
    // Idle sessions are not honoured.
    assert_eq!(s.touch_mcp_session("s1", 5000, 4000).await.unwrap(), None);
    // At most `keep` per owner; the least recently used goes.
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        assert!(s.bind_mcp_session(id, "bob", 200 + i as i64, 3).await.unwrap().is_empty());
    }
    // The dropped ids are returned: their sessions leave memory too.
    assert_eq!(s.bind_mcp_session("d", "bob", 203, 3).await.unwrap(), ["a"]);
    assert_eq!(s.touch_mcp_session("a", 300, 0).await.unwrap(), None, "the oldest was dropped");
    assert_eq!(s.touch_mcp_session("d", 300, 0).await.unwrap().as_deref(), Some("bob"));
    s.delete_mcp_session("d").await.unwrap();
    assert_eq!(s.touch_mcp_session("d", 301, 0).await.unwrap(), None);
    // State without an owner is not a session anyone may use.
    s.save_mcp_session_state("orphan", "{}", 100).await.unwrap();
    assert_eq!(s.touch_mcp_session("orphan", 101, 0).await.unwrap(), None);
}

async fn a_code_is_redeemed_once_with_its_grant_in_one_transaction(s: SqlStore) {
    use mandate_core::model::Redemption;
    pending_grant(&s).await;
    let code = SecretHash("code".into());
    let mut handles = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let code = code.clone();
        handles.push(tokio::spawn(async move {
            s.redeem_code(&code, "g1", Some(&rt(&format!("first{i}"), None, 5)), 5, Box::new(|_| None)).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == Redemption::Activated).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| *o != Redemption::GrantRevoked), "{outcomes:?}");
    assert_eq!(live_tokens(&s).await, 1, "exactly one first refresh token");
    // A code whose grant was revoked meanwhile is spent, and nothing is activated.
    let g2 = Grant { id: "g2".into(), ..s.grant("g1").await.unwrap().unwrap() };
    let g2 = Grant { activated_at: None, revoked_at: None, ..g2 };
    let c2 = AuthorizationCode {
        hash: SecretHash("code2".into()),
        grant_id: "g2".into(),
        ..s.code(&code).await.unwrap().unwrap()
    };
    let c2 = AuthorizationCode { consumed_at: None, ..c2 };
    s.insert_grant_with_code(&g2, &c2, None).await.unwrap();
    s.revoke_grant("g2", 6).await.unwrap();
    assert_eq!(s.redeem_code(&c2.hash, "g2", None, 7, Box::new(|_| None)).await.unwrap(), Redemption::GrantRevoked);
    assert_eq!(s.redeem_code(&c2.hash, "g2", None, 8, Box::new(|_| None)).await.unwrap(), Redemption::CodeAlreadyUsed);
}

async fn the_database_answers_a_ping(s: SqlStore) {
    s.ping().await.unwrap();
    s.close().await;
    assert!(matches!(s.ping().await, Err(mandate_core::error::StoreError::Unavailable(_))));
}
