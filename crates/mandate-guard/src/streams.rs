//! Event streams end when their grant is revoked: a revoked agent keeps no open channel (a GET
//! stream, or a long tool call answered as SSE) to the server after its next request is refused.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use http_body::Frame;
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

use crate::layer::RevocationCheck;
use crate::principal::Principal;

pub(crate) fn is_event_stream(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// Ends `response`'s body once `check` says the caller's grant is revoked.
pub(crate) fn end_on_revocation(response: Response, check: Arc<dyn RevocationCheck>, caller: Principal) -> Response {
    let revoked = CancellationToken::new();
    let body_dropped = CancellationToken::new();
    let (mark, ended) = (revoked.clone(), body_dropped.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = ended.cancelled() => return,
                () = check.changed() => {}
            }
            if let Ok(true) = check.revoked(&caller).await {
                tracing::info!(client = %caller.client_id, "grant revoked: closing its open event stream");
                mark.cancel();
                return;
            }
        }
    });
    let (parts, body) = response.into_parts();
    let body = EndOnRevocation {
        inner: body,
        revoked: Box::pin(revoked.cancelled_owned()),
        _watch: body_dropped.drop_guard(),
    };
    Response::from_parts(parts, Body::new(body))
}

struct EndOnRevocation {
    inner: Body,
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Stops the watcher when the body goes (the client left, or the stream ended).
    _watch: DropGuard,
}

impl http_body::Body for EndOnRevocation {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.revoked.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}
