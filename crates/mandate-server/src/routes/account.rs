//! The person's own pages: connected apps, and revoking one.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::browser::{current_session, signed_in_form};
use crate::AppState;
use crate::http::see_other;
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
    let (user, form) = match signed_in_form(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
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
