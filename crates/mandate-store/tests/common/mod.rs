//! Shared by the store suites: a SQLite file in a temp dir, and a PostgreSQL database of its own
//! when `MANDATE_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

use mandate_store::{SqlStore, url_with_database};

pub async fn sqlite() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, SqlStore::open(&url).await.unwrap())
}

/// A PostgreSQL database of its own for one test; dropped at the end.
pub struct PgDb {
    pub admin: String,
    pub name: String,
    pub store: SqlStore,
}

pub async fn postgres() -> Option<PgDb> {
    let admin = std::env::var("MANDATE_TEST_POSTGRES_URL").ok()?;
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let name = format!(
        "mandate_t_{}",
        mandate_core::secret::random_id(&mandate_core::clock::OsRandom).to_lowercase().replace(['-', '_'], "")
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let url = url_with_database(&admin, &name);
    Some(PgDb { admin, name, store: SqlStore::open(&url).await.unwrap() })
}

impl PgDb {
    pub async fn drop_database(self) {
        use sqlx::Executor;
        self.store.pool().close().await;
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).await.unwrap();
    }
}
