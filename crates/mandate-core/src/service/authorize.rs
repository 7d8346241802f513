//! The authorization endpoint and consent (OAuth 2.1 §4.1.1–4.1.2, RFC 9207, RFC 8707; MCP AS7,
//! AS8, AS11–AS13). The client and redirect URI are validated before anything else: until they
//! are, errors are shown on a page and never redirected.

use url::Url;

use super::clients::ClientLookupError;
use super::{AuditDraft, AuthServer};
use crate::error::{ErrorCode, OAuthError};
use crate::model::{AuthorizationCode, Client, ClientKind, Consent, Grant, PendingAuthorization, User};
use crate::params::Params;
use crate::pkce;
use crate::redirect::{self, RedirectTarget};
use crate::scope::ScopeSet;
use crate::secret::{SecretKind, generate, random_id};

/// Scopes clients send that mandate grants through other means and silently drops: refresh
/// tokens follow the client's `grant_types`.
const IGNORED_SCOPES: &[&str] = &["offline_access"];

/// What the HTTP layer does next with an authorization request.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// The client or redirect URI is unusable: show this message; never redirect.
    ErrorPage(String),
    /// The request is invalid and the client is not verified: explain, and let the person
    /// decide whether to go back to the application (RFC 9700 §4.11.2: no automatic redirect
    /// to a redirect URI nobody vouched for).
    ErrorWithReturn { error: OAuthError, return_to: String, host: String },
    /// Redirect the browser here (a code, or an error for the client).
    Redirect(String),
    /// Ask the person to sign in, then come back to this pending request.
    Login { pending_id: String },
    /// Show the consent page for this pending request.
    Consent { pending_id: String },
    /// The pending request cannot be continued (unknown, expired, used, someone else's).
    Stale(Stale),
    /// "Allow" was pressed with none of the newly requested scopes ticked: show the consent page
    /// again (the request is still pending) and ask the person to tick something or deny.
    NothingChosen { pending_id: String },
}

/// Why a pending sign-in request can no longer be continued; each has its own page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    Unknown,
    Expired,
    Used,
    OtherPerson,
    ClientGone,
}

impl Stale {
    pub fn title(self) -> &'static str {
        match self {
            Stale::Unknown => "This sign-in link is not valid",
            Stale::Expired => "This sign-in link has expired",
            Stale::Used => "This sign-in link was already used",
            Stale::OtherPerson => "This sign-in link belongs to someone else",
            Stale::ClientGone => "This application is no longer registered",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Stale::Unknown => "The link may have been mistyped, or the request was already finished.",
            Stale::Expired => "A sign-in link works for a few minutes only, and this one ran out. Nothing was allowed.",
            Stale::Used => "Your decision for this request was already recorded.",
            Stale::OtherPerson => "Another person signed in to answer this request, so it cannot be answered here.",
            Stale::ClientGone => {
                "An administrator removed this application while you were deciding. Nothing was allowed."
            }
        }
    }

    /// What the person can do now.
    pub fn next_step(self) -> &'static str {
        match self {
            Stale::Used => "If the application is still waiting, start again from it.",
            _ => "Go back to the application and connect again: it will send you here with a new link.",
        }
    }
}

/// One line of the consent page.
#[derive(Debug, Clone)]
pub struct ScopeLine {
    pub name: String,
    pub description: String,
    /// The tools it unlocks (comma-separated; empty when the resource lists none).
    pub tools: String,
    /// It allows actions that cannot be undone (shown unticked, with a warning).
    pub irreversible: bool,
}

/// Everything the consent page shows.
#[derive(Debug, Clone)]
pub struct ConsentView {
    pub pending_id: String,
    pub client_id: String,
    pub client_name: String,
    pub verified: bool,
    /// For metadata-document clients: the host the client id names.
    pub client_id_host: Option<String>,
    /// The host (or `scheme:`) consent is remembered for.
    pub redirect_host: String,
    /// Where the answer goes, as the page describes it.
    pub target: RedirectTarget,
    pub new_scopes: Vec<ScopeLine>,
    /// What the request repeats of what the person allowed this application before.
    pub already_granted: Vec<ScopeLine>,
    /// The person allowed this application something before (a step-up), whether or not the
    /// request repeats it.
    pub returning: bool,
    /// How long access lasts, in words.
    pub access_term: String,
    pub resource_name: String,
    /// The resource's URI (RFC 8707).
    pub resource: String,
    /// Origin (or scheme) the consent form may redirect to, for the page's CSP.
    pub redirect_csp_source: Option<String>,
}

/// The person's answer on the consent page.
#[derive(Debug, Clone)]
pub enum ConsentDecision {
    Allow { scopes: ScopeSet },
    Deny,
}

/// A duration in words: "30 days", "1 hour", "90 minutes".
pub fn human_duration(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// What a person's consent is remembered for, besides them, the client and the resource (UI-20):
/// for a client an operator registered, the redirect host (any port on loopback; the scheme of a
/// custom-scheme URI); for a self-registered or metadata-document client, nobody vouched for its
/// redirect URIs, so the exact redirect URI: another path or another loopback port asks again.
fn consent_key(client: Option<&Client>, redirect_uri: &str) -> String {
    match client {
        Some(c) if c.is_verified() => redirect::display_host(redirect_uri),
        _ => redirect_uri.to_owned(),
    }
}

fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(url.to_string())
}

impl AuthServer {
    fn error_redirect(&self, redirect_uri: &str, err: &OAuthError, state: Option<&str>) -> AuthorizeOutcome {
        let mut pairs = vec![("error", err.code.as_str()), ("error_description", err.description.as_ref())];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", self.settings.issuer.as_str()));
        match redirect_with(redirect_uri, &pairs) {
            Some(url) => AuthorizeOutcome::Redirect(url),
            None => AuthorizeOutcome::ErrorPage("The application's redirect address is invalid.".to_owned()),
        }
    }

    /// Validates an authorization request. `user` is the signed-in person, if any.
    pub async fn authorize(&self, params: &Params, user: Option<&User>) -> Result<AuthorizeOutcome, OAuthError> {
        // 1. Client and redirect URI: failures here are shown, never redirected (AZ-05, AZ-06).
        let client_id = match params.single("client_id") {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Ok(AuthorizeOutcome::ErrorPage(
                    "The request does not name an application (client_id is missing).".into(),
                ));
            }
            Err(e) => return Ok(AuthorizeOutcome::ErrorPage(format!("The request is malformed: {}.", e.description))),
        };
        let client = match self.find_client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Ok(AuthorizeOutcome::ErrorPage("This application is not registered with this server.".into()));
            }
            Err(ClientLookupError::Document(e)) => {
                self.audit(AuditDraft {
                    kind: "client.metadata_document",
                    outcome: "failure",
                    client: Some(client_id),
                    detail: Some(e.to_string()),
                    ..Default::default()
                })
                .await;
                return Ok(AuthorizeOutcome::ErrorPage(format!("This application could not be verified: {e}.")));
            }
            Err(ClientLookupError::Store(e)) => return Err(e.into()),
        };
        let (redirect_uri, explicit) = match params.single("redirect_uri") {
            Err(e) => {
                return Ok(AuthorizeOutcome::ErrorPage(format!("The request is malformed: {}.", e.description)));
            }
            Ok(Some(requested)) => {
                if !client.redirect_uris.iter().any(|r| redirect::matches(r, requested)) {
                    return Ok(AuthorizeOutcome::ErrorPage(
                        "The redirect address does not match any address registered for this application.".into(),
                    ));
                }
                (requested.to_owned(), true)
            }
            Ok(None) => match client.redirect_uris.as_slice() {
                [only] => (only.clone(), false),
                _ => {
                    return Ok(AuthorizeOutcome::ErrorPage(
                        "The request must name its redirect address (redirect_uri).".into(),
                    ));
                }
            },
        };

        // 2. From here on, errors go back to the client, with `state` and `iss` (RFC 9207).
        let state = match params.single("state") {
            Ok(s) => s,
            Err(e) => return Ok(self.error_redirect(&redirect_uri, &e, None)),
        };
        if state.is_some_and(|s| s.len() > 4096) {
            let e = OAuthError::invalid_request("state is too long");
            return Ok(self.error_redirect(&redirect_uri, &e, None));
        }
        match self.check_request(params, &client).await {
            Ok(pending) => {
                let pending = PendingAuthorization {
                    redirect_uri,
                    redirect_uri_explicit: explicit,
                    state: state.map(str::to_owned),
                    ..pending
                };
                self.note_challenge_reuse(&pending).await?;
                self.store.insert_pending(&pending).await?;
                let Some(user) = user else {
                    return Ok(AuthorizeOutcome::Login { pending_id: pending.id });
                };
                self.after_login(&pending.id, user).await
            }
            Err(e) => {
                let redirect = self.error_redirect(&redirect_uri, &e, state);
                match redirect {
                    AuthorizeOutcome::Redirect(url) if !client.is_verified() => Ok(AuthorizeOutcome::ErrorWithReturn {
                        error: e,
                        return_to: url,
                        host: redirect::display_host(&redirect_uri),
                    }),
                    other => Ok(other),
                }
            }
        }
    }

    /// The checks after the redirect URI is known; returns the pending request to store.
    async fn check_request(&self, params: &Params, client: &Client) -> Result<PendingAuthorization, OAuthError> {
        match params.single("response_type")? {
            Some("code") => {}
            Some(_) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ));
            }
            None => return Err(OAuthError::invalid_request("response_type is missing")),
        }
        if params.single("response_mode")?.is_some_and(|m| m != "query") {
            return Err(OAuthError::invalid_request("only response_mode=query is supported"));
        }
        for unsupported in ["request", "request_uri"] {
            if params.single(unsupported)?.is_some() {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, "request objects are not supported"));
            }
        }
        let challenge =
            pkce::validate_challenge(params.single("code_challenge")?, params.single("code_challenge_method")?)?;
        if params.is_repeated("resource") {
            return Err(OAuthError::invalid_target("only one resource may be requested"));
        }
        let resource = self.resources.resolve(params.single("resource")?)?;
        let mut requested = match params.single("scope")? {
            Some(s) => ScopeSet::parse(s)?,
            None => ScopeSet::default(),
        };
        requested = requested.difference(&ScopeSet::from_names(IGNORED_SCOPES));
        if requested.is_empty() {
            // No scope (or only `offline_access`, as Claude sends): the resource's baseline.
            let defaults = resource.default_scope_set();
            requested = match client.scope_ceiling() {
                Some(allowed) => defaults.intersection(allowed),
                None => defaults,
            };
        }
        if requested.is_empty() {
            return Err(OAuthError::invalid_scope("no scope was requested"));
        }
        let unknown = requested.difference(&resource.scope_set());
        if !unknown.is_empty() {
            return Err(OAuthError::invalid_scope(format!("unknown scope: {unknown}")));
        }
        if let Some(ceiling) = client.scope_ceiling()
            && !requested.is_subset_of(ceiling)
        {
            let beyond = requested.difference(ceiling);
            return Err(OAuthError::invalid_scope(format!(
                "the operator did not allow this application the scope {beyond}"
            )));
        }
        let now = self.now();
        Ok(PendingAuthorization {
            id: random_id(self.rng.as_ref()),
            client_id: client.id.clone(),
            redirect_uri: String::new(),
            redirect_uri_explicit: false,
            scope: requested,
            resource: resource.uri.clone(),
            state: None,
            code_challenge: challenge.to_owned(),
            created_at: now,
            expires_at: now + self.settings.pending_ttl,
            user_id: None,
        })
    }

    async fn live_pending(
        &self,
        pending_id: &str,
        user: &User,
    ) -> Result<Result<PendingAuthorization, Stale>, OAuthError> {
        let Some(pending) = self.store.pending(pending_id).await? else {
            return Ok(Err(Stale::Unknown));
        };
        if pending.expires_at <= self.now() {
            return Ok(Err(Stale::Expired));
        }
        if !self.store.bind_pending(pending_id, &user.id).await? {
            return Ok(Err(Stale::OtherPerson));
        }
        Ok(Ok(PendingAuthorization { user_id: Some(user.id.clone()), ..pending }))
    }

    /// After sign-in: issue a code at once if earlier consent covers the request, else ask.
    pub async fn after_login(&self, pending_id: &str, user: &User) -> Result<AuthorizeOutcome, OAuthError> {
        let pending = match self.live_pending(pending_id, user).await? {
            Ok(p) => p,
            Err(stale) => return Ok(AuthorizeOutcome::Stale(stale)),
        };
        let client = self.store.client_by_id(&pending.client_id).await?;
        let key = consent_key(client.as_ref(), &pending.redirect_uri);
        let earlier = self.store.consent(&user.id, &pending.client_id, &key, &pending.resource).await?;
        if earlier.is_some_and(|c| pending.scope.is_subset_of(&c.scope)) {
            if !self.store.consume_pending(&pending.id, self.now()).await? {
                return Ok(AuthorizeOutcome::Stale(Stale::Used));
            }
            self.audit(AuditDraft {
                kind: "consent.remembered",
                outcome: "success",
                user: Some(&user.id),
                client: Some(&pending.client_id),
                detail: Some(format!("scope {}", pending.scope)),
                ..Default::default()
            })
            .await;
            return self.issue_code(&pending, user, pending.scope.clone(), None).await;
        }
        Ok(AuthorizeOutcome::Consent { pending_id: pending.id })
    }

    /// What the consent page shows for a pending request.
    pub async fn consent_view(&self, pending_id: &str, user: &User) -> Result<Result<ConsentView, Stale>, OAuthError> {
        let pending = match self.live_pending(pending_id, user).await? {
            Ok(p) => p,
            Err(stale) => return Ok(Err(stale)),
        };
        let Some(client) = self.store.client_by_id(&pending.client_id).await? else {
            return Ok(Err(Stale::ClientGone));
        };
        let shown = redirect::shown(&pending.redirect_uri);
        let key = consent_key(Some(&client), &pending.redirect_uri);
        let earlier = self
            .store
            .consent(&user.id, &client.id, &key, &pending.resource)
            .await?
            .map(|c| c.scope)
            .unwrap_or_default();
        let line = |s: &str| self.scope_line(s);
        Ok(Ok(ConsentView {
            pending_id: pending.id.clone(),
            client_id: client.id.clone(),
            client_name: client.name.clone(),
            verified: client.is_verified(),
            client_id_host: (client.kind == ClientKind::MetadataDocument).then(|| redirect::display_host(&client.id)),
            target: shown.target,
            redirect_host: shown.host,
            new_scopes: pending.scope.difference(&earlier).iter().map(line).collect(),
            already_granted: pending.scope.intersection(&earlier).iter().map(line).collect(),
            returning: !earlier.is_empty(),
            access_term: self.access_term(client.allows_refresh),
            resource_name: self
                .resources
                .resources()
                .iter()
                .find(|r| r.uri == pending.resource)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| pending.resource.clone()),
            resource: pending.resource.clone(),
            redirect_csp_source: shown.csp_source,
        }))
    }

    /// Applies the person's consent decision. Single use: a second submission is refused.
    pub async fn decide_consent(
        &self,
        pending_id: &str,
        user: &User,
        decision: ConsentDecision,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        let pending = match self.live_pending(pending_id, user).await? {
            Ok(p) => p,
            Err(stale) => return Ok(AuthorizeOutcome::Stale(stale)),
        };
        let client = self.store.client_by_id(&pending.client_id).await?;
        let key = consent_key(client.as_ref(), &pending.redirect_uri);
        let earlier = self
            .store
            .consent(&user.id, &pending.client_id, &key, &pending.resource)
            .await?
            .map(|c| c.scope)
            .unwrap_or_default();
        // "Allow" with nothing new ticked allows nothing: neither a grant of what was already
        // allowed (recorded as "You allowed") nor a denial the person did not choose.
        if let ConsentDecision::Allow { scopes } = &decision {
            let asked = pending.scope.difference(&earlier);
            if !asked.is_empty() && scopes.intersection(&asked).is_empty() {
                return Ok(AuthorizeOutcome::NothingChosen { pending_id: pending.id });
            }
        }
        if !self.store.consume_pending(&pending.id, self.now()).await? {
            return Ok(AuthorizeOutcome::Stale(Stale::Used));
        }
        let ticked = match &decision {
            ConsentDecision::Allow { scopes } => scopes.intersection(&pending.scope),
            ConsentDecision::Deny => ScopeSet::default(),
        };
        let granted = match decision {
            ConsentDecision::Deny => ScopeSet::default(),
            ConsentDecision::Allow { .. } => pending.scope.intersection(&earlier).union(&ticked),
        };
        let draft = |outcome: &'static str, detail: String| AuditDraft {
            kind: "consent",
            outcome,
            user: Some(&user.id),
            client: Some(&pending.client_id),
            detail: Some(detail),
            ..Default::default()
        };
        if granted.is_empty() {
            self.audit(draft("denied", format!("requested {}", pending.scope))).await;
            let e = OAuthError::new(ErrorCode::AccessDenied, "the person declined the request");
            return Ok(self.error_redirect(&pending.redirect_uri, &e, pending.state.as_deref()));
        }
        // Remembered with the grant it led to, in one transaction: a crash never leaves a
        // consent that issued nothing (RL-06).
        let consent = Consent {
            user_id: user.id.clone(),
            client_id: pending.client_id.clone(),
            redirect_host: key,
            resource: pending.resource.clone(),
            scope: earlier.union(&ticked),
            updated_at: self.now(),
        };
        let detail = if earlier.is_empty() {
            format!("granted {granted} of requested {}", pending.scope)
        } else {
            // A step-up: say what this decision added, not only the sum.
            format!("granted {granted} of requested {}; newly allowed {ticked}", pending.scope)
        };
        self.audit(draft("granted", detail)).await;
        self.issue_code(&pending, user, granted, Some(&consent)).await
    }

    /// How long a grant lasts, in words, for the consent page.
    fn access_term(&self, renewable: bool) -> String {
        if renewable {
            format!(
                "Until you revoke it, for {} at most. It also ends by itself if the app does not use it for {}.",
                human_duration(self.settings.refresh_family_ttl),
                human_duration(self.settings.refresh_token_idle_ttl)
            )
        } else {
            format!(
                "For {}: this app cannot renew its access without asking you again.",
                human_duration(self.settings.access_token_ttl)
            )
        }
    }

    /// What an application that asked for `pending_id` is called, and whether an operator
    /// vouched for it (for the sign-in page). `None` for an unknown or expired request.
    pub async fn pending_client(&self, pending_id: &str) -> Result<Option<(String, bool)>, OAuthError> {
        let Some(pending) = self.store.pending(pending_id).await? else {
            return Ok(None);
        };
        if pending.expires_at <= self.now() {
            return Ok(None);
        }
        Ok(self.store.client_by_id(&pending.client_id).await?.map(|c| {
            let verified = c.is_verified();
            (c.name, verified)
        }))
    }

    /// A scope as a person reads it.
    pub fn scope_line(&self, s: &str) -> ScopeLine {
        ScopeLine {
            name: s.to_owned(),
            description: self.resources.describe(s).unwrap_or(s).to_owned(),
            tools: self.resources.tools_of(s).join(", "),
            irreversible: self.resources.is_irreversible(s),
        }
    }

    async fn issue_code(
        &self,
        pending: &PendingAuthorization,
        user: &User,
        scope: ScopeSet,
        consent: Option<&Consent>,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        let now = self.now();
        let code = generate(self.rng.as_ref(), SecretKind::AuthorizationCode);
        let grant = Grant {
            id: random_id(self.rng.as_ref()),
            user_id: user.id.clone(),
            client_id: pending.client_id.clone(),
            scope: scope.clone(),
            resource: pending.resource.clone(),
            created_at: now,
            activated_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        let record = AuthorizationCode {
            hash: code.hash(),
            grant_id: grant.id.clone(),
            client_id: pending.client_id.clone(),
            user_id: user.id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            redirect_uri_explicit: pending.redirect_uri_explicit,
            code_challenge: pending.code_challenge.clone(),
            scope,
            resource: pending.resource.clone(),
            expires_at: now + self.settings.code_ttl,
            consumed_at: None,
        };
        self.store.insert_grant_with_code(&grant, &record, consent).await?;
        let mut pairs = vec![("code", code.expose())];
        if let Some(s) = pending.state.as_deref() {
            pairs.push(("state", s));
        }
        pairs.push(("iss", self.settings.issuer.as_str()));
        Ok(match redirect_with(&pending.redirect_uri, &pairs) {
            Some(url) => AuthorizeOutcome::Redirect(url),
            None => AuthorizeOutcome::ErrorPage("The application's redirect address is invalid.".into()),
        })
    }
}
