//! mandate-doctor: an MCP server's authorization as a client meets it.
//!
//! [`diagnose`] walks what an MCP client does before it can call a tool (the MCP authorization
//! specification, 2025-11-25): it calls the server without a token and reads the 401 challenge,
//! fetches the protected resource metadata (RFC 9728) where clients look for it, discovers the
//! authorization server (RFC 8414 and OpenID Connect, at every location clients try), and checks
//! what clients rely on: a byte-identical issuer, PKCE with S256, the `iss` response parameter, a
//! way to register (Client ID Metadata Documents, dynamic registration, or neither), token
//! endpoint authentication for public clients, CORS for browser-based clients, and a JWKS whose
//! keys can be used; with [`Options::login`], it signs in and reads the token it gets. Each [`Check`] says pass, warn or fail, what it saw, and how to fix it.
//!
//! The commonest failures in the field are metadata and issuer mismatches that clients report
//! only as "authorization failed"; each has a check of its own here, named in the report.

mod authorization;
mod fetch;
mod login;
mod render;
mod resource;
mod without_resource;

use serde::Serialize;
use url::Url;

pub use login::Login;
pub use render::render_text;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Some clients fail, or a recommended practice is missing.
    Warn,
    /// Clients following the specification fail.
    Fail,
}

/// One check: its stable id, what it looked at, the outcome, what it saw and how to fix it.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub saw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in the order a client meets them. A check whose prerequisite failed is not
/// listed (the failure that stopped it is).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// The worst outcome.
    pub fn worst(&self) -> Status {
        self.checks.iter().map(|c| c.status).max().unwrap_or(Status::Pass)
    }

    /// 0 when every check passed, 1 with warnings only, 2 with a failure.
    pub fn exit_code(&self) -> i32 {
        match self.worst() {
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    fn push(
        &mut self,
        id: &'static str,
        title: &'static str,
        status: Status,
        saw: impl Into<String>,
        fix: Option<&str>,
    ) {
        self.checks.push(Check { id, title, status, saw: saw.into(), fix: fix.map(str::to_owned) });
    }
}

/// What the doctor may reach.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Accept plain http for hosts other than loopback (a server on a private network).
    pub allow_http: bool,
    /// The browser origin whose CORS access is checked (default `http://localhost:6274`, the MCP
    /// Inspector's).
    pub browser_origin: Option<String>,
    /// Also sign in (the person consents in the browser) and check the token (`--login`).
    pub login: Option<Login>,
    /// The HTTP client to diagnose with, in place of the doctor's own (the inspector passes one
    /// whose resolver refuses private addresses). It must not follow redirects.
    pub http: Option<reqwest::Client>,
}

/// The browser origin checked by default: the MCP Inspector's.
pub const DEFAULT_BROWSER_ORIGIN: &str = "http://localhost:6274";

/// Diagnoses the MCP server at `url`.
pub async fn diagnose(url: &Url, options: &Options) -> Report {
    let mut report = Report { url: url.to_string(), checks: Vec::new() };
    let http = options.http.clone().unwrap_or_else(fetch::client);
    let net = fetch::Net { http: &http, allow_http: options.allow_http };
    let Some(found) = resource::check(&net, url, options, &mut report).await else {
        return report;
    };
    let metadata = authorization::check(&net, &found, &mut report).await;
    if let Some(login) = &options.login {
        if report.worst() == Status::Fail {
            report.push(
                "login",
                "Sign in and consent",
                Status::Warn,
                "not tried: clients fail at the checks above before they can sign in",
                Some("fix the failures above, then run with --login again"),
            );
        } else {
            login::check(&net, url, &found, metadata.as_ref(), login, &mut report).await;
        }
    }
    report
}

/// Whether `url` may be used: https, or http on loopback (or anywhere with `allow_http`).
fn acceptable_scheme(url: &Url, allow_http: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => allow_http || is_loopback(url),
        _ => false,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
