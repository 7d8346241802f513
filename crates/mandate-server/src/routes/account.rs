//! The person's own pages: connected apps, and revoking one.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mandate_core::secret::ct_str_eq;

use super::browser::{current_session, refuse_cross_site};
use crate::AppState;
use crate::http::{form_params, see_other};
use crate::pages::{AppRow, AppsPage, error_page, render};

pub async fn apps_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (session, user) = match current_session(&s, &headers).await {
        Ok(Some(v)) => v,
        Ok(None) => return see_other("/login"),
        Err(r) => return r,
    };
    match s.auth.connected_apps(&user.id).await {
        Ok(apps) => render(
            StatusCode::OK,
            &AppsPage {
                apps: apps.into_iter().map(AppRow::from_app).collect(),
                csrf: &session.csrf_token,
                username: &user.username,
            },
            None,
        ),
        Err(e) => {
            error_page(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.description)
        }
    }
}

pub async fn revoke_app(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refuse_cross_site(&s, &headers) {
        return r;
    }
    let (session, user) = match current_session(&s, &headers).await {
        Ok(Some(v)) => v,
        Ok(None) => return error_page(StatusCode::FORBIDDEN, "You are not signed in."),
        Err(r) => return r,
    };
    let Ok(form) = form_params(&headers, &body) else {
        return error_page(StatusCode::BAD_REQUEST, "The form was not sent as a form.");
    };
    if !form.single("csrf").ok().flatten().is_some_and(|c| ct_str_eq(c, &session.csrf_token)) {
        return error_page(StatusCode::FORBIDDEN, "The form expired or did not come from this site.");
    }
    let Some(client_id) = form.single("client_id").ok().flatten() else {
        return error_page(StatusCode::BAD_REQUEST, "No application was named.");
    };
    match s.auth.revoke_app(&user.id, client_id).await {
        Ok(true) => see_other("/account/apps"),
        // Another person's app looks exactly like an unknown one (CA-04).
        Ok(false) => error_page(StatusCode::NOT_FOUND, "You have not connected that application."),
        Err(e) => {
            error_page(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.description)
        }
    }
}
