//! Who is calling: what a validated token says, available to handlers through request extensions.

use mandate_core::scope::ScopeSet;

/// The authenticated caller of a protected request: the person (`subject`) and the agent
/// (`client_id`) acting for them, with the scopes the person granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub client_id: String,
    pub scopes: ScopeSet,
    /// mandate's grant id (`grant_id` claim), when the issuer is mandate.
    pub grant_id: Option<String>,
    /// The token's `jti`, when present.
    pub token_id: Option<String>,
    pub expires_at: i64,
}

impl Principal {
    /// True when every scope in `required` was granted.
    pub fn has_all(&self, required: &[&str]) -> bool {
        required.iter().all(|s| self.scopes.contains(s))
    }
}
