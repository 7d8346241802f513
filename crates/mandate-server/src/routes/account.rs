//! The person's own pages: connected apps, and revoking one (confirmed first, then reported).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mandate_core::model::AuditFilter;
use mandate_core::params::Params;

use super::browser::{signed_in_form, signed_in_page};
use crate::AppState;
use crate::http::see_other;
use crate::pages::{AppRow, AppsPage, RevokePage, error_page, failure_page, render};

pub async fn apps_page(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (session, user) = match signed_in_page(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let apps = match s.auth.connected_apps(&user.id).await {
        Ok(apps) => apps,
        Err(e) => return failure_page(&e),
    };
    // After a revocation: name the application, only when this person revoked it moments ago
    // (a link with any client id must not put a registrant's chosen name in a success banner).
    let revoked = match params.single("revoked").ok().flatten() {
        Some(id) if !apps.iter().any(|a| a.client_id == id) => just_revoked(&s, &user.id, id).await,
        _ => None,
    };
    let page = AppsPage {
        nav: Some(s.nav(&user, &session, "apps")),
        apps: apps.into_iter().map(AppRow::from_app).collect(),
        revoked,
    };
    render(StatusCode::OK, &page, None)
}

/// How long after a revocation the connected-apps page reports it.
const REPORT_FOR: i64 = 300;

/// The application (name, verified) this person revoked in the last [`REPORT_FOR`] seconds.
async fn just_revoked(s: &AppState, user_id: &str, client_id: &str) -> Option<(String, bool)> {
    let filter = AuditFilter {
        user_id: Some(user_id.to_owned()),
        client_id: Some(client_id.to_owned()),
        since: Some(s.auth.now() - REPORT_FOR),
        ..Default::default()
    };
    let events = s.auth.store().events(&filter).await.ok()?;
    let revoked = events
        .iter()
        .any(|e| e.kind == "grant.revoked" && e.detail.as_deref().is_some_and(|d| d.contains("by the person")));
    if !revoked {
        return None;
    }
    let client = s.auth.store().client_by_id(client_id).await.ok()??;
    let verified = client.is_verified();
    Some((client.name, verified))
}

/// "Revoke access…": what the application will lose, and the button that does it.
pub async fn confirm_revoke(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (session, user) = match signed_in_page(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let Some(client_id) = params.single("app").ok().flatten() else {
        return error_page(StatusCode::BAD_REQUEST, "No application was named.");
    };
    let apps = match s.auth.connected_apps(&user.id).await {
        Ok(apps) => apps,
        Err(e) => return failure_page(&e),
    };
    // Another person's app looks exactly like an unknown one (CA-04).
    let Some(app) = apps.into_iter().find(|a| a.client_id == client_id) else {
        return error_page(StatusCode::NOT_FOUND, "You have not connected that application.");
    };
    let page =
        RevokePage { nav: Some(s.nav(&user, &session, "apps")), app: AppRow::from_app(app), csrf: &session.csrf_token };
    render(StatusCode::OK, &page, None)
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
        Ok(true) => see_other(&format!(
            "/account/apps?revoked={}",
            form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>()
        )),
        // Another person's app looks exactly like an unknown one (CA-04).
        Ok(false) => error_page(StatusCode::NOT_FOUND, "You have not connected that application."),
        Err(e) => failure_page(&e),
    }
}
