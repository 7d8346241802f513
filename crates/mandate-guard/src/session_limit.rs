//! How fast one caller may open MCP sessions. Every `initialize` without a session id makes the
//! MCP server start a session (a worker, a database row; behind the gateway, perhaps a process),
//! so each caller (issuer, subject and client: one agent acting for one person) gets a token
//! bucket: [`NewSessionLimit::burst`] sessions at once, then [`NewSessionLimit::per_minute`].
//! Beyond that the guard answers 429 with `Retry-After`, before the MCP server sees the request.
//! Time comes from the injected clock, in whole seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mandate_core::clock::{Clock, UnixTime};

/// The rate at which one caller may open new MCP sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSessionLimit {
    /// Sessions that may be opened at once (the bucket's size). At least 1.
    pub burst: u32,
    /// Sessions per minute after that (the refill rate). At least 1.
    pub per_minute: u32,
}

impl Default for NewSessionLimit {
    /// Twice the per-person session cap at once (a client may replace all its sessions in one
    /// go), then one a second.
    fn default() -> Self {
        Self { burst: 2 * crate::sessions::PER_USER as u32, per_minute: 60 }
    }
}

/// Callers tracked before buckets that have refilled are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// One bucket per caller. Its level is kept in sixtieths of a session, so that a refill of
/// `per_minute` sixtieths a second is exact.
pub(crate) struct SessionLimiter {
    limit: NewSessionLimit,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, (u64, UnixTime)>>,
}

impl SessionLimiter {
    pub(crate) fn new(limit: NewSessionLimit, clock: Arc<dyn Clock>) -> Self {
        Self { limit, clock, buckets: Mutex::new(HashMap::new()) }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.limit.burst.max(1)) * 60
    }

    fn refill(&self, level: u64, since: UnixTime, now: UnixTime) -> u64 {
        let elapsed = u64::try_from(now.saturating_sub(since)).unwrap_or(0);
        level.saturating_add(elapsed.saturating_mul(u64::from(self.limit.per_minute.max(1)))).min(self.capacity())
    }

    /// Takes one session from `caller`'s bucket: `Ok` when allowed, else `Err(seconds)` to wait.
    pub(crate) fn take(&self, caller: &str) -> Result<(), u64> {
        let now = self.clock.now();
        let capacity = self.capacity();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() >= PRUNE_ABOVE && !buckets.contains_key(caller) {
            buckets.retain(|_, (level, at)| self.refill(*level, *at, now) < capacity);
        }
        let (level, at) = buckets.get(caller).copied().unwrap_or((capacity, now));
        let level = self.refill(level, at, now);
        if level >= 60 {
            buckets.insert(caller.to_owned(), (level - 60, now));
            Ok(())
        } else {
            buckets.insert(caller.to_owned(), (level, now));
            let rate = u64::from(self.limit.per_minute.max(1));
            Err((60 - level).div_ceil(rate).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::clock::ManualClock;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let clock = ManualClock::new(1_000);
        let l = SessionLimiter::new(NewSessionLimit { burst: 3, per_minute: 30 }, Arc::new(clock.clone()));
        for _ in 0..3 {
            assert_eq!(l.take("a"), Ok(()));
        }
        assert_eq!(l.take("a"), Err(2), "30 a minute: one every 2 s");
        assert_eq!(l.take("b"), Ok(()), "another caller has a bucket of its own");
        clock.advance(1);
        assert_eq!(l.take("a"), Err(1));
        clock.advance(1);
        assert_eq!(l.take("a"), Ok(()));
        assert_eq!(l.take("a"), Err(2));
        clock.advance(3600);
        for _ in 0..3 {
            assert_eq!(l.take("a"), Ok(()), "refilled up to the burst, no further");
        }
        assert!(l.take("a").is_err());
    }
}
