//! mandate-upstream: people's accounts at other services. Providers (OpenID Connect or plain
//! OAuth 2) sign people in to mandate and hold the accounts that tools act on; the vault keeps
//! each person's upstream tokens sealed under the key-encryption key, refreshes them once per
//! expiry across every instance, and revokes them at the provider on disconnect.
//!
//! One face, [`Upstreams`]; tools reach a person's token only through an [`UpstreamHandle`].

mod flows;
mod idtoken;
mod oauth;
mod provider;
mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;

use mandate_core::AuthServer;
use mandate_core::error::StoreError;

pub use flows::{Callback, Completed, ProviderIdentity, SignInOutcome, Started};
pub use provider::{ClientAuth, Endpoints, Metadata, Provider, ProviderSpec, redirect_uri};
pub use vault::{ConnectedAccount, UpstreamToken};

/// Why a person has no usable token for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotConnected {
    /// They never connected it (or disconnected it).
    Never,
    /// The provider refused its refresh token (revoked, expired): they must connect again.
    Refused,
    /// The access token expired and the provider gave no refresh token.
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no provider named {0:?} is configured")]
    UnknownProvider(String),
    #[error("the {provider} account is not connected")]
    NotConnected { provider: String, why: NotConnected },
    /// The provider cannot be reached or answered nonsense; the detail is for operators.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered an OAuth error.
    #[error("{provider} refused: {error}")]
    Refused { provider: String, error: String },
    #[error("the provider is misconfigured: {0}")]
    Misconfigured(&'static str),
    #[error("the provider's ID token is unusable: {0}")]
    BadIdToken(&'static str),
    /// The answer from the provider does not belong to a request this browser started.
    #[error("the sign-in answer is unknown, expired, already used or from another browser")]
    UnknownFlow,
    /// RFC 9207: the answer names another issuer (a mix-up attack), or none where required.
    #[error("the answer did not come from the expected provider")]
    WrongIssuer,
    #[error("the provider said: {0}")]
    Denied(String),
    #[error("the provider's answer has no code")]
    NoCode,
    #[error("this {provider} account is linked to another person")]
    LinkedElsewhere { provider: String },
    #[error("this person's account is disabled")]
    Disabled,
    /// Someone else is signed in in this browser: a sign-in does not switch people.
    #[error("someone else is signed in here")]
    SignedInAsOther,
    /// The provider's account signs nobody in here, and none is created for it.
    #[error("this account is not linked to anyone here")]
    NotLinked,
    /// A connection's answer arrived where its person is no longer signed in.
    #[error("the person who started the connection is not signed in here")]
    SignedOut,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("sealing failed")]
    Crypto,
}

/// Every configured provider, their flows and the vault.
pub struct Upstreams {
    auth: Arc<AuthServer>,
    http: reqwest::Client,
    providers: BTreeMap<String, Provider>,
    vault: vault::Vault,
}

impl Upstreams {
    pub fn new(auth: Arc<AuthServer>, specs: Vec<ProviderSpec>, http: reqwest::Client) -> Self {
        let providers = specs.into_iter().map(|s| (s.name.clone(), Provider::new(s))).collect();
        Self { vault: vault::Vault::new(auth.clone()), auth, http, providers }
    }

    /// The HTTP client for providers: rustls, no redirects followed.
    pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(oauth::CALL_TIMEOUT)
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// The HTTP client providers are called with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn auth(&self) -> &Arc<AuthServer> {
        &self.auth
    }

    pub fn provider(&self, name: &str) -> Result<&Provider, UpstreamError> {
        self.providers.get(name).ok_or_else(|| UpstreamError::UnknownProvider(name.to_owned()))
    }

    pub fn providers(&self) -> impl Iterator<Item = &ProviderSpec> {
        self.providers.values().map(|p| &p.spec)
    }

    /// Providers offered on the sign-in page.
    pub fn sign_in_providers(&self) -> impl Iterator<Item = &ProviderSpec> {
        self.providers().filter(|p| p.sign_in)
    }

    /// The page where a person connects their account at `provider` (sent to agents in a
    /// URL-mode elicitation).
    pub fn connect_url(&self, provider: &str) -> String {
        format!("{}/account/connections/{provider}", self.auth.settings.issuer)
    }

    /// The one way tools reach a person's token at `provider`.
    pub fn handle(self: &Arc<Self>, provider: &str) -> Result<UpstreamHandle, UpstreamError> {
        let title = self.provider(provider)?.spec.title.clone();
        Ok(UpstreamHandle { upstreams: self.clone(), provider: provider.to_owned(), title })
    }

    /// The person's connected accounts, with each provider's title.
    pub async fn accounts(&self, user_id: &str) -> Result<Vec<ConnectedAccount>, UpstreamError> {
        self.vault.accounts(user_id, |p| self.providers.get(p).map(|x| x.spec.title.clone())).await
    }

    /// Whether the person has a connected account at `provider` (a refresh may still be due).
    pub async fn is_connected(&self, user_id: &str, provider: &str) -> Result<bool, UpstreamError> {
        Ok(self.auth.store().upstream_account(user_id, provider).await?.is_some_and(|a| a.connected))
    }

    /// Revokes the person's tokens at the provider (RFC 7009, where it offers an endpoint) and
    /// deletes them. True when there was an account.
    pub async fn disconnect(&self, user_id: &str, provider: &str) -> Result<bool, UpstreamError> {
        match self.provider(provider) {
            Ok(p) => self.vault.disconnect(p, &self.http, user_id).await,
            // A provider no longer configured: its account is only forgotten (nothing to call).
            Err(_) => self.vault.forget(user_id, provider).await,
        }
    }
}

/// A tool's access to people's tokens at one provider.
#[derive(Clone)]
pub struct UpstreamHandle {
    upstreams: Arc<Upstreams>,
    provider: String,
    title: String,
}

impl std::fmt::Debug for UpstreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHandle").field("provider", &self.provider).finish()
    }
}

impl UpstreamHandle {
    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// Where the person connects the account.
    pub fn connect_url(&self) -> String {
        self.upstreams.connect_url(&self.provider)
    }

    /// The person's access token, refreshed first when it is about to expire.
    pub async fn token(&self, user_id: &str) -> Result<UpstreamToken, UpstreamError> {
        let p = self.upstreams.provider(&self.provider)?;
        self.upstreams.vault.token(p, &self.upstreams.http, user_id).await
    }

    /// The upstream answered 401 to `rejected`: a fresh token (one refresh, however many calls
    /// saw the 401).
    pub async fn rejected(&self, user_id: &str, rejected: &UpstreamToken) -> Result<UpstreamToken, UpstreamError> {
        let p = self.upstreams.provider(&self.provider)?;
        self.upstreams.vault.rejected(p, &self.upstreams.http, user_id, rejected).await
    }
}
