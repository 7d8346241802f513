//! The engines themselves: both migrations produce the same schema, PostgreSQL's LISTEN/NOTIFY
//! carries revocations between instances, and its connection failures map to "unavailable".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{postgres, sqlite};
use mandate_core::store::MaintenanceStore;
use mandate_store::{SqlStore, url_with_database};

/// Both engines' migrations produce the same tables, columns and nullability (types differ only
/// by dialect: INTEGER/BIGINT, BLOB/BYTEA).
#[tokio::test]
async fn migrations_produce_the_same_schema_on_both_engines() {
    let Some(pg) = postgres().await else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: schema comparison skipped");
        return;
    };
    let (_dir, lite) = sqlite().await;
    let lite_cols: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT m.name, p.name, CASE WHEN p.\"notnull\" = 1 OR p.pk > 0 THEN 1 ELSE 0 END FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite%' ORDER BY 1, 2",
    )
    .fetch_all(lite.pool())
    .await
    .unwrap();
    let pg_cols: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, CASE WHEN is_nullable = 'NO' THEN 1::bigint ELSE 0::bigint END FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY 1, 2",
    )
    .fetch_all(pg.store.pool())
    .await
    .unwrap();
    assert!(lite_cols.len() > 20, "{lite_cols:?}");
    assert_eq!(lite_cols, pg_cols, "SQLite and PostgreSQL schemas differ");
    pg.drop_database().await;
}

/// The PostgreSQL-only dialect branch: a revocation announced through one connection pool is
/// heard by a listener on another (another instance) as a notification, not merely through a
/// reconnect.
#[tokio::test]
async fn revocations_announced_by_one_store_are_heard_by_another() {
    use mandate_store::ListenEvent;
    use std::sync::Mutex;
    let Some(pg) = postgres().await else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: LISTEN/NOTIFY case skipped");
        return;
    };
    let events: Arc<Mutex<Vec<ListenEvent>>> = Arc::default();
    let listener = SqlStore::connect(&url_with_database(&pg.admin, &pg.name)).await.unwrap();
    let log = events.clone();
    listener.listen_for_revocations(move |e| log.lock().unwrap().push(e));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !events.lock().unwrap().contains(&ListenEvent::Connected) {
        assert!(std::time::Instant::now() < deadline, "the listener never connected");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    pg.store.announce_revocation().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while !events.lock().unwrap().contains(&ListenEvent::Revocation) {
        assert!(std::time::Instant::now() < deadline, "the notification did not arrive within 500 ms");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        *events.lock().unwrap(),
        vec![ListenEvent::Connected, ListenEvent::Revocation],
        "one connection, one notification"
    );
    listener.pool().close().await;
    pg.drop_database().await;
}

#[tokio::test]
async fn announcing_on_sqlite_is_a_no_op() {
    let (_dir, s) = sqlite().await;
    s.announce_revocation().await.unwrap();
    s.listen_for_revocations(|_| {}); // returns at once: one process, nothing to hear
}

/// A connection killed by the server (restart, failover, `pg_terminate_backend`: SQLSTATE 57P01)
/// is "unavailable" (503, retry), not a backend failure (500).
#[tokio::test]
async fn a_terminated_connection_is_unavailable_not_a_failure() {
    let Some(pg) = postgres().await else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: SQLSTATE mapping case skipped");
        return;
    };
    let err = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())").execute(pg.store.pool()).await.unwrap_err();
    match mandate_store::map_err(err) {
        mandate_core::error::StoreError::Unavailable(_) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // The pool replaces the connection by itself.
    pg.store.ping().await.unwrap();
    pg.drop_database().await;
}

/// Two stores opened at once on one empty database, as two instances starting together: both
/// open, every migration is applied exactly once, and both can write (RL-16).
async fn two_at_once(url: &str) {
    let (a, b) = tokio::join!(SqlStore::open(url), SqlStore::open(url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(a.pool()).await.unwrap();
    let expected = mandate_store::migration_names().0.len();
    assert_eq!(applied.len(), expected, "each migration once: {applied:?}");
    let mut unique = applied.clone();
    unique.dedup();
    assert_eq!(unique, applied);
    use mandate_core::store::UserStore;
    for (i, s) in [&a, &b].into_iter().enumerate() {
        let user = mandate_core::model::User {
            id: format!("u{i}"),
            username: format!("user{i}"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            created_at: 0,
            disabled: false,
        };
        s.insert_user(&user).await.unwrap();
    }
    assert!(b.user_by_name("user0").await.unwrap().is_some(), "both see one database");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn two_instances_starting_at_once_migrate_once_rl_16() {
    let dir = tempfile::tempdir().unwrap();
    two_at_once(&format!("sqlite://{}", dir.path().join("empty.db").display())).await;
    let Ok(admin) = std::env::var("MANDATE_TEST_POSTGRES_URL") else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: the PostgreSQL case is skipped");
        return;
    };
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let name = format!(
        "mandate_t_{}",
        mandate_core::secret::random_id(&mandate_core::clock::OsRandom).to_lowercase().replace(['-', '_'], "")
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    two_at_once(&url_with_database(&admin, &name)).await;
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.unwrap();
}
