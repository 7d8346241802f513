//! Gateway sessions in the shared database, for continuing an HTTP upstream's session on
//! another instance: beside rmcp's `initialize` parameters, the upstream's session id and its
//! `initialize` result. A stdio session is not stored: its process lives on one instance, so
//! another instance does not know the session and answers 404 (the client starts a new one).

use std::sync::Arc;

use futures::Stream;
use mandate_core::AuthServer;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, InitializeResult, ServerJsonRpcMessage};
use rmcp::transport::common::server_side_http::ServerSseMessage;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::store::EventStore;
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};
use rmcp::transport::streamable_http_server::session::{RestoreOutcome, SessionId, SessionManager};
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
    /// Only HTTP upstreams' sessions can be continued elsewhere: how to end one there.
    upstream: Option<UpstreamEnd>,
}

/// What ending an upstream session takes: `DELETE` at its URL with its session id.
pub(crate) struct UpstreamEnd {
    pub http: reqwest::Client,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// An upstream that acts with each person's account: the session's owner's token goes with
    /// the `DELETE` too.
    pub account: Option<mandate_upstream::UpstreamHandle>,
}

fn idle() -> i64 {
    mandate_guard::SESSION_IDLE.as_secs() as i64
}

impl GatewaySessions {
    pub fn new(auth: Arc<AuthServer>, upstream: Option<UpstreamEnd>) -> Self {
        Self { auth, upstream }
    }

    fn continuable(&self) -> bool {
        self.upstream.is_some()
    }

    async fn stored(&self, id: &str) -> Result<Option<Value>, SessionStoreError> {
        let Some(json) = self.auth.mcp_session_state(id, idle()).await.map_err(opaque)? else { return Ok(None) };
        Ok(serde_json::from_str(&json).ok())
    }

    /// The session owner's token at the upstream's provider, if it acts with one.
    async fn owner_token(&self, end: &UpstreamEnd, session_id: &str) -> Option<mandate_upstream::UpstreamToken> {
        let account = end.account.as_ref()?;
        let owner = self.auth.mcp_session_owner(session_id, idle()).await.ok()??;
        let (_, subject) = owner.rsplit_once('\u{1f}')?;
        account.token(subject).await.ok()
    }

    /// Records the upstream session behind the gateway session `id`.
    pub async fn record(&self, id: &str, upstream_session: &str, init: &InitializeResult) {
        if !self.continuable() {
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
        if !self.continuable() {
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
        if !self.continuable() {
            return Ok(());
        }
        let mut v = serde_json::to_value(state).map_err(opaque)?;
        if let Some(upstream) = self.stored(session_id).await?.and_then(|old| old.get(UPSTREAM).cloned()) {
            v[UPSTREAM] = upstream;
        }
        self.auth.mcp_session_save_state(session_id, &v.to_string()).await.map_err(opaque)
    }

    /// The client ended its session (`DELETE`, on whichever instance): the upstream's ends too.
    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        if let (Some(end), Some(r)) = (&self.upstream, self.resume(session_id).await) {
            let mut req = end
                .http
                .delete(&end.url)
                .header("mcp-session-id", &r.session)
                .timeout(std::time::Duration::from_secs(5));
            for (k, v) in &end.headers {
                req = req.header(k, v);
            }
            if let Some(token) = self.owner_token(end, session_id).await {
                req = req.bearer_auth(token.expose());
            }
            if let Err(e) = req.send().await {
                tracing::warn!(error = %e, "could not end the upstream session (it expires on its own)");
            }
        }
        self.auth.mcp_session_forget(session_id).await.map_err(opaque)
    }
}

/// The client's session id, put in the `initialize` request by [`TellingSessions`] so the relay
/// can record the upstream session before answering.
#[derive(Debug, Clone)]
pub(crate) struct SessionIdOf(pub String);

/// rmcp's in-memory session manager, telling the relay which session an `initialize` opens.
#[derive(Default)]
pub(crate) struct TellingSessions(pub LocalSessionManager);

impl SessionManager for TellingSessions {
    type Error = <LocalSessionManager as SessionManager>::Error;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.0.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        mut message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        if let ClientJsonRpcMessage::Request(r) = &mut message {
            r.request.extensions_mut().insert(SessionIdOf(id.to_string()));
        }
        self.0.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.0.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.0.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.create_stream(id, message).await
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.0.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.resume(id, last_event_id).await
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.0.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.0.event_store()
    }
}
