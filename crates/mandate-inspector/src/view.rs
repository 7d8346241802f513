//! What the page shows, as one JSON document the page polls: the flow (steps and HTTP exchanges,
//! masked), the JSON-RPC log, the token decoded, the tools, the last call and the doctor's report.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use mandate_client::{Direction, HttpExchange};
use serde::Serialize;
use serde_json::Value;

/// Entries kept per list; older ones are dropped (the page says how many).
const KEEP: usize = 400;

/// One entry of the flow: a step the inspector narrates, or an HTTP exchange.
#[derive(Clone, Serialize)]
pub(crate) struct FlowEntry {
    pub seq: u64,
    pub at: u64,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<HttpExchange>,
}

/// One JSON-RPC message.
#[derive(Clone, Serialize)]
pub(crate) struct RpcEntry {
    pub seq: u64,
    pub at: u64,
    pub direction: Direction,
    /// `initialize`, `tools/call`, … or "result" / "error" for a response.
    pub summary: String,
    pub message: Value,
}

/// The access token as the page shows it: masked, with its header and claims decoded.
#[derive(Clone, Serialize)]
pub(crate) struct TokenView {
    pub masked: String,
    /// "JWT" with its parts, or "opaque".
    pub format: &'static str,
    pub header: Option<Value>,
    pub claims: Option<Value>,
    /// The scopes granted, as the client stored them from the token response.
    pub granted: Vec<String>,
}

/// A tool as listed, with the scopes it needs (mandate's `_meta`) and whether they are granted.
#[derive(Clone, Serialize)]
pub(crate) struct ToolView {
    pub name: String,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub granted: bool,
    pub input_schema: Value,
    pub annotations: Option<Value>,
}

/// How the last tool call went.
#[derive(Clone, Serialize)]
pub(crate) struct CallView {
    pub tool: String,
    /// "ok", "tool-error" (the tool ran and said it failed), "refused" (403
    /// `insufficient_scope`), or "failed".
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// For "refused": the scopes the server asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Everything the page shows for one operator.
#[derive(Default, Serialize)]
pub(crate) struct View {
    /// Moves on with every change, so a page that has revision N is sent no more than that
    /// until something changes (`/inspector/api/state?since=N`). Drawn from one counter for the
    /// process, so a new inspection never repeats a revision of the one it replaced.
    pub revision: u64,
    pub url: String,
    /// "idle", "connecting", "connected", "revoked" or "failed".
    pub phase: &'static str,
    /// What is running now, if anything.
    pub busy: Option<String>,
    pub error: Option<String>,
    /// The authorization page to open now (a sign-in is waiting for the operator).
    pub authorize_url: Option<String>,
    pub flow: VecDeque<FlowEntry>,
    pub flow_dropped: u64,
    pub rpc: VecDeque<RpcEntry>,
    pub rpc_dropped: u64,
    pub token: Option<TokenView>,
    pub tools: Vec<ToolView>,
    pub last_call: Option<CallView>,
    pub doctor: Option<Value>,
    next_seq: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// The next revision of any view in this process.
pub(crate) fn next_revision() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) + 1
}

impl View {
    pub(crate) fn new(url: &str) -> Self {
        Self { revision: next_revision(), url: url.to_owned(), phase: "idle", ..Self::default() }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn push_flow(&mut self, title: String, detail: Option<String>, exchange: Option<HttpExchange>) {
        let seq = self.seq();
        self.flow.push_back(FlowEntry { seq, at: now(), title, detail, exchange });
        if self.flow.len() > KEEP {
            self.flow.pop_front();
            self.flow_dropped += 1;
        }
    }

    /// A step the inspector narrates.
    pub(crate) fn step(&mut self, title: &str, detail: impl Into<String>) {
        self.push_flow(title.to_owned(), Some(detail.into()), None);
    }

    /// An HTTP exchange (already masked), titled by what it is.
    pub(crate) fn push_http(&mut self, exchange: HttpExchange) {
        self.push_flow(label(&exchange), None, Some(exchange));
    }

    /// A JSON-RPC message (already masked).
    pub(crate) fn push_rpc(&mut self, direction: Direction, message: Value) {
        let summary = match (message.get("method"), message.get("error")) {
            (Some(Value::String(m)), _) => match message.pointer("/params/name") {
                Some(Value::String(tool)) if m == "tools/call" => format!("tools/call {tool}"),
                _ => m.clone(),
            },
            (_, Some(_)) => "error".to_owned(),
            _ => "result".to_owned(),
        };
        let seq = self.seq();
        self.rpc.push_back(RpcEntry { seq, at: now(), direction, summary, message });
        if self.rpc.len() > KEEP {
            self.rpc.pop_front();
            self.rpc_dropped += 1;
        }
    }

    /// A sign-in waits for the operator at `url`.
    pub(crate) fn awaiting_person(&mut self, url: &str) {
        self.authorize_url = Some(url.to_owned());
        self.step(
            "Authorization request ready",
            "open the authorization page: sign in there and choose what to grant; the browser then comes \
             back to /inspector/callback",
        );
    }

    /// Marks which tools the granted scopes cover.
    pub(crate) fn regrant(&mut self) {
        let granted = self.token.as_ref().map(|t| t.granted.clone()).unwrap_or_default();
        for t in &mut self.tools {
            t.granted = t.scopes.iter().all(|s| granted.contains(s));
        }
    }
}

/// What an exchange was, in the words of the specifications.
fn label(e: &HttpExchange) -> String {
    let path = url::Url::parse(&e.url).map(|u| u.path().to_owned()).unwrap_or_default();
    let body = e.request_body.as_deref().unwrap_or_default();
    let what = match e.purpose.as_str() {
        "probe" => "The MCP request without a token (the 401 names the resource metadata)".to_owned(),
        "revocation" => "Revocation (RFC 7009)".to_owned(),
        "mcp" => {
            let method = e
                .request_body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned));
            match method {
                Some(m) => format!("MCP {m}"),
                None if e.method == "DELETE" => "MCP session ended".to_owned(),
                None => "MCP response to the server".to_owned(),
            }
        }
        _ if path.contains("/.well-known/oauth-protected-resource") => {
            "Protected resource metadata (RFC 9728)".to_owned()
        }
        _ if path.contains("/.well-known/oauth-authorization-server") => {
            "Authorization server metadata (RFC 8414)".to_owned()
        }
        _ if path.contains("/.well-known/openid-configuration") => "OpenID Connect discovery".to_owned(),
        _ if body.contains("grant_type=authorization_code") => {
            "Code redeemed for tokens (PKCE verifier sent)".to_owned()
        }
        _ if body.contains("grant_type=refresh_token") => "Refresh (the refresh token rotates)".to_owned(),
        _ if body.contains("\"redirect_uris\"") => "Dynamic client registration (RFC 7591)".to_owned(),
        _ => format!("{} {path}", e.method),
    };
    match (e.status, &e.error) {
        (Some(s), _) => format!("{what}: {s}"),
        (None, Some(_)) => format!("{what}: no answer"),
        (None, None) => what,
    }
}

/// The token as the page shows it. A JWT's header and claims are decoded, not verified (the
/// server that accepts it verifies it).
pub(crate) fn token_view(token: &str, granted: Vec<String>) -> TokenView {
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(Value::is_object)
    };
    let parts: Vec<&str> = token.split('.').collect();
    let (header, claims) = match parts.as_slice() {
        [h, c, _] => (decode(h), decode(c)),
        _ => (None, None),
    };
    let format = if header.is_some() && claims.is_some() { "JWT" } else { "opaque" };
    TokenView { masked: mandate_client::record::mask(token), format, header, claims, granted }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_is_decoded_and_the_token_itself_hidden() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(r#"{"alg":"ES256","typ":"at+jwt"}"#),
            b64(r#"{"aud":"http://127.0.0.1:8080/mcp","scope":"customers.read"}"#)
        );
        let v = token_view(&token, vec!["customers.read".into()]);
        assert_eq!(v.format, "JWT");
        assert_eq!(v.claims.as_ref().and_then(|c| c.get("scope")).and_then(Value::as_str), Some("customers.read"));
        assert!(!v.masked.contains("c2lnbmF0dXJl") && v.masked.contains("hidden"), "{}", v.masked);
        assert_eq!(token_view("opaque-token-value", vec![]).format, "opaque");
    }

    #[test]
    fn exchanges_are_named_by_what_they_are() {
        let e = |purpose: &str, url: &str, body: Option<&str>, status: Option<u16>| HttpExchange {
            purpose: purpose.into(),
            method: "POST".into(),
            url: url.into(),
            request_body: body.map(str::to_owned),
            status,
            ..Default::default()
        };
        assert_eq!(
            label(&e("oauth", "http://a/.well-known/oauth-protected-resource/mcp", None, Some(200))),
            "Protected resource metadata (RFC 9728): 200"
        );
        assert_eq!(
            label(&e("oauth", "http://a/token", Some("grant_type=refresh_token&refresh_token=x"), Some(200))),
            "Refresh (the refresh token rotates): 200"
        );
        assert_eq!(
            label(&e("mcp", "http://a/mcp", Some(r#"{"method":"tools/call"}"#), Some(403))),
            "MCP tools/call: 403"
        );
        assert_eq!(
            label(&e("probe", "http://a/mcp", None, None)),
            "The MCP request without a token (the 401 names the resource metadata)"
        );
    }

    #[test]
    fn the_lists_are_bounded() {
        let mut v = View::new("http://a/mcp");
        for i in 0..(KEEP + 5) {
            v.step("s", i.to_string());
            v.push_rpc(Direction::Sent, serde_json::json!({"method": "ping"}));
        }
        assert_eq!((v.flow.len(), v.flow_dropped), (KEEP, 5));
        assert_eq!((v.rpc.len(), v.rpc_dropped), (KEEP, 5));
    }
}
