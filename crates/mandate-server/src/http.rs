//! Shared HTTP plumbing: rendering OAuth errors (RFC 6749 §5.2), JSON with `no-store`, HTML
//! pages with their security headers, cookies, and reading form bodies and Basic credentials.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate_core::OAuthError;
use mandate_core::params::Params;
use mandate_core::service::BasicCredentials;

/// An [`OAuthError`] rendered as JSON with its status (and `WWW-Authenticate: Basic` when the
/// client tried Basic authentication and failed).
pub struct OAuthErrorResponse(pub OAuthError);

impl From<OAuthError> for OAuthErrorResponse {
    fn from(e: OAuthError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({ "error": e.code.as_str(), "error_description": e.description });
        let mut resp = no_store_json(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mandate\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

/// JSON that must never be cached (token, registration and introspection responses).
pub fn no_store_json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A public document: cacheable (discovery, JWKS; CORS comes from the router's layer).
pub fn public_json(body: &serde_json::Value, max_age: u32) -> Response {
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// An HTML page with the browser-facing hardening of UI-04..UI-06 and UI-21. `form_target` is an
/// extra origin forms on this page may lead to (the client's redirect URI on the consent page).
pub fn page(status: StatusCode, html: String, form_target: Option<&str>) -> Response {
    let form_action = match form_target {
        Some(t) if !t.contains([';', ',', '\'', '"', ' ']) => format!("'self' {t}"),
        _ => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut resp = (status, axum::response::Html(html)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `303 See Other` to `location` (never 307: credentials must not be re-posted, UI-07).
pub fn see_other(location: &str) -> Response {
    redirect(StatusCode::SEE_OTHER, location)
}

pub fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut resp = status.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            resp
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The body of a form POST; `invalid_request` for any other content type.
pub fn form_params(headers: &HeaderMap, body: &Bytes) -> Result<Params, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(OAuthError::invalid_request("the request body must be application/x-www-form-urlencoded"));
    }
    Ok(Params::parse(body))
}

/// `Authorization: Basic` client credentials, if sent. Malformed ones are `invalid_client`.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials").with_basic_auth(true);
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "only Basic client authentication is accepted in the Authorization header",
        ));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).ok_or_else(bad)
    };
    Ok(Some(BasicCredentials { client_id: unescape(id)?, client_secret: unescape(secret)? }))
}

/// The value of cookie `name`, if present.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// True when a browser form POST must be refused as coming from another site (UI-01, UI-03,
/// CA-03). Every page is served with `Referrer-Policy: same-origin`, so a browser sends its real
/// `Origin` on a same-origin form post. Decision, in order:
/// 1. `Sec-Fetch-Site` (set by the browser, never by a page) present: only `same-origin` passes.
///    A sandboxed iframe, a `data:` page, another port of the same host (`same-site`) and any
///    other site are refused, whatever their `Origin`.
/// 2. `Origin` present: it must be this server's origin. `Origin: null` passes only together
///    with `Sec-Fetch-Site: same-origin` (a browser applying `no-referrer` sends it for its own
///    pages); without fetch metadata it may be a sandboxed document, so it is refused.
/// 3. Neither header (not a current browser's form post): nothing to judge here; the form's
///    CSRF token (and `SameSite=Lax` cookies) decide.
pub fn cross_site(headers: &HeaderMap, own_origin: &str) -> bool {
    let value = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let site = value("sec-fetch-site");
    if site.is_some_and(|s| s != "same-origin") {
        return true;
    }
    match value(header::ORIGIN.as_str()) {
        None => false,
        Some("null") => site.is_none(),
        Some(origin) => origin != own_origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const OWN: &str = "http://127.0.0.1:8080";

    #[test]
    fn same_origin_form_posts_pass_as_browsers_send_them_ui_01() {
        // Chromium, Firefox and Safari under `Referrer-Policy: same-origin`.
        assert!(!cross_site(&headers(&[("origin", OWN), ("sec-fetch-site", "same-origin")]), OWN));
        // Under `no-referrer` (an older copy of a page): `Origin: null` with fetch metadata.
        assert!(!cross_site(&headers(&[("origin", "null"), ("sec-fetch-site", "same-origin")]), OWN));
        // A browser without fetch metadata sends its origin.
        assert!(!cross_site(&headers(&[("origin", OWN)]), OWN));
        // No browser headers at all: the CSRF token decides.
        assert!(!cross_site(&HeaderMap::new(), OWN));
    }

    #[test]
    fn cross_site_form_posts_are_refused_ui_01_ui_03_ca_03() {
        for h in [
            // Another site.
            headers(&[("origin", "https://evil.test"), ("sec-fetch-site", "cross-site")]),
            headers(&[("origin", "https://evil.test")]),
            // A sandboxed iframe or a data: page: `Origin: null`, cross-site.
            headers(&[("origin", "null"), ("sec-fetch-site", "cross-site")]),
            // The same, from a browser without fetch metadata.
            headers(&[("origin", "null")]),
            // Another port of the same host (cookies ignore ports): same-site, not same-origin.
            headers(&[("origin", "http://127.0.0.1:9999"), ("sec-fetch-site", "same-site")]),
            // Fetch metadata says same-origin but the origin is foreign: refuse.
            headers(&[("origin", "https://evil.test"), ("sec-fetch-site", "same-origin")]),
            // A navigation the person started (`none`) is never a form post of ours.
            headers(&[("sec-fetch-site", "none")]),
        ] {
            assert!(cross_site(&h, OWN), "{h:?}");
        }
    }
}
