//! MCP sessions in the shared database: the guard's owner binding and rmcp's resumable session
//! state, so a request carrying a session id begun on another instance is served, and only for
//! the user who opened the session.

use std::sync::Arc;

use async_trait::async_trait;
use mandate_core::AuthServer;
use mandate_guard::{RegistryUnavailable, SESSION_IDLE, SESSIONS_PER_USER, SessionRegistry, owner_key};
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};

fn opaque(e: impl std::fmt::Display) -> SessionStoreError {
    tracing::error!(error = %e, "MCP session store failed");
    "session store unavailable".into()
}

/// Both views of the `mcp_sessions` table.
pub struct DatabaseSessions(pub Arc<AuthServer>);

fn idle() -> i64 {
    SESSION_IDLE.as_secs() as i64
}

#[async_trait]
impl SessionRegistry for DatabaseSessions {
    async fn bind(&self, session: &str, issuer: &str, subject: &str) -> Result<(), RegistryUnavailable> {
        let keep = SESSIONS_PER_USER as i64;
        self.0.mcp_session_bind(session, &owner_key(issuer, subject), keep).await.map_err(|e| {
            tracing::error!(error = %e, "could not record an MCP session's owner");
            RegistryUnavailable
        })
    }

    async fn allows(&self, session: &str, issuer: &str, subject: &str) -> Result<bool, RegistryUnavailable> {
        let owner = self.0.mcp_session_owner(session, idle()).await.map_err(|e| {
            tracing::error!(error = %e, "MCP session lookup failed");
            RegistryUnavailable
        })?;
        Ok(owner.is_some_and(|o| mandate_core::secret::ct_str_eq(&o, &owner_key(issuer, subject))))
    }

    async fn forget(&self, session: &str) {
        if let Err(e) = self.0.mcp_session_forget(session).await {
            tracing::warn!(error = %e, "could not delete an MCP session");
        }
    }
}

#[async_trait]
impl SessionStore for DatabaseSessions {
    // rmcp may put these errors in a response body: the detail goes to the log, never out.
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let Some(json) = self.0.mcp_session_state(session_id, idle()).await.map_err(opaque)? else { return Ok(None) };
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
        self.0.mcp_session_save_state(session_id, &json).await.map_err(opaque)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.0.mcp_session_forget(session_id).await.map_err(opaque)
    }
}
