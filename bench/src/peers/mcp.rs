//! An MCP Streamable HTTP client session (initialized once) that calls one tool over and over:
//! the same requests for every MCP server measured.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

/// The tool every server measured offers.
pub const TOOL: &str = "list_customers";

pub struct Session {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: String,
    protocol: String,
}

/// The JSON-RPC message in a response body (plain JSON, or the last `data:` line of an SSE
/// stream).
fn message(body: &str) -> Option<Value> {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).ok();
    }
    body.lines().rev().filter_map(|l| l.strip_prefix("data:")).find_map(|d| serde_json::from_str(d.trim()).ok())
}

impl Session {
    pub async fn open(http: &reqwest::Client, url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let mut req = http.post(url).header("accept", "application/json, text/event-stream").json(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                          "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                     "clientInfo": {"name": "mandate-peers", "version": "1"}}}),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let status = r.status();
        let session = r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = r.text().await?;
        ensure!(status.is_success(), "initialize at {url} answered {status}: {body}");
        let session = session.with_context(|| format!("{url}: no Mcp-Session-Id"))?;
        let protocol = message(&body)
            .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_owned))
            .with_context(|| format!("{url}: initialize failed: {body}"))?;
        let s = Self { http: http.clone(), url: url.to_owned(), token: token.map(str::to_owned), session, protocol };
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        // One call to see that the tool answers.
        s.call(1).await.with_context(|| format!("{url}: the first tools/call"))?;
        Ok(s)
    }

    async fn send(&self, body: &Value) -> anyhow::Result<String> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", &self.protocol)
            .json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let status = r.status();
        let text = r.text().await?;
        ensure!(status.is_success(), "status {status}: {}", text.chars().take(200).collect::<String>());
        Ok(text)
    }

    /// One `tools/call`; an error unless the tool answered with content and no `isError`.
    pub async fn call(&self, id: u64) -> anyhow::Result<()> {
        let body = self
            .send(
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": TOOL, "arguments": {}}}),
            )
            .await?;
        let v = message(&body).context("no JSON-RPC message in the answer")?;
        let result = &v["result"];
        ensure!(
            result["isError"] != json!(true) && result["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()),
            "tool error: {v}"
        );
        Ok(())
    }
}
