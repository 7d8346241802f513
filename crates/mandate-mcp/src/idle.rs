//! Idle MCP sessions leave memory. A session lives in the database (owner, `initialize`
//! parameters); rmcp's session manager holds a running copy of it (a worker, the handler, their
//! channels: ~55 KiB each, docs/BENCHMARKS.md). [`ParkIdle`] closes that copy once the session
//! has had no request for [`crate::IDLE_IN_MEMORY`] and no stream open (a `GET` event stream, a
//! streamed answer). The session itself goes on: its next request, on this instance or any
//! other, finds it gone from memory and rmcp restores it from the database (its `initialize`
//! replayed), as it does for a session begun on another instance.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use mandate_core::clock::{Clock, UnixTime};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::common::server_side_http::ServerSseMessage;
use rmcp::transport::streamable_http_server::session::store::EventStore;
use rmcp::transport::streamable_http_server::session::{RestoreOutcome, SessionId, SessionManager};
use tokio_util::sync::CancellationToken;

use crate::CloseSessions;

/// When a session in memory was last used, and how many of its streams are open.
#[derive(Default)]
struct Use {
    last: UnixTime,
    open: u32,
}

type Uses = Arc<Mutex<HashMap<SessionId, Use>>>;

/// `M`, noting when each session is used (see the module's documentation).
pub struct ParkIdle<M> {
    inner: M,
    uses: Uses,
    clock: Arc<dyn Clock>,
    idle: i64,
}

impl<M> ParkIdle<M> {
    pub fn new(inner: M, clock: Arc<dyn Clock>, idle: Duration) -> Self {
        let idle = i64::try_from(idle.as_secs()).unwrap_or(i64::MAX);
        Self { inner, uses: Arc::default(), clock, idle }
    }

    /// What the parking task reads: the sessions idle by now.
    pub fn watch(&self) -> IdleWatch {
        IdleWatch { uses: self.uses.clone(), clock: self.clock.clone(), idle: self.idle }
    }

    fn used(&self, id: &SessionId) {
        let now = self.clock.now();
        if let Ok(mut uses) = self.uses.lock() {
            uses.entry(id.clone()).or_default().last = now;
        }
    }

    /// `stream`, counted open until it is dropped (it ended, or the client went away).
    fn tracked<S>(&self, id: &SessionId, stream: S) -> Tracked<S> {
        let now = self.clock.now();
        if let Ok(mut uses) = self.uses.lock() {
            let u = uses.entry(id.clone()).or_default();
            u.open += 1;
            u.last = now;
        }
        Tracked {
            inner: Box::pin(stream),
            _open: OpenStream { uses: self.uses.clone(), clock: self.clock.clone(), id: id.clone() },
        }
    }
}

/// The sessions of a [`ParkIdle`] that are idle.
#[derive(Clone)]
pub struct IdleWatch {
    uses: Uses,
    clock: Arc<dyn Clock>,
    idle: i64,
}

impl IdleWatch {
    /// The sessions with no stream open and no request for the idle time, by now.
    pub fn idle(&self) -> Vec<SessionId> {
        let now = self.clock.now();
        let Ok(uses) = self.uses.lock() else { return Vec::new() };
        uses.iter().filter(|(_, u)| u.open == 0 && now - u.last >= self.idle).map(|(id, _)| id.clone()).collect()
    }

    fn still_idle(&self, id: &SessionId) -> bool {
        let now = self.clock.now();
        let Ok(uses) = self.uses.lock() else { return false };
        uses.get(id).is_some_and(|u| u.open == 0 && now - u.last >= self.idle)
    }

    /// Closes the idle sessions in `sessions` (the endpoint's session manager, outermost); how
    /// many. Each is looked at again just before: one used meanwhile stays.
    pub async fn park(&self, sessions: &dyn CloseSessions) -> usize {
        let mut parked = 0;
        for id in self.idle() {
            if self.still_idle(&id) {
                sessions.close(&id).await;
                parked += 1;
            }
        }
        parked
    }

    /// Parks idle sessions every `every` until `stop` is cancelled or the session manager is
    /// gone.
    pub fn spawn(self, sessions: Weak<dyn CloseSessions>, every: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(sessions) = sessions.upgrade() else { return };
                let parked = self.park(sessions.as_ref()).await;
                if parked > 0 {
                    tracing::debug!(parked, "idle MCP sessions left memory (they stay in the database)");
                }
            }
        });
    }
}

/// A stream of a session, counted open while it exists.
struct Tracked<S> {
    inner: Pin<Box<S>>,
    _open: OpenStream,
}

impl<S: Stream> Stream for Tracked<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct OpenStream {
    uses: Uses,
    clock: Arc<dyn Clock>,
    id: SessionId,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let now = self.clock.now();
        // A session closed meanwhile is not noted again.
        if let Ok(mut uses) = self.uses.lock()
            && let Some(u) = uses.get_mut(&self.id)
        {
            u.open = u.open.saturating_sub(1);
            u.last = now;
        }
    }
}

impl<M: SessionManager> SessionManager for ParkIdle<M> {
    type Error = M::Error;
    type Transport = M::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.used(&id);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.used(id);
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if let Ok(mut uses) = self.uses.lock() {
            uses.remove(id);
        }
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.used(id);
        let stream = self.inner.create_stream(id, message).await?;
        Ok(self.tracked(id, stream))
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.used(id);
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.inner.create_standalone_stream(id).await?;
        Ok(self.tracked(id, stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(self.tracked(id, stream))
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let outcome = self.inner.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.used(&id);
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mandate_core::clock::ManualClock;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

    use super::*;

    #[tokio::test]
    async fn sessions_leave_memory_once_idle_unless_a_stream_is_open() {
        let clock = ManualClock::new(1_000);
        let sessions =
            Arc::new(ParkIdle::new(LocalSessionManager::default(), Arc::new(clock.clone()), Duration::from_secs(60)));
        let watch = sessions.watch();
        let (quiet, _t1) = sessions.create_session().await.unwrap();
        let (streaming, _t2) = sessions.create_session().await.unwrap();
        let open = sessions.tracked(&streaming, futures::stream::pending::<ServerSseMessage>());
        clock.advance(59);
        assert!(watch.idle().is_empty(), "not idle long enough yet");
        clock.advance(1);
        assert_eq!(watch.idle(), std::slice::from_ref(&quiet), "a session with a stream open stays");
        assert_eq!(watch.park(sessions.as_ref()).await, 1);
        assert!(!sessions.has_session(&quiet).await.unwrap(), "gone from memory");
        assert!(sessions.has_session(&streaming).await.unwrap());
        // Its stream ended: idle from then on.
        drop(open);
        clock.advance(59);
        assert!(watch.idle().is_empty());
        clock.advance(1);
        assert_eq!(watch.park(sessions.as_ref()).await, 1);
        assert!(!sessions.has_session(&streaming).await.unwrap());
        // A request counts as use.
        let (used, _t3) = sessions.create_session().await.unwrap();
        clock.advance(30);
        sessions.used(&used);
        clock.advance(59);
        assert!(watch.idle().is_empty());
    }
}
