//! mandate-gateway: any MCP server, in any language, over Streamable HTTP or stdio, served
//! behind mandate's guard at its own resource URL (`<public url>/mcp/<name>`), with scopes
//! derived from its tool annotations, per-person consent, step-up, revocation and the trail,
//! without a line changed in that server. The agent's token never reaches it.
//!
//! ```ignore
//! let http = mandate_gateway::http_client()?;
//! let start = mandate_gateway::discover(&spec, &http).await?;     // before the catalogue is built
//! // ... AuthServer built with start.mapping.resource in its catalogue ...
//! let (upstream, router) = mandate_gateway::serve(spec, start, auth, http, settings, None);
//! ```

mod client;
mod forward;
mod processes;
mod relay;
mod routes;
mod scopes;
mod sessions;
mod spec;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use mandate_core::AuthServer;
use mandate_mcp::McpSettings;
use rmcp::model::ClientConfig;
use rmcp::transport::streamable_http_server::tower::StreamableHttpService;

pub use processes::LimitReached;
pub use relay::Relay;
pub use scopes::{MappingError, ScopeMapping, Source, ToolInfo, derive, label_of};
pub use spec::{Isolation, Limits, Target, UpstreamSpec, valid_name};
pub use upstream::Upstream;

/// The HTTP client for HTTP upstreams: redirects are not followed (an upstream's answer never
/// sends mandate's requests elsewhere). Upstreams are operator-configured, so loopback and
/// private addresses are allowed.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
}

/// Reads the upstream's tools once: start or connect, `initialize`, every page of `tools/list`,
/// then close (a process is stopped).
pub async fn list_tools(spec: &UpstreamSpec, http: &reqwest::Client) -> Result<Vec<ToolInfo>, String> {
    // Declaring what clients can do: servers list some tools only to clients that can sample
    // or elicit, and those tools need their scopes too.
    let mut info = ClientConfig::default();
    info.capabilities.roots = Some(Default::default());
    info.capabilities.sampling = Some(Default::default());
    info.capabilities.elicitation = Some(Default::default());
    let link = upstream::connect(spec, http, info, Arc::default(), upstream::Extras::default())
        .await
        .map_err(|e| e.message.to_string())?;
    let listed = tokio::time::timeout(spec.limits.request_timeout, link.service.peer().list_all_tools()).await;
    let tools = match listed {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(format!("tools/list failed: {e}")),
        Err(_) => return Err(format!("tools/list took over {} s", spec.limits.request_timeout.as_secs())),
    };
    drop(link);
    Ok(tools
        .into_iter()
        .map(|t| ToolInfo {
            name: t.name.to_string(),
            title: t.title.clone().or_else(|| t.annotations.as_ref().and_then(|a| a.title.clone())),
            read_only: t.annotations.as_ref().and_then(|a| a.read_only_hint),
            destructive: t.annotations.as_ref().and_then(|a| a.destructive_hint),
        })
        .collect())
}

/// An upstream as found at start.
pub struct Discovered {
    pub mapping: ScopeMapping,
    /// Tool → title, for the trail.
    pub labels: HashMap<String, String>,
    /// Why its tools could not be read (it is served anyway: each tool gets its scope when
    /// first listed, the strictest unless mapped).
    pub error: Option<String>,
}

/// Reads the upstream's tools and derives its scopes; an upstream that cannot be reached is
/// still served (see [`Discovered::error`]). Only a configuration error fails.
pub async fn discover(spec: &UpstreamSpec, http: &reqwest::Client) -> Result<Discovered, MappingError> {
    if spec.provider.is_some() {
        // Its tools answer only with a person's account: they are learned when first listed,
        // and tool_scopes decides their scopes meanwhile.
        return Ok(Discovered { mapping: derive(spec, None)?, labels: HashMap::new(), error: None });
    }
    match list_tools(spec, http).await {
        Ok(tools) => {
            let labels = tools.iter().map(|t| (t.name.clone(), t.label())).collect();
            Ok(Discovered { mapping: derive(spec, Some(&tools))?, labels, error: None })
        }
        Err(e) => {
            tracing::warn!(upstream = %spec.name, error = %e, "cannot read the upstream's tools at start: every tool gets its scope when first listed (the strictest unless mapped)");
            Ok(Discovered { mapping: derive(spec, None)?, labels: HashMap::new(), error: Some(e) })
        }
    }
}

/// The upstream's endpoint behind the guard, at the path of its resource URL, with its
/// path-inserted protected resource metadata.
pub fn serve(
    spec: UpstreamSpec,
    start: Discovered,
    auth: Arc<AuthServer>,
    http: reqwest::Client,
    settings: McpSettings,
    account: Option<mandate_upstream::UpstreamHandle>,
) -> (Arc<Upstream>, Router) {
    let path =
        url::Url::parse(&spec.resource).map(|u| u.path().to_owned()).unwrap_or_else(|_| format!("/mcp/{}", spec.name));
    let title = spec.title.clone();
    let tools = start.mapping.tools.clone();
    let upstream = Arc::new(Upstream::new(spec, start.mapping, start.labels, auth.clone(), http, account.clone()));
    if let Some(e) = start.error {
        upstream.note_failure(e);
    }
    let live = auth.counters().mcp_sessions(&settings.resource);
    let endpoint = mandate_mcp::endpoint(settings, auth, &title, tools, false);
    let mut config = endpoint.service_config;
    // An HTTP upstream's session continues on another instance (its upstream session id is
    // recorded); a stdio session's process lives here, so another instance answers 404 and the
    // client starts a new session (docs/GATEWAY.md: affinity on Mcp-Session-Id).
    let end = match &upstream.spec.target {
        Target::Http { url, headers } => Some(sessions::UpstreamEnd {
            http: upstream.http.clone(),
            url: url.clone(),
            headers: headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            account,
        }),
        Target::Stdio { .. } => None,
    };
    let sessions = Arc::new(sessions::GatewaySessions::new(upstream.auth.clone(), end));
    config.session_store = Some(sessions.clone());
    let relay_of = upstream.clone();
    let manager = Arc::new(mandate_mcp::CountedSessions::new(sessions::TellingSessions::default(), live));
    // A session the database drops for the per-person cap leaves memory at once, and its relay
    // with its upstream link (a stdio process ends with it).
    if let Some(r) = &endpoint.registry {
        r.closing_in(manager.clone());
    }
    let service =
        StreamableHttpService::new(move || Ok(Relay::new(relay_of.clone(), sessions.clone())), manager, config);
    let router =
        endpoint.guard.protect(Router::new().nest_service(&path, service)).merge(endpoint.guard.metadata_router());
    (upstream, router)
}
