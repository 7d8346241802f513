//! What an MCP tool does to act with the person's own account at a provider: it asks the one
//! handle ([`UpstreamHandle`]) for the caller's token, never the vault. Without a usable account
//! the tool call fails at once with the page where the person connects it: JSON-RPC
//! `-32042` (`URLElicitationRequiredError`, MCP 2025-11-25) carrying a URL-mode elicitation.

use mandate_guard::Principal;
use mandate_upstream::{NotConnected, UpstreamError, UpstreamHandle, UpstreamToken};
use rmcp::model::{ErrorCode, ErrorData};
use serde_json::json;

/// The JSON-RPC error code of a URL-mode elicitation the client must complete first.
pub const URL_ELICITATION_REQUIRED: i32 = -32042;

/// The caller's token at the handle's provider, refreshed when due; or the error to answer.
/// `resource` is what the person reads (the server's or the tool's title); `elicitation_id` a
/// fresh random id.
pub async fn upstream_token(
    handle: &UpstreamHandle,
    caller: &Principal,
    resource: &str,
    elicitation_id: &str,
) -> Result<UpstreamToken, ErrorData> {
    match handle.token(&caller.subject).await {
        Ok(t) => Ok(t),
        Err(UpstreamError::NotConnected { why, .. }) => Err(connect_required(handle, why, resource, elicitation_id)),
        Err(e) => {
            tracing::warn!(provider = %handle.provider(), error = %e, "no upstream token");
            Err(ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!("{} cannot be reached just now; try again later", handle.title()),
                None,
            ))
        }
    }
}

/// "Connect your <provider> account": the error carrying the page to do it.
pub fn connect_required(handle: &UpstreamHandle, why: NotConnected, resource: &str, elicitation_id: &str) -> ErrorData {
    let url = handle.connect_url();
    let provider = handle.title();
    let message = match why {
        NotConnected::Never => {
            format!("{resource} acts with your {provider} account, which is not connected. Connect it, then retry.")
        }
        NotConnected::Refused | NotConnected::Expired => format!(
            "{provider} no longer accepts mandate's access to your account (it was revoked or expired). Connect it again, then retry."
        ),
    };
    ErrorData::new(
        ErrorCode(URL_ELICITATION_REQUIRED),
        format!("{message} {url}"),
        Some(
            json!({"elicitations": [{"mode": "url", "elicitationId": elicitation_id, "url": url, "message": message}]}),
        ),
    )
}
