//! The inspector's HTTP face: the page and its assets, the JSON API the page drives, and the
//! OAuth callback. Every route needs a signed-in operator; every POST must come from mandate's
//! own origin as JSON.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mandate_client::callback::Callback;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Inspector;
use crate::inspection::{Inspection, NotStarted};

const PAGE: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/inspector.js");
const STYLE: &str = include_str!("../assets/inspector.css");

/// The largest request body: a tool's arguments.
const MAX_BODY: usize = 64 * 1024;

pub(crate) fn routes(state: Inspector) -> Router {
    Router::new()
        .route("/inspector", get(page))
        .route("/inspector/inspector.js", get(script))
        .route("/inspector/inspector.css", get(style))
        .route("/inspector/callback", get(callback))
        .route("/inspector/api/state", get(current))
        .route("/inspector/api/connect", post(connect))
        .route("/inspector/api/call", post(call))
        .route("/inspector/api/step-up", post(step_up))
        .route("/inspector/api/refresh", post(refresh))
        .route("/inspector/api/revoke", post(revoke))
        .route("/inspector/api/doctor", post(doctor))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The signed-in operator (person id, username), or the answer that refuses the request.
async fn operator(s: &Inspector, headers: &HeaderMap, api: bool) -> Result<(String, String), Response> {
    let person = s.settings.signed_in.person(headers).await.map_err(|e| {
        tracing::error!(error = %e, "inspector: reading the session failed");
        refuse(api, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Something went wrong on our side.")
    })?;
    let Some(person) = person else {
        return Err(if api {
            refuse(true, StatusCode::UNAUTHORIZED, "not_signed_in", "Sign in to mandate first.")
        } else {
            no_store((StatusCode::SEE_OTHER, [(header::LOCATION, "/login?return=/inspector")]).into_response())
        });
    };
    if !s.settings.operators.contains(&person.username) {
        return Err(refuse(
            api,
            StatusCode::FORBIDDEN,
            "not_an_operator",
            "The inspector is for operators: people named in inspector_operators in mandate's configuration.",
        ));
    }
    Ok((person.id, person.username))
}

/// An operator's POST: same origin, JSON.
async fn operator_post(s: &Inspector, headers: &HeaderMap) -> Result<(String, String), Response> {
    if s.settings.signed_in.cross_site(headers) || headers.get(header::ORIGIN).is_none() {
        return Err(refuse(true, StatusCode::FORBIDDEN, "cross_site", "This request did not come from the inspector."));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(refuse(true, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "Send JSON."));
    }
    operator(s, headers, true).await
}

fn refuse(api: bool, status: StatusCode, code: &str, message: &str) -> Response {
    if api {
        no_store((status, axum::Json(json!({"error": code, "message": message}))).into_response())
    } else {
        let html = format!(
            "<!doctype html><meta charset=utf-8><title>Inspector</title><link rel=stylesheet href=/inspector/inspector.css>\
             <main><h1>Inspector</h1><p>{}</p></main>",
            message.replace('&', "&amp;").replace('<', "&lt;")
        );
        hardened((status, axum::response::Html(html)).into_response())
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page's headers: its own script and style only, no framing, no referrer elsewhere.
fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    no_store(r)
}

async fn page(State(s): State<Inspector>, headers: HeaderMap) -> Response {
    match operator(&s, &headers, false).await {
        Ok(_) => hardened(axum::response::Html(PAGE).into_response()),
        Err(r) => r,
    }
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn inspection(s: &Inspector, person: &str) -> Option<Arc<Inspection>> {
    s.by_operator.lock().ok().and_then(|m| m.get(person).cloned())
}

/// Everything the page shows.
/// The operator's inspection; with `?since=N` and nothing changed since revision N, only
/// `{"revision": N, "unchanged": true}` instead of the whole view.
async fn current(State(s): State<Inspector>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (person, username) = match operator(&s, &headers, true).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let since = q.as_deref().and_then(|q| q.strip_prefix("since=")).and_then(|n| n.parse::<u64>().ok());
    let view = match inspection(&s, &person) {
        Some(i) => {
            let view = i.view.read();
            match since == Some(view.revision) {
                true => json!({ "revision": view.revision, "unchanged": true }),
                false => serde_json::to_value(&*view).unwrap_or(Value::Null),
            }
        }
        None => Value::Null,
    };
    let body = json!({
        "operator": username,
        "suggestions": s.settings.suggestions,
        "inspection": view,
    });
    no_store(axum::Json(body).into_response())
}

#[derive(Deserialize)]
struct ConnectRequest {
    url: String,
    #[serde(default)]
    scope: Option<String>,
}

/// A refusal of the API, before anything was started.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refuse(true, self.status, self.code, &self.message)
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message: format!("The request is not what was expected: {e}"),
    })
}

/// Replaces the operator's inspection with one of `url`, and connects.
async fn connect(State(s): State<Inspector>, headers: HeaderMap, body: Bytes) -> Response {
    let (person, _) = match operator_post(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req: ConnectRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let scope = req.scope.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let fresh = match replace(&s, person, req.url.trim(), scope) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    started(fresh.start("connecting", fresh.clone().connect()))
}

#[derive(Deserialize)]
struct CallRequest {
    tool: String,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct StepUpRequest {
    scopes: String,
}

/// The operator's inspection for an action, or the refusal.
async fn for_action(s: &Inspector, headers: &HeaderMap) -> Result<Arc<Inspection>, Response> {
    let (person, _) = operator_post(s, headers).await?;
    inspection(s, &person)
        .ok_or_else(|| refuse(true, StatusCode::CONFLICT, "not_connected", "Connect to an MCP server first."))
}

async fn call(State(s): State<Inspector>, headers: HeaderMap, body: Bytes) -> Response {
    let i = match for_action(&s, &headers).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let req: CallRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    started(i.start(&format!("calling {}", req.tool), i.clone().call(req.tool, req.arguments)))
}

async fn step_up(State(s): State<Inspector>, headers: HeaderMap, body: Bytes) -> Response {
    let i = match for_action(&s, &headers).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let req: StepUpRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let scopes: Vec<String> = req.scopes.split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() || scopes.iter().any(|s| s.len() > 200 || s.chars().any(|c| c.is_control() || c == '"')) {
        return refuse(true, StatusCode::BAD_REQUEST, "invalid_scope", "Name the scopes to ask for.");
    }
    started(i.start("stepping up", i.clone().step_up(scopes)))
}

async fn refresh(State(s): State<Inspector>, headers: HeaderMap) -> Response {
    match for_action(&s, &headers).await {
        Ok(i) => started(i.start("refreshing", i.clone().refresh())),
        Err(r) => r,
    }
}

async fn revoke(State(s): State<Inspector>, headers: HeaderMap) -> Response {
    match for_action(&s, &headers).await {
        Ok(i) => started(i.start("revoking", i.clone().revoke())),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct DoctorRequest {
    url: String,
}

/// The doctor's report for `url`: on the current inspection when it is of that URL, else on a
/// new one (nothing is signed in for it).
async fn doctor(State(s): State<Inspector>, headers: HeaderMap, body: Bytes) -> Response {
    let (person, _) = match operator_post(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req: DoctorRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let url = req.url.trim();
    let i = match inspection(&s, &person).filter(|i| i.view.read().url == url) {
        Some(i) => i,
        None => match replace(&s, person, url, None) {
            Ok(i) => i,
            Err(r) => return r.into_response(),
        },
    };
    started(i.start("running the doctor", i.clone().doctor()))
}

/// A new inspection of `url` for `person`, replacing (and stopping) theirs.
fn replace(s: &Inspector, person: String, url: &str, scope: Option<String>) -> Result<Arc<Inspection>, Refusal> {
    let redirect_uri = format!("{}/inspector/callback", s.settings.signed_in.public_url().trim_end_matches('/'));
    let fresh = Inspection::new(url, scope, redirect_uri, s.settings.allow_loopback).map_err(|e| Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_url",
        message: e.to_string(),
    })?;
    if let Ok(mut all) = s.by_operator.lock()
        && let Some(old) = all.insert(person, fresh.clone())
    {
        old.stop();
    }
    Ok(fresh)
}

fn started(outcome: Result<(), NotStarted>) -> Response {
    match outcome {
        Ok(()) => no_store((StatusCode::ACCEPTED, axum::Json(json!({"started": true}))).into_response()),
        Err(NotStarted::Busy(what)) => refuse(
            true,
            StatusCode::CONFLICT,
            "busy",
            &format!("The inspector is still {what}; wait for it to finish."),
        ),
    }
}

/// The authorization response, in the operator's browser: handed to the sign-in waiting for it,
/// then back to the page.
async fn callback(State(s): State<Inspector>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (person, _) = match operator(&s, &headers, false).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let response = Callback::from_query(q.as_deref().unwrap_or_default());
    let delivered = inspection(&s, &person).is_some_and(|i| i.sign_in.deliver(response));
    if !delivered {
        return refuse(
            false,
            StatusCode::BAD_REQUEST,
            "no_sign_in",
            "This authorization response does not belong to a sign-in the inspector is waiting for. Go back to the inspector and start again.",
        );
    }
    no_store((StatusCode::SEE_OTHER, [(header::LOCATION, "/inspector")]).into_response())
}
