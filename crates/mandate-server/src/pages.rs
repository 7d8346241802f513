//! Server-rendered pages (askama, auto-escaped, no external assets).

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use mandate_core::service::{ConnectedApp, ConsentView};

use crate::http::page;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    heading: &'a str,
    message: &'a str,
    /// A link back to the application with the error, for the person to follow or not.
    return_to: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub csrf: &'a str,
    pub request: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub v: &'a ConsentView,
    pub csrf: &'a str,
    pub username: &'a str,
}

pub struct AppRow {
    pub client_id: String,
    pub name: String,
    pub verified: bool,
    pub scopes: Vec<mandate_core::service::ScopeLine>,
    pub granted: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
pub struct AppsPage<'a> {
    pub apps: Vec<AppRow>,
    pub csrf: &'a str,
    pub username: &'a str,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage;

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

/// An error page: explains, never redirects.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(status, &ErrorPage { heading: heading_for(status), message, return_to: None }, None)
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

/// An error page offering (not forcing) the way back to an unverified application.
pub fn error_page_with_return(status: StatusCode, message: &str, return_to: &str, host: &str) -> Response {
    render(status, &ErrorPage { heading: heading_for(status), message, return_to: Some((return_to, host)) }, None)
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
            last_used: a.last_used_at.map(format_time).unwrap_or_else(|| "never".into()),
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
