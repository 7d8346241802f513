//! The records mandate keeps. Times are Unix seconds; secrets appear only as hashes.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::scope::ScopeSet;
use crate::secret::SecretHash;

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
    pub disabled: bool,
}

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Added by an operator (`mandate clients add`): the only kind shown as verified.
    Preregistered,
    /// Registered through RFC 7591 dynamic client registration.
    Dynamic,
    /// Described by a Client ID Metadata Document fetched from its `client_id` URL.
    MetadataDocument,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Preregistered => "preregistered",
            ClientKind::Dynamic => "dynamic",
            ClientKind::MetadataDocument => "metadata_document",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "preregistered" => Some(ClientKind::Preregistered),
            "dynamic" => Some(ClientKind::Dynamic),
            "metadata_document" => Some(ClientKind::MetadataDocument),
            _ => None,
        }
    }
}

/// RFC 7591 `token_endpoint_auth_method` values mandate supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(AuthMethod::None),
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            _ => None,
        }
    }
    pub fn is_confidential(self) -> bool {
        self != AuthMethod::None
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    pub name: String,
    pub secret_hash: Option<SecretHash>,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    /// Whether refresh tokens may be issued (`refresh_token` in `grant_types`).
    pub allows_refresh: bool,
    /// The `scope` the client registered (RFC 7591) or an operator set. Only an operator's list
    /// is a ceiling (see [`Client::scope_ceiling`]); a self-registered client's is informative.
    pub allowed_scope: Option<ScopeSet>,
    /// The registration metadata as echoed to the client (RFC 7591 §3.2.1).
    pub metadata: serde_json::Value,
    pub created_at: UnixTime,
    /// For metadata-document clients: when the cached document must be fetched again.
    pub refresh_after: Option<UnixTime>,
    /// The resources (canonical URIs) an operator says this client serves: it may introspect
    /// tokens whose audience is one of them (RV-09). Empty for self-registered clients.
    pub served_resources: Vec<String>,
}

impl Client {
    pub fn is_verified(&self) -> bool {
        self.kind == ClientKind::Preregistered
    }

    /// The scopes this client may never exceed: an operator's list for a pre-registered client.
    /// Dynamically registered and metadata-document clients register the scopes of their first
    /// challenge (every official SDK does) and must still be able to step up later: for them the
    /// person's consent is the limit, not the registration.
    pub fn scope_ceiling(&self) -> Option<&ScopeSet> {
        match self.kind {
            ClientKind::Preregistered => self.allowed_scope.as_ref(),
            ClientKind::Dynamic | ClientKind::MetadataDocument => None,
        }
    }
}

/// An authorization request that passed validation and waits for login and consent.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// The request carried `redirect_uri` (so the token request must repeat it).
    pub redirect_uri_explicit: bool,
    pub scope: ScopeSet,
    pub resource: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// The person who is looking at the consent page, once known.
    pub user_id: Option<String>,
}

/// What a person has allowed a client to do, per redirect host and resource.
#[derive(Debug, Clone)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    /// The redirect host for a client an operator registered; the exact redirect URI for a
    /// self-registered or metadata-document client (UI-20).
    pub redirect_host: String,
    pub resource: String,
    pub scope: ScopeSet,
    pub updated_at: UnixTime,
}

/// One authorization: a person, a client, scopes, a resource. Its refresh tokens are one family.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub created_at: UnixTime,
    /// When its first tokens were issued; `None` while only a code exists.
    pub activated_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

#[derive(Debug, Clone)]
pub struct AuthorizationCode {
    pub hash: SecretHash,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub redirect_uri_explicit: bool,
    pub code_challenge: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub expires_at: UnixTime,
    pub consumed_at: Option<UnixTime>,
}

/// A refresh token with its grant, read together (see `GrantStore::refresh_context`).
#[derive(Debug, Clone)]
pub struct RefreshContext {
    pub token: RefreshToken,
    pub grant: Grant,
    /// The grant's person exists and is not disabled.
    pub person_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub hash: SecretHash,
    pub grant_id: String,
    pub parent_hash: Option<SecretHash>,
    pub scope: ScopeSet,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub rotated_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

/// What happened when a valid authorization code was redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// The code is spent, the grant active and its first refresh token stored, together.
    Activated,
    /// Another redemption spent the code first: this one is a replay.
    CodeAlreadyUsed,
    /// The code is now spent, but its grant was revoked meanwhile.
    GrantRevoked,
}

/// When a presentation of an already-rotated refresh token whose successor is still unused is
/// a retry rather than reuse. Decided inside the rotation transaction; times are compared with
/// the presented token's `rotated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryWindow {
    /// Rotated at or after this: inside the grace window, answered with the same successor.
    /// `None` when there is no grace window.
    pub successor_since: Option<UnixTime>,
    /// Otherwise rotated at or after this: a concurrent presentation that lost the race,
    /// refused without harm to the family.
    pub race_since: UnixTime,
}

/// What happened when a refresh token was presented for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was current; the successor is now the family's live token, and its sealed form
    /// is kept on the presented token's row for retries inside the grace window.
    Rotated,
    /// The token was rotated inside the grace window and its successor is unused: here is that
    /// successor, sealed under the presented token (nothing new was issued).
    Retry {
        /// The successor's lookup hash, to check what the presented token opens.
        successor: SecretHash,
        /// [`crate::successor::seal`] output.
        sealed: String,
    },
    /// The token was rotated an instant ago (see [`RetryWindow::race_since`]) and its successor is
    /// unused, but it cannot be handed out (no grace window): refused, the family left intact.
    RaceLost,
    /// The token was rotated outside the windows, its successor was already used, or it was
    /// revoked: the family is revoked.
    ReuseDetected,
    /// Unknown, expired, or its grant is revoked.
    Inactive,
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub hash: SecretHash,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A signing key as stored: the private half encrypted with the key-encryption key.
#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    pub encrypted_private_key: Vec<u8>,
    /// The public JWK, as JSON.
    pub public_jwk: String,
    pub created_at: UnixTime,
    /// The key signs from this time on (it is published from `created_at`).
    pub activates_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: String,
    pub at: UnixTime,
    pub kind: String,
    pub outcome: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    pub detail: Option<String>,
}

/// Makes the audit event that records a write's outcome; the store writes it in the write's own
/// transaction, so the change and its record are kept or lost together.
pub type AuditOf<O> = Box<dyn FnOnce(&O) -> Option<AuditEvent> + Send>;

/// Like [`AuditOf`], for writes whose store may need the event of more than one outcome before
/// it knows which one happened (PostgreSQL writes a refresh rotation or a code redemption in one
/// statement, its record included).
pub type AuditEach<O> = Box<dyn Fn(&O) -> Option<AuditEvent> + Send + Sync>;

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub since: Option<UnixTime>,
    /// Only events recorded before the event with this id (paging back through a trail).
    pub before: Option<String>,
    pub limit: i64,
}

/// A person's account at an upstream provider. Its tokens are sealed under the key-encryption
/// key, bound to (person, provider); they never appear in a record in the clear.
#[derive(Debug, Clone)]
pub struct UpstreamAccount {
    pub user_id: String,
    pub provider: String,
    /// The provider's stable subject for this account, when it told us.
    pub subject: Option<String>,
    /// The access and refresh tokens, sealed (see `mandate-upstream`'s vault).
    pub sealed_tokens: Vec<u8>,
    /// What the provider granted (its `scope`), when it said.
    pub scope: Option<String>,
    /// When the access token expires, when the provider said.
    pub access_expires_at: Option<UnixTime>,
    /// Bumped at every change of the tokens: a refresh is stored only over the version it read.
    pub version: i64,
    /// False once the provider refused the refresh token (`invalid_grant`): the person must
    /// connect again.
    pub connected: bool,
    pub connected_at: UnixTime,
    /// When the tokens were last stored (connected or refreshed).
    pub refreshed_at: UnixTime,
}

/// Why a person was sent to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPurpose {
    /// Signing in to mandate with the provider's account.
    SignIn,
    /// Connecting the signed-in person's account at the provider (the vault keeps its tokens).
    Connect,
    /// An offer to link a provider's account to the signed-in person, waiting for them to
    /// confirm (its secrets hold the subject).
    Link,
}

impl FlowPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowPurpose::SignIn => "sign_in",
            FlowPurpose::Connect => "connect",
            FlowPurpose::Link => "link",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sign_in" => Some(FlowPurpose::SignIn),
            "connect" => Some(FlowPurpose::Connect),
            "link" => Some(FlowPurpose::Link),
            _ => None,
        }
    }
}

/// An authorization request mandate sent to a provider, waiting for its answer.
#[derive(Debug, Clone)]
pub struct ProviderFlow {
    /// The `state` sent, hashed.
    pub state_hash: SecretHash,
    pub provider: String,
    pub purpose: FlowPurpose,
    /// The signed-in person, for a connection.
    pub user_id: Option<String>,
    /// The browser that started it (a cookie, hashed): the answer must come back to it.
    pub browser_hash: SecretHash,
    /// The PKCE verifier and the OpenID nonce, sealed under the key-encryption key.
    pub sealed_secrets: Vec<u8>,
    /// Where to go afterwards (a pending authorization's consent page, an account page).
    pub return_to: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A provider's account that signs a person in to mandate, linked by the provider's stable
/// subject (never by e-mail).
#[derive(Debug, Clone)]
pub struct FederatedIdentity {
    pub provider: String,
    pub subject: String,
    pub user_id: String,
    /// What the provider said the e-mail address was (shown to the person, never used to link).
    pub email: Option<String>,
    pub created_at: UnixTime,
}

/// What ending a person's access took away (`mandate users disable|remove|passwd`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonRevocation {
    /// Grants revoked (or, on removal, deleted) that were live or not yet activated.
    pub grants: u64,
    /// Browser sessions ended.
    pub sessions: u64,
    /// MCP sessions forgotten.
    pub mcp_sessions: u64,
}

/// A value sealed under the key-encryption key, as `mandate keys rotate-kek` meets it: what it is
/// bound to (see [`crate::keys::aad`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedRef<'a> {
    SigningKey { kid: &'a str },
    UpstreamAccount { user_id: &'a str, provider: &'a str },
    ProviderFlow { state_hash: &'a str },
}

/// Opens a sealed value and seals it again under another key; an error undoes the rotation.
pub type Reseal = std::sync::Arc<dyn Fn(SealedRef<'_>, &[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// How many sealed values a key-encryption key rotation re-sealed, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealCount {
    pub signing_keys: u64,
    pub upstream_accounts: u64,
    pub provider_flows: u64,
}
