//! The downstream side of the relay: one per MCP session (rmcp's Streamable HTTP service makes
//! one per session). `initialize` opens the upstream connection for the person; every other
//! request is forwarded as it came, its `_meta` and progress token included, with a timeout
//! and the client's cancellation passed on. `tools/list` results gain each tool's scopes; each
//! `tools/call` lands in the trail as the agent's action for the person.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mandate_core::service::AuditDraft;
use mandate_guard::Principal;
use mandate_mcp::SCOPES_META_KEY;
use rmcp::ServerHandler;
#[allow(deprecated)] // logging/setLevel: still relayed for the servers that have it
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CancelledNotification, CancelledNotificationParam,
    ClientConfig, ClientNotification, ClientRequest, CompleteRequestParams, CompleteResult, CustomNotification,
    CustomRequest, CustomResult, ErrorCode, ErrorData, GetPromptRequestParams, GetPromptResponse, GetTaskParams,
    GetTaskResult, InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, Request, ServerConfig, ServerResult, SetLevelRequestParams, SubscribeRequestParams,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, RoleServer};
use serde_json::json;

use crate::routes::Downstream;
use crate::sessions::GatewaySessions;
use crate::upstream::{Link, Upstream, gateway_error};
use rmcp::transport::streamable_http_server::session::SessionRestoreMarker;

static SESSION_KEYS: AtomicU64 = AtomicU64::new(1);

/// Protocol versions offered downstream: those with `initialize` (a session per client), which
/// the relay needs to open the upstream for the person.
const VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

struct Attached {
    link: Arc<Link>,
    info: ClientConfig,
    downstream: Downstream,
    /// Who opened the session (its process counts against this person).
    caller: Principal,
    /// The client already got an error saying the connection was lost (a request in flight when
    /// it ended): the restart then needs no second one.
    loss_reported: bool,
}

/// One downstream MCP session relayed to the upstream.
pub struct Relay {
    upstream: Arc<Upstream>,
    sessions: Arc<GatewaySessions>,
    key: u64,
    session: Arc<tokio::sync::Mutex<Option<Attached>>>,
}

fn principal(extensions: &rmcp::model::Extensions) -> Option<Principal> {
    extensions.get::<http::request::Parts>().and_then(|p| p.extensions.get::<Principal>()).cloned()
}

impl Relay {
    pub(crate) fn new(upstream: Arc<Upstream>, sessions: Arc<GatewaySessions>) -> Self {
        Self {
            upstream,
            sessions,
            key: SESSION_KEYS.fetch_add(1, Ordering::Relaxed),
            session: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    async fn initialize(
        &self,
        info: ClientConfig,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let caller = principal(&ctx.extensions)
            .ok_or_else(|| gateway_error("no authenticated caller (is the gateway mounted behind the guard?)"))?;
        let downstream = Downstream { key: self.key, peer: ctx.peer.clone() };
        // A session begun on another instance, continued here: attach to its upstream session.
        let resume = match ctx.extensions.get::<SessionRestoreMarker>() {
            Some(m) => Some(
                self.sessions
                    .resume(&m.id)
                    .await
                    .ok_or_else(|| gateway_error("this session cannot be continued here; start a new session"))?,
            ),
            None => None,
        };
        let restored = resume.is_some();
        self.account_ready(&caller).await?;
        let link = self.upstream.link_for(&info, &caller, resume).await?;
        // The client's session id is known here (the session manager tells): which upstream
        // session it stands for is recorded before the client can send its next request,
        // which may reach another instance.
        if !restored
            && let (Some(id), Some(upstream_session), Some(peer)) = (
                ctx.extensions.get::<crate::sessions::SessionIdOf>(),
                link.client.as_ref().and_then(|c| c.session()),
                link.service.peer().peer_info(),
            )
        {
            self.sessions.record(&id.0, &upstream_session, &initialize_result(&peer)).await;
        }
        link.routes.attach(downstream.clone()).await;
        let peer = link
            .service
            .peer()
            .peer_info()
            .ok_or_else(|| gateway_error("the upstream server did not say who it is"))?;
        *self.session.lock().await =
            Some(Attached { link, info, downstream, caller: caller.clone(), loss_reported: false });
        self.end_on_revocation(caller);
        Ok(initialize_result(&peer))
    }

    /// When the person revokes the agent, its upstream connection (and for stdio, the process)
    /// goes at once, not when the idle session expires: every later request is refused anyway.
    fn end_on_revocation(&self, caller: Principal) {
        let session = Arc::downgrade(&self.session);
        let (auth, name) = (self.upstream.auth.clone(), self.upstream.spec.name.clone());
        tokio::spawn(async move {
            // Asked again on each revocation this process hears of, else every 30 s (a
            // revocation by another process on SQLite is not announced).
            let mut seen = auth.revocation_epoch();
            let mut asked = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = auth.revocation_changed() => {}
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
                let Some(session) = session.upgrade() else { return };
                let epoch = auth.revocation_epoch();
                if epoch == seen && asked.elapsed() < std::time::Duration::from_secs(30) {
                    continue;
                }
                (seen, asked) = (epoch, tokio::time::Instant::now());
                if auth.access_revoked(caller.grant_id.as_deref(), None).await.unwrap_or(false) {
                    let ended = session.lock().await.take();
                    if let Some(a) = ended {
                        tracing::info!(upstream = %name, pid = a.link.pid, "access revoked: ending the session's upstream connection");
                        a.link.routes.detach(a.downstream.key).await;
                    }
                    return;
                }
            }
        });
    }

    /// The session's connection; a closed one (the process died) is replaced first, with the
    /// same `initialize` (the upstream's state for this session is gone).
    async fn link(&self, ctx: Option<&RequestContext<RoleServer>>) -> Result<(Arc<Link>, Downstream), ErrorData> {
        let mut slot = self.session.lock().await;
        let a = slot
            .as_mut()
            .ok_or_else(|| ErrorData::new(ErrorCode::INVALID_REQUEST, "the session is not initialized", None))?;
        if a.link.is_closed() {
            // Started again at once, but this request fails: the client must learn that what
            // the server held for its session (open files, subscriptions, state) is gone.
            tracing::warn!(upstream = %self.upstream.spec.name, pid = a.link.pid, "the upstream connection ended: starting it again");
            let link = self.upstream.link_for(&a.info, &a.caller, None).await?;
            link.routes.attach(a.downstream.clone()).await;
            // A new upstream session: recorded, so another instance continues this one.
            let id = ctx
                .and_then(|c| c.extensions.get::<http::request::Parts>())
                .and_then(|p| p.headers.get("mcp-session-id"))
                .and_then(|v| v.to_str().ok());
            if let (Some(id), Some(upstream_session), Some(peer)) =
                (id, link.client.as_ref().and_then(|c| c.session()), link.service.peer().peer_info())
            {
                self.sessions.record(id, &upstream_session, &initialize_result(&peer)).await;
            }
            a.link = link;
            if std::mem::take(&mut a.loss_reported) {
                return Ok((a.link.clone(), a.downstream.clone()));
            }
            return Err(gateway_error(format!(
                "the {} server had stopped and was started again; what it held for this session is lost. Retry the request.",
                self.upstream.spec.name
            )));
        }
        Ok((a.link.clone(), a.downstream.clone()))
    }

    async fn forward(
        &self,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        if let Some(p) = principal(&ctx.extensions) {
            self.account_ready(&p).await?;
        }
        let (link, downstream) = self.link(Some(ctx)).await?;
        // The identity token names the caller of this request (a step-up widens its scope).
        if let (Some(i), Some(p)) = (&link.identity, principal(&ctx.extensions)) {
            i.set_caller(&p);
        }
        let peer = link.service.peer().clone();
        let options = PeerRequestOptions::no_options().with_meta(ctx.meta.clone());
        let client_token = ctx.meta.get_progress_token();
        let handle = {
            let mut sending = link.routes.sending().await;
            let handle = peer.send_request_with_option(request, options).await.map_err(|_| stopped(&self.upstream))?;
            sending.record(handle.id.clone(), handle.progress_token.clone(), &downstream, ctx.id.clone(), client_token);
            handle
        };
        let (upstream_id, token) = (handle.id.clone(), handle.progress_token.clone());
        let limit = self.upstream.spec.limits.request_timeout;
        let mut lost = false;
        // The timeout counts the upstream's silence: progress, and time spent waiting for the
        // client's answer to the upstream's own request (an elicitation waits for a person),
        // push it back.
        let mut deadline = tokio::time::Instant::now() + limit;
        let mut response = std::pin::pin!(handle.await_response());
        let outcome = loop {
            tokio::select! {
                r = &mut response => break r.map_err(|e| match e {
                    rmcp::ServiceError::McpError(e) => e,
                    rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_) => {
                        lost = true;
                        stopped(&self.upstream)
                    }
                    other => gateway_error(format!("the {} server failed: {other}", self.upstream.spec.name)),
                }),
                () = ctx.ct.cancelled() => {
                    cancel_upstream(&peer, upstream_id.clone(), "cancelled by the client");
                    break Err(gateway_error("cancelled"));
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(later) = link.routes.busy_until(downstream.key, limit).await {
                        deadline = later;
                        continue;
                    }
                    cancel_upstream(&peer, upstream_id.clone(), "the gateway's timeout");
                    break Err(gateway_error(format!(
                        "the {} server did not answer within {} s (request_timeout)",
                        self.upstream.spec.name,
                        limit.as_secs()
                    )));
                }
            }
        };
        link.routes.finished(&upstream_id, &token).await;
        if lost && let Some(a) = self.session.lock().await.as_mut() {
            a.loss_reported = true;
        }
        outcome
    }

    /// An upstream that acts with the person's own account needs a usable one: otherwise the
    /// request fails at once with the page where they connect it (a URL-mode elicitation,
    /// protocol 2025-11-25), never a hang or a bare 401 from the upstream.
    async fn account_ready(&self, caller: &Principal) -> Result<(), ErrorData> {
        let Some(account) = &self.upstream.account else { return Ok(()) };
        let id = self.upstream.auth.new_id();
        mandate_mcp::upstream_token(account, caller, &self.upstream.spec.title, &id).await.map(|_| ())
    }

    /// Adds each tool's scopes to a `tools/list` result (`_meta`), learning tools seen for the
    /// first time.
    fn annotate(&self, result: &mut rmcp::model::ListToolsResult) {
        let Ok(mut mapping) = self.upstream.mapping.lock() else { return };
        let mut labels = self.upstream.labels.lock().ok();
        for tool in &mut result.tools {
            let scopes = mapping.scopes_for(&tool.name);
            let meta = tool.meta.get_or_insert_with(Default::default);
            meta.0.insert(SCOPES_META_KEY.to_owned(), json!(scopes));
            if let Some(labels) = labels.as_mut() {
                let title = tool.title.clone().or_else(|| tool.annotations.as_ref().and_then(|a| a.title.clone()));
                let label = crate::scopes::label_of(title.as_deref(), &tool.name);
                labels.insert(tool.name.to_string(), label);
            }
        }
    }

    /// Passes a client notification on (roots changed, custom ones).
    /// Passes a notification on to a live upstream connection. A dead one is not restarted
    /// here: the next request does that, and tells the client its state was lost.
    async fn notify(&self, notification: ClientNotification) {
        let link = self.session.lock().await.as_ref().map(|a| a.link.clone());
        if let Some(link) = link.filter(|l| !l.is_closed()) {
            let _ = link.service.peer().send_notification(notification).await;
        }
    }

    async fn record(&self, ctx: &RequestContext<RoleServer>, tool: &str, outcome: &Result<ServerResult, ErrorData>) {
        let Some(p) = principal(&ctx.extensions) else { return };
        let label = self
            .upstream
            .labels
            .lock()
            .ok()
            .and_then(|l| l.get(tool).cloned())
            .unwrap_or_else(|| crate::scopes::label_of(None, tool));
        let on = &self.upstream.spec.title;
        let (kind, detail) = match outcome {
            Ok(ServerResult::CallToolResult(r)) if r.is_error == Some(true) => {
                ("failure", format!("{tool}: use {label} on {on}"))
            }
            Ok(_) => ("success", format!("{tool}: used {label} on {on}")),
            Err(_) => ("failure", format!("{tool}: use {label} on {on}")),
        };
        self.upstream
            .auth
            .audit(AuditDraft {
                kind: "tool.call",
                outcome: kind,
                user: Some(&p.subject),
                client: Some(&p.client_id),
                grant: p.grant_id.as_deref(),
                detail: Some(detail),
            })
            .await;
    }
}

/// What the client is told of the upstream: its own `initialize` answer.
fn initialize_result(peer: &rmcp::model::ServerPeerInfo) -> InitializeResult {
    let mut result = InitializeResult::new(peer.capabilities.clone());
    result.protocol_version = peer.protocol_version.clone();
    result.instructions = peer.instructions.clone();
    result.meta = peer.meta.clone();
    if let Some(i) = &peer.server_info {
        result.server_info = i.clone();
    }
    result
}

fn stopped(upstream: &Upstream) -> ErrorData {
    gateway_error(format!(
        "the {} server stopped; what it held for this session is lost. The next request starts it again.",
        upstream.spec.name
    ))
}

/// Tells the upstream a request is abandoned, from a task of its own: a stuck upstream that no
/// longer reads its input must not hold the client's answer.
fn cancel_upstream(peer: &rmcp::Peer<rmcp::service::RoleClient>, id: rmcp::model::RequestId, reason: &str) {
    let n = CancelledNotification::new(CancelledNotificationParam::new(Some(id), Some(reason.to_owned())));
    let peer = peer.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), peer.send_notification(n.into())).await;
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The connection (and a session's process) goes with the last reference to it; a
        // shared one only forgets this client.
        if let Some(a) = self.session.try_lock().ok().and_then(|mut s| s.take())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let key = self.key;
            rt.spawn(async move { a.link.routes.detach(key).await });
        }
    }
}

/// The upstream answered with a result of another kind than the request asked for.
fn unexpected() -> ErrorData {
    gateway_error("the upstream server answered with an unexpected result")
}

macro_rules! relay {
    ($self:ident, $ctx:ident, $request:expr, $variant:ident) => {
        match $self.forward($request, &$ctx).await? {
            ServerResult::$variant(r) => Ok(r),
            _ => Err(unexpected()),
        }
    };
}

fn optional<M: Default, P>(params: Option<P>) -> rmcp::model::RequestOptionalParam<M, P> {
    rmcp::model::RequestOptionalParam { method: M::default(), params, extensions: Default::default() }
}

impl ServerHandler for Relay {
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        self.initialize(request, &context).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        relay!(self, context, ClientRequest::CompleteRequest(Request::new(request)), CompleteResult)
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        relay!(self, context, ClientRequest::SetLevelRequest(Request::new(request)), EmptyResult).map(|_| ())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        relay!(self, context, ClientRequest::GetPromptRequest(Request::new(request)), GetPromptResult).map(Into::into)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        relay!(self, context, ClientRequest::ListPromptsRequest(optional(request)), ListPromptsResult)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        relay!(self, context, ClientRequest::ListResourcesRequest(optional(request)), ListResourcesResult)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        relay!(
            self,
            context,
            ClientRequest::ListResourceTemplatesRequest(optional(request)),
            ListResourceTemplatesResult
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        relay!(self, context, ClientRequest::ReadResourceRequest(Request::new(request)), ReadResourceResult)
            .map(Into::into)
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        relay!(self, context, ClientRequest::SubscribeRequest(Request::new(request)), EmptyResult).map(|_| ())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        relay!(self, context, ClientRequest::UnsubscribeRequest(Request::new(request)), EmptyResult).map(|_| ())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let outcome = self.forward(ClientRequest::CallToolRequest(Request::new(request)), &context).await;
        self.record(&context, &tool, &outcome).await;
        match outcome? {
            ServerResult::CallToolResult(r) => Ok(r.into()),
            ServerResult::CreateTaskResult(r) => Ok(r.into()),
            _ => Err(unexpected()),
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut list = relay!(self, context, ClientRequest::ListToolsRequest(optional(request)), ListToolsResult)?;
        self.annotate(&mut list);
        Ok(list)
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        relay!(self, context, ClientRequest::GetTaskRequest(Request::new(request)), GetTaskResult)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        relay!(self, context, ClientRequest::UpdateTaskRequest(Request::new(request)), EmptyResult).map(|_| ())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        relay!(self, context, ClientRequest::CancelTaskRequest(Request::new(request)), EmptyResult).map(|_| ())
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        relay!(self, context, ClientRequest::CustomRequest(request), CustomResult)
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        self.notify(ClientNotification::RootsListChangedNotification(Default::default())).await;
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        self.notify(ClientNotification::CustomNotification(notification)).await;
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::default()
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(VERSIONS)
    }
}
