//! Shared by the store suites: a SQLite file in a temp dir, and a PostgreSQL database of its own
//! when `MANDATE_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

use mandate_core::model::{AuthorizationCode, Grant, RefreshToken, User};
use mandate_core::scope::ScopeSet;
use mandate_core::secret::SecretHash;
use mandate_core::store::{GrantStore, UserStore};
use mandate_store::{SqlStore, url_with_database};

/// A refresh token of `grant` for scope `a`, issued at `now`, living 1000 s.
pub fn refresh_token(hash: &str, grant: &str, parent: Option<&str>, now: i64) -> RefreshToken {
    RefreshToken {
        hash: SecretHash(hash.into()),
        grant_id: grant.into(),
        parent_hash: parent.map(|p| SecretHash(p.into())),
        scope: ScopeSet::parse("a").unwrap(),
        issued_at: now,
        expires_at: now + 1000,
        rotated_at: None,
        revoked_at: None,
    }
}

/// A pending grant `grant` of `person` (added when missing; a code's grant activates only for an
/// enabled person) to client c1 for scope `a` at `https://r`, with its code `code`.
pub async fn pending_grant_with_code(s: &SqlStore, person: &str, grant: &str, code: &str) {
    let p =
        User { id: person.into(), username: person.into(), password_hash: "x".into(), created_at: 0, disabled: false };
    let _ = s.insert_user(&p).await;
    let g = Grant {
        id: grant.into(),
        user_id: person.into(),
        client_id: "c1".into(),
        scope: ScopeSet::parse("a").unwrap(),
        resource: "https://r".into(),
        created_at: 0,
        activated_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    let c = AuthorizationCode {
        hash: SecretHash(code.into()),
        grant_id: grant.into(),
        client_id: "c1".into(),
        user_id: person.into(),
        redirect_uri: "https://a/cb".into(),
        redirect_uri_explicit: true,
        code_challenge: "x".into(),
        scope: g.scope.clone(),
        resource: g.resource.clone(),
        expires_at: 60,
        consumed_at: None,
    };
    s.insert_grant_with_code(&g, &c, None).await.unwrap();
}

/// Each case (an `async fn(SqlStore)` of the file) as two tests: on a SQLite file, and on a
/// PostgreSQL database of its own (skipped without `MANDATE_TEST_POSTGRES_URL`).
#[allow(unused_macros)]
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, s) = super::common::sqlite().await;
                    super::$case(s).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::common::postgres().await else {
                        eprintln!("MANDATE_TEST_POSTGRES_URL not set: PostgreSQL case skipped");
                        return;
                    };
                    super::$case(db.store.clone()).await;
                    db.drop_database().await;
                }
            )*
        }
    };
}

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
