//! `mandate bridge`: a stdio ↔ Streamable HTTP proxy for hosts that speak only stdio. Each line on
//! stdin is one JSON-RPC message sent to the server; each message from the server (responses,
//! server requests, notifications, on POST responses or the GET stream) is written to stdout as
//! one line. Authorization, refresh and step-up happen inside the transport, so the host never sees
//! them. Logs go to stderr; stdout carries only protocol.

use std::sync::Arc;

use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use rmcp::transport::Transport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::session::{PROTOCOL_VERSION, transport};

/// The longest line accepted from the host.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Runs until the host closes stdin or the server goes away.
pub async fn run<R, W>(conn: Arc<Connection>, input: R, mut output: W) -> Result<(), ClientError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut transport, auth) = transport(&conn);
    let mut lines = BufReader::new(input).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.map_err(|e| ClientError::Network(format!("reading stdin: {e}")))?;
                let Some(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                if line.len() > MAX_LINE {
                    write_line(&mut output, &parse_error("message too large")).await?;
                    continue;
                }
                match serde_json::from_str::<ClientJsonRpcMessage>(&line) {
                    Ok(mut message) => {
                        offer_only_what_we_implement(&mut message);
                        if let Err(e) = transport.send(message).await {
                            let cause = auth.take_failure().map(|f| f.to_string()).unwrap_or_else(|| e.to_string());
                            return Err(ClientError::Mcp(format!("the server connection failed: {cause}")));
                        }
                    }
                    Err(e) => write_line(&mut output, &parse_error(&e.to_string())).await?,
                }
            }
            message = transport.receive() => {
                let Some(message) = message else {
                    let cause = auth.take_failure().map(|f| f.to_string()).unwrap_or_else(|| "the server closed the session".into());
                    return Err(ClientError::Mcp(cause));
                };
                let text = serde_json::to_string(&message).map_err(|e| ClientError::Mcp(e.to_string()))?;
                write_line(&mut output, &text).await?;
            }
        }
    }
    let _ = transport.close().await;
    Ok(())
}

/// The bridge carries the host's `initialize` with rmcp's transport, which implements the
/// protocol up to [`PROTOCOL_VERSION`]: a newer version offered by the host is lowered to it (the
/// server answers with what it chose, and the host decides whether it can speak that). A
/// 2026-07-28 server would refuse the newer offer without the headers that version needs.
fn offer_only_what_we_implement(message: &mut ClientJsonRpcMessage) {
    if let ClientJsonRpcMessage::Request(r) = message
        && let ClientRequest::InitializeRequest(init) = &mut r.request
        && init.params.protocol_version.as_str() > PROTOCOL_VERSION.as_str()
    {
        tracing::info!(offered = %init.params.protocol_version, "offering {PROTOCOL_VERSION} instead");
        init.params.protocol_version = PROTOCOL_VERSION;
    }
}

fn parse_error(detail: &str) -> String {
    serde_json::json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":format!("parse error: {detail}")}})
        .to_string()
}

async fn write_line<W: AsyncWrite + Unpin>(out: &mut W, text: &str) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Network(format!("writing stdout: {e}"));
    out.write_all(text.as_bytes()).await.map_err(io)?;
    out.write_all(b"\n").await.map_err(io)?;
    out.flush().await.map_err(io)
}
