//! A raw MCP client over Streamable HTTP: JSON-RPC POSTs with the bearer token, the session id
//! and the protocol version header; answers in JSON or SSE; every status and header kept.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const PROTOCOL: &str = "2025-11-25";

pub struct McpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON-RPC message (from a JSON body or the SSE `data:` carrying the response).
    pub message: Value,
}

impl McpReply {
    pub fn www_authenticate(&self) -> String {
        self.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }

    /// The scopes named by the `scope` parameter of the challenge, sorted.
    pub fn challenge_scopes(&self) -> Vec<String> {
        let header = self.www_authenticate();
        let Some(rest) = header.split("scope=\"").nth(1) else { return Vec::new() };
        let mut scopes: Vec<String> = rest.split('"').next().unwrap_or("").split(' ').map(str::to_owned).collect();
        scopes.sort();
        scopes
    }

    /// The text of the first content block of a tools/call result.
    pub fn tool_text(&self) -> String {
        self.message["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
    }
}

pub struct McpClient {
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    /// The negotiated protocol version, sent on every request after initialize (H10).
    pub protocol: Option<String>,
    http: reqwest::Client,
    next_id: u64,
}

fn parse_body(content_type: &str, body: &str) -> Value {
    if content_type.starts_with("text/event-stream") {
        // The last `data:` line holding a JSON-RPC response (priming events carry no data).
        body.lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("result").is_some() || v.get("error").is_some())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

impl McpClient {
    pub fn new(url: &str, token: Option<&str>) -> Self {
        Self {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            session: None,
            protocol: None,
            // A connection per request, so a load balancer in front can send each to another instance.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            next_id: 1,
        }
    }

    pub async fn post(&mut self, body: Value) -> McpReply {
        self.post_raw(body.to_string()).await
    }

    /// POSTs a body exactly as given (for encodings a JSON serializer would never produce).
    pub async fn post_raw(&mut self, body: String) -> McpReply {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(v) = &self.protocol {
            req = req.header("mcp-protocol-version", v);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let text = r.text().await.unwrap_or_default();
        McpReply { status, headers, message: parse_body(&ct, &text) }
    }

    pub async fn request(&mut self, method: &str, params: Value) -> McpReply {
        let id = self.next_id;
        self.next_id += 1;
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await
    }

    /// initialize + notifications/initialized; keeps the session id.
    pub async fn initialize(&mut self) -> McpReply {
        self.initialize_with(PROTOCOL).await
    }

    /// Like [`McpClient::initialize`], offering `version`.
    pub async fn initialize_with(&mut self, version: &str) -> McpReply {
        let r = self
            .request(
                "initialize",
                json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "mandate-tests", "version": "1"}}),
            )
            .await;
        if let Some(s) = r.headers.get("mcp-session-id") {
            self.session = Some(s.to_str().unwrap().to_owned());
        }
        self.protocol = r.message["result"]["protocolVersion"].as_str().map(str::to_owned);
        if r.status.is_success() {
            let n = self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
            assert_eq!(n.status, StatusCode::ACCEPTED, "H4: a notification is answered 202");
        }
        r
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> McpReply {
        self.request("tools/call", json!({"name": tool, "arguments": args})).await
    }
}
