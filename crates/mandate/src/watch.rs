//! File changes for `mandate dev`: the project's files, recursively, without what tools write
//! (version control, dependencies, build output, caches, editors' temporary files) and without
//! the dev data directory. A burst of events (an editor saving, `git checkout`) is one change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Directories whose contents never restart the server.
const IGNORED_DIRS: &[&str] =
    &[".git", ".hg", ".svn", "node_modules", "target", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache"];

/// How long a burst may go quiet before it counts as one change.
const SETTLE: Duration = Duration::from_millis(300);

/// One change: the files that changed in it (the first few).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub paths: Vec<PathBuf>,
}

impl Change {
    /// "src/server.ts" or "src/server.ts and 2 more", relative to `base` where possible.
    pub fn describe(&self, base: &Path) -> String {
        let shown = |p: &PathBuf| p.strip_prefix(base).unwrap_or(p).display().to_string();
        match self.paths.as_slice() {
            [] => "files".to_owned(),
            [one] => shown(one),
            [first, rest @ ..] => format!("{} and {} more", shown(first), rest.len()),
        }
    }
}

/// Watches until dropped.
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
}

impl Watcher {
    /// Watches `paths` (recursively), not reporting anything under `skip`.
    pub fn start(paths: &[PathBuf], skip: &[PathBuf]) -> anyhow::Result<(Self, UnboundedReceiver<Change>)> {
        let (raw_tx, raw_rx) = unbounded_channel::<PathBuf>();
        let skip: Vec<PathBuf> = skip.to_vec();
        let mut inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
                return;
            }
            for p in event.paths {
                if relevant(&p, &skip) {
                    let _ = raw_tx.send(p);
                }
            }
        })
        .context("starting the file watcher")?;
        for p in paths {
            inner.watch(p, RecursiveMode::Recursive).with_context(|| format!("watching {}", p.display()))?;
        }
        let (tx, rx) = unbounded_channel();
        tokio::spawn(settle(raw_rx, tx));
        Ok((Self { _inner: inner }, rx))
    }
}

/// Groups raw events into changes: the first event, then everything until `SETTLE` passes
/// without one.
async fn settle(mut raw: UnboundedReceiver<PathBuf>, out: UnboundedSender<Change>) {
    while let Some(first) = raw.recv().await {
        let mut paths = vec![first];
        while let Ok(Some(p)) = tokio::time::timeout(SETTLE, raw.recv()).await {
            if paths.len() < 20 && !paths.contains(&p) {
                paths.push(p);
            }
        }
        if out.send(Change { paths }).is_err() {
            return;
        }
    }
}

/// Whether a change to `path` should restart the server.
fn relevant(path: &Path, skip: &[PathBuf]) -> bool {
    if skip.iter().any(|s| path.starts_with(s)) {
        return false;
    }
    if path.components().any(|c| IGNORED_DIRS.iter().any(|d| c.as_os_str() == *d)) {
        return false;
    }
    let Some(file) = path.file_name().map(|f| f.to_string_lossy()) else { return false };
    // Editors' temporary and backup files (vim's 4913 probe, swap files, emacs locks).
    let temporary = file.ends_with('~')
        || file.ends_with(".swp")
        || file.ends_with(".swx")
        || file.ends_with(".tmp")
        || file.ends_with(".pyc")
        || file.starts_with(".#")
        || file == "4913";
    !temporary
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn what_tools_write_is_not_a_change() {
        let skip = [PathBuf::from("/p/.mandate")];
        assert!(relevant(Path::new("/p/server.py"), &skip));
        assert!(relevant(Path::new("/p/src/main.ts"), &skip));
        for ignored in [
            "/p/.mandate/dev.db-wal",
            "/p/node_modules/x/index.js",
            "/p/target/debug/notes",
            "/p/__pycache__/server.cpython-311.pyc",
            "/p/.git/index",
            "/p/.server.py.swp",
            "/p/server.py~",
            "/p/4913",
        ] {
            assert!(!relevant(Path::new(ignored), &skip), "{ignored}");
        }
    }

    #[tokio::test]
    async fn a_saved_file_is_one_change_and_the_data_directory_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let data = root.join(".mandate");
        std::fs::create_dir(&data).unwrap();
        let (_w, mut changes) = Watcher::start(std::slice::from_ref(&root), std::slice::from_ref(&data)).unwrap();
        std::fs::write(data.join("dev.db"), "x").unwrap();
        // An editor's save: a temporary file, then the file itself written twice.
        std::fs::write(root.join("server.py~"), "old").unwrap();
        std::fs::write(root.join("server.py"), "one").unwrap();
        std::fs::write(root.join("server.py"), "two").unwrap();
        let change = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await.unwrap().unwrap();
        assert_eq!(change.paths, [root.join("server.py")]);
        assert_eq!(change.describe(&root), "server.py");
        // Nothing else was reported: the data directory and the backup file are not changes.
        assert!(tokio::time::timeout(Duration::from_secs(1), changes.recv()).await.is_err());
    }
}
