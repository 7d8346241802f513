//! An MCP session over the authorizing transport: initialize, list tools, call a tool.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, Implementation, ProtocolVersion, Tool};
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

/// The protocol version this client offers in `initialize`: the newest it implements. (rmcp's
/// default is its `LATEST`, 2026-07-28, which has no `initialize` and needs headers and `_meta`
/// on every request that this client does not send.) After `initialize`, rmcp's transport puts
/// the negotiated version in `MCP-Protocol-Version` on every request (H10).
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// What the client says about itself in `initialize`.
pub fn client_config() -> ClientConfig {
    let mut info = ClientConfig::default();
    info.protocol_version = PROTOCOL_VERSION;
    info.client_info = Implementation::new("mandate", env!("CARGO_PKG_VERSION"));
    info
}

/// A live MCP session. Every request gives up after the connection's request timeout (time
/// spent waiting for the person in a login or step-up is not counted).
pub struct McpSession {
    service: RunningService<RoleClient, ClientConfig>,
    auth: AuthorizingClient,
    conn: Arc<Connection>,
}

impl McpSession {
    /// Connects and initializes; logs in first when the server asks.
    pub async fn open(conn: &Arc<Connection>) -> Result<Self, ClientError> {
        let (transport, auth) = transport(conn);
        let what = || format!("initialize at {}", conn.server());
        let service = conn
            .bounded(what, Box::pin(client_config().serve(transport)))
            .await
            .map_err(|timeout| auth.take_failure().unwrap_or(timeout))?
            .map_err(|e| auth.take_failure().unwrap_or_else(|| ClientError::Mcp(format!("initialize failed: {e}"))))?;
        Ok(Self { service, auth, conn: conn.clone() })
    }

    fn explain(&self, e: ServiceError) -> ClientError {
        if let Some(failure) = self.auth.take_failure() {
            return failure;
        }
        match e {
            ServiceError::McpError(data) => {
                ClientError::Mcp(format!("the server answered error {}: {}", data.code.0, data.message))
            }
            other => ClientError::Mcp(other.to_string()),
        }
    }

    async fn bounded<T>(
        &self,
        what: impl FnOnce() -> String,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ClientError> {
        match self.conn.bounded(what, Box::pin(request)).await {
            Ok(r) => r.map_err(|e| self.explain(e)),
            Err(timeout) => Err(self.auth.take_failure().unwrap_or(timeout)),
        }
    }

    /// Every tool the server lists (all pages).
    pub async fn list_tools(&self) -> Result<Vec<Tool>, ClientError> {
        let what = || format!("tools/list at {}", self.conn.server());
        self.bounded(what, self.service.peer().list_all_tools()).await
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
        let what = || format!("tools/call {name} at {}", self.conn.server());
        self.bounded(what, self.service.peer().call_tool(params)).await
    }

    /// Ends the session (DELETE on the server), giving up after the request timeout.
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.conn.request_timeout(), self.service.cancel()).await;
    }
}

/// The scopes a tool lists in its `_meta` (mandate servers publish them under `io.mandate/scopes`).
pub fn tool_scopes(tool: &Tool) -> Vec<String> {
    let Some(meta) = tool.meta.as_ref() else { return Vec::new() };
    let v = serde_json::to_value(meta).unwrap_or_default();
    let list = v.get("io.mandate/scopes").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    list.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}
