//! The SQLite database file as it was opened, checked before every commit (issue 13, RL-07).
//!
//! SQLite keeps writing through the file descriptors it opened: a database file that was deleted
//! (or replaced) keeps accepting writes into an inode nobody can reach any more, and tokens
//! issued then vanish at the next start; a file made read-only keeps accepting them too (the
//! permission is checked at open only). The writer therefore checks the path before each commit:
//! the same file (device and inode), still linked, still writable. Otherwise the batch is rolled
//! back and its callers are told the database is unavailable (503), and `/readyz`, whose probe
//! is such a write, is down. Making the file writable again recovers without a restart; a
//! deleted file does not come back (its writes since the deletion are in the unreachable inode):
//! restore it from a backup and restart.

use std::path::{Path, PathBuf};

use mandate_core::StoreError;
use mandate_core::error::StoreResult;

#[derive(Debug, Clone)]
pub(crate) struct DatabaseFile {
    path: PathBuf,
    /// Device and inode at open (Unix).
    identity: Option<(u64, u64)>,
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The file path of a `sqlite:` URL; `None` for an in-memory database.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

impl DatabaseFile {
    /// The file at `path` now (after SQLite opened it); `None` when it cannot be read.
    pub(crate) fn opened(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self { path: path.to_owned(), identity: identity(&meta) })
    }

    /// `Unavailable` unless the path still names the file opened, and it is writable.
    pub(crate) fn check(&self) -> StoreResult<()> {
        let gone = || StoreError::Unavailable("the database file was deleted or replaced".into());
        let meta = std::fs::metadata(&self.path).map_err(|_| gone())?;
        if self.identity.is_some() && identity(&meta) != self.identity {
            return Err(gone());
        }
        if meta.permissions().readonly() {
            return Err(StoreError::Unavailable("the database file is read-only".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_from_urls() {
        assert_eq!(sqlite_path("sqlite:///tmp/a.db?mode=rwc"), Some(PathBuf::from("/tmp/a.db")));
        assert_eq!(sqlite_path("sqlite://mandate.db"), Some(PathBuf::from("mandate.db")));
        assert_eq!(sqlite_path("sqlite:mandate.db?mode=rwc"), Some(PathBuf::from("mandate.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://shared?mode=memory&cache=shared"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
