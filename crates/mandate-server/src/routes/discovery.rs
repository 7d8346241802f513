//! Public documents: authorization server metadata (both discovery paths), JWKS, the stylesheet.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::http::{OAuthErrorResponse, public_json};

pub async fn metadata(State(s): State<AppState>) -> Response {
    public_json(&s.auth.metadata(), 3600)
}

pub async fn jwks(State(s): State<AppState>) -> Response {
    match s.auth.jwks().await {
        Ok(set) => match serde_json::to_value(&set) {
            Ok(v) => public_json(&v, 300),
            Err(_) => OAuthErrorResponse(mandate_core::OAuthError::server_error()).into_response(),
        },
        Err(e) => OAuthErrorResponse(e).into_response(),
    }
}

pub async fn stylesheet() -> Response {
    let mut resp = include_str!("../../static/mandate.css").into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    resp
}
