//! Where stored credentials may go (CL-06, CL-07).
//!
//! - A 401's `resource_metadata` must be on the MCP server's own origin; another origin could
//!   send the person to log in at an authorization server of its choosing.
//! - Credentials (client secret, refresh token, and the tokens `logout` revokes) are pinned at
//!   login to the token and revocation endpoints of the authorization server that issued them.
//!   When rediscovered metadata names other endpoints, even under the same issuer, they are not
//!   sent; the person is told to log in again.

use rmcp::transport::auth::AuthorizationMetadata;
use url::Url;

use crate::error::ClientError;
use crate::stepup::printable;
use crate::vault::{CredentialVault, PinnedEndpoints};

/// The endpoints credentials issued under `m` are pinned to.
pub(crate) fn pinned_endpoints(m: &AuthorizationMetadata) -> PinnedEndpoints {
    PinnedEndpoints {
        token_endpoint: m.token_endpoint.clone(),
        revocation_endpoint: m.additional_fields.get("revocation_endpoint").and_then(|v| v.as_str()).map(str::to_owned),
    }
}

/// CL-06: every `resource_metadata` of a 401 challenge must be on `server`'s origin.
pub(crate) fn check_resource_metadata_origin(server: &Url, challenge: &str) -> Result<(), ClientError> {
    for value in auth_param_values(challenge, "resource_metadata") {
        let same_origin =
            Url::parse(&value).or_else(|_| server.join(&value)).is_ok_and(|u| u.origin() == server.origin());
        if !same_origin {
            return Err(ClientError::Discovery(format!(
                "the server's 401 names resource metadata at {}, on another origin than the MCP server ({}); \
                 refusing to follow it",
                printable(&value),
                server.origin().ascii_serialization()
            )));
        }
    }
    Ok(())
}

/// CL-07: the endpoints pinned for `resource`'s stored credentials must be the ones `m` names.
/// An entry stored before pinning has none, and is refused the same way.
pub(crate) fn check_pin(vault: &CredentialVault, resource: &str, m: &AuthorizationMetadata) -> Result<(), ClientError> {
    let current = pinned_endpoints(m);
    let reason = match vault.endpoints(resource)? {
        Some(pinned) if pinned == current => return Ok(()),
        Some(pinned) if pinned.token_endpoint != current.token_endpoint => format!(
            "the authorization server's token endpoint changed since you logged in (from {} to {})",
            printable(&pinned.token_endpoint),
            printable(&current.token_endpoint)
        ),
        Some(pinned) => format!(
            "the authorization server's revocation endpoint changed since you logged in (from {} to {})",
            printable(pinned.revocation_endpoint.as_deref().unwrap_or("none")),
            printable(current.revocation_endpoint.as_deref().unwrap_or("none"))
        ),
        None => "the stored credentials were saved by an older mandate, which did not record the authorization \
                 server's endpoints"
            .to_owned(),
    };
    Err(ClientError::EndpointsChanged { reason, server: resource.to_owned() })
}

/// Every value of the auth-param `name` in a `WWW-Authenticate` header (quoted or token form).
fn auth_param_values(header: &str, name: &str) -> Vec<String> {
    let lower = header.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(name).map(|p| p + from) {
        from = pos + name.len();
        let boundary = lower[..pos].chars().next_back().is_none_or(|c| c == ',' || c.is_whitespace());
        let rest = header[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=').filter(|_| boundary) else { continue };
        let rest = rest.trim_start();
        let value = match rest.strip_prefix('"') {
            Some(quoted) => {
                let mut v = String::new();
                let mut chars = quoted.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => v.extend(chars.next()),
                        c => v.push(c),
                    }
                }
                v
            }
            None => rest.split(|c: char| c == ',' || c.is_whitespace()).next().unwrap_or_default().to_owned(),
        };
        out.push(value);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn auth_param_values_reads_quoted_and_token_forms() {
        let h = r#"Bearer error="invalid_token", resource_metadata="https://a/x\"y", Resource_Metadata = /rel ,xresource_metadata="no""#;
        assert_eq!(auth_param_values(h, "resource_metadata"), ["https://a/x\"y", "/rel"]);
        assert!(auth_param_values("Bearer scope=\"a\"", "resource_metadata").is_empty());
    }

    #[test]
    fn resource_metadata_on_another_origin_is_refused_cl_06() {
        let server = Url::parse("https://mcp.example.com/mcp").unwrap();
        let ok = r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#;
        assert!(check_resource_metadata_origin(&server, ok).is_ok());
        assert!(check_resource_metadata_origin(&server, "Bearer resource_metadata=\"/.well-known/x\"").is_ok());
        for bad in [
            "https://evil.example.com/.well-known/oauth-protected-resource",
            "https://mcp.example.com:8443/.well-known/oauth-protected-resource",
            "http://mcp.example.com/.well-known/oauth-protected-resource",
        ] {
            let err =
                check_resource_metadata_origin(&server, &format!("Bearer resource_metadata=\"{bad}\"")).unwrap_err();
            assert!(err.to_string().contains("another origin"), "{err}");
        }
    }
}
