//! The client's `WWW-Authenticate` parser (rmcp's `WWWAuthenticateParams::parse`, used by
//! mandate-client for discovery and step-up). Input: any header value. Then a roundtrip against
//! the guard's own challenge: the first line is a path under the resource metadata URL, the
//! second the scopes, the rest the `error_description` (caller-controlled: it names the tool).
//! What the client reads back must be what the guard meant, whatever the description says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::scope::ScopeSet;
use mandate_fuzz::split_line;
use mandate_guard::{ChallengeKind, challenge};
use rmcp::transport::auth::WWWAuthenticateParams;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let base = Url::parse(mandate_fuzz::SERVER).unwrap_or_else(|_| unreachable!());
    let raw = String::from_utf8_lossy(data);
    let parsed = WWWAuthenticateParams::parse(&raw, &base);
    if let Some(u) = &parsed.resource_metadata_url {
        assert!(matches!(u.scheme(), "http" | "https"), "{u}");
    }

    let (path, rest) = split_line(data);
    let (scopes, description) = split_line(rest);
    let (Ok(path), Ok(scopes), Ok(description)) =
        (std::str::from_utf8(path), std::str::from_utf8(scopes), std::str::from_utf8(description))
    else {
        return;
    };
    // What a guard is configured with: a metadata URL and valid scope tokens.
    if !path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.')) {
        return;
    }
    let rm = format!("https://mcp.example.com/.well-known/oauth-protected-resource{path}");
    let Ok(rm_url) = Url::parse(&rm) else { return };
    let Ok(set) = ScopeSet::parse(scopes) else { return };
    let scopes = set.to_string();
    let lower = scopes.to_ascii_lowercase();
    for kind in [
        ChallengeKind::Missing,
        ChallengeKind::InvalidToken,
        ChallengeKind::InsufficientScope,
        ChallengeKind::InvalidRequest,
    ] {
        let resp = challenge(kind, &rm, &scopes, Some(description));
        let Some(value) = resp.headers().get(http::header::WWW_AUTHENTICATE) else {
            panic!("no challenge header for {rm:?} {scopes:?} {description:?}");
        };
        let value = value.to_str().unwrap_or_else(|_| panic!("challenge is not visible ASCII"));
        let p = WWWAuthenticateParams::parse(value, &base);
        assert_eq!(p.resource_metadata_url.as_ref(), Some(&rm_url), "{value}");
        let expected_error = match kind {
            ChallengeKind::Missing => None,
            ChallengeKind::InvalidToken => Some("invalid_token"),
            ChallengeKind::InsufficientScope => Some("insufficient_scope"),
            ChallengeKind::InvalidRequest => Some("invalid_request"),
        };
        if kind != ChallengeKind::Missing {
            assert_eq!(p.error.as_deref(), expected_error, "{value}");
        }
        if !scopes.is_empty() {
            assert_eq!(p.scope.as_deref(), Some(scopes.as_str()), "{value}");
        }
        // rmcp finds `error_description=` anywhere in the header: a scope token holding that
        // text would be read first (scopes are the server's own configuration, not input).
        if !lower.contains("error_description=") {
            // Control characters dropped, anything outside ASCII shown as `?` (RFC 6750 §3).
            let shown: String =
                description.chars().filter(|c| !c.is_control()).map(|c| if c.is_ascii() { c } else { '?' }).collect();
            assert_eq!(p.error_description.as_deref(), Some(shown.as_str()), "{value}");
        }
    }
});
