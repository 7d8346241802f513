//! Graceful shutdown of `mandate serve`. On SIGTERM or Ctrl-C (SIGINT) the server stops
//! accepting connections, lets the requests in flight finish, then ends the MCP event streams
//! (they carry server-initiated messages and never finish by themselves) and exits 0. The whole
//! drain is bounded: past `shutdown_timeout` the process exits anyway, as it does on a second
//! signal.

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use mandate_server::guarded_body::{hold_until_sent, is_event_stream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// SIGTERM and SIGINT, listened for from the moment this is made.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// What the drain waits for: requests in flight (from their head until their response body is
/// sent), and the token that ends the MCP endpoint's streams.
#[derive(Clone, Default)]
pub struct Drain {
    requests: TaskTracker,
    streams: CancellationToken,
}

impl Drain {
    /// Cancelled once the requests in flight have finished: the MCP endpoint's streams and
    /// sessions end then.
    pub fn streams(&self) -> CancellationToken {
        self.streams.clone()
    }

    /// Counts `router`'s requests until their responses are sent. A `GET` answered with an
    /// event stream is not counted: no client waits for it to end.
    pub fn track(&self, router: Router) -> Router {
        let requests = self.requests.clone();
        router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let token = requests.token();
            async move {
                let get = req.method() == Method::GET;
                let response = next.run(req).await;
                if get && is_event_stream(&response) {
                    return response;
                }
                hold_until_sent(response, token)
            }
        }))
    }

    /// Waits for the requests in flight to finish, then ends the streams.
    pub async fn finish_requests(&self) {
        self.requests.close();
        self.requests.wait().await;
        self.streams.cancel();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use axum::body::Body;
    use axum::http::header;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn finished(drain: &Drain) -> bool {
        tokio::time::timeout(Duration::from_millis(50), drain.finish_requests()).await.is_ok()
    }

    /// A response counts until its body is consumed; an event stream answering a GET does not.
    #[tokio::test]
    async fn the_drain_waits_for_response_bodies_but_not_for_event_streams() {
        let drain = Drain::default();
        let app = drain.track(
            Router::new()
                .route("/plain", get(|| async { "done" }))
                .route("/events", get(|| async { ([(header::CONTENT_TYPE, "text/event-stream")], "data: x\n\n") })),
        );
        let plain = app.clone().oneshot(Request::get("/plain").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(plain.headers()[header::CONTENT_LENGTH], "4", "the size is kept");
        let events = app.oneshot(Request::get("/events").body(Body::empty()).unwrap()).await.unwrap();
        assert!(!finished(&drain).await, "a response not yet sent holds the drain");
        assert!(!drain.streams().is_cancelled());
        drop(events);
        assert!(!finished(&drain).await, "the event stream never held it");
        let bytes = axum::body::to_bytes(plain.into_body(), 100).await.unwrap();
        assert_eq!(&bytes[..], b"done");
        assert!(finished(&drain).await);
        assert!(drain.streams().is_cancelled(), "streams end once requests have finished");
    }
}
