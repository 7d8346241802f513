//! Hooks for a host that shows the client's work as it happens (the `/inspector`): every HTTP
//! exchange the client makes (discovery, registration, tokens, revocation, MCP), every JSON-RPC
//! message, and, for a sign-in, a way to reach the person other than the loopback listener.
//!
//! The client hands over what went over the wire, secrets included: a recorder that shows or
//! keeps it masks them first ([`mask_exchange`] is the masking the inspector uses).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use url::Url;

use crate::callback::Callback;
use crate::error::ClientError;

/// One HTTP request and what came back (`status` is `None` when nothing came back).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HttpExchange {
    /// What the client was doing ("discovery", "registration", "token", "revocation", "mcp").
    pub purpose: String,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Option<String>,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    /// Why nothing came back.
    pub error: Option<String>,
}

/// Which way a JSON-RPC message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the client to the server.
    Sent,
    /// From the server to the client.
    Received,
}

/// Receives what the client does. Calls are synchronous and must not block.
pub trait Recorder: Send + Sync {
    fn http(&self, exchange: HttpExchange);
    fn rpc(&self, direction: Direction, message: serde_json::Value);
}

/// Gets the person to an authorization URL and brings back the response, when the redirect URI
/// is not the client's own loopback listener (a server-side client: the inspector).
pub trait ExternalSignIn: Send + Sync {
    /// The redirect URI to register and send.
    fn redirect_uri(&self) -> String;
    /// Shows `auth_url` to the person and waits, at most `timeout`, for the response whose
    /// `state` is `state`.
    fn sign_in(&self, auth_url: Url, state: String, timeout: Duration) -> BoxFuture<'_, Result<Callback, ClientError>>;
}

/// What the client records with, if anything.
pub(crate) type MaybeRecorder = Option<Arc<dyn Recorder>>;

/// Header names whose values are secrets.
const SECRET_HEADERS: [&str; 4] = ["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// Parameter and JSON member names whose values are secrets.
const SECRET_FIELDS: [&str; 11] = [
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "code_verifier",
    "client_secret",
    "token",
    "password",
    // RFC 7592's management credential, in a registration response; client assertions.
    "registration_access_token",
    "client_assertion",
    "assertion",
];

/// Hides a secret, keeping its kind and length visible: `Bearer eyJh…(812 chars)`.
pub fn mask(value: &str) -> String {
    let (prefix, secret) = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic") => {
            (format!("{scheme} "), rest)
        }
        _ => (String::new(), value),
    };
    let shown: String = secret.chars().take(4).collect();
    format!("{prefix}{shown}…({} chars, hidden)", secret.chars().count())
}

/// Masks the secrets in an exchange: secret headers, secret form and query parameters, secret
/// JSON members (at any depth).
pub fn mask_exchange(mut e: HttpExchange) -> HttpExchange {
    for (name, value) in e.request_headers.iter_mut().chain(e.response_headers.iter_mut()) {
        if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            *value = mask(value);
        }
    }
    if let Ok(mut url) = Url::parse(&e.url)
        && url.query().is_some()
    {
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        url.query_pairs_mut().clear().extend_pairs(pairs.iter().map(|(k, v)| (k, mask_field(k, v))));
        e.url = url.to_string();
    }
    e.request_body = e.request_body.map(|b| mask_body(&b));
    e.response_body = e.response_body.map(|b| mask_body(&b));
    e
}

fn mask_field(name: &str, value: &str) -> String {
    if SECRET_FIELDS.contains(&name) { mask(value) } else { value.to_owned() }
}

/// A body: JSON with its secret members masked, or a form with its secret fields masked, else
/// as it is.
pub fn mask_body(body: &str) -> String {
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) {
        mask_json(&mut v);
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    let looks_like_form = !body.is_empty()
        && body.contains('=')
        && !body.contains([' ', '\n', '<', '{'])
        && url::form_urlencoded::parse(body.as_bytes()).count() > 0;
    if looks_like_form {
        return url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(url::form_urlencoded::parse(body.as_bytes()).map(|(k, v)| {
                let masked = mask_field(&k, &v);
                (k.into_owned(), masked)
            }))
            .finish();
    }
    body.to_owned()
}

/// Masks secret members of a JSON value in place, at any depth.
pub fn mask_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    serde_json::Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => *s = mask(s),
                    other => mask_json(other),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_json),
        _ => {}
    }
}

/// The headers of a reqwest or http request or response, as text pairs.
pub(crate) fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// A body as text for the record (at most 64 KiB of it).
pub(crate) fn body_text(bytes: &[u8]) -> String {
    const MAX: usize = 64 * 1024;
    let cut = &bytes[..bytes.len().min(MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > MAX {
        s.push_str(&format!("\n… ({} bytes in all)", bytes.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_everywhere() {
        let e = mask_exchange(HttpExchange {
            url: "https://as.example/authorize?client_id=c1&code=SECRETCODE&state=s".into(),
            request_headers: vec![("Authorization".into(), "Bearer eyJhbGciOiJFUzI1NiJ9.payload.sig".into())],
            request_body: Some("grant_type=authorization_code&code=SECRETCODE&code_verifier=VERIFIER123".into()),
            response_body: Some(
                r#"{"access_token":"AT-SECRET","nested":{"refresh_token":"RT-SECRET"},"registration_access_token":"RAT-SECRET","scope":"a b"}"#.into(),
            ),
            ..Default::default()
        });
        let all = format!("{e:?}");
        for secret in ["SECRETCODE", "VERIFIER123", "AT-SECRET", "RT-SECRET", "RAT-SECRET", "payload.sig"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        assert!(e.url.contains("client_id=c1"), "{}", e.url);
        assert!(e.response_body.as_deref().unwrap_or_default().contains("\"scope\": \"a b\""), "{all}");
        assert!(e.request_headers[0].1.starts_with("Bearer eyJh…("), "{:?}", e.request_headers);
    }

    #[test]
    fn plain_text_bodies_are_kept() {
        assert_eq!(mask_body("not found"), "not found");
        assert_eq!(mask_body(""), "");
    }
}
