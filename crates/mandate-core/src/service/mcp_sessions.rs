//! MCP sessions kept in the shared database, so that any instance can serve a session another
//! began and the session stays bound to the user who opened it.

use super::AuthServer;
use crate::error::StoreError;

impl AuthServer {
    /// Binds a new session to its owner, keeping at most `keep` per owner; returns the sessions
    /// dropped to stay within `keep` (the least recently used).
    pub async fn mcp_session_bind(&self, id: &str, owner: &str, keep: i64) -> Result<Vec<String>, StoreError> {
        self.store.bind_mcp_session(id, owner, self.now(), keep).await
    }

    /// The owner of a session used within the last `idle` seconds; marks it used.
    pub async fn mcp_session_owner(&self, id: &str, idle: i64) -> Result<Option<String>, StoreError> {
        let now = self.now();
        self.store.touch_mcp_session(id, now, now - idle).await
    }

    pub async fn mcp_session_forget(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_mcp_session(id).await
    }

    /// Stores the session's initialize parameters (JSON) for resumption elsewhere.
    pub async fn mcp_session_save_state(&self, id: &str, state: &str) -> Result<(), StoreError> {
        self.store.save_mcp_session_state(id, state, self.now()).await
    }

    /// The initialize parameters of a session used within the last `idle` seconds.
    pub async fn mcp_session_state(&self, id: &str, idle: i64) -> Result<Option<String>, StoreError> {
        self.store.mcp_session_state(id, self.now() - idle).await
    }
}
