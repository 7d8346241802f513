//! MCP sessions in the shared database: the guard's owner binding and rmcp's resumable session
//! state, so a request carrying a session id begun on another instance is served, and only for
//! the user who opened the session. A session the database drops when its owner opens one too
//! many (the per-person cap) is closed in this process's session manager at once, so it leaves
//! memory too (idle sessions leave it on their own: [`crate::ParkIdle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mandate_core::AuthServer;
use mandate_guard::{RegistryUnavailable, SESSION_IDLE, SESSIONS_PER_USER, SessionRegistry, owner_key};
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};
use rmcp::transport::streamable_http_server::session::{SessionId, SessionManager};

fn opaque(e: impl std::fmt::Display) -> SessionStoreError {
    tracing::error!(error = %e, "MCP session store failed");
    "session store unavailable".into()
}

/// How long a confirmed owner is trusted without asking the database again. An owner never
/// changes once bound; a session deleted on another instance is also gone from rmcp there, so a
/// stale entry can only admit a request that rmcp then answers 404.
const OWNER_CACHE: Duration = Duration::from_secs(5);
const OWNER_CACHE_ENTRIES: usize = 10_000;

/// What holds this process's MCP sessions in memory: rmcp's session manager (whatever wraps it).
#[async_trait]
pub trait CloseSessions: Send + Sync {
    /// Ends the session here: its worker stops and its memory is released. Unknown ids (a
    /// session living on another instance, or already gone) are no error.
    async fn close(&self, session: &str);
}

#[async_trait]
impl<M: SessionManager> CloseSessions for M {
    async fn close(&self, session: &str) {
        if let Err(e) = self.close_session(&SessionId::from(session)).await {
            tracing::warn!(error = %e, "could not close an MCP session dropped from the database");
        }
    }
}

/// Both views of the `mcp_sessions` table, with a short per-instance cache of confirmed owners.
pub struct DatabaseSessions {
    auth: Arc<AuthServer>,
    owners: Mutex<HashMap<String, (String, Instant)>>,
    /// This process's session manager, told of the sessions a bind drops (see [`Self::closing_in`]).
    memory: OnceLock<Arc<dyn CloseSessions>>,
}

impl DatabaseSessions {
    pub fn new(auth: Arc<AuthServer>) -> Self {
        Self { auth, owners: Mutex::new(HashMap::new()), memory: OnceLock::new() }
    }

    /// Sessions the database drops for the per-person cap are closed in `sessions` too (set once:
    /// the session manager serving this endpoint).
    pub fn closing_in(&self, sessions: Arc<dyn CloseSessions>) {
        let _ = self.memory.set(sessions);
    }

    fn remember(&self, session: &str, owner: &str) {
        if let Ok(mut m) = self.owners.lock() {
            if m.len() >= OWNER_CACHE_ENTRIES {
                m.clear();
            }
            m.insert(session.to_owned(), (owner.to_owned(), Instant::now()));
        }
    }

    fn cached(&self, session: &str) -> Option<String> {
        let m = self.owners.lock().ok()?;
        m.get(session).filter(|(_, at)| at.elapsed() < OWNER_CACHE).map(|(o, _)| o.clone())
    }
}

fn idle() -> i64 {
    SESSION_IDLE.as_secs() as i64
}

#[async_trait]
impl SessionRegistry for DatabaseSessions {
    async fn bind(&self, session: &str, issuer: &str, subject: &str) -> Result<(), RegistryUnavailable> {
        let keep = SESSIONS_PER_USER as i64;
        let owner = owner_key(issuer, subject);
        let dropped = self.auth.mcp_session_bind(session, &owner, keep).await.map_err(|e| {
            tracing::error!(error = %e, "could not record an MCP session's owner");
            RegistryUnavailable
        })?;
        self.remember(session, &owner);
        if !dropped.is_empty() {
            if let Ok(mut m) = self.owners.lock() {
                for s in &dropped {
                    m.remove(s);
                }
            }
            // Before the new session is handed out: the dropped ones are already gone from
            // memory when its initialize is answered.
            if let Some(memory) = self.memory.get() {
                for s in &dropped {
                    memory.close(s).await;
                }
            }
        }
        Ok(())
    }

    async fn allows(&self, session: &str, issuer: &str, subject: &str) -> Result<bool, RegistryUnavailable> {
        let wanted = owner_key(issuer, subject);
        if let Some(owner) = self.cached(session) {
            return Ok(mandate_core::secret::ct_str_eq(&owner, &wanted));
        }
        let owner = self.auth.mcp_session_owner(session, idle()).await.map_err(|e| {
            tracing::error!(error = %e, "MCP session lookup failed");
            RegistryUnavailable
        })?;
        let Some(owner) = owner else { return Ok(false) };
        self.remember(session, &owner);
        Ok(mandate_core::secret::ct_str_eq(&owner, &wanted))
    }

    async fn forget(&self, session: &str) {
        if let Ok(mut m) = self.owners.lock() {
            m.remove(session);
        }
        if let Err(e) = self.auth.mcp_session_forget(session).await {
            tracing::warn!(error = %e, "could not delete an MCP session");
        }
    }
}

#[async_trait]
impl SessionStore for DatabaseSessions {
    // rmcp may put these errors in a response body: the detail goes to the log, never out.
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let Some(json) = self.auth.mcp_session_state(session_id, idle()).await.map_err(opaque)? else {
            return Ok(None);
        };
        match serde_json::from_str(&json) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                // Stored by another version: treat as unknown, the client re-initializes.
                tracing::warn!(error = %e, "unreadable stored MCP session state");
                Ok(None)
            }
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let json = serde_json::to_string(state).map_err(|e| opaque(e.to_string()))?;
        self.auth.mcp_session_save_state(session_id, &json).await.map_err(opaque)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.auth.mcp_session_forget(session_id).await.map_err(opaque)
    }
}
