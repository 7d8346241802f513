//! MCP sessions bound to the user who opened them (MCP security best practices, RS14). The guard
//! sees every session being created (the `Mcp-Session-Id` of an initialize response), so a
//! session id it does not know, or one opened by another user, is answered 404 "not found".
//! Memory is bounded: sessions idle for an hour are forgotten, and one user keeps at most
//! [`PER_USER`] sessions (the oldest is dropped first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Seconds of inactivity after which a session is forgotten.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Sessions one user keeps at most; the oldest go first.
pub const PER_USER: usize = 64;

/// The session registry could not be consulted (the guard answers 503).
#[derive(Debug, Clone, Copy)]
pub struct RegistryUnavailable;

/// Who opened which MCP session. The in-memory [`SessionOwners`] serves one process; a shared
/// implementation (a database) lets any instance serve a session another began.
#[async_trait]
pub trait SessionRegistry: Send + Sync {
    /// Records that `session` belongs to this user.
    async fn bind(&self, session: &str, issuer: &str, subject: &str) -> Result<(), RegistryUnavailable>;
    /// True when the session exists, is not idle, and belongs to this user (and marks it used).
    async fn allows(&self, session: &str, issuer: &str, subject: &str) -> Result<bool, RegistryUnavailable>;
    /// The session was closed.
    async fn forget(&self, session: &str);
}

/// The key a registry stores for a user.
pub fn owner_key(issuer: &str, subject: &str) -> String {
    format!("{issuer}\u{1f}{subject}")
}

#[derive(Default)]
struct Table {
    owner_of: HashMap<String, (String, Instant)>,
    sessions_of: HashMap<String, VecDeque<String>>,
}

#[derive(Default)]
pub struct SessionOwners {
    table: Mutex<Table>,
}

#[async_trait]
impl SessionRegistry for SessionOwners {
    async fn bind(&self, session: &str, issuer: &str, subject: &str) -> Result<(), RegistryUnavailable> {
        self.bind_now(session, issuer, subject);
        Ok(())
    }
    async fn allows(&self, session: &str, issuer: &str, subject: &str) -> Result<bool, RegistryUnavailable> {
        Ok(self.allows_now(session, issuer, subject))
    }
    async fn forget(&self, session: &str) {
        self.forget_now(session);
    }
}

impl SessionOwners {
    /// Records that `session` belongs to this user.
    pub fn bind_now(&self, session: &str, issuer: &str, subject: &str) {
        let Ok(mut t) = self.table.lock() else { return };
        let owner = owner_key(issuer, subject);
        t.owner_of.insert(session.to_owned(), (owner.clone(), Instant::now()));
        let list = t.sessions_of.entry(owner).or_default();
        list.push_back(session.to_owned());
        let evicted: Vec<String> =
            if list.len() > PER_USER { list.drain(..list.len() - PER_USER).collect() } else { Vec::new() };
        for s in evicted {
            t.owner_of.remove(&s);
        }
    }

    /// True when the session exists, is not idle, and belongs to this user.
    pub fn allows_now(&self, session: &str, issuer: &str, subject: &str) -> bool {
        let Ok(mut t) = self.table.lock() else { return false };
        let owner = owner_key(issuer, subject);
        match t.owner_of.get_mut(session) {
            Some((o, seen)) if *o == owner && seen.elapsed() < IDLE => {
                *seen = Instant::now();
                true
            }
            Some((o, _)) if *o == owner => {
                // Idle too long: forget it.
                self.forget_locked(&mut t, session);
                false
            }
            _ => false,
        }
    }

    pub fn forget_now(&self, session: &str) {
        if let Ok(mut t) = self.table.lock() {
            self.forget_locked(&mut t, session);
        }
    }

    fn forget_locked(&self, t: &mut Table, session: &str) {
        if let Some((owner, _)) = t.owner_of.remove(session)
            && let Some(list) = t.sessions_of.get_mut(&owner)
        {
            list.retain(|s| s != session);
            if list.is_empty() {
                t.sessions_of.remove(&owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bound_and_bounded_per_user() {
        let o = SessionOwners::default();
        o.bind_now("s1", "iss", "alice");
        assert!(o.allows_now("s1", "iss", "alice"));
        assert!(!o.allows_now("s1", "iss", "bob"));
        assert!(!o.allows_now("unknown", "iss", "alice"));
        for i in 0..PER_USER {
            o.bind_now(&format!("x{i}"), "iss", "alice");
        }
        assert!(!o.allows_now("s1", "iss", "alice"), "the oldest session was dropped");
        assert!(o.allows_now(&format!("x{}", PER_USER - 1), "iss", "alice"));
        o.forget_now("x0");
        assert!(!o.allows_now("x0", "iss", "alice"));
    }
}
