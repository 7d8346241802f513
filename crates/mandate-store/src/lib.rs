//! mandate-store: the storage traits of `mandate-core` over SQL, one query path for SQLite and
//! PostgreSQL (sqlx's `Any` driver, `$N` placeholders, integer/text/blob columns). Migrations
//! for both engines live in `migrations/{sqlite,postgres}` and are kept in lockstep.
//!
//! On SQLite, sqlx binds `$N` to the N-th argument wherever it appears, in every statement of a
//! multi-statement query too (`one_call.rs` relies on it; its test would fail on positional binding).

mod audit_keys;
mod client_cache;
mod clients_users;
mod convert;
mod database_file;
mod demo;
#[cfg(test)]
mod fixtures;
mod grants;
mod maintenance;
mod mcp_sessions;
mod one_call;
mod one_statement;
mod people;
mod rotation;
mod sessions;
mod throttle;
mod upstream;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mandate_core::error::StoreResult;
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Transaction};

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
    #[error(
        "the database schema is at version {applied}, newer than this mandate knows (up to {known}): run the newer \
         mandate that migrated it, or restore a backup taken before the upgrade"
    )]
    SchemaNewer { applied: i64, known: i64 },
}

/// Which migrations a database has, against those this build knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub applied: Vec<i64>,
    pub known: Vec<i64>,
}

impl SchemaStatus {
    /// Known migrations not yet applied.
    pub fn pending(&self) -> Vec<i64> {
        self.known.iter().copied().filter(|v| !self.applied.contains(v)).collect()
    }

    /// Applied migrations this build does not know: the schema is newer than this binary.
    pub fn unknown(&self) -> Vec<i64> {
        self.applied.iter().copied().filter(|v| !self.known.contains(v)).collect()
    }

    pub fn current(&self) -> i64 {
        self.applied.iter().copied().max().unwrap_or(0)
    }
}

/// The PostgreSQL notification channel revocations are announced on.
pub const REVOCATION_CHANNEL: &str = "mandate_revocation";

/// How often the revocation listener checks its connection with a notification to itself.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// What the revocation listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenEvent {
    /// Listening (again): anything revoked while we were not may have been missed.
    Connected,
    /// Another process announced a revocation.
    Revocation,
    /// The listening connection was lost or stopped delivering; reconnecting.
    Lost,
}

async fn listen_until_lost(url: &str, pool: &AnyPool, on_event: &(impl Fn(ListenEvent) + Send + Sync)) {
    let mut listener = match sqlx::postgres::PgListener::connect(url).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "revocation listener cannot connect; retrying");
            return;
        }
    };
    if let Err(e) = listener.listen(REVOCATION_CHANNEL).await {
        tracing::warn!(error = %e, "LISTEN failed; retrying");
        return;
    }
    on_event(ListenEvent::Connected);
    static BEATS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut awaiting: Option<String> = None;
    loop {
        match tokio::time::timeout(HEARTBEAT, listener.try_recv()).await {
            Ok(Ok(Some(n))) => {
                if awaiting.as_deref() == Some(n.payload()) {
                    awaiting = None;
                } else if !n.payload().starts_with("heartbeat:") {
                    on_event(ListenEvent::Revocation);
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                tracing::warn!("revocation listener lost its connection; reconnecting");
                return;
            }
            Err(_) if awaiting.is_some() => {
                tracing::warn!("revocation listener heard nothing, not even its own heartbeat; reconnecting");
                return;
            }
            Err(_) => {
                let beat = format!(
                    "heartbeat:{}:{}",
                    std::process::id(),
                    BEATS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                let sent =
                    sqlx::query("SELECT pg_notify($1, $2)").bind(REVOCATION_CHANNEL).bind(&beat).execute(pool).await;
                if sent.is_err() {
                    return;
                }
                awaiting = Some(beat);
            }
        }
    }
}

/// Every SQLite connection: write-ahead log, foreign keys, and commits fsync'd before they are
/// answered (`synchronous = FULL`: a power loss cannot undo an answered rotation or revocation).
/// Checkpoints run in the background ([`writer::spawn_checkpointer`]), not inside a commit.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                              PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;";

/// Every PostgreSQL connection of the pool: no statement runs, and no lock is waited for, longer
/// than the SQLite writer waits for its lock (`busy_timeout`), so a locked or slow database
/// frees its connections and answers "unavailable" instead of holding them (RL-08).
/// Migrations run on a connection of their own, without these limits.
const POSTGRES_SETTINGS: &str = "SET statement_timeout = 10000; SET lock_timeout = 10000;";

/// The SQL store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    url: std::sync::Arc<str>,
    /// SQLite: the one connection that writes (group commit). PostgreSQL: none.
    writer: Option<writer::Writer>,
    clients: std::sync::Arc<client_cache::ClientCache>,
}

impl SqlStore {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`; refuses a
    /// schema newer than this build knows.
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
        // Reads use the pool; with no writer competing for the lock, nothing waits in SQLite's busy
        // handler. No ping before each use: a broken connection fails its query, which is
        // answered as unavailable.
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match engine {
                        Engine::Sqlite => conn.execute(SQLITE_PRAGMAS).await?,
                        Engine::Postgres => conn.execute(POSTGRES_SETTINGS).await?,
                    };
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        let writer = match engine {
            Engine::Sqlite => {
                let mut conn =
                    AnyConnection::connect_with(&options).await.map_err(|e| OpenError::Connect(e.to_string()))?;
                conn.execute(SQLITE_PRAGMAS).await.map_err(|e| OpenError::Connect(e.to_string()))?;
                writer::spawn_checkpointer(pool.clone());
                let file = database_file::sqlite_path(&url).and_then(|p| database_file::DatabaseFile::opened(&p));
                Some(writer::Writer::start(conn, file))
            }
            Engine::Postgres => None,
        };
        Ok(Self { pool, engine, url: url.into(), writer, clients: Default::default() })
    }

    /// Runs `op` as one atomic write and answers once it is durable. `op` gets a transaction,
    /// commits it when done, and drops or rolls it back to undo its changes. On SQLite the
    /// transaction is a savepoint in the writer's next batch (see [`writer`]); on PostgreSQL a
    /// transaction of its own. Inputs are moved in: the write may run on another task.
    pub(crate) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(Transaction<'t, Any>) -> BoxFuture<'t, StoreResult<T>> + Send + 'static,
    {
        match &self.writer {
            Some(w) => w.write(op).await,
            None => {
                let tx = self.pool.begin().await.map_err(map_err)?;
                op(tx).await
            }
        }
    }

    /// One statement as a write of its own; the rows it affected.
    pub(crate) async fn execute(&self, query: Query<'static, Any, AnyArguments>) -> StoreResult<u64> {
        match &self.writer {
            Some(_) => {
                self.write(move |mut tx| {
                    Box::pin(async move {
                        let n = query.execute(&mut *tx).await.map_err(map_err)?.rows_affected();
                        tx.commit().await.map_err(map_err)?;
                        Ok(n)
                    })
                })
                .await
            }
            None => Ok(query.execute(&self.pool).await.map_err(map_err)?.rows_affected()),
        }
    }

    /// Writes waiting for the SQLite writer (0 on PostgreSQL, where writes run concurrently).
    pub fn write_queue_depth(&self) -> usize {
        self.writer.as_ref().map_or(0, writer::Writer::depth)
    }

    /// Calls `on_event` whenever another process announces a revocation (PostgreSQL `LISTEN`),
    /// and also when the listening connection is (re)established or lost, since a notification
    /// may have been missed then. The connection is checked with a heartbeat (a notification to
    /// itself every [`HEARTBEAT`]): a half-open socket or a pooler that swallows notifications is
    /// noticed and the listener reconnects. Does nothing on SQLite. Runs until the process ends.
    pub fn listen_for_revocations(&self, on_event: impl Fn(ListenEvent) + Send + Sync + 'static) {
        if self.engine != Engine::Postgres {
            return;
        }
        let (url, pool) = (self.url.clone(), self.pool.clone());
        tokio::spawn(async move {
            loop {
                listen_until_lost(&url, &pool, &on_event).await;
                on_event(ListenEvent::Lost);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Runs the migrator on a connection taken out of the pool, without the pool's statement
    /// and lock timeouts (a migration, or waiting for another instance's, may take longer).
    async fn run_migrations(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut conn = self.pool.acquire().await?.detach();
        if self.engine == Engine::Postgres {
            conn.execute("SET statement_timeout = 0; SET lock_timeout = 0;").await?;
        }
        self.migrator().run(&mut conn).await
    }

    fn migrator(&self) -> &'static Migrator {
        match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The applied and known migrations.
    pub async fn schema_status(&self) -> Result<SchemaStatus, OpenError> {
        let known: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        // Dialect branch: where each engine lists its tables.
        let exists_sql = match self.engine {
            Engine::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            Engine::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
            }
        };
        let connect = |e: sqlx::Error| OpenError::Connect(e.to_string());
        let exists: i64 = sqlx::query_scalar(exists_sql).fetch_one(&self.pool).await.map_err(connect)?;
        let applied = if exists > 0 {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(connect)?
        } else {
            Vec::new()
        };
        Ok(SchemaStatus { applied, known })
    }

    /// Applies pending migrations for this engine; refuses a schema newer than this build.
    pub async fn migrate(&self) -> Result<SchemaStatus, OpenError> {
        let before = self.schema_status().await?;
        if let Some(&applied) = before.unknown().iter().max() {
            return Err(OpenError::SchemaNewer { applied, known: before.known.iter().copied().max().unwrap_or(0) });
        }
        // SQLite's migrator takes no lock (PostgreSQL's takes an advisory lock): two instances
        // opening one empty file at once both start at the first migration, and the one that
        // loses fails on a table the other just created. Each migration commits with its
        // record, so when the failure came while the other made progress, this one carries on
        // from where that one got (RL-16); a failure without progress is a real one.
        let mut applied = before.applied.len();
        for _ in 0..=self.migrator().iter().count() {
            let Err(e) = self.run_migrations().await else { return Ok(before) };
            let now = self.schema_status().await?.applied.len();
            if now <= applied {
                return Err(OpenError::Migrate(e.to_string()));
            }
            applied = now;
        }
        Err(OpenError::Migrate("the migrations did not settle while another instance applied them".into()))
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection once it is returned (a clean shutdown): SQLite then checkpoints
    /// its write-ahead log into the database file and removes the `-wal` and `-shm` files.
    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.close().await;
        }
        self.pool.close().await;
    }
}

/// `url` with its database name replaced by `name` (tests create a database per test).
pub fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The migrations of both engines, for the lockstep test.
pub fn migration_names() -> (Vec<String>, Vec<String>) {
    let names = |m: &Migrator| m.iter().map(|x| format!("{}_{}", x.version, x.description)).collect();
    (names(&SQLITE_MIGRATIONS), names(&POSTGRES_MIGRATIONS))
}
