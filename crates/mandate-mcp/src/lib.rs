//! mandate-mcp: the MCP server (Streamable HTTP via rmcp) serving the demo apps at `/mcp`,
//! behind the [`mandate_guard`] resource-server layer. With the authorization server in the
//! same process it validates tokens against mandate's own key ring and refuses tokens of
//! revoked grants at once; on its own (`--mcp-only`) it validates against the issuer's JWKS.

mod counted_sessions;
mod idle;
mod shared_sessions;
mod tools;
mod upstream_account;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use mandate_core::AuthServer;
use mandate_core::demo::{DemoStore, TOOLS};
use mandate_core::scope::ResourceDef;
use mandate_core::service::AuditDraft;
use mandate_guard::{
    Guard, GuardConfig, LocalKeys, NewSessionLimit, Principal, RevocationCheck, TokenCheck, ToolCallAudit,
    ToolDecision, ToolScopes, Validator,
};
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::tower::StreamableHttpService;
use tokio_util::sync::CancellationToken;

pub use counted_sessions::CountedSessions;
pub use idle::{IdleWatch, ParkIdle};
pub use shared_sessions::{CloseSessions, DatabaseSessions};
pub use tools::{DemoApps, SCOPES_META_KEY};
pub use upstream_account::{URL_ELICITATION_REQUIRED, connect_required, upstream_token};

/// The demo tools and the scopes each needs.
pub fn tool_scopes() -> ToolScopes {
    TOOLS.iter().fold(ToolScopes::new(), |acc, (tool, scopes, _)| acc.with(tool, scopes))
}

/// How long a "still live" answer is reused when nothing was revoked in this process.
const LIVE_FOR: Duration = Duration::from_secs(1);
const CACHE_ENTRIES: usize = 10_000;
/// How often an open event stream re-checks its grant when no revocation was announced.
const UNANNOUNCED: Duration = Duration::from_secs(5);

/// A token as the revocation check knows it: (grant id, token id).
type TokenKey = (Option<String>, Option<String>);

/// Refuses tokens of revoked grants (and revoked tokens) via the shared database. A revocation
/// made through this process (connected-apps page, `/revoke`, reuse detection, an operator via
/// the server) takes effect on the very next request; one made by another process (the CLI,
/// another instance) within [`LIVE_FOR`].
pub struct SharedDatabaseRevocation {
    auth: Arc<AuthServer>,
    live: Mutex<HashMap<TokenKey, (u64, Instant)>>,
}

impl SharedDatabaseRevocation {
    pub fn new(auth: Arc<AuthServer>) -> Self {
        Self { auth, live: Mutex::new(HashMap::new()) }
    }
}

#[async_trait]
impl RevocationCheck for SharedDatabaseRevocation {
    async fn revoked(&self, p: &Principal) -> Result<bool, ()> {
        let key = (p.grant_id.clone(), p.token_id.clone());
        let epoch = self.auth.revocation_epoch();
        let fresh = self
            .live
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied())
            .is_some_and(|(e, at)| e == epoch && at.elapsed() < LIVE_FOR);
        if fresh {
            return Ok(false);
        }
        // The answer is as old as the moment we asked, not the moment it arrived.
        let asked_at = Instant::now();
        let revoked = self.auth.access_revoked(p.grant_id.as_deref(), p.token_id.as_deref()).await.map_err(|e| {
            tracing::error!(error = %e, "revocation check failed");
        })?;
        if let Ok(mut m) = self.live.lock() {
            if revoked {
                m.remove(&key);
            } else {
                if m.len() >= CACHE_ENTRIES {
                    m.clear();
                }
                m.insert(key, (epoch, asked_at));
            }
        }
        Ok(revoked)
    }

    /// A revocation through this process (or announced on PostgreSQL) at once; others (the CLI
    /// on SQLite, which announces nothing) within [`UNANNOUNCED`].
    async fn changed(&self) {
        tokio::select! {
            () = self.auth.revocation_changed() => {}
            () = tokio::time::sleep(UNANNOUNCED) => {}
        }
    }
}

/// Records refused tool calls in the audit trail (allowed calls are recorded by the tools,
/// with what they did).
pub struct AuditRefusals(pub Arc<AuthServer>);

#[async_trait]
impl ToolCallAudit for AuditRefusals {
    async fn tool_call(&self, p: &Principal, tool: &str, decision: &ToolDecision) {
        if let ToolDecision::Refused { missing } = decision {
            self.0
                .audit(AuditDraft {
                    kind: "tool.call",
                    outcome: "refused",
                    user: Some(&p.subject),
                    client: Some(&p.client_id),
                    grant: p.grant_id.as_deref(),
                    detail: Some(format!("{tool}: refused, needs {}", missing.join(" "))),
                })
                .await;
        }
    }
}

/// Everything the MCP endpoint is built from.
pub struct McpSettings {
    /// The canonical resource URL (`<public url>/mcp`).
    pub resource: String,
    /// The authorization server's issuer.
    pub issuer: String,
    /// Every scope of the resource, published in the metadata (no `offline_access`, RS7).
    pub scopes_supported: Vec<String>,
    /// The default set, asked for in the 401 challenge (no `offline_access`).
    pub challenge_scopes: Vec<String>,
    pub check: TokenCheck,
    /// Browser origins allowed besides the resource's own (e.g. an MCP inspector).
    pub extra_origins: Vec<String>,
    /// Set when the authorization server shares this process and database.
    pub revocation: Option<Arc<dyn RevocationCheck>>,
    /// Keep MCP sessions in the database (any instance serves any session) rather than in memory.
    pub shared_sessions: bool,
    /// How fast one caller may open new sessions (429 beyond).
    pub new_sessions: NewSessionLimit,
    /// Cancelled when the server shuts down: open event streams end and the session workers of
    /// this process stop (sessions stay in the database for other instances). Cancel it only
    /// after in-flight requests have finished, since their responses are streams too.
    pub shutdown: CancellationToken,
}

impl McpSettings {
    /// The single-binary deployment: the authorization server is in this process, so tokens are
    /// checked against its key ring and its database (revocation takes effect at once).
    /// `resource` is the catalogue entry this endpoint serves: its URI, and its scopes (all of
    /// them in the metadata, the default set in the challenge).
    pub fn in_process(auth: &Arc<AuthServer>, resource: &ResourceDef, extra_origins: Vec<String>) -> Self {
        let (scopes_supported, challenge_scopes) = published_scopes(resource);
        let resource = resource.uri.as_str();
        Self {
            resource: resource.to_owned(),
            issuer: auth.settings.issuer.clone(),
            scopes_supported,
            challenge_scopes,
            check: TokenCheck::Jwt(Validator::new(
                auth.settings.issuer.clone(),
                resource,
                Arc::new(LocalKeys(auth.clone())),
                auth.clock(),
            )),
            extra_origins,
            revocation: Some(Arc::new(SharedDatabaseRevocation::new(auth.clone()))),
            shared_sessions: true,
            new_sessions: NewSessionLimit::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Sets how fast one caller may open new sessions.
    pub fn with_new_sessions(mut self, limit: NewSessionLimit) -> Self {
        self.new_sessions = limit;
        self
    }

    /// Ends the endpoint's streams and sessions when `token` is cancelled.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }
}

/// What a resource publishes: every scope it has (the metadata's `scopes_supported`) and its
/// default set (the 401 challenge's `scope`), both without `offline_access` (RS7).
pub fn published_scopes(resource: &ResourceDef) -> (Vec<String>, Vec<String>) {
    let keep = |s: &&String| s.as_str() != "offline_access";
    let all = resource.scopes.iter().map(|s| &s.name).filter(keep).cloned().collect();
    let defaults = resource.default_scopes.iter().filter(keep).cloned().collect();
    (all, defaults)
}

/// A guarded MCP endpoint's parts: the guard (challenges, tool policy, session owners,
/// revocation, refusals in the trail) and the Streamable HTTP settings that match it.
pub struct Endpoint {
    pub guard: Arc<Guard>,
    pub service_config: StreamableHttpServerConfig,
    /// The sessions' owners in the database, when shared: hand it the endpoint's session manager
    /// ([`DatabaseSessions::closing_in`]) so that sessions dropped by the per-person cap leave
    /// this process's memory at once.
    pub registry: Option<Arc<DatabaseSessions>>,
}

/// How long an MCP session with no request and no stream open stays in this process's memory
/// ([`ParkIdle`]). After that only its database row is left (owner, `initialize` parameters); its
/// next request restores it (rmcp replays its `initialize`), on this instance or any other, until
/// the database's idle expiry ([`mandate_guard::SESSION_IDLE`], an hour).
pub const IDLE_IN_MEMORY: Duration = Duration::from_secs(60);
const _: () = assert!(IDLE_IN_MEMORY.as_secs() <= mandate_guard::SESSION_IDLE.as_secs());
/// How often idle sessions are looked for: one leaves memory between [`IDLE_IN_MEMORY`] and this
/// much later.
const PARK_EVERY: Duration = Duration::from_secs(15);

/// rmcp's in-memory session manager for sessions kept in the database, to be wrapped in
/// [`ParkIdle`]. Its own keep-alive (a session worker ends after this long without a message,
/// 5 minutes by default) is the database's idle expiry: a session whose event stream stays open
/// without messages lasts as long as its database row, and [`ParkIdle`] handles the rest.
pub fn session_manager() -> LocalSessionManager {
    let mut m = LocalSessionManager::default();
    m.session_config.keep_alive = Some(mandate_guard::SESSION_IDLE);
    m
}

/// The guard and service settings for an MCP endpoint at `settings.resource` whose tools need
/// the scopes in `tools`. `root_metadata`: also publish the metadata at the root well-known URL
/// (one resource per origin can).
pub fn endpoint(
    settings: McpSettings,
    auth: Arc<AuthServer>,
    name: &str,
    tools: ToolScopes,
    root_metadata: bool,
) -> Endpoint {
    let mut config = GuardConfig::new(&settings.resource, &settings.issuer);
    config.scopes_supported = settings.scopes_supported;
    config.challenge_scopes = settings.challenge_scopes;
    config.resource_name = name.to_owned();
    config.tools = tools;
    config.root_metadata = root_metadata;
    config.new_sessions = settings.new_sessions;
    config.allowed_origins.extend(settings.extra_origins);
    // rmcp checks Host itself (loopback only by default): allow exactly what the guard allows.
    let hosts = config.allowed_hosts.clone();
    let mut guard =
        Guard::new(config, settings.check).with_audit(Arc::new(AuditRefusals(auth.clone()))).with_clock(auth.clock());
    if let Some(r) = settings.revocation {
        guard = guard.with_revocation(r);
    }
    let sessions = settings.shared_sessions.then(|| Arc::new(DatabaseSessions::new(auth)));
    if let Some(s) = &sessions {
        guard = guard.with_sessions(s.clone());
    }
    let mut service_config =
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts).with_cancellation_token(settings.shutdown);
    if let Some(s) = &sessions {
        service_config.session_store = Some(s.clone());
    }
    Endpoint { guard: Arc::new(guard), service_config, registry: sessions }
}

/// The `/mcp` endpoint behind the guard, plus the protected resource metadata routes.
pub fn router(settings: McpSettings, auth: Arc<AuthServer>, demo: Arc<dyn DemoStore>) -> Router {
    let level = auth.counters().mcp_sessions(&settings.resource);
    let stop = settings.shutdown.clone();
    let Endpoint { guard, service_config, registry } =
        endpoint(settings, auth.clone(), "mandate demo apps (billing and todos)", tool_scopes(), true);
    let parking = ParkIdle::new(session_manager(), auth.clock(), IDLE_IN_MEMORY);
    let idle = parking.watch();
    let sessions = Arc::new(CountedSessions::new(parking, level));
    // Sessions leave memory when the database drops them (the per-person cap), and when idle:
    // only with the database, where a parked session comes back from.
    if let Some(r) = &registry {
        r.closing_in(sessions.clone());
        let closer: Arc<dyn CloseSessions> = sessions.clone();
        idle.spawn(Arc::downgrade(&closer), PARK_EVERY, stop);
    }
    let service = service_with(auth, demo, service_config, sessions);
    guard.protect(Router::new().nest_service("/mcp", service)).merge(guard.metadata_router())
}

/// The demo apps' Streamable HTTP service, without any guard. Mount it only behind one (the
/// benchmarks compare it with and without); the tools need a [`Principal`] in the request.
pub fn service(
    auth: Arc<AuthServer>,
    demo: Arc<dyn DemoStore>,
    allowed_hosts: Vec<String>,
) -> StreamableHttpService<DemoApps, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts);
    service_with(auth, demo, config, Arc::new(LocalSessionManager::default()))
}

fn service_with<M: SessionManager>(
    auth: Arc<AuthServer>,
    demo: Arc<dyn DemoStore>,
    config: StreamableHttpServerConfig,
    sessions: Arc<M>,
) -> StreamableHttpService<DemoApps, M> {
    // One handler per session: a clone of this one, sharing its tool router.
    let apps = DemoApps::new(auth, demo);
    StreamableHttpService::new(move || Ok(apps.clone()), sessions, config)
}
