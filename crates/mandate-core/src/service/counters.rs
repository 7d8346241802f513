//! What this process's authorization server and MCP endpoints did, counted for operators
//! (mandate-server's `/metrics` reads them at each scrape). Plain atomics: no metrics library,
//! no HTTP types. Counts start at zero with the process; every label value is from a fixed set
//! or from the configuration, never from a request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A number that goes up and down (live sessions).
#[derive(Debug, Default)]
pub struct Level(AtomicU64);

impl Level {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One less, never below zero.
    pub fn dec(&self) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The grant types the token endpoint knows; anything else is counted as `other`.
pub const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];

/// The counters an [`AuthServer`](super::AuthServer) keeps ([`AuthServer::counters`](super::AuthServer::counters)).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Refresh tokens rotated: a new successor issued.
    pub refresh_rotated: Count,
    /// A rotated refresh token presented again inside the grace window, its successor unused:
    /// answered with that same successor.
    pub refresh_grace_retries: Count,
    /// A rotated refresh token presented again an instant after its rotation, with no grace
    /// window: `invalid_grant`, nothing revoked.
    pub refresh_races_lost: Count,
    /// A rotated refresh token presented again outside the window: the whole family revoked.
    pub refresh_reuse_detected: Count,
    /// An authorization code presented again; `revoking` when the replay proved possession and
    /// the grant was revoked.
    pub code_replays: Count,
    pub code_replays_revoking: Count,
    /// Authorization requests repeating a PKCE challenge the same client sent in the last day
    /// (PK-12; recorded, not refused).
    pub pkce_challenge_reuses: Count,
    /// Token endpoint answers by (grant type, outcome): `issued` or the OAuth error code.
    token_requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Live MCP sessions held in this process's memory, by resource URI.
    mcp_sessions: Mutex<BTreeMap<String, Arc<Level>>>,
}

impl ServiceCounters {
    /// A code replay, `revoked` when it revoked the grant.
    pub fn code_replay(&self, revoked: bool) {
        self.code_replays.inc();
        if revoked {
            self.code_replays_revoking.inc();
        }
    }

    /// One token endpoint answer. `grant_type` is what the request named (anything but the
    /// known types becomes `other`, absent `none`); `outcome` is `issued` or an OAuth error code.
    pub fn token_request(&self, grant_type: Option<&str>, outcome: &'static str) {
        let grant_type = match grant_type {
            None => "none",
            Some(g) => GRANT_TYPES.iter().find(|k| **k == g).copied().unwrap_or("other"),
        };
        if let Ok(mut m) = self.token_requests.lock() {
            *m.entry((grant_type, outcome)).or_default() += 1;
        }
    }

    /// Every (grant type, outcome) seen so far with its count, in a stable order.
    pub fn token_requests(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.token_requests.lock().map(|m| m.iter().map(|(&(g, o), &n)| (g, o, n)).collect()).unwrap_or_default()
    }

    /// The live-session level of the MCP endpoint serving `resource` (made at zero on first use;
    /// the same one for every caller naming the same resource).
    pub fn mcp_sessions(&self, resource: &str) -> Arc<Level> {
        match self.mcp_sessions.lock() {
            Ok(mut m) => m.entry(resource.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Every MCP resource served here with its live sessions, by resource URI.
    pub fn mcp_sessions_by_resource(&self) -> Vec<(String, u64)> {
        self.mcp_sessions.lock().map(|m| m.iter().map(|(r, l)| (r.clone(), l.get())).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_requests_are_keyed_by_known_grant_types_only() {
        let c = ServiceCounters::default();
        c.token_request(Some("refresh_token"), "issued");
        c.token_request(Some("refresh_token"), "issued");
        c.token_request(Some("password"), "unsupported_grant_type");
        c.token_request(Some("x\ny"), "unsupported_grant_type");
        c.token_request(None, "invalid_request");
        assert_eq!(
            c.token_requests(),
            vec![
                ("none", "invalid_request", 1),
                ("other", "unsupported_grant_type", 2),
                ("refresh_token", "issued", 2),
            ]
        );
    }

    #[test]
    fn session_levels_are_shared_per_resource_and_never_negative() {
        let c = ServiceCounters::default();
        let a = c.mcp_sessions("http://h/mcp");
        c.mcp_sessions("http://h/mcp").inc();
        a.inc();
        a.dec();
        c.mcp_sessions("http://h/mcp/x").dec();
        assert_eq!(c.mcp_sessions_by_resource(), vec![("http://h/mcp".into(), 1), ("http://h/mcp/x".into(), 0)]);
    }
}
