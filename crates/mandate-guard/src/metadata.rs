//! RFC 9728 protected resource metadata (MCP RS1–RS4, RS7).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tower_http::cors::{Any, CorsLayer};

use crate::layer::{Guard, without_offline_access};

/// `/.well-known/oauth-protected-resource/<path>` for a resource URL (path-inserted form).
pub fn metadata_path_for(resource: &str) -> String {
    let path = url::Url::parse(resource).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("/.well-known/oauth-protected-resource{path}")
}

async fn document(State(g): State<Arc<Guard>>) -> Response {
    let c = &g.config;
    let body = serde_json::json!({
        "resource": c.resource,
        "authorization_servers": [c.issuer],
        "scopes_supported": without_offline_access(&c.scopes_supported),
        "bearer_methods_supported": ["header"],
        "resource_name": c.resource_name,
    });
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// The metadata at the path-inserted well-known URL and (unless turned off) the root one, readable by any origin:
/// browser-based clients (the TypeScript SDK in a page) send `MCP-Protocol-Version` with their
/// discovery requests, which makes the browser ask first (a CORS preflight). The document holds
/// nothing secret and no credentials are involved.
pub fn router(guard: Arc<Guard>) -> Router {
    let inserted = metadata_path_for(&guard.config.resource);
    let root = "/.well-known/oauth-protected-resource";
    let mut r = Router::new();
    if guard.config.root_metadata || inserted == root {
        r = r.route(root, get(document));
    }
    if inserted != root {
        r = r.route(&inserted, get(document));
    }
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET])
        .allow_headers([header::CONTENT_TYPE, HeaderName::from_static("mcp-protocol-version")])
        .max_age(std::time::Duration::from_secs(3600));
    r.with_state(guard).layer(cors)
}
