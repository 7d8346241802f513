//! Which downstream client an upstream message belongs to: responses travel by the upstream
//! request id, progress by the upstream progress token (mapped back to the client's own), a
//! server-to-client request by the request it was issued for (or the one client attached).

use std::collections::{BTreeMap, HashMap};

use rmcp::model::{ProgressToken, RequestId};
use rmcp::service::{Peer, RoleServer};
use tokio::sync::Mutex;

/// A downstream MCP session: its key in this process and the peer to reach it.
#[derive(Clone)]
pub(crate) struct Downstream {
    pub key: u64,
    pub peer: Peer<RoleServer>,
}

#[derive(Default)]
struct Inner {
    /// upstream progress token → (client, the token the client sent)
    progress: HashMap<ProgressToken, (Downstream, ProgressToken)>,
    /// upstream request id → (client, the client's request id)
    inflight: HashMap<RequestId, (Downstream, RequestId)>,
    /// every client attached to this upstream connection (one, unless it is shared)
    attached: BTreeMap<u64, Downstream>,
    /// per client: the upstream's requests to it not yet answered, and the last sign of life
    /// (progress, such a request) for its requests
    waiting: HashMap<u64, usize>,
    active: HashMap<u64, tokio::time::Instant>,
}

/// The routing table of one upstream connection.
#[derive(Default)]
pub(crate) struct Routes(Mutex<Inner>);

/// Holds the table while a request is being sent upstream, so that its progress notifications
/// cannot be routed before the request is known.
pub(crate) struct Sending<'a>(tokio::sync::MutexGuard<'a, Inner>);

impl Sending<'_> {
    pub fn record(
        &mut self,
        upstream_id: RequestId,
        upstream_token: ProgressToken,
        from: &Downstream,
        downstream_id: RequestId,
        client_token: Option<ProgressToken>,
    ) {
        self.0.inflight.insert(upstream_id, (from.clone(), downstream_id));
        if let Some(t) = client_token {
            self.0.progress.insert(upstream_token, (from.clone(), t));
        }
    }
}

/// Where an upstream's server-to-client request goes.
pub(crate) struct Target {
    pub to: Downstream,
    /// The client's request it was issued for, when known: it then rides that request's stream.
    pub origin: Option<RequestId>,
}

impl Routes {
    pub async fn attach(&self, d: Downstream) {
        self.0.lock().await.attached.insert(d.key, d);
    }

    pub async fn detach(&self, key: u64) {
        let mut inner = self.0.lock().await;
        inner.attached.remove(&key);
        inner.waiting.remove(&key);
        inner.active.remove(&key);
        inner.inflight.retain(|_, (d, _)| d.key != key);
        inner.progress.retain(|_, (d, _)| d.key != key);
    }

    pub async fn sending(&self) -> Sending<'_> {
        Sending(self.0.lock().await)
    }

    /// The request is answered (or abandoned): forget its routes.
    pub async fn finished(&self, upstream_id: &RequestId, upstream_token: &ProgressToken) {
        let mut inner = self.0.lock().await;
        inner.inflight.remove(upstream_id);
        inner.progress.remove(upstream_token);
    }

    /// The client a progress notification is for, and the token it knows.
    pub async fn progress(&self, upstream_token: &ProgressToken) -> Option<(Downstream, ProgressToken)> {
        self.0.lock().await.progress.get(upstream_token).cloned()
    }

    /// Where a server-to-client request goes: the client whose request it was issued for
    /// (known from the HTTP stream it arrived on), else the only client with requests in
    /// flight, else the only client attached.
    pub async fn target(&self, upstream_origin: Option<&RequestId>) -> Option<Target> {
        let inner = self.0.lock().await;
        if let Some((d, id)) = upstream_origin.and_then(|o| inner.inflight.get(o)) {
            return Some(Target { to: d.clone(), origin: Some(id.clone()) });
        }
        let mut clients = inner.inflight.values().map(|(d, _)| d.key).collect::<Vec<_>>();
        clients.sort_unstable();
        clients.dedup();
        if let [only] = clients.as_slice() {
            // The latest request of that client.
            let (d, id) = inner.inflight.values().filter(|(d, _)| d.key == *only).max_by_key(|(_, id)| id_order(id))?;
            return Some(Target { to: d.clone(), origin: Some(id.clone()) });
        }
        if clients.is_empty() && inner.attached.len() == 1 {
            return inner.attached.values().next().map(|d| Target { to: d.clone(), origin: None });
        }
        None
    }

    /// Something happened for `key`'s requests (progress, an upstream request to it).
    pub async fn alive(&self, key: u64) {
        self.0.lock().await.active.insert(key, tokio::time::Instant::now());
    }

    /// The upstream asks `key` something (`+1`) or got its answer (`-1`).
    pub async fn asking(&self, key: u64, started: bool) {
        let mut inner = self.0.lock().await;
        let n = inner.waiting.entry(key).or_default();
        *n = if started { *n + 1 } else { n.saturating_sub(1) };
        inner.active.insert(key, tokio::time::Instant::now());
    }

    /// A later deadline for `key`'s request when it is not idle: its client is answering the
    /// upstream, or there was a sign of life within `limit`.
    pub async fn busy_until(&self, key: u64, limit: std::time::Duration) -> Option<tokio::time::Instant> {
        let inner = self.0.lock().await;
        let now = tokio::time::Instant::now();
        if inner.waiting.get(&key).is_some_and(|n| *n > 0) {
            return Some(now + limit);
        }
        inner.active.get(&key).map(|at| *at + limit).filter(|later| *later > now)
    }

    /// Every client attached (for notifications that concern them all: list changes, logs).
    pub async fn everyone(&self) -> Vec<Downstream> {
        self.0.lock().await.attached.values().cloned().collect()
    }
}

fn id_order(id: &RequestId) -> (i64, String) {
    match id {
        rmcp::model::NumberOrString::Number(n) => (*n, String::new()),
        rmcp::model::NumberOrString::String(s) => (i64::MAX, s.to_string()),
    }
}
