//! The authorization server metadata document (RFC 8414), served identically at the OAuth and
//! OpenID Connect discovery paths (MCP AS2–AS4, AS13).

use serde_json::{Value, json};

use super::AuthServer;

impl AuthServer {
    /// The metadata document. `issuer` is byte-identical to the configured public URL.
    pub fn metadata(&self) -> Value {
        let iss = &self.settings.issuer;
        json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "registration_endpoint": format!("{iss}/register"),
            "revocation_endpoint": format!("{iss}/revoke"),
            "introspection_endpoint": format!("{iss}/introspect"),
            "jwks_uri": format!("{iss}/jwks.json"),
            "scopes_supported": self.resources.all_scopes().iter().collect::<Vec<_>>(),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
            "service_documentation": format!("{iss}/"),
        })
    }
}
