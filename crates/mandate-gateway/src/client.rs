//! The HTTP client of an HTTP upstream: reqwest, plus three things rmcp's transport cannot do
//! alone. It sends a freshly minted identity token per request when the operator asked for one
//! (never the agent's own token); it remembers the upstream's session id, so the session can be
//! continued by another instance; and on such a continuation it answers the replayed
//! `initialize` itself, attaching to the recorded upstream session instead of opening a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use mandate_core::AuthServer;
use mandate_core::tokens::{AccessClaims, mint};
use mandate_guard::Principal;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, InitializeResult, ServerJsonRpcMessage, ServerResult};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Error as SseError, Sse};

type HttpError = StreamableHttpError<reqwest::Error>;

/// How long an identity token lives; a new one is minted when less than a minute is left.
const IDENTITY_TTL: i64 = 300;
const IDENTITY_RENEW: i64 = 60;

/// Mints the short-lived token that tells an upstream who acts: the person (`sub`) and the agent
/// (`client_id`), with `aud` the upstream's URL, signed by mandate's key (its JWKS verifies it).
pub(crate) struct Identity {
    auth: Arc<AuthServer>,
    audience: String,
    caller: Mutex<Option<Principal>>,
    /// (token, expiry, whom it names)
    minted: Mutex<Option<(String, i64, String)>>,
}

impl Identity {
    pub fn new(auth: Arc<AuthServer>, audience: String) -> Self {
        Self { auth, audience, caller: Mutex::new(None), minted: Mutex::new(None) }
    }

    /// The caller of the latest request (the scopes grow on a step-up, the session stays).
    pub fn set_caller(&self, p: &Principal) {
        if let Ok(mut c) = self.caller.lock() {
            *c = Some(p.clone());
        }
    }

    async fn token(&self) -> Option<String> {
        let caller = self.caller.lock().ok()?.clone()?;
        let who = format!("{}\n{}\n{}", caller.subject, caller.client_id, caller.scopes);
        let now = self.auth.now();
        if let Some((t, exp, named)) = self.minted.lock().ok()?.as_ref()
            && *named == who
            && exp - now > IDENTITY_RENEW
        {
            return Some(t.clone());
        }
        let claims = AccessClaims {
            iss: self.auth.settings.issuer.clone(),
            sub: caller.subject.clone(),
            aud: self.audience.clone(),
            client_id: caller.client_id.clone(),
            scope: caller.scopes.to_string(),
            iat: now,
            exp: now + IDENTITY_TTL,
            jti: self.auth.new_id(),
            grant_id: caller.grant_id.clone().unwrap_or_default(),
        };
        let ring = self
            .auth
            .keys()
            .ring(now)
            .await
            .map_err(|e| tracing::error!(error = %e, "no signing key for an upstream identity token"))
            .ok()?;
        let token = mint(&ring, &claims, now)
            .map_err(|e| tracing::error!(error = %e, "minting an upstream identity token failed"))
            .ok()?;
        if let Ok(mut m) = self.minted.lock() {
            *m = Some((token.clone(), now + IDENTITY_TTL, who));
        }
        Some(token)
    }
}

/// The person's account at the upstream's provider: their own upstream token, from the vault,
/// is the bearer credential; a 401 from the upstream gets one fresh token and one retry.
pub(crate) struct Account {
    handle: mandate_upstream::UpstreamHandle,
    user_id: String,
}

impl Account {
    pub fn new(handle: mandate_upstream::UpstreamHandle, user_id: String) -> Self {
        Self { handle, user_id }
    }

    async fn token(&self) -> Option<mandate_upstream::UpstreamToken> {
        match self.handle.token(&self.user_id).await {
            Ok(t) => Some(t),
            Err(e) => {
                // The relay checked the account before forwarding; this is a race with a
                // disconnection or an unreachable provider: the upstream answers 401.
                tracing::info!(provider = %self.handle.provider(), error = %e, "no upstream token for a request");
                None
            }
        }
    }

    /// The upstream refused `sent`: a fresh token (one refresh however many saw it).
    async fn renewed(&self, sent: &mandate_upstream::UpstreamToken) -> Option<mandate_upstream::UpstreamToken> {
        match self.handle.rejected(&self.user_id, sent).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::info!(provider = %self.handle.provider(), error = %e, "the upstream refused the person's token and none could replace it");
                None
            }
        }
    }
}

/// A session continued from another instance: the upstream session to attach to, and the
/// `initialize` result it gave.
pub(crate) struct Resume {
    pub session: String,
    pub init: InitializeResult,
}

#[derive(Clone)]
pub(crate) struct UpstreamClient {
    inner: reqwest::Client,
    identity: Option<Arc<Identity>>,
    account: Option<Arc<Account>>,
    resume: Arc<Mutex<Option<Resume>>>,
    session: Arc<Mutex<Option<String>>>,
    /// A continued session's `notifications/initialized` was sent by the instance that began
    /// it: the upstream does not get it twice.
    skip_initialized: Arc<std::sync::atomic::AtomicBool>,
}

impl UpstreamClient {
    pub fn new(
        inner: reqwest::Client,
        identity: Option<Arc<Identity>>,
        account: Option<Arc<Account>>,
        resume: Option<Resume>,
    ) -> Self {
        Self {
            inner,
            identity,
            account,
            resume: Arc::new(Mutex::new(resume)),
            session: Arc::default(),
            skip_initialized: Arc::default(),
        }
    }

    /// The upstream's session id, once it gave one.
    pub fn session(&self) -> Option<String> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// The bearer credential for a request, and the person's upstream token it is (to renew
    /// exactly that one if the upstream refuses it).
    async fn bearer(&self) -> (Option<String>, Option<mandate_upstream::UpstreamToken>) {
        if let Some(a) = &self.account {
            let t = a.token().await;
            return (t.as_ref().map(|t| t.expose().to_owned()), t);
        }
        match &self.identity {
            Some(i) => (i.token().await, None),
            None => (None, None),
        }
    }

    /// After a 401 (`refused`) to `sent`: the person's fresh upstream token, when there is an
    /// account to renew.
    async fn renewed(&self, refused: bool, sent: Option<&mandate_upstream::UpstreamToken>) -> Option<String> {
        match (&self.account, refused, sent) {
            (Some(a), true, Some(sent)) => a.renewed(sent).await.map(|t| t.expose().to_owned()),
            _ => None,
        }
    }

    fn note(&self, r: &Result<StreamableHttpPostResponse, HttpError>) {
        let id = match r {
            Ok(StreamableHttpPostResponse::Json(_, Some(id)) | StreamableHttpPostResponse::Sse(_, Some(id))) => id,
            _ => return,
        };
        if let Ok(mut s) = self.session.lock() {
            *s = Some(id.clone());
        }
    }

    /// On a continuation, the replayed `initialize` is answered here, with the recorded session
    /// (and the `notifications/initialized` after it is not sent again).
    fn resumed(&self, message: &ClientJsonRpcMessage) -> Option<StreamableHttpPostResponse> {
        if let ClientJsonRpcMessage::Notification(n) = message
            && matches!(n.notification, rmcp::model::ClientNotification::InitializedNotification(_))
            && self.skip_initialized.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Some(StreamableHttpPostResponse::Accepted);
        }
        let ClientJsonRpcMessage::Request(r) = message else { return None };
        if !matches!(r.request, ClientRequest::InitializeRequest(_)) {
            return None;
        }
        let resume = self.resume.lock().ok()?.take()?;
        self.skip_initialized.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut s) = self.session.lock() {
            *s = Some(resume.session.clone());
        }
        let answer = ServerJsonRpcMessage::response(ServerResult::InitializeResult(resume.init), r.id.clone());
        Some(StreamableHttpPostResponse::Json(answer, Some(resume.session)))
    }
}

impl StreamableHttpClient for UpstreamClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        if let Some(r) = self.resumed(&message) {
            return Ok(r);
        }
        let (bearer, sent) = self.bearer().await;
        let mut r =
            self.inner.post_message(uri.clone(), message.clone(), session_id.clone(), bearer, headers.clone()).await;
        let refused = matches!(r, Err(StreamableHttpError::AuthRequired(_)));
        if let Some(fresh) = self.renewed(refused, sent.as_ref()).await {
            r = self.inner.post_message(uri, message, session_id, Some(fresh), headers).await;
        }
        self.note(&r);
        r
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        if let Some(r) = self.resumed(&message) {
            return Ok(r);
        }
        let (bearer, sent) = self.bearer().await;
        let mut r = self
            .inner
            .post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                bearer,
                headers.clone(),
                limits,
            )
            .await;
        let refused = matches!(r, Err(StreamableHttpError::AuthRequired(_)));
        if let Some(fresh) = self.renewed(refused, sent.as_ref()).await {
            r = self
                .inner
                .post_message_with_response_limits(uri, message, session_id, Some(fresh), headers, limits)
                .await;
        }
        self.note(&r);
        r
    }

    /// Never from here: this runs when this instance lets go of the session (it idled out
    /// here), while another instance may be continuing it. The upstream session is ended when
    /// the client ends its session ([`crate::sessions::GatewaySessions`]), or by the upstream's
    /// own expiry.
    async fn delete_session(
        &self,
        _uri: Arc<str>,
        _session_id: Arc<str>,
        _auth: Option<String>,
        _headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let (bearer, sent) = self.bearer().await;
        let r = self
            .inner
            .get_stream(uri.clone(), session_id.clone(), last_event_id.clone(), bearer, headers.clone())
            .await;
        let refused = matches!(r, Err(StreamableHttpError::AuthRequired(_)));
        match self.renewed(refused, sent.as_ref()).await {
            Some(fresh) => self.inner.get_stream(uri, session_id, last_event_id, Some(fresh), headers).await,
            None => r,
        }
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let (bearer, sent) = self.bearer().await;
        let r = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                bearer,
                headers.clone(),
                max,
            )
            .await;
        let refused = matches!(r, Err(StreamableHttpError::AuthRequired(_)));
        match self.renewed(refused, sent.as_ref()).await {
            Some(fresh) => {
                self.inner
                    .get_stream_with_max_sse_event_size(uri, session_id, last_event_id, Some(fresh), headers, max)
                    .await
            }
            None => r,
        }
    }
}
