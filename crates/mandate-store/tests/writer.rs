//! The SQLite write path: one writer, group commit with a savepoint per write, commits fsync'd
//! before they are answered (the audit record in the same transaction as its change: token_writes.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::sqlite;
use mandate_core::StoreError;
use mandate_core::model::User;
use mandate_core::store::UserStore;
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
