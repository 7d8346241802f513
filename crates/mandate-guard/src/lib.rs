//! mandate-guard: the resource-server layer an axum/rmcp MCP server mounts to be an OAuth 2.1
//! protected resource: RFC 9728 metadata, RFC 6750 challenges, token validation (mandate's own
//! keys in-process, any issuer's JWKS, or introspection), Host/Origin checks before auth,
//! per-tool scopes with step-up challenges (and unknown tools refused in JSON-RPC's form),
//! sessions bound to their user.
//!
//! ```ignore
//! let keys = Arc::new(JwksKeySource::new("https://auth.example.com/jwks.json")?);
//! let validator = Validator::new(issuer, resource_url, keys, Arc::new(SystemClock));
//! let mut config = GuardConfig::new(resource_url, issuer);
//! config.scopes_supported = vec!["notes.read".into(), "notes.write".into()]; // all of them
//! config.challenge_scopes = vec!["notes.read".into()]; // asked for in the 401 challenge
//! config.tools = ToolScopes::new().with("delete_note", &["notes.write"]);
//! let guard = Arc::new(Guard::new(config, TokenCheck::Jwt(validator)));
//! let app = guard.protect(Router::new().nest_service("/mcp", mcp_service)).merge(guard.metadata_router());
//! // Tools read the caller: parts.extensions.get::<mandate_guard::Principal>()
//! ```

mod challenge;
mod jsonrpc;
mod keys;
mod layer;
mod metadata;
mod principal;
mod session_limit;
mod sessions;
mod streams;
mod tools;
mod validate;

pub use challenge::{ChallengeKind, challenge};
pub use jsonrpc::{INVALID_PARAMS, INVALID_REQUEST, unknown_tool_message};
pub use keys::{JwksKeySource, KeySource, LocalKeys, VerificationKey, keys_from_jwks};
pub use layer::{Guard, GuardConfig, RevocationCheck, TokenCheck};
pub use metadata::metadata_path_for;
pub use principal::Principal;
pub use session_limit::NewSessionLimit;
pub use sessions::{
    IDLE as SESSION_IDLE, PER_USER as SESSIONS_PER_USER, RegistryUnavailable, SessionRegistry, owner_key,
};
pub use tools::{ToolCallAudit, ToolDecision, ToolScopes};
pub use validate::{LEEWAY, Rejection, Validator};
