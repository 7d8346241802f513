//! The person's part of a login: a loopback listener on `127.0.0.1` (random port) that receives
//! the authorization response, and the three ways of getting the person (or nobody) to the
//! authorization page: open a browser, print the URL, or follow it headlessly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;
use url::Url;

use crate::callback::{Callback, check_callback};
use crate::error::ClientError;
use crate::net::{NetPolicy, check_url, network_error};

/// How the authorization page is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    /// Open the system browser (no shell involved) and print the URL too.
    Browser,
    /// Print the URL; the person opens it wherever they like.
    NoBrowser,
    /// Follow the authorization URL without a browser and take the redirect back: only works when
    /// the server needs no person (tests, CI, conformance).
    Headless,
}

/// What the listener checks an arriving response against, to tell the person the outcome.
#[derive(Clone)]
struct Expected {
    state: String,
    issuer: Option<String>,
    iss_advertised: bool,
}

#[derive(Clone)]
struct Slot {
    sender: Arc<Mutex<Option<oneshot::Sender<Callback>>>>,
    expected: Arc<Mutex<Option<Expected>>>,
}

/// Receives one authorization response on `http://127.0.0.1:<port>/callback`.
pub struct CallbackListener {
    redirect_uri: String,
    rx: oneshot::Receiver<Callback>,
    expected: Arc<Mutex<Option<Expected>>>,
    server: tokio::task::JoinHandle<()>,
}

/// The page the browser lands on. Nothing from the query is echoed: only fixed texts, chosen
/// by the same checks the terminal side makes (state, then `iss`, then code or error).
fn page(cb: &Callback, expected: Option<&Expected>) -> (&'static str, &'static str) {
    let Some(e) = expected else {
        return ("Authorization received", "You can close this tab and return to the terminal.");
    };
    match check_callback(cb, &e.state, e.issuer.as_deref(), e.iss_advertised) {
        Ok(_) => ("Access granted", "Access granted: you can close this tab and return to the terminal."),
        Err(ClientError::AccessDenied(_)) => (
            "Access denied",
            "Access denied: you did not allow the agent this access, and nothing was granted. You can close this tab.",
        ),
        Err(ClientError::StateMismatch) => (
            "Response discarded",
            "This response does not match the login the terminal started (its state differs), so it was discarded. \
             Return to the terminal and start again.",
        ),
        Err(_) => {
            // The same order as the terminal: a response from the wrong issuer is not read further.
            let iss_ok = match (cb.iss.as_deref(), e.issuer.as_deref()) {
                (Some(got), Some(want)) => got == want,
                (Some(_), None) => true,
                (None, _) => !e.iss_advertised,
            };
            match cb.error.as_deref() {
                _ if !iss_ok => (
                    "Response discarded",
                    "This response did not come from the authorization server the terminal asked (possible \
                     mix-up), so it was discarded. Return to the terminal.",
                ),
                Some(code) => ("Authorization failed", failure_in_plain_words(code)),
                None => (
                    "Authorization failed",
                    "Authorization failed: the response carried no authorization code. The terminal says more.",
                ),
            }
        }
    }
}

/// An RFC 6749 §4.1.2.1 error code in plain words (the code itself is not echoed).
fn failure_in_plain_words(code: &str) -> &'static str {
    match code {
        "invalid_scope" => {
            "Authorization failed: the authorization server does not offer the access the agent asked for."
        }
        "server_error" | "temporarily_unavailable" => {
            "Authorization failed: the authorization server had a problem. Try again in a moment."
        }
        "invalid_request" | "unsupported_response_type" | "invalid_target" => {
            "Authorization failed: the authorization server refused the agent's request as malformed."
        }
        "unauthorized_client" => "Authorization failed: the authorization server does not allow this agent to ask.",
        _ => "Authorization failed: the authorization server refused. The terminal says more.",
    }
}

async fn receive(State(slot): State<Slot>, RawQuery(query): RawQuery) -> Response {
    let sender = slot.sender.lock().ok().and_then(|mut s| s.take());
    let Some(sender) = sender else {
        return (StatusCode::GONE, "This login has already finished.").into_response();
    };
    let cb = Callback::from_query(query.as_deref().unwrap_or(""));
    let expected = slot.expected.lock().ok().and_then(|e| e.clone());
    let (title, text) = page(&cb, expected.as_ref());
    let _ = sender.send(cb);
    let html =
        format!("<!doctype html><meta charset=utf-8><title>mandate: {title}</title><h1>{title}</h1><p>{text}</p>");
    let mut resp = (StatusCode::OK, axum::response::Html(html)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// How long to wait: for the person, and for any one request (headless mode).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub login: Duration,
    pub request: Duration,
}

impl CallbackListener {
    /// Binds `127.0.0.1:0`.
    pub async fn bind() -> Result<Self, ClientError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| ClientError::Network(format!("binding the loopback callback listener: {e}")))?;
        let port = listener.local_addr().map_err(|e| ClientError::Network(e.to_string()))?.port();
        let (tx, rx) = oneshot::channel();
        let expected = Arc::new(Mutex::new(None));
        let slot = Slot { sender: Arc::new(Mutex::new(Some(tx))), expected: expected.clone() };
        let app = Router::new().route("/callback", get(receive)).with_state(slot);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { redirect_uri: format!("http://127.0.0.1:{port}/callback"), rx, expected, server })
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// What the response must carry, so the page can tell the person how it went.
    pub fn expect(&self, state: &str, issuer: Option<&str>, iss_advertised: bool) {
        if let Ok(mut e) = self.expected.lock() {
            *e = Some(Expected { state: state.to_owned(), issuer: issuer.map(str::to_owned), iss_advertised });
        }
    }

    /// Waits for the browser to arrive, at most `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<Callback, ClientError> {
        let out = tokio::time::timeout(timeout, self.rx).await;
        self.server.abort();
        match out {
            Ok(Ok(cb)) => Ok(cb),
            Ok(Err(_)) => Err(ClientError::Authorization("the callback listener stopped".into())),
            Err(_) => Err(ClientError::Authorization(format!(
                "no authorization response within {} s; the login was abandoned",
                timeout.as_secs()
            ))),
        }
    }

    pub fn close(self) {
        self.server.abort();
    }
}

/// Gets the person to `auth_url` and returns the authorization response.
pub async fn run_user_agent(
    mode: LoginMode,
    auth_url: &Url,
    listener: CallbackListener,
    http: &reqwest::Client,
    policy: NetPolicy,
    timeouts: Timeouts,
) -> Result<Callback, ClientError> {
    let timeout = timeouts.login;
    match mode {
        LoginMode::Headless => {
            let redirect = listener.redirect_uri().to_owned();
            listener.close();
            follow_headless(auth_url, &redirect, http, policy, timeouts.request).await
        }
        LoginMode::NoBrowser => {
            eprintln!("Open this URL to authorize:\n\n  {auth_url}\n");
            listener.wait(timeout).await
        }
        LoginMode::Browser => {
            eprintln!("Opening your browser to authorize. If it does not open, visit:\n\n  {auth_url}\n");
            // `open` starts the platform's URL handler directly (no shell); the URL was checked.
            if let Err(e) = open::that_detached(auth_url.as_str()) {
                eprintln!("(could not start a browser: {e})");
            }
            listener.wait(timeout).await
        }
    }
}

/// Follows the authorization URL without a browser; accepts only a redirect straight back.
async fn follow_headless(
    auth_url: &Url,
    redirect_uri: &str,
    http: &reqwest::Client,
    policy: NetPolicy,
    timeout: Duration,
) -> Result<Callback, ClientError> {
    let mut url = auth_url.clone();
    for _ in 0..5 {
        let resp = http.get(url.clone()).timeout(timeout).send().await.map_err(|e| network_error(url.as_str(), &e))?;
        if !resp.status().is_redirection() {
            return Err(ClientError::Authorization(format!(
                "the authorization server answered {} instead of redirecting back; it needs a person, so run without --headless",
                resp.status().as_u16()
            )));
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Authorization("redirect without a Location".into()))?;
        let next = url.join(location).map_err(|_| ClientError::Authorization("unreadable redirect".into()))?;
        let target = next.as_str().split(['?', '#']).next().unwrap_or_default();
        if target == redirect_uri {
            return Ok(Callback::from_query(next.query().unwrap_or("")));
        }
        url = check_url(next.as_str(), "following", policy)?;
    }
    Err(ClientError::Authorization("too many redirects before the callback".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn listener_takes_one_response() {
        let l = CallbackListener::bind().await.unwrap();
        let uri = l.redirect_uri().to_owned();
        assert!(uri.starts_with("http://127.0.0.1:"));
        let hit = tokio::spawn(async move {
            let c = reqwest::Client::new();
            let first = c.get(format!("{uri}?code=abc&state=s1&iss=https%3A%2F%2Fas")).send().await.unwrap();
            let second = c.get(format!("{uri}?code=other&state=s1")).send().await;
            (first.status().as_u16(), second.map(|r| r.status().as_u16()).ok())
        });
        let cb = l.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(cb.code.as_deref(), Some("abc"));
        assert_eq!(cb.state.as_deref(), Some("s1"));
        assert_eq!(cb.iss.as_deref(), Some("https://as"));
        let (first, _) = hit.await.unwrap();
        assert_eq!(first, 200);
    }

    /// The page the browser shows for a query, with the listener expecting state `s1` from
    /// issuer `https://as`.
    async fn page_for(query: &str) -> String {
        let l = CallbackListener::bind().await.unwrap();
        l.expect("s1", Some("https://as"), true);
        let url = format!("{}?{query}", l.redirect_uri());
        let hit = tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
        let _ = l.wait(Duration::from_secs(5)).await.unwrap();
        hit.await.unwrap()
    }

    #[tokio::test]
    async fn the_page_says_how_it_went_and_echoes_nothing() {
        let granted = page_for("code=abc&state=s1&iss=https%3A%2F%2Fas").await;
        assert!(granted.contains("Access granted: you can close this tab"), "{granted}");
        let denied = page_for(
            "error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state=s1&iss=https%3A%2F%2Fas",
        )
        .await;
        assert!(denied.contains("<h1>Access denied</h1>"), "{denied}");
        assert!(!denied.contains("script") && !denied.contains("alert"), "nothing from the query: {denied}");
        let mismatch = page_for("code=abc&state=%3Cb%3Eother&iss=https%3A%2F%2Fas").await;
        assert!(mismatch.contains("does not match the login the terminal started"), "{mismatch}");
        assert!(!mismatch.contains("<b>") && !mismatch.contains("other"), "{mismatch}");
        let failed = page_for("error=server_error&state=s1&iss=https%3A%2F%2Fas").await;
        assert!(failed.contains("the authorization server had a problem"), "{failed}");
        let unknown = page_for("error=%3Cimg%20src%3Dx%3E&state=s1&iss=https%3A%2F%2Fas").await;
        assert!(unknown.contains("Authorization failed") && !unknown.contains("<img"), "{unknown}");
        let mixup = page_for("error=access_denied&state=s1&iss=https%3A%2F%2Fevil").await;
        assert!(mixup.contains("possible mix-up") && !mixup.contains("Access denied"), "{mixup}");
    }
}
