//! Redirect URIs: what may be registered (RFC 9700 §2.1, §4.1; RFC 8252 §7) and how a requested
//! URI is matched against a registered one: byte-exact, except that a loopback URI may carry any
//! port (OAuth 2.1 §8.4.2, RFC 8252 §7.3).

use url::Url;

/// The longest redirect URI accepted.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// Schemes that are never a place to send an authorization code.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "vbscript",
    "file",
    "about",
    "blob",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "chrome",
    "view-source",
    "filesystem",
    "jar",
];

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI is empty or longer than {MAX_REDIRECT_URI_LEN} characters")]
    Length,
    #[error("redirect URI contains whitespace or control characters")]
    Characters,
    #[error("redirect URI is not an absolute URI")]
    NotAbsolute,
    #[error("redirect URI must not contain a fragment")]
    Fragment,
    #[error("redirect URI must not contain user information")]
    UserInfo,
    #[error("redirect URI must not contain wildcards")]
    Wildcard,
    #[error("redirect URI scheme is not allowed")]
    ForbiddenScheme,
    #[error("http redirect URIs are only allowed on loopback (127.0.0.1, [::1], localhost)")]
    InsecureHttp,
    #[error("custom-scheme redirect URIs must use a reverse-domain scheme such as com.example.app")]
    CustomScheme,
    #[error("redirect URI is not in normal form (dot segments, upper case, default port)")]
    NotNormal,
}

/// Checks one redirect URI offered for registration.
pub fn validate_for_registration(raw: &str) -> Result<(), RedirectUriError> {
    if raw.is_empty() || raw.len() > MAX_REDIRECT_URI_LEN {
        return Err(RedirectUriError::Length);
    }
    // WHATWG parsing silently drops tabs and newlines ("java\tscript:"), so look at the raw bytes.
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RedirectUriError::Characters);
    }
    if raw.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if raw.contains('*') {
        return Err(RedirectUriError::Wildcard);
    }
    let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute)?;
    let scheme = url.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err(RedirectUriError::ForbiddenScheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUriError::UserInfo);
    }
    match scheme {
        "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(RedirectUriError::NotAbsolute);
            }
        }
        "http" => {
            if split_loopback(raw).is_none() {
                return Err(RedirectUriError::InsecureHttp);
            }
        }
        custom => {
            // RFC 8252 §7.1: private-use schemes are reverse domain names.
            if !custom.contains('.') {
                return Err(RedirectUriError::CustomScheme);
            }
        }
    }
    // The registered string is compared byte for byte later, so it must already be in the form a
    // parser would produce (no dot segments, lower-case host, no default port).
    let normal = url.as_str();
    if normal != raw && normal != format!("{raw}/") {
        return Err(RedirectUriError::NotNormal);
    }
    Ok(())
}

/// For `http://<loopback>[:port]<rest>` returns `(host, rest)`; `None` for anything else.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (host, port) = if let Some(stripped) = authority.strip_prefix("[::1]") {
        ("[::1]", stripped)
    } else {
        match authority.split_once(':') {
            Some((h, _)) => (h, &authority[h.len()..]),
            None => (authority, ""),
        }
    };
    if !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
        return None;
    }
    if let Some(digits) = port.strip_prefix(':') {
        if digits.is_empty()
            || digits.len() > 5
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.parse::<u16>().is_err()
        {
            return None;
        }
    } else if !port.is_empty() {
        return None;
    }
    Some((host, rest))
}

/// True when `uri` is an http URI on a loopback host.
pub fn is_loopback(uri: &str) -> bool {
    split_loopback(uri).is_some()
}

/// Does the requested redirect URI match this registered one?
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (split_loopback(registered), split_loopback(requested)) {
        (Some((rh, rrest)), Some((qh, qrest))) => {
            rh == qh && rrest == qrest && !requested.contains('#') && !requested.contains('@')
        }
        _ => false,
    }
}

/// How a redirect URI is shown to a person, from one parse of it (the consent page needs all three;
/// parsing a host runs IDNA, which is most of the cost of a long one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// What [`display_host`] returns.
    pub host: String,
    /// What [`redirect_target`] returns.
    pub target: RedirectTarget,
    /// What [`csp_source`] returns.
    pub csp_source: Option<String>,
}

/// [`display_host`], [`redirect_target`] and [`csp_source`] of one URI, parsing it once.
pub fn shown(uri: &str) -> Shown {
    let parsed = Url::parse(uri).ok();
    Shown {
        host: host_of(uri, parsed.as_ref()),
        target: target_of(uri, parsed.as_ref()),
        csp_source: parsed.as_ref().and_then(csp_of),
    }
}

/// The host a person should see for a redirect URI, or `scheme:` for a native-app URI whatever it
/// names after the scheme (`com.evil.app://github.com/cb` goes to the app owning `com.evil.app`,
/// not to github.com). Consent is remembered per this value.
pub fn display_host(uri: &str) -> String {
    host_of(uri, Url::parse(uri).ok().as_ref())
}

fn host_of(uri: &str, parsed: Option<&Url>) -> String {
    match parsed {
        Some(u) if matches!(u.scheme(), "http" | "https") => match u.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => format!("{}:", u.scheme()),
        },
        Some(u) => format!("{}:", u.scheme()),
        None => uri.to_owned(),
    }
}

/// Where the answer to an authorization request goes, as a person should read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTarget {
    /// A web site (https).
    Web { host: String },
    /// A program on this computer listening on a loopback port.
    Loopback { port: Option<u16> },
    /// An app installed on this device that registered a private-use URI scheme.
    App { scheme: String },
}

/// Classifies a redirect URI for the consent page.
pub fn redirect_target(uri: &str) -> RedirectTarget {
    target_of(uri, Url::parse(uri).ok().as_ref())
}

fn target_of(uri: &str, parsed: Option<&Url>) -> RedirectTarget {
    if is_loopback(uri) {
        return RedirectTarget::Loopback { port: parsed.and_then(Url::port) };
    }
    match parsed {
        Some(u) if u.scheme() == "https" => RedirectTarget::Web { host: u.host_str().unwrap_or_default().to_owned() },
        Some(u) => RedirectTarget::App { scheme: u.scheme().to_owned() },
        None => RedirectTarget::Web { host: uri.to_owned() },
    }
}

/// The origin (or scheme source) of a redirect URI, for a CSP `form-action` list.
pub fn csp_source(uri: &str) -> Option<String> {
    csp_of(&Url::parse(uri).ok()?)
}

fn csp_of(u: &Url) -> Option<String> {
    match u.scheme() {
        "http" | "https" => {
            let origin = u.origin().ascii_serialization();
            (origin != "null").then_some(origin)
        }
        other => Some(format!("{other}:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_person_is_told_about_the_redirect_ui_19() {
        assert_eq!(display_host("https://claude.ai/api/cb"), "claude.ai");
        assert_eq!(display_host("com.evil.app://github.com/cb"), "com.evil.app:");
        assert_eq!(display_host("com.example.app:/cb"), "com.example.app:");
        assert_eq!(redirect_target("https://claude.ai/cb"), RedirectTarget::Web { host: "claude.ai".into() });
        assert_eq!(redirect_target("http://127.0.0.1:33418/callback"), RedirectTarget::Loopback { port: Some(33418) });
        assert_eq!(redirect_target("http://localhost/callback"), RedirectTarget::Loopback { port: None });
        assert_eq!(redirect_target("http://[::1]:9/cb"), RedirectTarget::Loopback { port: Some(9) });
        assert_eq!(
            redirect_target("com.evil.app://github.com/cb"),
            RedirectTarget::App { scheme: "com.evil.app".into() }
        );
    }

    #[test]
    fn registration_refuses_dangerous_uris_dc_02_dc_03_dc_04() {
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,hi",
            "vbscript:x",
            "file:///etc/passwd",
            "http://app.test/cb",
            "https://app.test/cb#f",
            "https://u:p@app.test/cb",
            "https://*.app.test/cb",
            "/cb",
            " https://app.test/cb",
            "https://app.test/a/../cb",
            "https://APP.test/cb",
            "myapp:/cb",
        ] {
            assert!(validate_for_registration(bad).is_err(), "{bad}");
        }
        let long = format!("https://app.test/{}", "a".repeat(2100));
        assert_eq!(validate_for_registration(&long), Err(RedirectUriError::Length));
        for good in [
            "https://app.test/cb",
            "https://app.test",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8765/cb",
            "http://[::1]/cb",
            "http://localhost:3000/callback",
            "com.example.app:/oauth2redirect",
            "https://claude.ai/api/mcp/auth_callback",
        ] {
            assert_eq!(validate_for_registration(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn matching_is_exact_az_01_az_02_az_03() {
        let reg = "https://app.test/cb";
        assert!(matches(reg, reg));
        for bad in [
            "https://app.test/cb/",
            "https://app.test/cb?x=1",
            "https://app.test/cb/../evil",
            "https://app.test/CB",
            "https://APP.test/cb",
            "https://app.test:443/cb",
            "https://app.test@evil.test/cb",
            "https://app.test.evil.test/cb",
            "https://app.test:8443/cb",
        ] {
            assert!(!matches(reg, bad), "{bad}");
        }
    }

    #[test]
    fn loopback_port_freedom_is_narrow_az_08() {
        let reg = "http://127.0.0.1/cb";
        assert!(matches(reg, "http://127.0.0.1:51004/cb"));
        assert!(matches("http://localhost/callback", "http://localhost:49152/callback"));
        assert!(matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        for bad in [
            "http://127.0.0.1:51004/cb?x=1",
            "http://127.0.0.1:51004/other",
            "https://127.0.0.1:51004/cb",
            "http://localhost:51004/cb",
            "http://127.0.0.2:51004/cb",
            "http://127.0.0.1:99999/cb",
            "http://127.0.0.1:51004/cb#x",
            "http://127.0.0.1:/cb",
        ] {
            assert!(!matches(reg, bad), "{bad}");
        }
    }

    #[test]
    fn shown_answers_all_three_from_one_parse() {
        let web = |h: &str| RedirectTarget::Web { host: h.into() };
        for (uri, host, target, csp) in [
            ("https://claude.ai/api/cb", "claude.ai", web("claude.ai"), Some("https://claude.ai")),
            (
                "http://127.0.0.1:33418/callback",
                "127.0.0.1",
                RedirectTarget::Loopback { port: Some(33418) },
                Some("http://127.0.0.1:33418"),
            ),
            ("http://[::1]/cb", "[::1]", RedirectTarget::Loopback { port: None }, Some("http://[::1]")),
            (
                "com.evil.app://github.com/cb",
                "com.evil.app:",
                RedirectTarget::App { scheme: "com.evil.app".into() },
                Some("com.evil.app:"),
            ),
            (
                "https://b\u{fc}cher.test/cb",
                "xn--bcher-kva.test",
                web("xn--bcher-kva.test"),
                Some("https://xn--bcher-kva.test"),
            ),
            ("not a uri", "not a uri", web("not a uri"), None),
        ] {
            let expected = Shown { host: host.into(), target, csp_source: csp.map(str::to_owned) };
            assert_eq!(shown(uri), expected, "{uri}");
            assert_eq!(
                (display_host(uri), redirect_target(uri), csp_source(uri)),
                (expected.host, expected.target, expected.csp_source),
                "{uri}"
            );
        }
    }

    #[test]
    fn display_helpers() {
        assert_eq!(display_host("https://claude.ai/cb"), "claude.ai");
        assert_eq!(display_host("com.example.app:/cb"), "com.example.app:");
        assert_eq!(csp_source("https://claude.ai/x").as_deref(), Some("https://claude.ai"));
        assert_eq!(csp_source("http://127.0.0.1:5/x").as_deref(), Some("http://127.0.0.1:5"));
    }
}
