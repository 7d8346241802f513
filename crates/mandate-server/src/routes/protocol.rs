//! The machine-facing endpoints: registration, token, revocation, introspection.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::service::RegistrationError;
use mandate_core::{ErrorCode, OAuthError};

use crate::AppState;
use crate::http::{OAuthErrorResponse, basic_credentials, form_params, no_store_json};

/// Largest registration request accepted (DC-09).
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

pub async fn register(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let bad =
        |d: &'static str| OAuthErrorResponse(OAuthError::new(ErrorCode::InvalidClientMetadata, d)).into_response();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return bad("the registration request must be application/json");
    }
    if body.len() > MAX_REGISTRATION_BYTES {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    // Strictly: a member named twice is refused, not read as whichever came last (DC-09).
    let Ok(value) = mandate_core::json::parse_strict(&body) else {
        return bad("the registration request is not valid JSON (each member may appear once)");
    };
    match s.auth.register_client(&value).await {
        Ok(v) => no_store_json(StatusCode::CREATED, &v),
        Err(RegistrationError::Invalid(e)) => OAuthErrorResponse(e).into_response(),
        // DC-10: too many registrations from everywhere together. RFC 7591 has no error code for
        // this; 429 with Retry-After, and the OAuth code that means "retry later".
        Err(RegistrationError::Busy { retry_after }) => {
            let body = serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": "too many clients were registered recently; retry later",
            });
            let mut resp = no_store_json(StatusCode::TOO_MANY_REQUESTS, &body);
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// Parameters travel only in the body (RFC 6749 §2.3.1, §3.2): a request with a query string is
/// refused, so credentials put in a URL, where proxies and logs keep them, are never used (TK-03).
fn body_only(query: Option<&str>) -> Result<(), OAuthError> {
    match query {
        Some(q) if !q.is_empty() => {
            Err(OAuthError::invalid_request("parameters must be sent in the request body, not in the URL"))
        }
        _ => Ok(()),
    }
}

pub async fn token(State(s): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let mut grant_type = None;
    let result = async {
        body_only(query.as_deref())?;
        let params = form_params(&headers, &body)?;
        grant_type = params.single("grant_type").ok().flatten().map(str::to_owned);
        let basic = basic_credentials(&headers)?;
        s.auth.token(&params, basic.as_ref()).await
    }
    .await;
    let result = result.and_then(|r| serde_json::to_value(r).map_err(|_| OAuthError::server_error()));
    // Counted for `/metrics`: the grant type (known ones only) and `issued` or the error code.
    let outcome = result.as_ref().map_or_else(|e| e.code.as_str(), |_| "issued");
    s.auth.counters().token_request(grant_type.as_deref(), outcome);
    match result {
        Ok(v) => no_store_json(StatusCode::OK, &v),
        Err(e) => OAuthErrorResponse(e).into_response(),
    }
}

pub async fn revoke(State(s): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        body_only(query.as_deref())?;
        let params = form_params(&headers, &body)?;
        let basic = basic_credentials(&headers)?;
        s.auth.revoke(&params, basic.as_ref()).await
    }
    .await;
    match result {
        Ok(()) => no_store_json(StatusCode::OK, &serde_json::json!({})),
        Err(e) => OAuthErrorResponse(e).into_response(),
    }
}

pub async fn introspect(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        body_only(query.as_deref())?;
        let params = form_params(&headers, &body)?;
        let basic = basic_credentials(&headers)?;
        s.auth.introspect(&params, basic.as_ref()).await
    }
    .await;
    match result {
        Ok(v) => no_store_json(StatusCode::OK, &v),
        Err(e) => OAuthErrorResponse(e).into_response(),
    }
}
