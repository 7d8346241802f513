//! `tools/call` on one server with auth on (`/mcp`, behind the guard: Host/Origin, JWT
//! validation, revocation lookup, scope check, session binding) and auth off (`/mcp-open`: the
//! same service with a fixed caller injected), measured in interleaved rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use mandate_core::AuthServer;
use mandate_core::demo::DemoStore;
use mandate_core::scope::ScopeSet;
use mandate_guard::Principal;
use serde_json::{Value, json};

use crate::Stats;

/// The unguarded endpoint, with the caller the guard would have found.
pub fn open_router(auth: Arc<AuthServer>, demo: Arc<dyn DemoStore>, hosts: Vec<String>, caller: Principal) -> Router {
    let service = mandate_mcp::service(auth, demo, hosts);
    Router::new().nest_service("/mcp-open", service).layer(from_fn(move |mut req: Request, next: Next| {
        let caller = caller.clone();
        async move {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
    }))
}

pub fn caller(subject: &str, client_id: &str) -> Principal {
    Principal {
        issuer: String::new(),
        subject: subject.to_owned(),
        client_id: client_id.to_owned(),
        scopes: ScopeSet::from_names(["customers.read"]),
        grant_id: None,
        token_id: None,
        expires_at: i64::MAX,
    }
}

/// One MCP session (initialized once) that calls one tool over and over.
pub(crate) struct Session {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: String,
    protocol: String,
    call: Arc<Call>,
}

/// The `tools/call` a session repeats, and how to tell its answer is right.
pub(crate) struct Call {
    pub(crate) tool: &'static str,
    pub(crate) arguments: Value,
    pub(crate) ok: fn(&Value) -> bool,
}

/// The demo apps' `list_customers`: a read plus an audit-trail insert.
pub(crate) fn list_customers() -> Arc<Call> {
    Arc::new(Call { tool: "list_customers", arguments: json!({}), ok: |r| r["isError"] == json!(false) })
}

fn data(body: &str) -> Option<Value> {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).ok();
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
}

impl Session {
    pub(crate) async fn open(
        http: &reqwest::Client,
        url: String,
        token: Option<String>,
        call: Arc<Call>,
    ) -> anyhow::Result<Self> {
        let mut req = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                          "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let session =
            r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).context("no session id")?.to_owned();
        let body = r.text().await?;
        let protocol = data(&body)
            .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_owned))
            .context("initialize failed")?;
        let s = Self { http: http.clone(), url, token, session, protocol, call };
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok(s)
    }

    async fn send(&self, body: Value) -> anyhow::Result<String> {
        self.send_as(body, self.token.as_deref()).await
    }

    async fn send_as(&self, body: Value, token: Option<&str>) -> anyhow::Result<String> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", &self.protocol)
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        anyhow::ensure!(r.status().is_success(), "status {}", r.status());
        Ok(r.text().await?)
    }

    async fn call(&self, id: u64) -> anyhow::Result<()> {
        self.call_as(id, self.token.as_deref()).await
    }

    /// The session's call with another token of the same person and client (a newer one).
    pub(crate) async fn call_as(&self, id: u64, token: Option<&str>) -> anyhow::Result<()> {
        let (tool, arguments) = (self.call.tool, &self.call.arguments);
        let body = self
            .send_as(
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
                token,
            )
            .await?;
        let v = data(&body).context("no response")?;
        anyhow::ensure!((self.call.ok)(&v["result"]), "tool error: {v}");
        Ok(())
    }
}

/// Every session calls its tool `per_worker` times (or until `deadline`), all concurrently.
pub(crate) async fn round(
    sessions: &[Arc<Session>],
    per_worker: usize,
    deadline: Instant,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for s in sessions {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            for i in 0..per_worker {
                if Instant::now() > deadline {
                    break;
                }
                let t0 = Instant::now();
                match s.call(i as u64 + 1).await {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    for h in handles {
        let (l, e) = h.await?;
        stats.latencies.extend(l);
        stats.errors += e;
    }
    stats.elapsed += start.elapsed();
    Ok(())
}

/// Runs auth-off and auth-on rounds alternately; returns (off, on).
pub async fn compare(
    base: &str,
    token: &str,
    concurrency: usize,
    requests: usize,
    seconds: u64,
) -> anyhow::Result<(Stats, Stats)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let mut open = Vec::new();
    let mut guarded = Vec::new();
    for _ in 0..concurrency {
        open.push(Arc::new(Session::open(&http, format!("{base}/mcp-open"), None, list_customers()).await?));
        guarded.push(Arc::new(
            Session::open(&http, format!("{base}/mcp"), Some(token.to_owned()), list_customers()).await?,
        ));
    }
    let rounds = 4;
    let per_worker = (requests / concurrency / rounds).max(1);
    let per_round = Duration::from_secs(seconds.max(rounds as u64) / rounds as u64);
    let mut off = Stats { name: "tools/call, auth off", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    let mut on = Stats { name: "tools/call, auth on", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    for r in 0..rounds {
        let (first, second) = if r % 2 == 0 { (&open, &guarded) } else { (&guarded, &open) };
        for (sessions, is_open) in [(first, r % 2 == 0), (second, r % 2 != 0)] {
            let stats = if is_open { &mut off } else { &mut on };
            round(sessions, per_worker, Instant::now() + per_round, stats).await?;
        }
    }
    Ok((off, on))
}
