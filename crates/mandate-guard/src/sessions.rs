//! MCP sessions bound to the user who opened them (MCP security best practices, RS14). The guard
//! sees every session being created (the `Mcp-Session-Id` of an initialize response), so a
//! session id it does not know, or one opened by another user, is answered 404 "not found".
//! Memory is bounded: sessions idle for an hour are forgotten, and one user keeps at most
//! [`PER_USER`] sessions (the oldest is dropped first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const IDLE: Duration = Duration::from_secs(3600);
const PER_USER: usize = 64;

#[derive(Default)]
struct Table {
    owner_of: HashMap<String, (String, Instant)>,
    sessions_of: HashMap<String, VecDeque<String>>,
}

#[derive(Default)]
pub struct SessionOwners {
    table: Mutex<Table>,
}

fn owner_key(issuer: &str, subject: &str) -> String {
    format!("{issuer}\u{1f}{subject}")
}

impl SessionOwners {
    /// Records that `session` belongs to this user.
    pub fn bind(&self, session: &str, issuer: &str, subject: &str) {
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
    pub fn allows(&self, session: &str, issuer: &str, subject: &str) -> bool {
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

    pub fn forget(&self, session: &str) {
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
        o.bind("s1", "iss", "alice");
        assert!(o.allows("s1", "iss", "alice"));
        assert!(!o.allows("s1", "iss", "bob"));
        assert!(!o.allows("unknown", "iss", "alice"));
        for i in 0..PER_USER {
            o.bind(&format!("x{i}"), "iss", "alice");
        }
        assert!(!o.allows("s1", "iss", "alice"), "the oldest session was dropped");
        assert!(o.allows(&format!("x{}", PER_USER - 1), "iss", "alice"));
        o.forget("x0");
        assert!(!o.allows("x0", "iss", "alice"));
    }
}
