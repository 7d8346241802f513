//! The doctor's HTTP: no redirects followed (clients differ on them, so a redirect is reported),
//! short timeouts, bounded bodies.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

/// Largest document read.
const MAX_BODY: usize = 256 * 1024;

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("mandate-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

pub(crate) struct Net<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) allow_http: bool,
}

/// What came back.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a JSON object, when it is one.
    pub(crate) fn json_object(&self) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_str::<Value>(&self.body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    /// "200", or "302 to https://…".
    pub(crate) fn describe(&self) -> String {
        match self.header("location") {
            Some(to) if (300..400).contains(&self.status) => format!("{} (a redirect to {to})", self.status),
            _ => self.status.to_string(),
        }
    }
}

impl Net<'_> {
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        let r = req.send().await.map_err(|e| describe_error(&e))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.map_err(|e| describe_error(&e))?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned();
        Ok(Answer { status, headers, body })
    }

    pub(crate) async fn get(&self, url: &Url) -> Result<Answer, String> {
        self.send(self.http.get(url.clone()).header("accept", "application/json")).await
    }
}

fn describe_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within 10 s".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        let mut s = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            s = format!("{s}: {inner}");
            source = inner.source();
        }
        s
    }
}
