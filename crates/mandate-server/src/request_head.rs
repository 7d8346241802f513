//! What every listener of this process applies before any route (issue 13):
//!
//! - **Request-head limits (FZ-01).** hyper accepts request heads up to ~400 KB; a 64 KB cookie
//!   or a 100 KB query would reach the handlers. Headers over [`MAX_HEADER_BYTES`] in total get
//!   `431`, a request target over [`MAX_URI_BYTES`] gets `414`, both before any route runs.
//! - **Keep-alive after an unread body.** A response sent before the request body was read (a
//!   `401`, a `429`, a `413`) leaves the body's bytes on the connection. hyper then tries one
//!   read to drain them and, failing that, closes the connection; but by then it has already
//!   written the response head without `Connection: close` (the handler answered before it
//!   dropped the body), so a client that pipelined a second request saw the connection cut.
//!   Such responses now carry `Connection: close` themselves (HTTP/1 only; HTTP/2 streams are
//!   independent), and hyper closes the connection cleanly after them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

/// Largest total size of the request headers (names, values and separators): 32 KB, as
/// common proxies allow (a browser sends at most a few KB of cookies for this origin).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Longest request target (path and query): 16 KB.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// `router` with the request-head limits and the keep-alive rule above. Apply it outermost, to
/// the whole router a listener serves.
pub fn harden(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(guard))
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    let mut resp = (status, message).into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn header_bytes(req: &Request) -> usize {
    req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

fn uri_bytes(req: &Request) -> usize {
    req.uri().path_and_query().map_or(0, |p| p.as_str().len()) + req.uri().authority().map_or(0, |a| a.as_str().len())
}

async fn guard(req: Request, next: Next) -> Response {
    if uri_bytes(&req) > MAX_URI_BYTES {
        return refuse(StatusCode::URI_TOO_LONG, "the request target is too long");
    }
    if header_bytes(&req) > MAX_HEADER_BYTES {
        return refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "the request headers are too large");
    }
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    let (parts, body) = req.into_parts();
    if !http1 || body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let body = Body::new(Tracked { inner: body, read: read.clone() });
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if !read.load(Ordering::Acquire) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A request body that records when it has been read to its end.
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
