//! Server-rendered pages (askama, auto-escaped, no external assets, no scripts).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use mandate_core::ErrorCode;
use mandate_core::OAuthError;
use mandate_core::redirect::RedirectTarget;
use mandate_core::service::{ConnectedApp, ConsentView, ScopeLine, Stale};

use crate::http::page;

/// The account navigation every signed-in page shares.
pub struct Nav<'a> {
    pub username: &'a str,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
    /// Which entry is the current page: `apps`, `activity`, `direct` or empty.
    pub current: &'static str,
    /// The demo apps are served here (`/apps`).
    pub demo: bool,
    /// Upstream providers are configured (`/account/connections`).
    pub connections: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav<'a>>,
    heading: &'a str,
    message: &'a str,
    next: &'a str,
    /// The protocol detail (OAuth error code and description) for whoever debugs the application.
    detail: Option<String>,
    /// A link back to the application with the error, for the person to follow or not.
    return_to: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub nav: Option<Nav<'a>>,
    pub csrf: &'a str,
    pub request: Option<&'a str>,
    /// The application that asked for this sign-in, and whether an operator vouched for it.
    pub app: Option<(String, bool)>,
    /// What was typed last time, kept after a failed attempt.
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// The password form is offered.
    pub password: bool,
    /// "Continue with ..." links: (href, title).
    pub providers: Vec<(String, String)>,
    /// An account page to go back to after signing in.
    pub return_to: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub nav: Option<Nav<'a>>,
    pub v: &'a ConsentView,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// The resource acts with the person's account at this provider, not connected yet:
    /// (name, title). Connecting comes first.
    pub connect: Option<(String, String)>,
}

impl ConsentPage<'_> {
    /// A step-up: the person already allowed this application something.
    fn step_up(&self) -> bool {
        self.v.returning
    }
    /// One new scope: the browser itself refuses "Allow" while it is unticked.
    fn single_new_scope(&self) -> bool {
        self.v.new_scopes.len() == 1
    }
}

pub struct AppRow {
    pub client_id: String,
    pub name: String,
    pub verified: bool,
    pub scopes: Vec<ScopeLine>,
    pub granted: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
pub struct AppsPage<'a> {
    pub nav: Option<Nav<'a>>,
    pub apps: Vec<AppRow>,
    /// The application (name, verified) whose access was just revoked.
    pub revoked: Option<(String, bool)>,
}

#[derive(Template)]
#[template(path = "revoke.html")]
pub struct RevokePage<'a> {
    pub nav: Option<Nav<'a>>,
    pub app: AppRow,
    pub csrf: &'a str,
}

/// One sign-in method or connected account on the connections page.
pub struct ConnectionRow {
    pub provider: String,
    pub title: String,
    /// The e-mail or subject the provider named.
    pub who: String,
    pub status: &'static str,
    pub since: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
pub struct ConnectionsPage<'a> {
    pub nav: Option<Nav<'a>>,
    pub csrf: &'a str,
    pub sign_in: Vec<ConnectionRow>,
    pub accounts: Vec<ConnectionRow>,
    /// Providers to link for signing in: (name, title).
    pub linkable: Vec<(String, String)>,
    /// Providers to connect: (name, title).
    pub connectable: Vec<(String, String)>,
    pub notice: Option<String>,
}

/// Connecting one provider's account, or linking it for sign-in (a confirmation before the
/// browser leaves for the provider).
#[derive(Template)]
#[template(path = "connect.html")]
pub struct ConnectPage<'a> {
    pub nav: Option<Nav<'a>>,
    pub csrf: &'a str,
    pub provider: &'a str,
    pub title: &'a str,
    /// `connect` or `link`.
    pub action: &'static str,
    pub return_to: Option<&'a str>,
    pub connected: bool,
}

/// The signed-in person confirms that a provider's account may sign them in.
#[derive(Template)]
#[template(path = "link.html")]
pub struct LinkPage<'a> {
    pub nav: Option<Nav<'a>>,
    pub csrf: &'a str,
    pub offer: &'a str,
    pub title: &'a str,
    pub email: Option<&'a str>,
    pub username: &'a str,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub nav: Option<Nav<'a>>,
}

/// Renders a template as a hardened page; a rendering failure is a generic 500.
pub fn render<T: Template>(status: StatusCode, t: &T, form_target: Option<&str>) -> Response {
    match t.render() {
        Ok(html) => page(status, html, form_target),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            page(StatusCode::INTERNAL_SERVER_ERROR, "<h1>Internal error</h1>".to_owned(), None)
        }
    }
}

const START_AGAIN: &str = "You can close this window and start again from the application.";

/// An error page: explains, never redirects.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        nav: None,
        heading: heading_for(status),
        message,
        next: START_AGAIN,
        detail: None,
        return_to: None,
    };
    render(status, &page, None)
}

/// A failure of the server's (storage unavailable and the like): its status, and the error's
/// description, which is generic for server errors (the detail is in the logs).
pub fn failure_page(e: &OAuthError) -> Response {
    error_page(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.description)
}

/// A page with its own heading and next step.
pub fn notice_page(status: StatusCode, heading: &str, message: &str, next: &str) -> Response {
    render(status, &ErrorPage { nav: None, heading, message, next, detail: None, return_to: None }, None)
}

/// A pending sign-in request that can no longer be continued.
pub fn stale_page(stale: Stale) -> Response {
    let status = match stale {
        Stale::Expired | Stale::Used | Stale::ClientGone => StatusCode::GONE,
        Stale::Unknown => StatusCode::NOT_FOUND,
        Stale::OtherPerson => StatusCode::FORBIDDEN,
    };
    notice_page(status, stale.title(), stale.message(), stale.next_step())
}

/// Too many attempts from this address: the page says how long to wait.
pub fn rate_limited_page(wait_seconds: u64) -> Response {
    too_many_page(
        "Too many sign-in attempts",
        "There were too many sign-in attempts from your network in a short time.",
        "Nothing is wrong with your account: this protects it from password guessing.",
        wait_seconds,
    )
}

/// Too many authorization requests without a signed-in person from this address.
pub fn too_many_authorizations_page(wait_seconds: u64) -> Response {
    too_many_page(
        "Too many requests",
        "There were too many requests to connect an app from your network in a short time.",
        "Requests from a signed-in person are not counted.",
        wait_seconds,
    )
}

/// Too many authorization requests without a signed-in person from everywhere together.
pub fn too_many_authorizations_everywhere_page(wait_seconds: u64) -> Response {
    too_many_page(
        "Too many requests",
        "This server is receiving too many requests to connect apps right now.",
        "Requests from a signed-in person are not counted.",
        wait_seconds,
    )
}

/// A 429 page: what happened, how long to wait (also as `Retry-After`), and why.
fn too_many_page(heading: &str, what: &str, why: &str, wait_seconds: u64) -> Response {
    let wait = match wait_seconds {
        0 | 1 => "a second".to_owned(),
        s if s < 90 => format!("{s} seconds"),
        s => format!("{} minutes", s.div_ceil(60)),
    };
    let mut resp =
        notice_page(StatusCode::TOO_MANY_REQUESTS, heading, &format!("{what} Wait {wait} and try again."), why);
    if let Ok(v) = HeaderValue::from_str(&wait_seconds.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn heading_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "Request refused",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        s if s.is_server_error() => "The server could not complete the request",
        _ => "This request cannot be completed",
    }
}

/// What an application's invalid authorization request means, in plain words.
fn plain_words(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidScope => "The application asked for a permission this server does not offer it.",
        ErrorCode::InvalidTarget => "The application asked for access to a service this server does not protect.",
        ErrorCode::UnsupportedResponseType => {
            "The application asked to sign you in in a way this server does not support."
        }
        ErrorCode::InvalidRequest => "The application's request was incomplete or malformed.",
        ErrorCode::UnauthorizedClient => "This application is not allowed to ask for access this way.",
        _ => "The application's request could not be accepted.",
    }
}

/// An invalid request from an unverified application: plain words, the protocol detail, and a
/// link back to the application that the person may follow or not.
pub fn error_page_with_return(error: &OAuthError, return_to: &str, host: &str) -> Response {
    let page = ErrorPage {
        nav: None,
        heading: "This application's request cannot be completed",
        message: plain_words(error.code),
        next: "Nothing was allowed. If you trust the application you can go back to it; its developer can use the detail below.",
        detail: Some(format!("{}: {}", error.code.as_str(), error.description)),
        return_to: Some((return_to, host)),
    };
    render(StatusCode::BAD_REQUEST, &page, None)
}

/// Unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time(t: i64) -> String {
    let full = mandate_core::clock::format_utc(t);
    format!("{} UTC", &full[..full.len() - 3])
}

impl AppRow {
    pub fn from_app(a: ConnectedApp) -> Self {
        Self {
            client_id: a.client_id,
            name: a.name,
            verified: a.verified,
            scopes: a.scopes,
            granted: format_time(a.granted_at),
            last_used: a.last_used_at.map(format_time).unwrap_or_else(|| "not yet".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06 UTC");
    }
}
