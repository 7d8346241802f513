//! An MCP session over the authorizing transport: initialize, list tools, call a tool.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, Implementation, Tool};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use crate::connection::Connection;
use crate::error::ClientError;
use crate::transport::AuthorizingClient;

/// The transport for a connection, and the handle that explains its authorization failures.
pub fn transport(conn: &Arc<Connection>) -> (StreamableHttpClientTransport<AuthorizingClient>, AuthorizingClient) {
    let client = AuthorizingClient::new(conn.clone());
    let config = StreamableHttpClientTransportConfig::with_uri(conn.server().as_str());
    (StreamableHttpClientTransport::with_client(client.clone(), config), client)
}

/// A live MCP session.
pub struct McpSession {
    service: RunningService<RoleClient, ClientConfig>,
    auth: AuthorizingClient,
}

impl McpSession {
    /// Connects and initializes; logs in first when the server asks.
    pub async fn open(conn: &Arc<Connection>) -> Result<Self, ClientError> {
        let (transport, auth) = transport(conn);
        let mut info = ClientConfig::default();
        info.client_info = Implementation::new("mandate", env!("CARGO_PKG_VERSION"));
        let service = info
            .serve(transport)
            .await
            .map_err(|e| auth.take_failure().unwrap_or_else(|| ClientError::Mcp(format!("initialize failed: {e}"))))?;
        Ok(Self { service, auth })
    }

    fn explain(&self, e: ServiceError) -> ClientError {
        self.auth.take_failure().unwrap_or_else(|| ClientError::Mcp(e.to_string()))
    }

    /// Every tool the server lists (all pages).
    pub async fn list_tools(&self) -> Result<Vec<Tool>, ClientError> {
        self.service.peer().list_all_tools().await.map_err(|e| self.explain(e))
    }

    /// Calls one tool.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<CallToolResult, ClientError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        if let Some(a) = arguments {
            params = params.with_arguments(a);
        }
        self.service.peer().call_tool(params).await.map_err(|e| self.explain(e))
    }

    /// Ends the session (DELETE on the server).
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

/// The scopes a tool lists in its `_meta` (mandate servers publish them under `io.mandate/scopes`).
pub fn tool_scopes(tool: &Tool) -> Vec<String> {
    let Some(meta) = tool.meta.as_ref() else { return Vec::new() };
    let v = serde_json::to_value(meta).unwrap_or_default();
    let list = v.get("io.mandate/scopes").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    list.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}
