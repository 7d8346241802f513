//! RFC 6750 / RFC 9728 challenges: `WWW-Authenticate: Bearer` with `resource_metadata`, `scope`
//! and, for a bad token or missing scope, `error` (MCP RS2, RS5, RS9–RS11).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Quotes a value for an auth-param (RFC 9110 quoted-string): control characters dropped, and
/// anything outside ASCII shown as `?` (RFC 6750 §3 allows ASCII only; clients read the header
/// as ASCII text and would ignore the whole challenge, as rmcp's does: found by fuzzing).
fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(if c.is_ascii() { c } else { '?' });
    }
    out.push('"');
    out
}

/// What went wrong, as the challenge says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// No credentials: a bare challenge (RFC 6750 §3.1 says no error code).
    Missing,
    /// The token is invalid, expired, revoked or for another resource.
    InvalidToken,
    /// The token lacks scopes the operation needs.
    InsufficientScope,
    /// The request itself is malformed, e.g. it carries the token in more than one way (RFC 6750
    /// §2 and §3.1: 400 `invalid_request`).
    InvalidRequest,
}

/// Builds the challenge response.
pub fn challenge(kind: ChallengeKind, resource_metadata: &str, scopes: &str, description: Option<&str>) -> Response {
    let mut params = vec![format!("resource_metadata={}", quoted(resource_metadata))];
    let (status, error) = match kind {
        ChallengeKind::Missing => (StatusCode::UNAUTHORIZED, None),
        ChallengeKind::InvalidToken => (StatusCode::UNAUTHORIZED, Some("invalid_token")),
        ChallengeKind::InsufficientScope => (StatusCode::FORBIDDEN, Some("insufficient_scope")),
        ChallengeKind::InvalidRequest => (StatusCode::BAD_REQUEST, Some("invalid_request")),
    };
    if let Some(e) = error {
        params.insert(0, format!("error={}", quoted(e)));
    }
    if !scopes.is_empty() {
        params.push(format!("scope={}", quoted(scopes)));
    }
    if let Some(d) = description {
        params.push(format!("error_description={}", quoted(d)));
    }
    let value = format!("Bearer {}", params.join(", "));
    let body = serde_json::json!({
        "error": error.unwrap_or("unauthorized"),
        "error_description": description.unwrap_or("this resource requires an OAuth access token"),
    });
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_rs5_rs10() {
        let r = challenge(ChallengeKind::Missing, "https://r/.well-known/oauth-protected-resource/mcp", "a b", None);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer resource_metadata="https://r/.well-known/oauth-protected-resource/mcp", scope="a b""#
        );
        let r = challenge(ChallengeKind::InsufficientScope, "m", "invoices.send", Some("needs \"x\""));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", resource_metadata="m", scope="invoices.send", error_description="needs \"x\"""#
        );
    }

    /// A description naming a tool outside ASCII (the tool names come from the configuration and
    /// from upstream servers) still gives a header clients can read as text (fuzz target
    /// `www_authenticate`).
    #[test]
    fn challenges_are_ascii_whatever_the_description_says() {
        let r = challenge(ChallengeKind::InsufficientScope, "m", "x", Some("the cr\u{e9}er \u{1F600} tool\u{7}"));
        let value = r.headers()[header::WWW_AUTHENTICATE].to_str().ok().map(str::to_owned);
        assert_eq!(
            value.as_deref(),
            Some(
                r#"Bearer error="insufficient_scope", resource_metadata="m", scope="x", error_description="the cr?er ? tool""#
            )
        );
    }
}
