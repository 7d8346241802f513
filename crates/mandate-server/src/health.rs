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

/// More for `/readyz` to report (the gateway's upstreams, by name); reported, never a reason to
/// be unready.
pub type ReadinessDetail = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

async fn readyz(State((auth, detail)): State<(Arc<AuthServer>, Option<ReadinessDetail>)>) -> Response {
    let (status, mut body) = match auth.readiness().await {
        Ok(()) => (StatusCode::OK, json!({"status": "ready"})),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable", "reason": reason})),
    };
    if let Some(d) = detail {
        body["upstreams"] = d();
    }
    no_store((status, axum::Json(body)).into_response())
}

/// The two probes, to merge into any router of this process.
pub fn health_routes(auth: Arc<AuthServer>) -> Router {
    health_routes_with(auth, None)
}

/// The two probes, `/readyz` also reporting `detail` under `upstreams`.
pub fn health_routes_with(auth: Arc<AuthServer>, detail: Option<ReadinessDetail>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state((auth, detail))
}
