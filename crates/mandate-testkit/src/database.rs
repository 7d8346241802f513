//! A database of its own for each test: a SQLite file in a temporary directory, or, when
//! `MANDATE_TEST_ENGINE=postgres` and `MANDATE_TEST_POSTGRES_URL` are set, a fresh PostgreSQL
//! database created for the test and dropped after it.

use mandate_store::url_with_database;
use sqlx::Executor;

/// Which engine the integration suites run on.
pub fn engine_is_postgres() -> bool {
    std::env::var("MANDATE_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

/// The PostgreSQL server for tests, when one is configured.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("MANDATE_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty())
}

pub enum TestDatabase {
    Sqlite { dir: tempfile::TempDir, url: String },
    Postgres { admin: String, name: String, url: String },
}

impl TestDatabase {
    /// SQLite, or PostgreSQL when the environment selects it.
    pub async fn create() -> Self {
        if engine_is_postgres() {
            let admin = postgres_admin_url().expect("MANDATE_TEST_ENGINE=postgres needs MANDATE_TEST_POSTGRES_URL");
            Self::postgres(&admin).await
        } else {
            Self::sqlite()
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("mandate.db").display());
        Self::Sqlite { dir, url }
    }

    /// A new, empty database on the server at `admin`.
    pub async fn postgres(admin: &str) -> Self {
        sqlx::any::install_default_drivers();
        let name = format!(
            "mandate_t_{}",
            mandate_core::secret::random_id(&mandate_core::clock::OsRandom).to_lowercase().replace(['-', '_'], "")
        );
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        let url = url_with_database(admin, &name);
        Self::Postgres { admin: admin.to_owned(), name, url }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Self::Postgres { admin, name, .. } = self else { return };
        let (admin, name) = (admin.clone(), name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
                    let _ =
                        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
                }
            });
        })
        .join();
    }
}
