//! Row decoding and error mapping shared by every query.

use mandate_core::StoreError;
use mandate_core::scope::ScopeSet;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Maps a sqlx error to the store's error kinds; unreachable databases are `Unavailable`.
pub fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        // PostgreSQL: character_not_in_repertoire / untranslatable_character (NUL in text).
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
            StoreError::InvalidInput(db.message().to_owned())
        }
        // A connection that cannot be made or was cut, including a peer that hangs up mid-handshake
        // (a restarting server, a proxy with nothing behind it): the database is not there.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) if db.message().contains("database is locked") => {
            StoreError::Unavailable(e.to_string())
        }
        // SQLite (numeric codes, extended ones included): the file cannot be written (READONLY,
        // 8), the disk failed or is full (IOERR 10, FULL 13), or the file cannot be opened
        // (CANTOPEN 14). PostgreSQL's codes are five characters and never match here.
        sqlx::Error::Database(db)
            if db.code().is_some_and(|c| {
                c.len() < 5 && c.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 8 | 10 | 13 | 14))
            }) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        // PostgreSQL: connection exceptions (08…), shutdown / restart / failover (57P01–57P03),
        // serialization failure and deadlock (40001, 40P01: retry), a read-only transaction
        // (25006: a failover left us on a replica), and a statement past `statement_timeout` or a
        // lock not granted in time (57014, 55P03: a slow or locked database, RL-08).
        sqlx::Error::Database(db)
            if db.code().is_some_and(|c| {
                c.starts_with("08")
                    || matches!(
                        c.as_ref(),
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006" | "57014" | "55P03"
                    )
            }) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool, StoreError> {
    Ok(int(row, col)? != 0)
}

pub(crate) fn scope(row: &AnyRow, col: &str) -> Result<ScopeSet, StoreError> {
    ScopeSet::parse(&text(row, col)?).map_err(|_| StoreError::Corrupt(format!("{col}: bad scope")))
}

pub(crate) fn bytes(row: &AnyRow, col: &str) -> Result<Vec<u8>, StoreError> {
    row.try_get::<Vec<u8>, _>(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}
