//! An rmcp session manager that counts the sessions it holds in this process's memory (the
//! `mandate_mcp_sessions` gauge of `/metrics`): one more when a session is created or restored
//! here, one less when it is closed (a DELETE, or its worker ending: idle, shutdown).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::Stream;
use mandate_core::service::counters::Level;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::common::server_side_http::ServerSseMessage;
use rmcp::transport::streamable_http_server::session::store::EventStore;
use rmcp::transport::streamable_http_server::session::{RestoreOutcome, SessionId, SessionManager};

/// `M`, with its live sessions counted into a [`Level`]
/// ([`ServiceCounters::mcp_sessions`](mandate_core::service::ServiceCounters::mcp_sessions)).
pub struct CountedSessions<M> {
    inner: M,
    /// The ids counted: a session closed twice (a DELETE, then its worker ending) counts once.
    live: Mutex<HashSet<SessionId>>,
    level: Arc<Level>,
}

impl<M> CountedSessions<M> {
    pub fn new(inner: M, level: Arc<Level>) -> Self {
        Self { inner, live: Mutex::new(HashSet::new()), level }
    }

    fn opened(&self, id: &SessionId) {
        if let Ok(mut live) = self.live.lock()
            && live.insert(id.clone())
        {
            self.level.inc();
        }
    }

    fn closed(&self, id: &SessionId) {
        if let Ok(mut live) = self.live.lock()
            && live.remove(id)
        {
            self.level.dec();
        }
    }
}

impl<M: SessionManager> SessionManager for CountedSessions<M> {
    type Error = M::Error;
    type Transport = M::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.opened(&id);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        // The inner manager forgets the session before it reports how closing went.
        self.closed(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let outcome = self.inner.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.opened(&id);
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}
