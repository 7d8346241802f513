//! MCP sessions bound to the user who opened them (MCP security best practices, RS14): a
//! session id presented with another user's token is answered as if it did not exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions older than this without use are forgotten.
const IDLE: Duration = Duration::from_secs(24 * 3600);
const MAX_SESSIONS: usize = 100_000;

#[derive(Default)]
pub struct SessionOwners {
    owners: Mutex<HashMap<String, (String, Instant)>>,
}

impl SessionOwners {
    fn key(issuer: &str, subject: &str) -> String {
        format!("{issuer}\u{1f}{subject}")
    }

    /// Records that `session` belongs to this user.
    pub fn bind(&self, session: &str, issuer: &str, subject: &str) {
        if let Ok(mut m) = self.owners.lock() {
            if m.len() >= MAX_SESSIONS {
                m.retain(|_, (_, seen)| seen.elapsed() < IDLE);
            }
            m.insert(session.to_owned(), (Self::key(issuer, subject), Instant::now()));
        }
    }

    /// True when the session is unknown here (the transport decides) or belongs to this user.
    pub fn allows(&self, session: &str, issuer: &str, subject: &str) -> bool {
        let Ok(mut m) = self.owners.lock() else { return false };
        match m.get_mut(session) {
            Some((owner, seen)) => {
                let ok = *owner == Self::key(issuer, subject);
                if ok {
                    *seen = Instant::now();
                }
                ok
            }
            None => true,
        }
    }

    pub fn forget(&self, session: &str) {
        if let Ok(mut m) = self.owners.lock() {
            m.remove(session);
        }
    }
}
