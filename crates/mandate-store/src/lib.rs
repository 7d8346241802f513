//! mandate-store: the storage traits of `mandate-core` over SQL, one query path for SQLite and
//! PostgreSQL (sqlx's `Any` driver, `$N` placeholders, integer/text/blob columns). Migrations
//! for both engines live in `migrations/{sqlite,postgres}` and are kept in lockstep.
//!
//! SQLite numbers `$N` parameters by first appearance, so every query here uses them in order.

mod audit_keys;
mod clients_users;
mod convert;
mod demo;
mod grants;
mod maintenance;
mod sessions;
mod throttle;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use convert::map_err;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which engine a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL (use sqlite://PATH or postgres://...)")]
    Scheme,
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
}

/// The SQL store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
}

impl SqlStore {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let (engine, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") { url.to_owned() } else { format!("{url}{sep}mode=rwc") };
            (Engine::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_owned())
        } else {
            return Err(OpenError::Scheme);
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| OpenError::Connect(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        Ok(Self { pool, engine })
    }

    /// Applies pending migrations for this engine.
    pub async fn migrate(&self) -> Result<(), OpenError> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(|e| OpenError::Migrate(e.to_string()))
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The migrations of both engines, for the lockstep test.
pub fn migration_names() -> (Vec<String>, Vec<String>) {
    let names = |m: &Migrator| m.iter().map(|x| format!("{}_{}", x.version, x.description)).collect();
    (names(&SQLITE_MIGRATIONS), names(&POSTGRES_MIGRATIONS))
}
