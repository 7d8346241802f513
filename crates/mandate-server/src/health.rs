//! `/healthz` (the process is up) and `/readyz` (the database answers and the signing keys are
//! loaded), for load balancers and orchestrators. Both answer without authentication and reveal
//! nothing beyond which of the two is missing.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mandate_core::AuthServer;
use serde_json::json;

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn healthz() -> Response {
    no_store((StatusCode::OK, axum::Json(json!({"status": "up"}))).into_response())
}

async fn readyz(State(auth): State<Arc<AuthServer>>) -> Response {
    let r = match auth.readiness().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "unavailable", "reason": reason})))
                .into_response()
        }
    };
    no_store(r)
}

/// The two probes, to merge into any router of this process.
pub fn health_routes(auth: Arc<AuthServer>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(auth)
}
