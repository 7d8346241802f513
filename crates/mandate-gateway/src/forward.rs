//! The upstream side of the relay: mandate as the MCP client of the upstream server. What the
//! upstream asks of its client (sampling, elicitation, roots) and tells it (progress, logs,
//! list changes) goes to the downstream client it concerns.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::GetExtensions;
use rmcp::model::{ClientConfig, ClientResult, ErrorCode, ErrorData, ServerNotification, ServerRequest};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, PeerRequestOptions, RequestContext, RoleClient,
    Service,
};

use crate::routes::Routes;

/// How long a client's answer to an upstream request (an elicitation waits for a person) may take.
const CLIENT_ANSWER: Duration = Duration::from_secs(600);

/// The gateway as the upstream's client: its `initialize` carries the downstream client's
/// capabilities, so an upstream that samples or elicits asks, and the request is relayed.
pub(crate) struct Forwarder {
    pub routes: Arc<Routes>,
    pub info: ClientConfig,
}

fn unroutable() -> ErrorData {
    ErrorData::new(
        ErrorCode::INTERNAL_ERROR,
        "the gateway cannot tell which client this request is for (no request of one client is in flight)",
        None,
    )
}

impl Service<RoleClient> for Forwarder {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        let origin = match context.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
            _ => None,
        };
        let target = self.routes.target(origin.as_ref()).await.ok_or_else(unroutable)?;
        // Sent from a task of its own: rmcp tags a request sent inside a handler with that
        // handler's request id, which here is the upstream's, meaningless downstream. The
        // client's own request id is what lets it ride that request's response stream.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut request = request;
        if let Some(id) = target.origin {
            request.extensions_mut().insert(OriginatingRequestId(id));
        }
        let peer = target.to.peer;
        let (routes, key) = (self.routes.clone(), target.to.key);
        routes.asking(key, true).await;
        tokio::spawn(async move {
            let answer =
                match peer.send_request_with_option(request, PeerRequestOptions::with_timeout(CLIENT_ANSWER)).await {
                    Ok(handle) => handle.await_response().await,
                    Err(e) => Err(e),
                };
            let _ = tx.send(answer);
        });
        let answer = rx.await;
        routes.asking(key, false).await;
        match answer {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(rmcp::ServiceError::McpError(e))) => Err(e),
            Ok(Err(e)) => {
                Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, format!("the client did not answer: {e}"), None))
            }
            Err(_) => Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "the client's session ended", None)),
        }
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        match notification {
            ServerNotification::ProgressNotification(mut n) => {
                // Only for a request whose client asked for progress, with the client's token.
                if let Some((to, token)) = self.routes.progress(&n.params.progress_token).await {
                    self.routes.alive(to.key).await;
                    n.params.progress_token = token;
                    let _ = to.peer.send_notification(ServerNotification::ProgressNotification(n)).await;
                }
            }
            // The upstream gave up one of its own requests; the client's answer will be ignored.
            ServerNotification::CancelledNotification(_) => {}
            other => {
                for to in self.routes.everyone().await {
                    let _ = to.peer.send_notification(other.clone()).await;
                }
            }
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}
