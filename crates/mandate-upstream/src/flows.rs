//! Sending a person to a provider and taking the answer: PKCE S256 and `state` always, a nonce
//! for OpenID providers, the answer bound to the browser that left (a cookie), `iss` checked
//! (RFC 9207) where the provider supports it. Then what the answer means: a sign-in (a person
//! found by the provider's subject, created, or linked after the signed-in person confirms), or
//! a connection (the vault keeps the tokens).

use mandate_core::StoreError;
use mandate_core::model::{FederatedIdentity, FlowPurpose, ProviderFlow, User};
use mandate_core::pkce::s256;
use mandate_core::secret::{SecretHash, random_id, random_token};
use mandate_core::service::AuditDraft;
use serde::{Deserialize, Serialize};

use crate::oauth::{self, TokenResponse};
use crate::{UpstreamError, Upstreams, idtoken};

/// How long a person has at the provider.
const FLOW_TTL: i64 = 600;

/// Sealed with the flow: what the answer must match.
#[derive(Serialize, Deserialize)]
struct FlowSecrets {
    #[serde(rename = "v", default)]
    verifier: String,
    #[serde(rename = "n", default)]
    nonce: String,
    /// For a link offer: the identity to link.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

/// Where to send the browser, and the cookie value that binds the answer to it.
pub struct Started {
    pub url: String,
    pub browser: String,
}

/// The provider's answer at the callback (query parameters).
#[derive(Debug, Default)]
pub struct Callback<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub iss: Option<&'a str>,
}

/// Who the provider says the person is.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    pub subject: String,
    pub email: Option<String>,
    /// A name to derive a username from.
    pub username: Option<String>,
}

/// A flow the provider answered.
pub struct Completed {
    pub provider: String,
    pub purpose: FlowPurpose,
    /// The person who started a connection.
    pub user_id: Option<String>,
    pub return_to: Option<String>,
    pub identity: Option<ProviderIdentity>,
    tokens: TokenResponse,
}

/// What a sign-in with a provider leads to.
pub enum SignInOutcome {
    /// A known (or newly created) person: open a session.
    SignedIn { user: User },
    /// Someone is signed in here and the provider's account is linked to nobody: ask them to
    /// confirm the link (the offer's id goes in the confirmation form).
    ConfirmLink { offer: String, email: Option<String> },
}

fn flow_context(state_hash: &SecretHash) -> String {
    mandate_core::keys::aad::provider_flow(state_hash.as_str())
}

impl Upstreams {
    /// Starts an authorization request at `provider`. `browser` is the cookie value this
    /// browser already holds, if any (several flows may be under way in tabs).
    pub async fn start(
        &self,
        provider: &str,
        purpose: FlowPurpose,
        user_id: Option<&str>,
        return_to: Option<String>,
        browser: Option<&str>,
    ) -> Result<Started, UpstreamError> {
        let p = self.provider(provider)?;
        let m = p.metadata(&self.http).await?;
        let rng = self.auth.randomness();
        let state = random_token(rng);
        let secrets = FlowSecrets { verifier: random_token(rng), nonce: random_token(rng), subject: None, email: None };
        let browser = browser.filter(|b| b.len() == 43).map_or_else(|| random_token(rng), str::to_owned);
        let state_hash = SecretHash::of(&state);
        let now = self.auth.now();
        let plain = serde_json::to_vec(&secrets).map_err(|_| UpstreamError::Crypto)?;
        let flow = ProviderFlow {
            sealed_secrets: self
                .auth
                .seal_secret(&plain, &flow_context(&state_hash))
                .map_err(|_| UpstreamError::Crypto)?,
            state_hash,
            provider: provider.to_owned(),
            purpose,
            user_id: user_id.map(str::to_owned),
            browser_hash: SecretHash::of(&browser),
            return_to,
            created_at: now,
            expires_at: now + FLOW_TTL,
        };
        self.auth.store().insert_provider_flow(&flow).await?;
        let mut url = url::Url::parse(m.authorization()?)
            .map_err(|_| UpstreamError::Misconfigured("the authorization endpoint is not a URL"))?;
        {
            let spec = &p.spec;
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &spec.client_id)
                .append_pair("redirect_uri", &spec.redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &s256(&secrets.verifier))
                .append_pair("code_challenge_method", "S256");
            if !spec.scopes.is_empty() {
                q.append_pair("scope", &spec.scopes.join(" "));
            }
            if spec.wants_id_token() {
                q.append_pair("nonce", &secrets.nonce);
            }
            if let Some(r) = &spec.resource {
                q.append_pair("resource", r);
            }
            for (k, v) in &spec.extra_params {
                q.append_pair(k, v);
            }
        }
        Ok(Started { url: url.into(), browser })
    }

    /// Takes the provider's answer at `provider`'s callback, from the browser holding the
    /// `browser` cookie where `signed_in` is signed in: checks it, redeems the code. A connection
    /// answered where its person is no longer signed in is refused before the code is redeemed
    /// (no tokens are left live at the provider).
    pub async fn finish(
        &self,
        provider: &str,
        answer: &Callback<'_>,
        browser: Option<&str>,
        signed_in: Option<&str>,
    ) -> Result<Completed, UpstreamError> {
        let p = self.provider(provider)?;
        let state = answer.state.ok_or(UpstreamError::UnknownFlow)?;
        let now = self.auth.now();
        let flow = self.auth.store().take_provider_flow(&SecretHash::of(state), now).await?;
        let flow = flow.filter(|f| f.provider == provider && f.purpose != FlowPurpose::Link);
        let Some(flow) = flow else { return Err(UpstreamError::UnknownFlow) };
        if !browser.is_some_and(|b| SecretHash::of(b).ct_eq(&flow.browser_hash)) {
            return Err(UpstreamError::UnknownFlow);
        }
        if flow.user_id.is_some() && flow.user_id.as_deref() != signed_in {
            return Err(UpstreamError::SignedOut);
        }
        let m = p.metadata(&self.http).await?;
        // RFC 9207: an `iss` must name the provider; where it is supported it must be there.
        let expected = m.issuer.as_deref().or(p.spec.issuer.as_deref());
        match (answer.iss, expected) {
            (Some(iss), Some(exp)) if iss != exp => return Err(UpstreamError::WrongIssuer),
            (Some(_), None) => return Err(UpstreamError::WrongIssuer),
            (None, _) if m.authorization_response_iss_parameter_supported => return Err(UpstreamError::WrongIssuer),
            _ => {}
        }
        if let Some(e) = answer.error {
            return Err(UpstreamError::Denied(oauth::sanitize(e)));
        }
        let code = answer.code.filter(|c| !c.is_empty()).ok_or(UpstreamError::NoCode)?;
        let plain = self
            .auth
            .open_secret(&flow.sealed_secrets, &flow_context(&flow.state_hash))
            .map_err(|_| UpstreamError::Crypto)?;
        let secrets: FlowSecrets = serde_json::from_slice(&plain).map_err(|_| UpstreamError::Crypto)?;
        let tokens = oauth::exchange_code(&self.http, &p.spec, m.token()?, code, &secrets.verifier).await?;
        let identity = match (&tokens.id_token, p.spec.wants_id_token()) {
            (Some(id), true) => {
                let issuer = expected.ok_or(UpstreamError::Misconfigured("an OpenID provider needs an issuer"))?;
                let keys = p.keys(&m)?;
                let c = idtoken::verify(id, keys.as_ref(), issuer, &p.spec.client_id, &secrets.nonce, now).await?;
                // An address the provider says it did not verify is not shown to anyone.
                let email = c.email.filter(|_| c.email_verified != Some(false));
                let mut who = ProviderIdentity { subject: c.sub, email, username: c.preferred_username.or(c.name) };
                // Many providers (OpenID Connect Core 5.4) put the profile in userinfo only: it fills
                // what the ID token left out, and must name the same subject.
                if (who.email.is_none() || who.username.is_none())
                    && let Some(endpoint) = m.userinfo_endpoint.as_deref()
                {
                    let info = oauth::userinfo(&self.http, &p.spec, endpoint, &tokens.access_token).await?;
                    if info.get("sub").and_then(|v| v.as_str()) != Some(who.subject.as_str()) {
                        return Err(UpstreamError::BadIdToken("userinfo names another subject than the ID token"));
                    }
                    let text = |k: &str| info.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                    let verified = info.get("email_verified").and_then(serde_json::Value::as_bool) != Some(false);
                    who.email = who.email.or_else(|| text("email").filter(|_| verified));
                    who.username = who.username.or_else(|| text("preferred_username")).or_else(|| text("name"));
                }
                Some(who)
            }
            (None, true) => return Err(UpstreamError::BadIdToken("the provider sent no ID token")),
            _ => match m.userinfo_endpoint.as_deref() {
                Some(endpoint) => {
                    let who = self.userinfo_identity(p, endpoint, &tokens.access_token).await;
                    match (who, flow.purpose) {
                        (Ok(who), _) => Some(who),
                        (Err(e), FlowPurpose::SignIn) => return Err(e),
                        // A connection does not need to know who the account is: the token may
                        // not even be allowed to read a profile.
                        (Err(e), _) => {
                            tracing::info!(provider = %provider, error = %e, "connected an account without reading who it is");
                            None
                        }
                    }
                }
                None => None,
            },
        };
        Ok(Completed {
            provider: provider.to_owned(),
            purpose: flow.purpose,
            user_id: flow.user_id,
            return_to: flow.return_to,
            identity,
            tokens,
        })
    }

    /// Who the userinfo document says the account is (`subject_claim` is the stable subject).
    async fn userinfo_identity(
        &self,
        p: &crate::Provider,
        endpoint: &str,
        access_token: &str,
    ) -> Result<ProviderIdentity, UpstreamError> {
        let info = oauth::userinfo(&self.http, &p.spec, endpoint, access_token).await?;
        let subject = match info.get(&p.spec.subject_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(UpstreamError::Unavailable(format!("{}: userinfo has no subject", p.spec.name))),
        };
        let text = |k: &str| info.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let verified = info.get("email_verified").and_then(serde_json::Value::as_bool) != Some(false);
        Ok(ProviderIdentity {
            subject,
            email: text("email").filter(|_| verified),
            username: text("login").or(text("preferred_username")),
        })
    }

    /// Keeps a connection's tokens for `user` (who must be the person who started it).
    pub async fn complete_connect(&self, done: Completed, user: &User) -> Result<(), UpstreamError> {
        if done.purpose != FlowPurpose::Connect || done.user_id.as_deref() != Some(user.id.as_str()) {
            return Err(UpstreamError::UnknownFlow);
        }
        let subject = done.identity.map(|i| i.subject);
        // Connected again with another account at the provider: the tokens it replaces are
        // revoked, not left live there. The same account's are part of the same grant at some
        // providers (revoking them would end the new tokens too): they are only replaced.
        if let Some(old) = self.auth.store().upstream_account(&user.id, &done.provider).await?
            && old.subject.is_some()
            && old.subject != subject
            && let Ok(p) = self.provider(&done.provider)
        {
            self.vault.revoke_later(p, &self.http, &old);
        }
        self.vault.store(&user.id, &done.provider, subject, &done.tokens).await
    }

    /// What a sign-in answer means. `signed_in`: whoever is signed in in this browser.
    pub async fn complete_sign_in(
        &self,
        done: Completed,
        signed_in: Option<&User>,
    ) -> Result<SignInOutcome, UpstreamError> {
        let store = self.auth.store();
        let identity = match (done.purpose, done.identity) {
            (FlowPurpose::SignIn, Some(i)) => i,
            (FlowPurpose::SignIn, None) => {
                return Err(UpstreamError::Misconfigured("a sign-in provider needs ID tokens or a userinfo endpoint"));
            }
            _ => return Err(UpstreamError::UnknownFlow),
        };
        let provider = done.provider.as_str();
        let p = self.provider(provider)?;
        // A link is started by the signed-in person from the account pages (a same-site POST with
        // their CSRF token): the flow names them, and only they can finish it.
        let linking = done.user_id.as_deref();
        if linking.is_some() && linking != signed_in.map(|u| u.id.as_str()) {
            return Err(UpstreamError::SignedOut);
        }
        let known = store.identity_user(provider, &identity.subject).await?;
        let refused = match (&known, linking, signed_in) {
            (Some(id), Some(starter), _) if id != starter => {
                Some(UpstreamError::LinkedElsewhere { provider: provider.to_owned() })
            }
            // Someone else is signed in here: a sign-in never switches people behind their back
            // (a page elsewhere can start one); they sign out first.
            (Some(id), None, Some(current)) if *id != current.id => Some(UpstreamError::SignedInAsOther),
            (None, None, Some(_)) => Some(UpstreamError::NotLinked),
            (None, None, None) if !p.spec.create_people => Some(UpstreamError::NotLinked),
            (None, Some(_), None) => Some(UpstreamError::SignedOut),
            _ => None,
        };
        if let Some(e) = refused {
            // A refused sign-in leaves no token live at the provider either.
            self.forget_sign_in_tokens(p, signed_in, &done.tokens).await;
            return Err(e);
        }
        let user = match (known, linking, signed_in) {
            (Some(id), _, _) => {
                let Some(user) = store.user_by_id(&id).await?.filter(|u| !u.disabled) else {
                    self.forget_sign_in_tokens(p, None, &done.tokens).await;
                    return Err(UpstreamError::Disabled);
                };
                self.forget_sign_in_tokens(p, Some(&user), &done.tokens).await;
                return Ok(SignInOutcome::SignedIn { user });
            }
            (None, Some(_), Some(current)) => current,
            _ => {
                let user = self.create_person(provider, &identity).await?;
                self.forget_sign_in_tokens(p, Some(&user), &done.tokens).await;
                return Ok(SignInOutcome::SignedIn { user });
            }
        };
        // Linked only when the signed-in person says so (never by e-mail).
        let now = self.auth.now();
        self.forget_sign_in_tokens(p, Some(user), &done.tokens).await;
        let offer = random_token(self.auth.randomness());
        let hash = SecretHash::of(&offer);
        let secrets = FlowSecrets {
            verifier: String::new(),
            nonce: String::new(),
            subject: Some(identity.subject.clone()),
            email: identity.email.clone(),
        };
        let plain = serde_json::to_vec(&secrets).map_err(|_| UpstreamError::Crypto)?;
        store
            .insert_provider_flow(&ProviderFlow {
                sealed_secrets: self
                    .auth
                    .seal_secret(&plain, &flow_context(&hash))
                    .map_err(|_| UpstreamError::Crypto)?,
                state_hash: hash,
                provider: provider.to_owned(),
                purpose: FlowPurpose::Link,
                user_id: Some(user.id.clone()),
                browser_hash: SecretHash::of(&offer),
                return_to: done.return_to,
                created_at: now,
                expires_at: now + FLOW_TTL,
            })
            .await?;
        Ok(SignInOutcome::ConfirmLink { offer, email: identity.email })
    }

    /// A sign-in needs only who the person is: the tokens it brought are revoked at the provider
    /// (where it offers revocation), in the background, so none stays live there unused. Not when
    /// the person keeps a connected account of the same client at that provider: at some
    /// providers (Google) revoking one token ends the client's whole grant, that account's too.
    async fn forget_sign_in_tokens(&self, p: &crate::Provider, user: Option<&User>, tokens: &TokenResponse) {
        if let Some(user) = user {
            for other in self
                .providers
                .values()
                .filter(|o| o.spec.client_id == p.spec.client_id && o.spec.issuer == p.spec.issuer)
            {
                if !matches!(self.auth.store().upstream_account(&user.id, &other.spec.name).await, Ok(None)) {
                    return;
                }
            }
        }
        let spec = p.spec.clone();
        let http = self.http.clone();
        let (access, refresh) = (tokens.access_token.clone(), tokens.refresh_token.clone());
        let metadata = p.metadata_if_known();
        tokio::spawn(async move {
            let Some(endpoint) = metadata.and_then(|m| m.revocation_endpoint.clone()) else { return };
            if let Some(r) = refresh
                && let Err(e) = oauth::revoke(&http, &spec, &endpoint, &r, "refresh_token").await
            {
                tracing::info!(provider = %spec.name, error = %e, "revoking a sign-in's refresh token failed");
            }
            if let Err(e) = oauth::revoke(&http, &spec, &endpoint, &access, "access_token").await {
                tracing::info!(provider = %spec.name, error = %e, "revoking a sign-in's access token failed");
            }
        });
    }

    /// The signed-in person confirmed a link offer.
    pub async fn confirm_link(&self, offer: &str, user: &User) -> Result<String, UpstreamError> {
        let store = self.auth.store();
        let hash = SecretHash::of(offer);
        let flow = store.take_provider_flow(&hash, self.auth.now()).await?;
        let Some(flow) =
            flow.filter(|f| f.purpose == FlowPurpose::Link && f.user_id.as_deref() == Some(user.id.as_str()))
        else {
            return Err(UpstreamError::UnknownFlow);
        };
        let plain =
            self.auth.open_secret(&flow.sealed_secrets, &flow_context(&hash)).map_err(|_| UpstreamError::Crypto)?;
        let secrets: FlowSecrets = serde_json::from_slice(&plain).map_err(|_| UpstreamError::Crypto)?;
        let subject = secrets.subject.ok_or(UpstreamError::Crypto)?;
        let identity = FederatedIdentity {
            provider: flow.provider.clone(),
            subject,
            user_id: user.id.clone(),
            email: secrets.email,
            created_at: self.auth.now(),
        };
        match store.link_identity(&identity).await {
            Err(StoreError::Conflict(_)) => return Err(UpstreamError::LinkedElsewhere { provider: flow.provider }),
            other => other?,
        }
        self.auth
            .audit(AuditDraft {
                kind: "user.link",
                outcome: "success",
                user: Some(&user.id),
                detail: Some(format!("linked a {} account for signing in", flow.provider)),
                ..Default::default()
            })
            .await;
        Ok(flow.provider)
    }

    /// A new person for a provider's account nobody has: a username from what the provider
    /// says (made unique), no password.
    async fn create_person(&self, provider: &str, identity: &ProviderIdentity) -> Result<User, UpstreamError> {
        let store = self.auth.store();
        let hint = identity
            .username
            .clone()
            .or_else(|| identity.email.as_deref().and_then(|e| e.split('@').next()).map(str::to_owned))
            .unwrap_or_default();
        let base: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(32)
            .collect::<String>()
            .to_ascii_lowercase();
        let base = if base.is_empty() { format!("{provider}-user") } else { base };
        let now = self.auth.now();
        for attempt in 0..20u32 {
            let username = match attempt {
                0 => base.clone(),
                1..=9 => format!("{base}-{}", attempt + 1),
                _ => format!("{base}-{}", &random_id(self.auth.randomness())[..8]),
            };
            let user = User {
                id: random_id(self.auth.randomness()),
                username,
                password_hash: String::new(),
                created_at: now,
                disabled: false,
            };
            let link = FederatedIdentity {
                provider: provider.to_owned(),
                subject: identity.subject.clone(),
                user_id: user.id.clone(),
                email: identity.email.clone(),
                created_at: now,
            };
            match store.insert_user_with_identity(&user, &link).await {
                Ok(()) => {
                    self.auth
                        .audit(AuditDraft {
                            kind: "user.created",
                            outcome: "success",
                            user: Some(&user.id),
                            detail: Some(format!("created at the first sign-in with {provider}")),
                            ..Default::default()
                        })
                        .await;
                    return Ok(user);
                }
                Err(StoreError::Conflict(_)) => {
                    // The identity itself may have been linked meanwhile (two tabs): sign in as it.
                    if let Some(id) = store.identity_user(provider, &identity.subject).await?
                        && let Some(u) = store.user_by_id(&id).await?
                    {
                        return if u.disabled { Err(UpstreamError::Disabled) } else { Ok(u) };
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(UpstreamError::Unavailable("no free username".into()))
    }
}
