//! The guard itself: the middleware in front of an MCP endpoint. Order of checks (MCP H13):
//! Host and Origin (403) → bearer token (401) → revocation (401) → session ownership (404) →
//! the tool policy (an unknown tool gets the JSON-RPC error `-32602`, a missing scope a 403
//! step-up) → the MCP server, with the [`Principal`] in the extensions.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use mandate_core::clock::{Clock, SystemClock};
use mandate_core::scope::ScopeSet;
use serde_json::Value;

use crate::challenge::{ChallengeKind, challenge};
use crate::jsonrpc;
use crate::metadata::metadata_path_for;
use crate::principal::Principal;
use crate::session_limit::{NewSessionLimit, SessionLimiter};
use crate::sessions::{SessionOwners, SessionRegistry};
use crate::tools::{ToolCallAudit, ToolDecision, ToolScopes};
use crate::validate::{Rejection, Validator};

/// Largest JSON-RPC body the guard reads to find the tool being called.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What the guard protects and for whom.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The canonical resource URL, e.g. `https://mcp.example.com/mcp`.
    pub resource: String,
    /// The authorization server's issuer, byte-identical to its metadata `issuer`.
    pub issuer: String,
    /// Every scope of this resource, published in the metadata's `scopes_supported` (RFC 9728).
    pub scopes_supported: Vec<String>,
    /// The default set, asked for in the 401 challenge's `scope` (what a first login requests);
    /// when empty, the challenge names `scopes_supported`.
    pub challenge_scopes: Vec<String>,
    pub resource_name: String,
    /// Accepted `Host` values (`host` or `host:port`); derived from `resource` by default.
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values when the header is present; the resource's origin by default.
    pub allowed_origins: Vec<String>,
    pub tools: ToolScopes,
    /// Also publish the metadata at the root well-known URL (`/.well-known/oauth-protected-resource`);
    /// only one resource of an origin can.
    pub root_metadata: bool,
    /// How fast one caller (issuer, subject, client) may open new MCP sessions (`initialize`
    /// without a session id); beyond it, 429 with `Retry-After`.
    pub new_sessions: NewSessionLimit,
}

impl GuardConfig {
    pub fn new(resource: &str, issuer: &str) -> Self {
        let url = url::Url::parse(resource).ok();
        let host = url.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let mut allowed_hosts = vec![host.clone()];
        if let Some(port) = url.as_ref().and_then(url::Url::port) {
            allowed_hosts.push(format!("{host}:{port}"));
        }
        let origin = url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        Self {
            resource: resource.to_owned(),
            issuer: issuer.to_owned(),
            scopes_supported: Vec::new(),
            challenge_scopes: Vec::new(),
            resource_name: "MCP server".to_owned(),
            allowed_hosts,
            allowed_origins: vec![origin],
            tools: ToolScopes::default(),
            root_metadata: true,
            new_sessions: NewSessionLimit::default(),
        }
    }

    /// The URL of this resource's metadata document.
    pub fn metadata_url(&self) -> String {
        let origin = url::Url::parse(&self.resource).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        format!("{origin}{}", metadata_path_for(&self.resource))
    }
}

/// Is the grant behind a token still alive? (mandate shares its database with the resource
/// server in the single-binary deployment, so revocation takes effect on the next request.)
#[async_trait]
pub trait RevocationCheck: Send + Sync {
    /// `Err` when the answer cannot be had: the guard then fails closed (503).
    async fn revoked(&self, principal: &Principal) -> Result<bool, ()>;

    /// Resolves when a revocation may have happened: open event streams then ask [`revoked`]
    /// again, and end if their grant is gone. By default every second.
    ///
    /// [`revoked`]: RevocationCheck::revoked
    async fn changed(&self) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How tokens are checked.
pub enum TokenCheck {
    /// Local JWT validation (RFC 9068) against the issuer's keys.
    Jwt(Validator),
    /// RFC 7662 introspection at the authorization server (opaque tokens).
    Introspection { endpoint: String, client_id: String, client_secret: String, http: reqwest::Client },
}

impl TokenCheck {
    pub fn introspection(endpoint: &str, client_id: &str, client_secret: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self::Introspection {
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            http,
        })
    }
}

/// The resource-server guard. Build once, share as `Arc<Guard>`.
pub struct Guard {
    pub config: GuardConfig,
    check: TokenCheck,
    revocation: Option<Arc<dyn RevocationCheck>>,
    audit: Option<Arc<dyn ToolCallAudit>>,
    sessions: Arc<dyn SessionRegistry>,
    new_sessions: SessionLimiter,
}

enum Refusal {
    /// A complete answer: a 401/403 challenge, or a JSON-RPC answer in the server's stead.
    Answer(Response),
    /// An HTTP refusal with a JSON-RPC error without `id` (MCP H2, H4).
    Status(StatusCode, &'static str),
}

impl Guard {
    pub fn new(config: GuardConfig, check: TokenCheck) -> Self {
        let new_sessions = SessionLimiter::new(config.new_sessions, Arc::new(SystemClock));
        Self {
            config,
            check,
            revocation: None,
            audit: None,
            sessions: Arc::new(SessionOwners::default()),
            new_sessions,
        }
    }

    /// The clock the new-session limit counts with (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.new_sessions = SessionLimiter::new(self.config.new_sessions, clock);
        self
    }

    pub fn with_revocation(mut self, r: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(r);
        self
    }

    pub fn with_audit(mut self, a: Arc<dyn ToolCallAudit>) -> Self {
        self.audit = Some(a);
        self
    }

    /// Keeps session owners in a shared registry (a database) instead of this process's memory,
    /// so that any instance can serve a session another began.
    pub fn with_sessions(mut self, registry: Arc<dyn SessionRegistry>) -> Self {
        self.sessions = registry;
        self
    }

    /// Wraps `router` (the MCP endpoint) in the guard.
    pub fn protect(self: &Arc<Self>, router: Router) -> Router {
        router.layer(from_fn_with_state(self.clone(), run))
    }

    /// The protected resource metadata routes (public: mount them outside the guard).
    pub fn metadata_router(self: &Arc<Self>) -> Router {
        crate::metadata::router(self.clone())
    }

    /// The 401 challenge's `scope`: the default set, never `offline_access` (RS7). Without a
    /// default set configured, every scope the resource publishes (what the metadata says).
    fn baseline_scope(&self) -> String {
        let set = match self.config.challenge_scopes.is_empty() {
            true => &self.config.scopes_supported,
            false => &self.config.challenge_scopes,
        };
        without_offline_access(set).join(" ")
    }

    fn challenge(&self, kind: ChallengeKind, scope: &str, description: Option<&str>) -> Response {
        challenge(kind, &self.config.metadata_url(), scope, description)
    }

    fn host_and_origin_ok(&self, headers: &HeaderMap, uri_host: Option<&str>) -> bool {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(uri_host);
        let host_ok = host.is_some_and(|h| self.config.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
        let origin_ok = match headers.get(header::ORIGIN).map(|v| v.to_str()) {
            None => true,
            Some(Ok(o)) => self.config.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)),
            Some(Err(_)) => false,
        };
        host_ok && origin_ok
    }

    /// Validates the bearer token of a request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Response> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(self.challenge(ChallengeKind::Missing, &self.baseline_scope(), None));
        };
        let invalid = |d: &str| self.challenge(ChallengeKind::InvalidToken, &self.baseline_scope(), Some(d));
        if values.next().is_some() {
            return Err(invalid("send exactly one Authorization header"));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| invalid("use the Bearer scheme"))?;
        let principal = match &self.check {
            TokenCheck::Jwt(v) => v.validate(token).await.map_err(|r| invalid(&r.to_string()))?,
            TokenCheck::Introspection { endpoint, client_id, client_secret, http } => {
                match introspect(http, endpoint, client_id, client_secret, token, &self.config).await {
                    Ok(p) => p,
                    Err(IntrospectionError::Refused(r)) => return Err(invalid(&r.to_string())),
                    Err(IntrospectionError::Unavailable) => {
                        return Err((StatusCode::SERVICE_UNAVAILABLE, "authorization server unavailable; retry")
                            .into_response());
                    }
                }
            }
        };
        if let Some(r) = &self.revocation {
            match r.revoked(&principal).await {
                Ok(false) => {}
                Ok(true) => return Err(invalid(&Rejection::Revoked.to_string())),
                Err(()) => {
                    return Err(
                        (StatusCode::SERVICE_UNAVAILABLE, "authorization state unavailable; retry").into_response()
                    );
                }
            }
        }
        Ok(principal)
    }

    /// The tool-policy inspection of a JSON-RPC body as the guard runs it after authentication,
    /// for the fuzz targets in `fuzz/` (not an API): `None` when the body may be forwarded, else
    /// the status of the guard's own answer.
    #[doc(hidden)]
    pub async fn inspect_body(&self, principal: &Principal, body: &[u8], accepts_json: bool) -> Option<StatusCode> {
        match self.check_tools(principal, body, accepts_json).await {
            Ok(()) => None,
            Err(Refusal::Answer(resp)) => Some(resp.status()),
            Err(Refusal::Status(status, _)) => Some(status),
        }
    }

    /// Finds tools/call requests in a JSON-RPC body and checks them against the tool policy.
    async fn check_tools(&self, principal: &Principal, body: &[u8], accepts_json: bool) -> Result<(), Refusal> {
        // Always decode: the transport decodes JSON escapes ("tools\/call"), so must we.
        let v = match mandate_core::json::parse_strict(body) {
            Ok(v) => v,
            // Not JSON at all: the transport refuses it.
            Err(_) if serde_json::from_slice::<Value>(body).is_err() => return Ok(()),
            // JSON that another parser could read another way (a member named twice: which
            // `name` is the tool?) is refused, never checked one way and run the other.
            Err(e) => {
                let message = format!("Parse error: {}", e.to_string().split(" at line").next().unwrap_or_default());
                let answer = jsonrpc::error(Value::Null, jsonrpc::PARSE_ERROR, message);
                return Err(Refusal::Answer(jsonrpc::render(StatusCode::BAD_REQUEST, answer, accepts_json)));
            }
        };
        if self.config.tools.is_empty() {
            return Ok(()); // no per-tool policy configured: authentication is the whole check
        }
        let (messages, batch) = match v {
            Value::Array(items) => (items, true),
            other => (vec![other], false),
        };
        // A configured policy is complete: a call to a tool it does not name (or a call that names
        // no tool) is never forwarded (fail closed). It is answered as an MCP server answers an
        // unknown tool.
        if let Some((status, answer)) =
            jsonrpc::refuse_calls(&messages, batch, |t| self.config.tools.required(t).is_some())
        {
            return Err(Refusal::Answer(jsonrpc::render(status, answer, accepts_json)));
        }
        for m in &messages {
            let Some(tool) = jsonrpc::called_tool(m) else { continue };
            let Some(required) = self.config.tools.required(tool) else { continue };
            let missing: Vec<String> = required.iter().filter(|s| !principal.scopes.contains(s)).cloned().collect();
            let decision = if missing.is_empty() {
                ToolDecision::Allowed
            } else {
                ToolDecision::Refused { missing: missing.clone() }
            };
            if let Some(a) = &self.audit {
                a.tool_call(principal, tool, &decision).await;
            }
            if !missing.is_empty() {
                // Every scope this operation needs, in one challenge (RS11, 2026-07-28), together
                // with the scopes the token already holds (the 2025-11-25 "recommended approach"):
                // a client that asks for exactly the challenged scopes, as the TypeScript SDK 1.x
                // does, then keeps what it had instead of trading it for the new scope.
                let wanted = principal.scopes.union(&ScopeSet::from_names(&required));
                let wanted: Vec<String> = wanted.iter().map(str::to_owned).collect();
                let scope = without_offline_access(&wanted).join(" ");
                let description = format!("the {tool} tool needs the scope {}", missing.join(" "));
                return Err(Refusal::Answer(self.challenge(
                    ChallengeKind::InsufficientScope,
                    &scope,
                    Some(&description),
                )));
            }
        }
        Ok(())
    }
}

/// The scopes without `offline_access`, which is never published nor challenged for (RS7).
pub(crate) fn without_offline_access(scopes: &[String]) -> Vec<&str> {
    scopes.iter().map(String::as_str).filter(|s| *s != "offline_access").collect()
}

async fn run(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    // Browsers: an allowed Origin may read the challenges and the session id (CORS).
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| g.config.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)))
        .map(str::to_owned);
    if req.method() == Method::OPTIONS {
        let mut resp = match &origin {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => StatusCode::FORBIDDEN.into_response(),
        };
        if let Some(o) = &origin {
            cors(&mut resp, o);
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id",
                ),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        return resp;
    }
    let mut resp = match guarded(&g, req, next).await {
        Ok(r) => r,
        Err(Refusal::Answer(r)) => r,
        Err(Refusal::Status(status, message)) => {
            let body = serde_json::json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": message}});
            (status, axum::Json(body)).into_response()
        }
    };
    if let Some(o) = &origin {
        cors(&mut resp, o);
    }
    resp
}

fn cors(resp: &mut Response, origin: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("www-authenticate, mcp-session-id, mcp-protocol-version"),
    );
    h.append(header::VARY, HeaderValue::from_static("origin"));
}

async fn guarded(g: &Guard, req: Request, next: Next) -> Result<Response, Refusal> {
    if !g.host_and_origin_ok(req.headers(), req.uri().host()) {
        return Err(Refusal::Status(StatusCode::FORBIDDEN, "Host or Origin not allowed"));
    }
    // RS-05: one way to send the token (RFC 6750 §2). A query token alone is never read: such a
    // request has no credentials (a bare 401 challenge, RS-04).
    if req.headers().contains_key(header::AUTHORIZATION) && query_has_access_token(req.uri().query()) {
        return Err(Refusal::Answer(g.challenge(
            ChallengeKind::InvalidRequest,
            "",
            Some("send the access token in the Authorization header only, not also in the query"),
        )));
    }
    let principal = g.authenticate(req.headers()).await.map_err(Refusal::Answer)?;
    let session = req.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(s) = &session {
        match g.sessions.allows(s, &principal.issuer, &principal.subject).await {
            Ok(true) => {}
            Ok(false) => return Err(Refusal::Status(StatusCode::NOT_FOUND, "Session not found")),
            Err(_) => {
                return Err(Refusal::Status(StatusCode::SERVICE_UNAVAILABLE, "session registry unavailable; retry"));
            }
        }
    }
    let (mut parts, body) = req.into_parts();
    let req = if parts.method == Method::POST {
        let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| Refusal::Status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
        if session.is_none()
            && let Some(id) = jsonrpc::initialize_id(&bytes)
        {
            let caller = format!(
                "{}\u{1f}{}",
                crate::sessions::owner_key(&principal.issuer, &principal.subject),
                principal.client_id
            );
            if let Err(retry_after) = g.new_sessions.take(&caller) {
                return Err(Refusal::Answer(too_many_sessions(id, retry_after)));
            }
        }
        g.check_tools(&principal, &bytes, jsonrpc::accepts_json(&parts.headers)).await?;
        parts.extensions.insert(principal.clone());
        Request::from_parts(parts, Body::from(bytes))
    } else {
        parts.extensions.insert(principal.clone());
        Request::from_parts(parts, body)
    };
    let is_delete = req.method() == Method::DELETE;
    let mut response = next.run(req).await;
    // An event stream (a GET stream, or a POST answered as SSE) ends when its grant is revoked.
    if let Some(r) = &g.revocation
        && crate::streams::is_event_stream(&response)
    {
        response = crate::streams::end_on_revocation(response, r.clone(), principal.clone());
    }
    match (&session, response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok())) {
        // A session nobody could use again must not be handed out: the client retries.
        (None, Some(new)) if g.sessions.bind(new, &principal.issuer, &principal.subject).await.is_err() => {
            return Err(Refusal::Status(StatusCode::SERVICE_UNAVAILABLE, "session registry unavailable; retry"));
        }
        (Some(s), _) if is_delete && response.status().is_success() => g.sessions.forget(s).await,
        _ => {}
    }
    Ok(response)
}

/// True when the query string has an `access_token` parameter (percent-decoded).
fn query_has_access_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token"))
}

/// 429 for an `initialize` past the caller's new-session limit: a JSON-RPC error with the
/// request's id, and `Retry-After`.
fn too_many_sessions(id: Value, retry_after: u64) -> Response {
    let message = format!("too many new MCP sessions for this client; retry after {retry_after} s");
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}});
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

/// Why introspection gave no caller.
enum IntrospectionError {
    Refused(Rejection),
    /// The authorization server could not be asked: not the token's fault (503, not 401).
    Unavailable,
}

async fn introspect(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    client_secret: &str,
    token: &str,
    config: &GuardConfig,
) -> Result<Principal, IntrospectionError> {
    if token.is_empty() || token.len() > crate::validate::MAX_TOKEN_BYTES {
        return Err(IntrospectionError::Refused(Rejection::Malformed));
    }
    let resp = http
        .post(endpoint)
        .basic_auth(client_id, Some(client_secret))
        .form(&[("token", token)])
        .send()
        .await
        .map_err(|_| IntrospectionError::Unavailable)?;
    if !resp.status().is_success() {
        return Err(IntrospectionError::Unavailable);
    }
    let v: Value = resp.json().await.map_err(|_| IntrospectionError::Unavailable)?;
    if v.get("active").and_then(Value::as_bool) != Some(true) {
        return Err(IntrospectionError::Refused(Rejection::Revoked));
    }
    if v.get("token_type").and_then(Value::as_str).is_some_and(|t| t == "refresh_token") {
        return Err(IntrospectionError::Refused(Rejection::WrongType));
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if s("iss").is_some_and(|i| i != config.issuer) {
        return Err(IntrospectionError::Refused(Rejection::WrongIssuer));
    }
    let aud_ok = match v.get("aud") {
        Some(Value::String(a)) => *a == config.resource,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(config.resource.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(IntrospectionError::Refused(Rejection::WrongAudience));
    }
    Ok(Principal {
        issuer: config.issuer.clone(),
        subject: s("sub").ok_or(IntrospectionError::Refused(Rejection::Malformed))?,
        client_id: s("client_id").ok_or(IntrospectionError::Refused(Rejection::Malformed))?,
        scopes: ScopeSet::parse(&s("scope").unwrap_or_default())
            .map_err(|_| IntrospectionError::Refused(Rejection::Malformed))?,
        grant_id: None,
        token_id: s("jti"),
        expires_at: v.get("exp").and_then(Value::as_i64).unwrap_or(0),
    })
}
