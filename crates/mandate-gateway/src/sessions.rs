//! Gateway sessions in the shared database, for continuing an HTTP upstream's session on
//! another instance: beside rmcp's `initialize` parameters, the upstream's session id and its
//! `initialize` result. A stdio session is not stored: its process lives on one instance, so
//! another instance does not know the session and answers 404 (the client starts a new one).

use std::sync::Arc;

use mandate_core::AuthServer;
use rmcp::model::InitializeResult;
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};
use serde_json::Value;

use crate::client::Resume;

/// Where the upstream's session is kept in the stored state.
const UPSTREAM: &str = "mandate_upstream";

fn opaque(e: impl std::fmt::Display) -> SessionStoreError {
    tracing::error!(error = %e, "gateway session store failed");
    "session store unavailable".into()
}

pub(crate) struct GatewaySessions {
    auth: Arc<AuthServer>,
    /// Only HTTP upstreams' sessions can be continued elsewhere.
    continuable: bool,
}

fn idle() -> i64 {
    mandate_guard::SESSION_IDLE.as_secs() as i64
}

impl GatewaySessions {
    pub fn new(auth: Arc<AuthServer>, continuable: bool) -> Self {
        Self { auth, continuable }
    }

    async fn stored(&self, id: &str) -> Result<Option<Value>, SessionStoreError> {
        let Some(json) = self.auth.mcp_session_state(id, idle()).await.map_err(opaque)? else { return Ok(None) };
        Ok(serde_json::from_str(&json).ok())
    }

    /// Records the upstream session behind the gateway session `id`.
    pub async fn record(&self, id: &str, upstream_session: &str, init: &InitializeResult) {
        if !self.continuable {
            return;
        }
        let outcome = async {
            let mut v = self.stored(id).await?.unwrap_or_else(|| Value::Object(Default::default()));
            v[UPSTREAM] = serde_json::json!({"session": upstream_session, "initialize": init});
            self.auth.mcp_session_save_state(id, &v.to_string()).await.map_err(opaque)
        }
        .await;
        if outcome.is_err() {
            tracing::warn!("could not record the upstream session: another instance cannot continue this one");
        }
    }

    /// What a continuation of `id` attaches to.
    pub async fn resume(&self, id: &str) -> Option<Resume> {
        let v = self.stored(id).await.ok()??;
        let u = v.get(UPSTREAM)?;
        Some(Resume {
            session: u.get("session")?.as_str()?.to_owned(),
            init: serde_json::from_value(u.get("initialize")?.clone()).ok()?,
        })
    }
}

#[async_trait::async_trait]
impl SessionStore for GatewaySessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        if !self.continuable {
            return Ok(None);
        }
        let Some(v) = self.stored(session_id).await? else { return Ok(None) };
        // Without a recorded upstream session there is nothing to continue.
        if v.get(UPSTREAM).is_none() {
            return Ok(None);
        }
        Ok(serde_json::from_value(v).ok())
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        if !self.continuable {
            return Ok(());
        }
        let mut v = serde_json::to_value(state).map_err(opaque)?;
        if let Some(upstream) = self.stored(session_id).await?.and_then(|old| old.get(UPSTREAM).cloned()) {
            v[UPSTREAM] = upstream;
        }
        self.auth.mcp_session_save_state(session_id, &v.to_string()).await.map_err(opaque)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.auth.mcp_session_forget(session_id).await.map_err(opaque)
    }
}
