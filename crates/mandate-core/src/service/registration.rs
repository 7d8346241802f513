//! RFC 7591 dynamic client registration: lenient on unknown fields, strict on redirect URIs,
//! client-chosen identifiers ignored, secrets shown once and stored hashed.

use serde_json::{Map, Value, json};

use super::{AuditDraft, AuthServer};
use crate::error::{ErrorCode, OAuthError};
use crate::model::{AuthMethod, Client, ClientKind};
use crate::redirect;
use crate::scope::{ResourceCatalog, ScopeSet};
use crate::secret::{SecretKind, generate};

/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;

fn metadata_error(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}

/// The requested scopes this server knows, or `None` (no restriction) when none are known, as
/// when a client registers a vendor scope such as `claudeai`.
pub(crate) fn known_scopes(requested: &str, resources: &ResourceCatalog) -> Option<ScopeSet> {
    let requested = ScopeSet::parse(requested).ok()?;
    let known = requested.intersection(&resources.all_scopes());
    (!known.is_empty()).then_some(known)
}

fn optional_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, OAuthError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(metadata_error(format!("{key} must be a string"))),
    }
}

fn string_list(obj: &Map<String, Value>, key: &str, default: &[&str]) -> Result<Vec<String>, OAuthError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
        Some(Value::Array(items)) if items.len() <= 10 => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| metadata_error(format!("{key} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(metadata_error(format!("{key} must be a list of strings"))),
    }
}

/// A display URL (`client_uri`, `logo_uri`, ...): https only, never fetched at registration.
fn check_display_url(key: &str, value: &str) -> Result<(), OAuthError> {
    let ok =
        value.len() <= 2000 && url::Url::parse(value).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
    if ok { Ok(()) } else { Err(metadata_error(format!("{key} must be an https URL"))) }
}

/// Why a registration was not made.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The request is invalid (RFC 7591 §3.2.2).
    #[error(transparent)]
    Invalid(#[from] OAuthError),
    /// Too many registrations from all addresses together, or too many registered clients never
    /// used (DC-10): retry after this many seconds (429 with `Retry-After`).
    #[error("too many clients were registered recently; retry later")]
    Busy { retry_after: i64 },
}

/// Seconds a refused registration is told to wait: the rate is counted over a minute.
const BUSY_RETRY_AFTER: i64 = 60;

/// A registration request that passed every check of [`validate_registration`]: what
/// [`AuthServer::register_client`] stores and echoes (RFC 7591 §2, §3.2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRegistration {
    /// The redirect URIs, each valid for registration, without duplicates, in request order.
    pub redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    /// The trimmed `client_name` (empty when none was given).
    pub name: String,
    /// The display URLs and `application_type`, echoed as given.
    pub echoed: Map<String, Value>,
    /// The requested scopes this server knows (`None`: no restriction).
    pub allowed_scope: Option<ScopeSet>,
}

/// Checks an RFC 7591 registration request body against the rules of this server (redirect URIs,
/// grant and response types, authentication method, name, display URLs, scope). Pure: nothing is
/// stored; [`AuthServer::register_client`] calls it first.
pub fn validate_registration(body: &Value, resources: &ResourceCatalog) -> Result<ValidatedRegistration, OAuthError> {
    let obj = body.as_object().ok_or_else(|| metadata_error("the registration request must be a JSON object"))?;

    let uris = match obj.get("redirect_uris") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris must list at least one redirect URI",
            ));
        }
    };
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(ErrorCode::InvalidRedirectUri, "too many redirect_uris"));
    }
    let mut redirect_uris = Vec::with_capacity(uris.len());
    for u in uris {
        let s = u
            .as_str()
            .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRedirectUri, "redirect_uris must be strings"))?;
        redirect::validate_for_registration(s)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidRedirectUri, e.to_string()))?;
        if !redirect_uris.iter().any(|r| r == s) {
            redirect_uris.push(s.to_owned());
        }
    }

    let method_name = optional_str(obj, "token_endpoint_auth_method")?.unwrap_or("client_secret_basic");
    let auth_method = AuthMethod::parse(method_name).ok_or_else(|| {
        metadata_error("token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
    })?;

    let grant_types = string_list(obj, "grant_types", &["authorization_code"])?;
    if !grant_types.iter().any(|g| g == "authorization_code")
        || grant_types.iter().any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(metadata_error(
            "grant_types may only be authorization_code and refresh_token, and must include authorization_code",
        ));
    }
    let response_types = string_list(obj, "response_types", &["code"])?;
    if response_types.iter().any(|r| r != "code") {
        return Err(metadata_error("response_types may only be code"));
    }
    if obj.contains_key("jwks") && obj.contains_key("jwks_uri") {
        return Err(metadata_error("jwks and jwks_uri are mutually exclusive"));
    }

    let name = optional_str(obj, "client_name")?.map(str::trim).unwrap_or("");
    if name.chars().count() > 200 {
        return Err(metadata_error("client_name is longer than 200 characters"));
    }
    if let Some(problem) = crate::text::display_name_problem(name) {
        return Err(metadata_error(format!("client_name {problem}")));
    }
    let mut echoed = Map::new();
    for key in ["client_uri", "logo_uri", "tos_uri", "policy_uri"] {
        if let Some(v) = optional_str(obj, key)? {
            check_display_url(key, v)?;
            echoed.insert(key.to_owned(), json!(v));
        }
    }
    if let Some(t) = optional_str(obj, "application_type")? {
        if t != "native" && t != "web" {
            return Err(metadata_error("application_type must be native or web"));
        }
        echoed.insert("application_type".to_owned(), json!(t));
    }
    let allowed_scope = match optional_str(obj, "scope")? {
        Some(s) => {
            ScopeSet::parse(s).map_err(|_| metadata_error("scope is malformed"))?;
            known_scopes(s, resources)
        }
        None => None,
    };
    Ok(ValidatedRegistration {
        redirect_uris,
        auth_method,
        grant_types,
        response_types,
        name: name.to_owned(),
        echoed,
        allowed_scope,
    })
}

impl AuthServer {
    /// Registers a client; returns the RFC 7591 §3.2.1 response body (status 201).
    pub async fn register_client(&self, body: &Value) -> Result<Value, RegistrationError> {
        let (client, response) = self.new_dynamic_client(body)?;
        let since = client.created_at - 60;
        let (recent, unused) = self.store.dynamic_registrations(since).await.map_err(OAuthError::from)?;
        if recent >= self.settings.registrations_per_minute || unused >= self.settings.max_unused_clients {
            // Logged, not audited: a flood must not become a flood of writes.
            tracing::warn!(
                recent,
                unused,
                per_minute = self.settings.registrations_per_minute,
                max_unused = self.settings.max_unused_clients,
                "dynamic registration refused: too many registrations"
            );
            return Err(RegistrationError::Busy { retry_after: BUSY_RETRY_AFTER });
        }
        self.store.insert_client(&client).await.map_err(OAuthError::from)?;
        self.audit(AuditDraft {
            kind: "client.registered",
            outcome: "success",
            client: Some(&client.id),
            detail: Some(format!("dynamic registration of {:?}", client.name)),
            ..Default::default()
        })
        .await;
        Ok(response)
    }

    /// The client a registration request describes, and the response that registers it.
    fn new_dynamic_client(&self, body: &Value) -> Result<(Client, Value), OAuthError> {
        let ValidatedRegistration {
            redirect_uris,
            auth_method,
            grant_types,
            response_types,
            name,
            mut echoed,
            allowed_scope,
        } = validate_registration(body, &self.resources)?;

        let now = self.now();
        let id = uuid_like(self);
        let secret = auth_method.is_confidential().then(|| generate(self.rng.as_ref(), SecretKind::ClientSecret));
        let display_name = if name.is_empty() { "Unnamed app".to_owned() } else { name };

        echoed.insert("client_id".to_owned(), json!(id));
        echoed.insert("client_id_issued_at".to_owned(), json!(now));
        echoed.insert("client_name".to_owned(), json!(display_name));
        echoed.insert("redirect_uris".to_owned(), json!(redirect_uris));
        echoed.insert("token_endpoint_auth_method".to_owned(), json!(auth_method.as_str()));
        echoed.insert("grant_types".to_owned(), json!(grant_types));
        echoed.insert("response_types".to_owned(), json!(response_types));
        if let Some(s) = &allowed_scope {
            echoed.insert("scope".to_owned(), json!(s.to_string()));
        }

        let client = Client {
            id: id.clone(),
            kind: ClientKind::Dynamic,
            name: display_name,
            secret_hash: secret.as_ref().map(|s| s.hash()),
            auth_method,
            redirect_uris,
            allows_refresh: grant_types.iter().any(|g| g == "refresh_token"),
            allowed_scope,
            metadata: Value::Object(echoed.clone()),
            created_at: now,
            refresh_after: None,
            served_resources: Vec::new(),
        };
        let mut response = echoed;
        if let Some(secret) = secret {
            response.insert("client_secret".to_owned(), json!(secret.expose()));
            response.insert("client_secret_expires_at".to_owned(), json!(0));
        }
        Ok((client, Value::Object(response)))
    }
}

/// A server-generated client id: random, never a URL, never a user id (JW-04, DC-07).
pub(crate) fn uuid_like(server: &AuthServer) -> String {
    let mut b = [0u8; 16];
    server.rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}
