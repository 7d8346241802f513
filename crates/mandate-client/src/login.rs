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

use crate::callback::Callback;
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

type Slot = Arc<Mutex<Option<oneshot::Sender<Callback>>>>;

/// Receives one authorization response on `http://127.0.0.1:<port>/callback`.
pub struct CallbackListener {
    redirect_uri: String,
    rx: oneshot::Receiver<Callback>,
    server: tokio::task::JoinHandle<()>,
}

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>mandate</title>\
<p>Authorization received. You can close this tab and return to the terminal.</p>";

async fn receive(State(slot): State<Slot>, RawQuery(query): RawQuery) -> Response {
    let sender = slot.lock().ok().and_then(|mut s| s.take());
    let Some(sender) = sender else {
        return (StatusCode::GONE, "This login has already finished.").into_response();
    };
    let _ = sender.send(Callback::from_query(query.as_deref().unwrap_or("")));
    let mut resp = (StatusCode::OK, axum::response::Html(DONE_PAGE)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

impl CallbackListener {
    /// Binds `127.0.0.1:0`.
    pub async fn bind() -> Result<Self, ClientError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| ClientError::Network(format!("binding the loopback callback listener: {e}")))?;
        let port = listener.local_addr().map_err(|e| ClientError::Network(e.to_string()))?.port();
        let (tx, rx) = oneshot::channel();
        let slot: Slot = Arc::new(Mutex::new(Some(tx)));
        let app = Router::new().route("/callback", get(receive)).with_state(slot);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { redirect_uri: format!("http://127.0.0.1:{port}/callback"), rx, server })
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
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
    timeout: Duration,
) -> Result<Callback, ClientError> {
    match mode {
        LoginMode::Headless => {
            let redirect = listener.redirect_uri().to_owned();
            listener.close();
            follow_headless(auth_url, &redirect, http, policy).await
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
) -> Result<Callback, ClientError> {
    let mut url = auth_url.clone();
    for _ in 0..5 {
        let resp = http.get(url.clone()).send().await.map_err(|e| network_error(url.as_str(), &e))?;
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
}
