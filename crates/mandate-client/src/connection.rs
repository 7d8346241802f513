//! One MCP server, from the agent's side: the token to send, and what to do when the server says
//! 401 (refresh, else log in again) or 403 `insufficient_scope` (step up).
//!
//! Discovery, registration, PKCE, `resource`, `iss` and refresh are rmcp's `AuthorizationManager`;
//! this layer adds what it leaves to callers or tolerates: the checks on metadata and on the
//! authorization URL, the registration order with credentials bound to their issuer, the state
//! check on the callback, persistent storage, one refresh at a time, and the step-up limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::dns::Resolve;
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, AuthorizationMetadataSource, AuthorizationRequest,
    AuthorizationSession, OAuthClientConfig, WWWAuthenticateParams,
};
use tokio::sync::Mutex;
use url::Url;

use crate::callback::check_callback;
use crate::deadline::PersonWaits;
use crate::error::ClientError;
use crate::login::{CallbackListener, LoginMode, Timeouts, run_user_agent};
use crate::net::{GuardedOAuthHttp, NetPolicy, check_url, guarded_reqwest, network_error};
use crate::pinning::{check_pin, check_resource_metadata_origin, pinned_endpoints};
use crate::record::{ExternalSignIn, HttpExchange, Recorder, body_text, header_pairs};
use crate::stepup::{ask, printable};
use crate::vault::{CredentialVault, ScopedStore};

mod authorize;

/// Authorizations allowed in a row without a successful request in between (C13).
pub const MAX_AUTHORIZATION_ATTEMPTS: u32 = 3;

/// How long a request may go unanswered unless `--timeout` says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do on 403 `insufficient_scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUp {
    /// Re-authorize with the union of held and challenged scopes.
    Auto,
    /// Ask on the terminal first.
    Ask,
    /// Refuse: report the scopes the server wants.
    Never,
}

/// How to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The MCP server's URL (its resource identifier).
    pub server_url: String,
    /// Scopes to ask for at login instead of the challenge's or the metadata's.
    pub scope: Option<String>,
    /// Pre-registered credentials.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// This client's metadata document URL (CIMD), used when the server supports it.
    pub client_metadata_url: Option<String>,
    pub client_name: String,
    pub login: LoginMode,
    pub step_up: StepUp,
    pub policy: NetPolicy,
    /// How long to wait for the person to finish a browser login.
    pub login_timeout: Duration,
    /// How long any one request may go unanswered (MCP, discovery, registration, tokens); time
    /// spent waiting for the person is not counted.
    pub request_timeout: Duration,
    /// A name resolver in place of the system's (tests).
    pub resolver: Option<Arc<dyn Resolve>>,
    /// Receives every HTTP exchange and JSON-RPC message (the inspector).
    pub recorder: Option<Arc<dyn Recorder>>,
    /// Reaches the person some other way than the loopback listener (the inspector's own
    /// redirect URI); `login` is then not used.
    pub external_sign_in: Option<Arc<dyn ExternalSignIn>>,
    /// After a new authorization replaces stored tokens (a step-up, a new login), revoke the
    /// replaced ones at the revocation endpoint. Off by default: an authorization server that
    /// ties revocation to the person and client rather than to the grant (RFC 7009 leaves it
    /// open) would revoke the new tokens too. The inspector turns it on.
    pub revoke_replaced: bool,
}

impl ConnectOptions {
    pub fn new(server_url: impl Into<String>) -> Self {
        Self {
            server_url: server_url.into(),
            scope: None,
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            client_name: "mandate CLI".into(),
            login: LoginMode::Browser,
            step_up: StepUp::Never,
            policy: NetPolicy::default(),
            login_timeout: Duration::from_secs(300),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            resolver: None,
            recorder: None,
            external_sign_in: None,
            revoke_replaced: false,
        }
    }
}

/// The canonical form of a server URL, used as the storage key and the `resource`.
pub fn canonical_resource(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    let s = u.to_string();
    if u.path() == "/" && u.query().is_none() { s.trim_end_matches('/').to_owned() } else { s }
}

struct Held {
    manager: Option<AuthorizationManager>,
    restored: bool,
}

/// An authenticated connection to one MCP server.
pub struct Connection {
    opts: ConnectOptions,
    server: Url,
    resource: String,
    vault: Arc<CredentialVault>,
    oauth_http: GuardedOAuthHttp,
    http: reqwest::Client,
    held: Mutex<Held>,
    attempts: AtomicU32,
    waits: PersonWaits,
}

fn auth_error(e: AuthError) -> ClientError {
    match e {
        AuthError::PkceUnsupported => ClientError::Discovery(
            "the authorization server does not support PKCE with S256 (code_challenge_methods_supported)".into(),
        ),
        AuthError::AuthorizationServerMismatch { expected_issuer, received_issuer } => ClientError::Discovery(format!(
            "issuer mismatch: the metadata says `{received_issuer}` but was fetched for `{expected_issuer}`"
        )),
        AuthError::AuthorizationServerMissingIssuer { expected_issuer } => ClientError::Discovery(format!(
            "the authorization server's metadata has no issuer (expected `{expected_issuer}`)"
        )),
        e @ (AuthError::ProtectedResourceMetadataInvalid { .. }
        | AuthError::AuthorizationServersUnavailable { .. }
        | AuthError::MetadataError(_)
        | AuthError::DiscoveryRequestFailed { .. }
        | AuthError::NoAuthorizationSupport) => ClientError::Discovery(e.to_string()),
        e @ AuthError::RegistrationFailed(_) => ClientError::Registration(e.to_string()),
        e @ AuthError::CredentialStoreError(_) => ClientError::Storage(e.to_string()),
        e => ClientError::Authorization(e.to_string()),
    }
}

impl Connection {
    /// Checks the server URL and opens the connection (nothing is sent yet).
    pub fn new(opts: ConnectOptions, vault: Arc<CredentialVault>) -> Result<Self, ClientError> {
        let server = check_url(&opts.server_url, "the MCP server URL", opts.policy)?;
        if let Some(u) = &opts.client_metadata_url
            && (!u.starts_with("https://") || Url::parse(u).map(|p| p.path().len() <= 1).unwrap_or(true))
        {
            return Err(ClientError::Usage(format!("--client-metadata-url must be an https URL with a path, got {u}")));
        }
        if opts.client_secret.is_some() && opts.client_id.is_none() {
            return Err(ClientError::Usage("a client secret needs --client-id".into()));
        }
        let oauth_http = GuardedOAuthHttp::new(opts.policy, opts.resolver.clone(), opts.request_timeout)?
            .with_recorder(opts.recorder.clone());
        let http = guarded_reqwest(opts.policy, opts.resolver.clone(), opts.request_timeout)?;
        Ok(Self {
            resource: canonical_resource(&server),
            server,
            opts,
            vault,
            oauth_http,
            http,
            held: Mutex::new(Held { manager: None, restored: false }),
            attempts: AtomicU32::new(0),
            waits: PersonWaits::default(),
        })
    }

    /// The server URL, checked.
    pub fn server(&self) -> &Url {
        &self.server
    }

    /// The storage key and `resource` of this server.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The guarded HTTP client for MCP traffic.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// How long any one request may go unanswered.
    pub fn request_timeout(&self) -> Duration {
        self.opts.request_timeout
    }

    /// Runs `request`, giving up after the request timeout, not counting time spent waiting for
    /// the person (a login or step-up started by the request itself).
    pub async fn bounded<F: Future>(
        &self,
        what: impl FnOnce() -> String,
        request: F,
    ) -> Result<F::Output, ClientError> {
        crate::deadline::bounded(&self.waits, self.opts.request_timeout, what, request).await
    }

    /// The scopes the stored credentials for this server were granted (empty when none).
    pub fn granted_scopes(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.vault.load(&self.resource)?.map(|(c, _)| c.granted_scopes).unwrap_or_default())
    }

    /// The recorder, when one was given.
    pub fn recorder(&self) -> Option<&Arc<dyn Recorder>> {
        self.opts.recorder.as_ref()
    }

    /// Records an exchange made outside rmcp's OAuth client.
    pub(crate) fn record(&self, exchange: HttpExchange) {
        if let Some(r) = &self.opts.recorder {
            r.http(exchange);
        }
    }

    /// A request succeeded: the next refusal starts a fresh count.
    pub fn note_success(&self) {
        self.attempts.store(0, Ordering::SeqCst);
    }

    /// Replaces rmcp's generic wrapping with the guard's own refusal, when there was one.
    fn explain(&self, e: AuthError) -> ClientError {
        if let Some(refusal) = self.oauth_http.take_refusal() {
            return refusal;
        }
        // rmcp drops authorization servers whose host is private before fetching; say why.
        if let AuthError::AuthorizationServersUnavailable { authorization_servers, .. } = &e
            && let Some(refusal) =
                authorization_servers.iter().find_map(|s| check_url(s, "fetching", self.opts.policy).err())
        {
            return refusal;
        }
        auth_error(e)
    }

    async fn new_manager(&self) -> Result<AuthorizationManager, ClientError> {
        let mut manager =
            AuthorizationManager::new_with_oauth_http_client(self.server.as_str(), Arc::new(self.oauth_http.clone()))
                .await
                .map_err(|e| self.explain(e))?;
        manager.set_credential_store(ScopedStore { vault: self.vault.clone(), resource: self.resource.clone() });
        Ok(manager)
    }

    /// The access token to send now: the stored one, refreshed first when it is about to expire;
    /// `None` when there is nothing usable (the server's 401 will start a login).
    pub async fn access_token(&self) -> Result<Option<String>, ClientError> {
        let mut held = self.held.lock().await;
        if held.manager.is_none() && !held.restored {
            held.restored = true;
            held.manager = self.restore().await?;
        }
        let Some(manager) = &held.manager else { return Ok(None) };
        match manager.get_access_token().await {
            Ok(t) => Ok(Some(t)),
            Err(AuthError::AuthorizationRequired | AuthError::TokenRefreshRejected(_)) => Ok(None),
            Err(e) => Err(self.explain(e)),
        }
    }

    /// Rebuilds a manager from the vault, re-discovering the server's metadata so that stored
    /// credentials are only used with the issuer that issued them (C10).
    async fn restore(&self) -> Result<Option<AuthorizationManager>, ClientError> {
        let Some((stored, secret)) = self.vault.load(&self.resource)? else { return Ok(None) };
        let mut manager = self.new_manager().await?;
        // The same discovery and checks as a login: no guessed endpoints, S256, safe URLs.
        let metadata = self.discover(&manager, None).await?;
        if stored.issuer.is_none() || stored.issuer != metadata.issuer {
            // Credentials go only to the issuer that issued them (C10, C16): forget them and
            // let the server's 401 start a new login (and registration) with the current one.
            tracing::warn!("the server's authorization server changed; stored credentials dropped");
            self.vault.remove(&self.resource)?;
            return Ok(None);
        }
        // ... and only through the endpoints they were issued through (CL-07).
        check_pin(&self.vault, &self.resource, &metadata)?;
        manager.set_metadata(metadata);
        if !manager.initialize_from_store().await.map_err(|e| self.explain(e))? {
            return Ok(None);
        }
        if let Some(secret) = secret {
            let Some((creds, _)) = self.vault.load(&self.resource)? else { return Ok(None) };
            let mut config = OAuthClientConfig::new(creds.client_id, self.server.as_str()).with_client_secret(secret);
            config.application_type = None;
            manager.configure_client(config).map_err(auth_error)?;
        }
        Ok(Some(manager))
    }

    /// After a 401: refresh when a token was refused and this request has not refreshed yet,
    /// else log in again (C1). A login counts against [`MAX_AUTHORIZATION_ATTEMPTS`].
    pub async fn recover_unauthorized(
        &self,
        sent: Option<&str>,
        challenge: &str,
        may_refresh: bool,
    ) -> Result<String, ClientError> {
        let mut held = self.held.lock().await;
        if may_refresh && let (Some(sent), Some(manager)) = (sent, &held.manager) {
            // Single flight (CL-12): another request refreshed while this one waited for the
            // lock; its token is the one to retry with, not a second refresh.
            if let Ok(current) = manager.get_access_token().await
                && current != sent
            {
                return Ok(current);
            }
            match manager.refresh_token().await {
                Ok(_) => {
                    if let Ok(fresh) = manager.get_access_token().await
                        && fresh != sent
                    {
                        return Ok(fresh);
                    }
                }
                Err(e) => tracing::info!(error = %e, "refresh failed; a new login is needed"),
            }
        }
        let scopes = self.opts.scope.as_deref().map(split_scopes);
        self.authorize(&mut held, Some(challenge), scopes, false).await
    }

    /// After a 403 `insufficient_scope`: step up to held ∪ challenged scopes (C12, C13). `tool`
    /// names the tool being called, when the refused request is a `tools/call`. The person is
    /// told what happened and why before any URL is printed or a browser opened.
    pub async fn step_up(&self, challenge: &str, tool: Option<&str>) -> Result<String, ClientError> {
        let params = WWWAuthenticateParams::parse(challenge, &self.server);
        let wanted = split_scopes(&params.scope.clone().unwrap_or_default());
        let _person = self.waits.begin();
        let mut held = self.held.lock().await;
        let have = self.granted_scopes()?;
        let missing: Vec<String> = wanted.iter().filter(|s| !have.contains(s)).cloned().collect();
        let asked = if missing.is_empty() { wanted.join(" ") } else { missing.join(" ") };
        let tool = tool.map(printable);
        let refused = || ClientError::ScopeRefused { scopes: printable(&asked), tool: tool.clone() };
        let why = crate::stepup::why(tool.as_deref(), &missing, &wanted);
        match self.opts.step_up {
            StepUp::Never => return Err(refused()),
            StepUp::Ask => {
                if !ask(&format!("{why} Ask the server for {} now?", crate::stepup::it(&asked))).await {
                    return Err(refused());
                }
                eprintln!("{}", crate::stepup::asking(&asked, self.opts.login));
            }
            StepUp::Auto => eprintln!("{why} {}", crate::stepup::asking(&asked, self.opts.login)),
        }
        let mut union = have;
        for s in wanted {
            if !union.contains(&s) {
                union.push(s);
            }
        }
        match self.authorize(&mut held, Some(challenge), Some(union), false).await {
            Err(ClientError::AccessDenied(_)) => {
                Err(ClientError::AccessDenied(crate::stepup::declined(tool.as_deref(), &printable(&asked))))
            }
            other => other,
        }
    }

    /// An explicit login: provoke the server's challenge, then authorize.
    pub async fn login(&self) -> Result<(), ClientError> {
        let challenge = self.probe_challenge().await?;
        let mut held = self.held.lock().await;
        let scopes = self.opts.scope.as_deref().map(split_scopes);
        self.authorize(&mut held, challenge.as_deref(), scopes, true).await.map(|_| ())
    }

    /// A new authorization asking for exactly `scopes` (the inspector's step-up, where the
    /// operator chose the scopes): the authorization server's consent decides what is granted.
    pub async fn reauthorize(&self, scopes: Vec<String>) -> Result<(), ClientError> {
        let challenge = self.probe_challenge().await?;
        let mut held = self.held.lock().await;
        self.attempts.store(0, Ordering::SeqCst);
        let scopes = (!scopes.is_empty()).then_some(scopes);
        self.authorize(&mut held, challenge.as_deref(), scopes, true).await.map(|_| ())
    }

    /// Refreshes the access token now, whatever its expiry (the inspector's refresh button).
    pub async fn refresh_now(&self) -> Result<(), ClientError> {
        let mut held = self.held.lock().await;
        if held.manager.is_none() && !held.restored {
            held.restored = true;
            held.manager = self.restore().await?;
        }
        let Some(manager) = &held.manager else {
            return Err(ClientError::Authorization("not signed in: nothing to refresh".into()));
        };
        manager.refresh_token().await.map(|_| ()).map_err(|e| self.explain(e))
    }

    /// Revokes the stored tokens at the authorization server (best effort) and forgets them.
    pub async fn logout(&self) -> Result<bool, ClientError> {
        let Some((creds, secret)) = self.vault.load(&self.resource)? else { return Ok(false) };
        if let Some(token) = creds.token_response.as_ref() {
            let manager = self.new_manager().await?;
            match self.discover(&manager, None).await {
                // Tokens and the client secret go only to the issuer that issued them, at the
                // revocation endpoint pinned at login (CL-07).
                Ok(m) if creds.issuer.is_some() && m.issuer == creds.issuer => {
                    match check_pin(&self.vault, &self.resource, &m) {
                        Ok(()) => match self.vault.endpoints(&self.resource)?.and_then(|p| p.revocation_endpoint) {
                            Some(endpoint) => self.revoke(&endpoint, token, &creds.client_id, secret.as_deref()).await,
                            None => {
                                eprintln!("note: the authorization server offers no revocation; forgetting locally")
                            }
                        },
                        Err(e) => eprintln!(
                            "warning: {}; not sending it the tokens, forgetting them locally (revoke this agent's \
                         access at the authorization server itself)",
                            match e {
                                ClientError::EndpointsChanged { reason, .. } => reason,
                                other => other.to_string(),
                            }
                        ),
                    }
                }
                Ok(_) => eprintln!(
                    "warning: the server now names another authorization server; not sending it the tokens, forgetting them locally"
                ),
                Err(e) => {
                    eprintln!("warning: could not reach the authorization server to revoke ({e}); forgetting locally")
                }
            }
        }
        self.vault.remove(&self.resource)
    }

    async fn revoke(
        &self,
        endpoint: &str,
        token: &rmcp::transport::auth::OAuthTokenResponse,
        client_id: &str,
        secret: Option<&str>,
    ) {
        use oauth2::TokenResponse;
        let Ok(url) = check_url(endpoint, "the revocation endpoint", self.opts.policy) else {
            eprintln!("warning: refusing the revocation endpoint {endpoint}; forgetting locally");
            return;
        };
        let mut to_revoke = vec![("refresh_token", token.refresh_token().map(|t| t.secret().clone()))];
        to_revoke.push(("access_token", Some(token.access_token().secret().clone())));
        for (hint, value) in to_revoke {
            let Some(value) = value else { continue };
            let mut form = vec![("token", value), ("token_type_hint", hint.to_owned())];
            let mut req = self.http.post(url.clone()).timeout(self.opts.request_timeout);
            match secret {
                Some(s) => req = req.basic_auth(client_id, Some(s)),
                None => form.push(("client_id", client_id.to_owned())),
            }
            let sent_form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
            let mut exchange = HttpExchange {
                purpose: "revocation".into(),
                method: "POST".into(),
                url: url.to_string(),
                request_headers: match secret {
                    Some(_) => vec![("authorization".into(), "Basic (client credentials)".into())],
                    None => Vec::new(),
                },
                request_body: Some(sent_form),
                ..Default::default()
            };
            match req.form(&form).send().await {
                Ok(r) => {
                    let status = r.status();
                    exchange.status = Some(status.as_u16());
                    exchange.response_headers = header_pairs(r.headers());
                    exchange.response_body = r.bytes().await.ok().map(|b| body_text(&b));
                    self.record(exchange);
                    if !status.is_success() {
                        eprintln!("warning: revoking the {hint} answered {}", status.as_u16());
                    }
                }
                Err(e) => {
                    let e = network_error(url.as_str(), &e);
                    exchange.error = Some(e.to_string());
                    self.record(exchange);
                    eprintln!("warning: revoking the {hint} failed: {e}");
                }
            }
        }
    }
}

/// The checks on discovered authorization server metadata (C17, C23), before anything is
/// registered or opened: PKCE S256 advertised, and every endpoint a URL the client may reach.
pub fn check_authorization_metadata(m: &AuthorizationMetadata, policy: NetPolicy) -> Result<(), ClientError> {
    let s256 = m.code_challenge_methods_supported.as_ref().is_some_and(|v| v.iter().any(|x| x == "S256"));
    if !s256 {
        return Err(ClientError::Discovery(
            "the authorization server does not advertise PKCE S256 (code_challenge_methods_supported); refusing to continue"
                .into(),
        ));
    }
    check_url(&m.authorization_endpoint, "the authorization endpoint", policy)?;
    check_url(&m.token_endpoint, "the token endpoint", policy)?;
    if let Some(r) = &m.registration_endpoint {
        check_url(r, "the registration endpoint", policy)?;
    }
    Ok(())
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_resource_drops_fragment_and_root_slash() {
        let u = |s: &str| Url::parse(s).unwrap_or_else(|_| Url::parse("https://x").unwrap_or_else(|_| unreachable!()));
        assert_eq!(canonical_resource(&u("https://MCP.example.com/")), "https://mcp.example.com");
        assert_eq!(canonical_resource(&u("https://mcp.example.com/mcp#x")), "https://mcp.example.com/mcp");
    }
}
