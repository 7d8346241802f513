//! The SQLite write path: one writer, group commit with a savepoint per write, commits fsync'd
//! before they are answered, and the audit record in the same transaction as its change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::sqlite;
use mandate_core::StoreError;
use mandate_core::model::{AuditEvent, AuditFilter, Grant, RefreshToken, RetryWindow, RotateOutcome, User};
use mandate_core::scope::ScopeSet;
use mandate_core::secret::SecretHash;
use mandate_core::store::{AuditStore, GrantStore, UserStore};
use mandate_store::SqlStore;

fn user(id: &str, name: &str) -> User {
    User { id: id.into(), username: name.into(), password_hash: "x".into(), created_at: 0, disabled: false }
}

/// Every connection commits with `synchronous = FULL` (2): an answered write survives power loss.
#[tokio::test]
async fn commits_are_fsynced_before_they_are_answered() {
    let (_d, s) = sqlite().await;
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(s.pool()).await.unwrap();
    assert_eq!(level, 2, "synchronous = FULL");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(s.pool()).await.unwrap();
    assert_eq!(mode, "wal");
}

/// Writes queued together share a transaction, each in a savepoint of its own: one that fails
/// (a username taken) is undone alone; the others are all committed and answered.
#[tokio::test]
async fn one_failing_write_does_not_abort_its_batch() {
    let (_d, s) = sqlite().await;
    s.insert_user(&user("u0", "taken")).await.unwrap();
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // Every eighth write reuses a taken name.
            let name = if i % 8 == 0 { "taken".to_owned() } else { format!("person{i}") };
            s.insert_user(&user(&format!("u{}", i + 1), &name)).await
        }));
    }
    let mut conflicts = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => assert_ne!(i % 8, 0),
            Err(StoreError::Conflict(_)) => {
                assert_eq!(i % 8, 0);
                conflicts += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(conflicts, 8);
    let users = s.list_users().await.unwrap();
    assert_eq!(users.len(), 1 + 56);
    assert_eq!(s.write_queue_depth(), 0);
}

/// The rotation and its audit record are one transaction: both are there, or neither.
#[tokio::test]
async fn a_rotation_and_its_audit_record_commit_together() {
    let (_d, s) = sqlite().await;
    s.insert_user(&user("u1", "ann")).await.unwrap();
    let g = Grant {
        id: "g1".into(),
        user_id: "u1".into(),
        client_id: "c1".into(),
        scope: ScopeSet::parse("a").unwrap(),
        resource: "https://r".into(),
        created_at: 0,
        activated_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    let token = |hash: &str, parent: Option<&str>| RefreshToken {
        hash: SecretHash(hash.into()),
        grant_id: "g1".into(),
        parent_hash: parent.map(|p| SecretHash(p.into())),
        scope: g.scope.clone(),
        issued_at: 0,
        expires_at: 1000,
        rotated_at: None,
        revoked_at: None,
    };
    let code = mandate_core::model::AuthorizationCode {
        hash: SecretHash("code".into()),
        grant_id: "g1".into(),
        client_id: "c1".into(),
        user_id: "u1".into(),
        redirect_uri: "https://a/cb".into(),
        redirect_uri_explicit: true,
        code_challenge: "x".into(),
        scope: g.scope.clone(),
        resource: g.resource.clone(),
        expires_at: 60,
        consumed_at: None,
    };
    s.insert_grant_with_code(&g, &code, None).await.unwrap();
    assert!(s.activate_grant("g1", Some(&token("r0", None)), 0).await.unwrap());
    let event = |kind: &str| AuditEvent {
        id: format!("e-{kind}"),
        at: 1,
        kind: kind.into(),
        outcome: "success".into(),
        user_id: Some("u1".into()),
        client_id: Some("c1".into()),
        grant_id: Some("g1".into()),
        detail: None,
    };
    let window = RetryWindow { successor_since: None, race_since: 1 };
    let record = event("token.refreshed");
    let outcome = s
        .rotate_refresh(
            &SecretHash("r0".into()),
            &token("r1", Some("r0")),
            None,
            1,
            window,
            Box::new(move |o| (*o == RotateOutcome::Rotated).then(|| record.clone())),
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Rotated);
    let trail = s.events(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(trail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["token.refreshed"]);

    // A write that fails after its record was made leaves neither: an event with a taken id
    // fails the insert, and the rotation it recorded is undone with it.
    let duplicate = event("token.refreshed");
    let failed = s
        .rotate_refresh(
            &SecretHash("r1".into()),
            &token("r2", Some("r1")),
            None,
            2,
            RetryWindow { successor_since: None, race_since: 2 },
            Box::new(move |_| Some(duplicate.clone())),
        )
        .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    let r1 = s.refresh_token(&SecretHash("r1".into())).await.unwrap().unwrap();
    assert_eq!(r1.rotated_at, None, "the rotation was undone with its record");
    assert!(s.refresh_token(&SecretHash("r2".into())).await.unwrap().is_none());
}

/// After `close`, queued writes have been committed and later writes are refused as unavailable.
#[tokio::test]
async fn close_commits_what_is_queued_then_refuses_writes() {
    let (dir, s) = sqlite().await;
    s.insert_user(&user("u1", "ann")).await.unwrap();
    s.close().await;
    assert!(matches!(s.insert_user(&user("u2", "bob")).await, Err(StoreError::Unavailable(_))));
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let reopened = SqlStore::open(&url).await.unwrap();
    assert_eq!(reopened.list_users().await.unwrap().len(), 1);
}
