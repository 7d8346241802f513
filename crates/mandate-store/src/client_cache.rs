//! Client records kept for a few seconds: every token request authenticates its client, and the
//! record rarely changes. A change made through this store drops the whole cache at once; a
//! change made by another instance is seen within [`CLIENT_TTL`] (a removed client's grants are
//! revoked in the database at once, so a stale record cannot mint tokens from them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mandate_core::model::Client;

/// How long a client record read from the database is reused.
pub(crate) const CLIENT_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most (a flood of distinct ids cannot grow memory without bound).
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    entries: Mutex<HashMap<String, (Instant, Client)>>,
    /// Bumped by every change; a read that started before a change does not fill the cache.
    generation: AtomicU64,
}

impl ClientCache {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Client> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(id).filter(|(at, _)| at.elapsed() < CLIENT_TTL).map(|(_, c)| c.clone())
    }

    /// Keeps `client`, read when the cache was at `generation`, unless something changed since.
    pub(crate) fn put(&self, generation: u64, client: &Client) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(client.id.clone(), (Instant::now(), client.clone()));
    }

    /// A client changed: forget every record.
    pub(crate) fn invalidate(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}
