//! A provider as the operator configured it, and its endpoints: given explicitly, or discovered
//! from its issuer (OpenID Connect discovery, then RFC 8414), with the issuer checked
//! byte for byte.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::UpstreamError;

/// How mandate authenticates to the provider's token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client (PKCE only).
    None,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Endpoints given in the configuration; each wins over the discovered one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub revocation: Option<String>,
    pub userinfo: Option<String>,
    pub jwks: Option<String>,
}

/// One provider (`[[providers]]`).
#[derive(Clone)]
pub struct ProviderSpec {
    /// The short name: in URLs (`/upstream/<name>/callback`) and the trail.
    pub name: String,
    /// What people read ("Continue with GitHub").
    pub title: String,
    /// The issuer to discover from; its ID tokens must name it.
    pub issuer: Option<String>,
    pub endpoints: Endpoints,
    pub client_id: String,
    /// From the environment, never from the configuration file.
    pub client_secret: Option<String>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    /// Offered on the sign-in page ("Continue with ...").
    pub sign_in: bool,
    /// A first sign-in by an account nobody is linked to creates a person. False: only people
    /// who linked the account (from their account pages) sign in with it.
    pub create_people: bool,
    /// RFC 8707 `resource` to ask the provider for (another mandate's MCP endpoint, say).
    pub resource: Option<String>,
    /// The userinfo member holding the stable subject, for providers without ID tokens (GitHub:
    /// `id`).
    pub subject_claim: String,
    /// Extra authorization request parameters (Google: `access_type=offline`).
    pub extra_params: Vec<(String, String)>,
    /// The redirect URI mandate serves for it: `<public_url>/upstream/<name>/callback`.
    pub redirect_uri: String,
}

impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl ProviderSpec {
    pub fn wants_id_token(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }
}

/// The redirect URI mandate serves for a provider.
pub fn redirect_uri(public_url: &str, name: &str) -> String {
    format!("{}/upstream/{name}/callback", public_url.trim_end_matches('/'))
}

/// What discovery found, with the configuration's explicit endpoints applied.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Metadata {
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

impl Metadata {
    pub fn authorization(&self) -> Result<&str, UpstreamError> {
        self.authorization_endpoint.as_deref().ok_or(UpstreamError::Misconfigured("no authorization endpoint"))
    }
    pub fn token(&self) -> Result<&str, UpstreamError> {
        self.token_endpoint.as_deref().ok_or(UpstreamError::Misconfigured("no token endpoint"))
    }
}

/// How long discovered metadata is kept.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long a failed discovery is not tried again.
const FAILURE_TTL: Duration = Duration::from_secs(10);

/// A provider with its metadata, discovered on first use and kept for an hour (a provider that
/// is down at start does not stop mandate).
pub struct Provider {
    pub spec: ProviderSpec,
    metadata: tokio::sync::Mutex<Option<(Arc<Metadata>, Instant)>>,
    /// When discovery last failed: not tried again for [`FAILURE_TTL`] (a provider that is down
    /// must not make every sign-in wait on it).
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// Its ID-token keys (fetched when first needed, refetched for an unknown `kid`).
    keys: std::sync::Mutex<Option<(String, Arc<mandate_guard::JwksKeySource>)>>,
}

impl Provider {
    pub fn new(spec: ProviderSpec) -> Self {
        Self {
            spec,
            metadata: tokio::sync::Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
            keys: std::sync::Mutex::new(None),
        }
    }

    /// The provider's JWKS, kept between sign-ins (one per `jwks_uri`).
    pub(crate) fn keys(&self, m: &Metadata) -> Result<Arc<mandate_guard::JwksKeySource>, UpstreamError> {
        let uri = m.jwks_uri.as_deref().ok_or(UpstreamError::Misconfigured("no jwks_uri"))?;
        let mut kept = self.keys.lock().map_err(|_| UpstreamError::Misconfigured("the key cache is poisoned"))?;
        if let Some((u, k)) = kept.as_ref()
            && u == uri
        {
            return Ok(k.clone());
        }
        let k = Arc::new(
            mandate_guard::JwksKeySource::new(uri)
                .map_err(|_| UpstreamError::Misconfigured("cannot build the JWKS client"))?,
        );
        *kept = Some((uri.to_owned(), k.clone()));
        Ok(k)
    }

    /// The metadata already discovered, if any (no network).
    pub(crate) fn metadata_if_known(&self) -> Option<Arc<Metadata>> {
        self.metadata.try_lock().ok().and_then(|m| m.as_ref().map(|(m, _)| m.clone()))
    }

    pub async fn metadata(&self, http: &reqwest::Client) -> Result<Arc<Metadata>, UpstreamError> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        if self.failed_at.lock().ok().and_then(|f| *f).is_some_and(|at| at.elapsed() < FAILURE_TTL) {
            // A stale document still serves while the provider cannot be asked again.
            if let Some((m, _)) = cached.as_ref() {
                return Ok(m.clone());
            }
            return Err(UpstreamError::Unavailable(format!("{}: discovery failed moments ago", self.spec.name)));
        }
        let found = match &self.spec.issuer {
            Some(issuer) => discover(http, issuer).await,
            None => Ok(Metadata::default()),
        };
        let mut m = match found {
            Ok(m) => m,
            Err(e) => {
                if let Ok(mut f) = self.failed_at.lock() {
                    *f = Some(Instant::now());
                }
                if let Some((m, _)) = cached.as_ref() {
                    tracing::warn!(provider = %self.spec.name, error = %e, "discovery failed: the last document serves meanwhile");
                    return Ok(m.clone());
                }
                return Err(e);
            }
        };
        let e = &self.spec.endpoints;
        let pick = |given: &Option<String>, found: &mut Option<String>| {
            if given.is_some() {
                found.clone_from(given);
            }
        };
        pick(&e.authorization, &mut m.authorization_endpoint);
        pick(&e.token, &mut m.token_endpoint);
        pick(&e.revocation, &mut m.revocation_endpoint);
        pick(&e.userinfo, &mut m.userinfo_endpoint);
        pick(&e.jwks, &mut m.jwks_uri);
        m.authorization()?;
        m.token()?;
        // A discovered endpoint is https, or plain http on loopback only for a provider that
        // itself lives on loopback (a test or demo provider): a document must not send the
        // client secret and people's tokens to local services.
        // (Without an issuer every endpoint is the operator's own, checked at load.)
        let local = self.spec.issuer.as_deref().is_none_or(|i| secure_url(i) && !i.starts_with("https://"));
        for u in
            [&m.authorization_endpoint, &m.token_endpoint, &m.revocation_endpoint, &m.userinfo_endpoint, &m.jwks_uri]
                .into_iter()
                .flatten()
        {
            if !(secure_url(u) && (u.starts_with("https://") || local)) {
                return Err(UpstreamError::Misconfigured("a provider endpoint is not https (http only on loopback)"));
            }
        }
        if let Some(methods) = &m.code_challenge_methods_supported
            && !methods.iter().any(|x| x == "S256")
        {
            return Err(UpstreamError::Misconfigured("the provider does not support PKCE S256"));
        }
        let m = Arc::new(m);
        *cached = Some((m.clone(), Instant::now()));
        Ok(m)
    }
}

/// https, or http on a loopback address.
fn secure_url(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|u| match u.scheme() {
        "https" => true,
        "http" => u.host_str().is_some_and(|h| {
            h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    })
}

/// OpenID Connect discovery, then RFC 8414 (path-inserted); the document must name `issuer`
/// exactly.
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, UpstreamError> {
    let trimmed = issuer.trim_end_matches('/');
    let parsed = url::Url::parse(issuer).map_err(|_| UpstreamError::Misconfigured("the issuer is not a URL"))?;
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    let candidates = [
        format!("{trimmed}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ];
    let mut last = String::new();
    for url in candidates {
        match http.get(&url).header("accept", "application/json").send().await {
            Ok(r) if r.status().is_success() => {
                let m: Metadata =
                    r.json().await.map_err(|e| UpstreamError::Unavailable(format!("discovery at {url}: {e}")))?;
                if m.issuer.as_deref() != Some(issuer) {
                    return Err(UpstreamError::Unavailable(format!(
                        "discovery at {url} names issuer {:?}, not {issuer:?}",
                        m.issuer.as_deref().unwrap_or("")
                    )));
                }
                return Ok(m);
            }
            Ok(r) => last = format!("{url}: HTTP {}", r.status().as_u16()),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(UpstreamError::Unavailable(format!("no discovery document for {issuer} ({last})")))
}
