//! Admission to the authorization server's routes: a bound on requests in flight and a deadline
//! on each (security-tests.md RL-08, RL-14).
//!
//! - **In flight**: at most `max_in_flight` requests are being answered at once. One more is
//!   answered at once with 503 and `Retry-After` (load shedding) instead of waiting in a queue
//!   that grows with the overload; nothing the server holds grows past the bound.
//! - **Deadline**: a request not answered within `request_timeout` (a database that waits on a
//!   lock, a pool with no free connection) is answered 503 with `Retry-After`. Its work is
//!   dropped: a PostgreSQL transaction is rolled back, and a write still queued for the SQLite
//!   writer is skipped (see `mandate_store`'s writer), so a request answered 503 changed nothing
//!   unless its commit had already begun.
//!
//! Both answers are `temporarily_unavailable` (RFC 6749 §4.1.2.1's code for "retry later") as
//! JSON, or a page for a browser. Health and metrics routes are outside this bound, so readiness
//! can still be asked during an overload.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mandate_core::OAuthError;
use mandate_core::error::ErrorCode;
use tokio::sync::Semaphore;

use crate::http::OAuthErrorResponse;
use crate::pages::error_page;

/// Seconds a refused client is asked to wait.
const RETRY_AFTER: &str = "1";

/// The bound and the deadline; one per router.
#[derive(Clone, Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    deadline: Duration,
}

impl Admission {
    pub fn new(max_in_flight: usize, request_timeout: Duration) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_in_flight.max(1))), deadline: request_timeout }
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    let browser = wants_html(&request);
    let Ok(_slot) = admission.slots.clone().try_acquire_owned() else {
        tracing::warn!(path = %request.uri().path(), "shed: too many requests in flight (max_in_flight)");
        return unavailable(browser, "the server is busy; retry shortly");
    };
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(admission.deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, deadline_ms = admission.deadline.as_millis(), "request not answered within request_timeout");
            unavailable(browser, "the server could not answer in time; retry shortly")
        }
    }
}

/// A navigation from a browser (it accepts HTML), rather than a client of the protocol.
fn wants_html(request: &Request) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn unavailable(browser: bool, description: &'static str) -> Response {
    let mut response = if browser {
        error_page(StatusCode::SERVICE_UNAVAILABLE, "The server is busy. Try again in a moment.")
    } else {
        OAuthErrorResponse(OAuthError::new(ErrorCode::TemporarilyUnavailable, description)).into_response()
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}
