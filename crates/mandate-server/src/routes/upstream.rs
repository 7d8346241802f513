//! Upstream providers in the browser: "Continue with <provider>" on the sign-in page, the
//! provider's answer (`/upstream/<name>/callback`), linking a provider's account for sign-in
//! after the signed-in person confirms, and connecting or disconnecting the accounts tools act
//! with (`/account/connections`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use mandate_core::model::{FlowPurpose, User};
use mandate_core::params::Params;
use mandate_upstream::{Callback, SignInOutcome, UpstreamError, Upstreams};

use super::browser::{current_session, safe_return, signed_in_form, signed_in_page};
use crate::AppState;
use crate::http::{cookie, see_other};
use crate::pages::{
    ConnectPage, ConnectionRow, ConnectionsPage, LinkPage, error_page, failure_page, format_time, render,
};

/// How long the cookie binding a provider's answer to this browser lives.
const FLOW_COOKIE_TTL: i64 = 600;

#[allow(clippy::result_large_err)] // the page is the error, as in the other handlers
fn upstreams(s: &AppState) -> Result<&std::sync::Arc<Upstreams>, Response> {
    s.upstreams.as_ref().ok_or_else(|| error_page(StatusCode::NOT_FOUND, "No provider is configured here."))
}

fn title_of(u: &Upstreams, provider: &str) -> String {
    u.provider(provider).map(|p| p.spec.title.clone()).unwrap_or_else(|_| provider.to_owned())
}

/// What a provider problem means to the person; detail for operators goes to the log only.
fn upstream_failure(u: &Upstreams, provider: &str, e: &UpstreamError) -> Response {
    let title = title_of(u, provider);
    let (status, message) = match e {
        UpstreamError::UnknownProvider(_) => (StatusCode::NOT_FOUND, "No such provider is configured here.".to_owned()),
        UpstreamError::UnknownFlow => (
            StatusCode::BAD_REQUEST,
            "This answer is not for a request this browser started, or it expired or was already used. Nothing was \
             changed; start again."
                .to_owned(),
        ),
        UpstreamError::WrongIssuer => {
            (StatusCode::BAD_REQUEST, format!("The answer did not come from {title}. Nothing was changed."))
        }
        UpstreamError::Denied(code) if code == "access_denied" => {
            (StatusCode::FORBIDDEN, format!("Access was not allowed at {title}. Nothing was changed."))
        }
        UpstreamError::Denied(code) => {
            (StatusCode::BAD_REQUEST, format!("{title} did not complete the request ({code}). Nothing was changed."))
        }
        UpstreamError::NoCode => (StatusCode::BAD_REQUEST, format!("{title}'s answer was incomplete. Start again.")),
        UpstreamError::LinkedElsewhere { provider } => (
            StatusCode::CONFLICT,
            format!("This {} account already signs in another person here.", title_of(u, provider)),
        ),
        UpstreamError::Disabled => (StatusCode::FORBIDDEN, "This account is disabled.".to_owned()),
        UpstreamError::SignedInAsOther => (
            StatusCode::CONFLICT,
            "You are signed in here as someone else. Sign out first, then continue with the other account.".to_owned(),
        ),
        UpstreamError::NotLinked => (
            StatusCode::FORBIDDEN,
            format!(
                "This {title} account does not sign anyone in here. To use it, sign in another way and link it from Connections."
            ),
        ),
        UpstreamError::SignedOut => (
            StatusCode::FORBIDDEN,
            format!("You are no longer signed in here. Sign in and connect your {title} account again."),
        ),
        UpstreamError::BadIdToken(_)
        | UpstreamError::Refused { .. }
        | UpstreamError::Unavailable(_)
        | UpstreamError::NotConnected { .. } => {
            tracing::warn!(provider = %provider, error = %e, "a provider flow failed");
            (StatusCode::BAD_GATEWAY, format!("{title} could not complete the request. Try again later."))
        }
        UpstreamError::Store(mandate_core::StoreError::Unavailable(_)) => {
            tracing::error!(error = %e, "storage unavailable during a provider flow");
            (StatusCode::SERVICE_UNAVAILABLE, "The server is temporarily unavailable. Try again shortly.".to_owned())
        }
        UpstreamError::Store(_) => {
            tracing::error!(error = %e, "storage failed during a provider flow");
            (StatusCode::INTERNAL_SERVER_ERROR, "The server could not complete the request.".to_owned())
        }
        UpstreamError::Misconfigured(_) | UpstreamError::Crypto => {
            tracing::error!(provider = %provider, error = %e, "a provider flow failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "The server could not complete the request.".to_owned())
        }
    };
    error_page(status, &message)
}

/// A 303 to the provider, with the cookie binding its answer to this browser.
fn to_provider(s: &AppState, url: &str, browser: &str) -> Response {
    let mut resp = see_other(url);
    if let Ok(v) = HeaderValue::from_str(&s.cookies.set(s.cookies.upstream, browser, FLOW_COOKIE_TTL)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /login/with/{provider}[?request=ID]`: sign in with a provider.
pub async fn sign_in_with(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let u = match upstreams(&s) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !u.provider(&provider).is_ok_and(|p| p.spec.sign_in) {
        return error_page(StatusCode::NOT_FOUND, "No such sign-in provider is configured here.");
    }
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let return_to = match params.single("request").ok().flatten().filter(|r| r.len() <= 100) {
        Some(r) => {
            Some(format!("/login?request={}", form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()))
        }
        None => safe_return(params.single("return").ok().flatten()).map(str::to_owned),
    };
    let browser = cookie(&headers, s.cookies.upstream);
    match u.start(&provider, FlowPurpose::SignIn, None, return_to, browser.as_deref()).await {
        Ok(started) => to_provider(&s, &started.url, &started.browser),
        Err(e) => upstream_failure(u, &provider, &e),
    }
}

/// `GET /upstream/{provider}/callback`: the provider's answer.
pub async fn callback(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let u = match upstreams(&s) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let field = |n: &str| params.single(n).ok().flatten();
    let answer = Callback { state: field("state"), code: field("code"), error: field("error"), iss: field("iss") };
    let browser = cookie(&headers, s.cookies.upstream);
    let signed_in = match current_session(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let person = signed_in.as_ref().map(|(_, user)| user.id.as_str());
    let done = match u.finish(&provider, &answer, browser.as_deref(), person).await {
        Ok(d) => d,
        Err(e) => return upstream_failure(u, &provider, &e),
    };
    match done.purpose {
        FlowPurpose::Connect => {
            let Some((_, user)) = signed_in else {
                return error_page(StatusCode::FORBIDDEN, "You are no longer signed in. Sign in and connect again.");
            };
            let back = safe_return(done.return_to.as_deref()).map(str::to_owned);
            match u.complete_connect(done, &user).await {
                Ok(()) => see_other(back.as_deref().unwrap_or("/account/connections?connected=1")),
                Err(e) => upstream_failure(u, &provider, &e),
            }
        }
        _ => {
            let back = done.return_to.clone();
            match u.complete_sign_in(done, signed_in.as_ref().map(|(_, user)| user)).await {
                Ok(SignInOutcome::SignedIn { user }) => signed_in_as(&s, u, &provider, &user, back.as_deref()).await,
                Ok(SignInOutcome::ConfirmLink { offer, email }) => {
                    let Some((session, user)) = signed_in else {
                        return error_page(StatusCode::FORBIDDEN, "You are no longer signed in.");
                    };
                    let title = title_of(u, &provider);
                    let page = LinkPage {
                        nav: Some(s.nav(&user, &session, "connections")),
                        csrf: &session.csrf_token,
                        offer: &offer,
                        title: &title,
                        email: email.as_deref(),
                        username: &user.username,
                    };
                    render(StatusCode::OK, &page, None)
                }
                Err(e) => upstream_failure(u, &provider, &e),
            }
        }
    }
}

/// Opens a session for `user` and goes on (to the pending authorization, or the account).
async fn signed_in_as(s: &AppState, u: &Upstreams, provider: &str, user: &User, back: Option<&str>) -> Response {
    let (secret, _) = match s.auth.open_session(user, Some(&title_of(u, provider))).await {
        Ok(v) => v,
        Err(e) => return failure_page(&e),
    };
    let next =
        back.filter(|b| b.starts_with("/login?request=") || safe_return(Some(b)).is_some()).unwrap_or("/account/apps");
    let mut resp = see_other(next);
    let cookie = s.cookies.set(s.cookies.session, secret.expose(), s.auth.settings.session_ttl);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /account/link`: the signed-in person confirms a link offer.
pub async fn confirm_link(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let u = match upstreams(&s) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (user, form) = match signed_in_form(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(offer) = form.single("offer").ok().flatten() else {
        return error_page(StatusCode::BAD_REQUEST, "Nothing to link was named.");
    };
    match u.confirm_link(offer, &user).await {
        Ok(provider) => see_other(&format!("/account/connections?linked={provider}")),
        Err(e) => upstream_failure(u, "", &e),
    }
}

/// `GET /account/connections`.
pub async fn connections(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let u = match upstreams(&s) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (session, user) = match signed_in_page(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let identities = match s.auth.store().identities_of(&user.id).await {
        Ok(v) => v,
        Err(e) => return failure_page(&e.into()),
    };
    let accounts = match u.accounts(&user.id).await {
        Ok(v) => v,
        Err(e) => return upstream_failure(u, "", &e),
    };
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let notice = if params.single("connected").ok().flatten().is_some() {
        Some("The account is connected.".to_owned())
    } else if let Some(p) = params.single("linked").ok().flatten().filter(|p| u.provider(p).is_ok()) {
        Some(format!("You can now sign in with {}.", title_of(u, p)))
    } else {
        params
            .single("disconnected")
            .ok()
            .flatten()
            .filter(|p| u.provider(p).is_ok())
            .map(|p| format!("Your {} account is disconnected.", title_of(u, p)))
    };
    let linkable = u
        .sign_in_providers()
        .filter(|p| !identities.iter().any(|i| i.provider == p.name))
        .map(|p| (p.name.clone(), p.title.clone()))
        .collect();
    let connectable = u
        .providers()
        .filter(|p| !p.sign_in || s.resource_providers.values().any(|r| r == &p.name))
        .filter(|p| !accounts.iter().any(|a| a.provider == p.name))
        .map(|p| (p.name.clone(), p.title.clone()))
        .collect();
    let page = ConnectionsPage {
        nav: Some(s.nav(&user, &session, "connections")),
        csrf: &session.csrf_token,
        sign_in: identities
            .into_iter()
            .map(|i| ConnectionRow {
                title: title_of(u, &i.provider),
                provider: i.provider,
                who: i.email.unwrap_or(i.subject),
                status: "linked",
                since: format_time(i.created_at),
            })
            .collect(),
        accounts: accounts
            .into_iter()
            .map(|a| ConnectionRow {
                provider: a.provider,
                title: a.title,
                who: a.subject.unwrap_or_else(|| "account".to_owned()),
                status: if a.connected { "connected" } else { "needs reconnecting" },
                since: format_time(a.connected_at),
            })
            .collect(),
        linkable,
        connectable,
        notice,
    };
    render(StatusCode::OK, &page, None)
}

/// `GET /account/connections/{provider}` (the URL agents are given) and
/// `GET /account/connections/{provider}/link`: a confirmation before leaving for the provider.
async fn confirm_page(
    s: &AppState,
    headers: &HeaderMap,
    provider: &str,
    action: &'static str,
    return_to: Option<&str>,
) -> Response {
    let u = match upstreams(s) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(p) = u.provider(provider) else {
        return error_page(StatusCode::NOT_FOUND, "No such provider is configured here.");
    };
    if action == "link" && !p.spec.sign_in {
        return error_page(StatusCode::NOT_FOUND, "This provider does not sign people in here.");
    }
    let (session, user) = match current_session(s, headers).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            let here = format!("/account/connections/{provider}");
            return see_other(&format!(
                "/login?return={}",
                form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>()
            ));
        }
        Err(r) => return r,
    };
    // The form posts here, and the answer sends the browser on to the provider: its origin must be
    // an allowed form target (CSP form-action applies to the redirect).
    let target = match p.metadata(u.http()).await {
        Ok(m) => m
            .authorization_endpoint
            .as_deref()
            .and_then(|a| url::Url::parse(a).ok())
            .map(|a| a.origin().ascii_serialization()),
        Err(e) => return upstream_failure(u, provider, &e),
    };
    let connected = u.is_connected(&user.id, provider).await.unwrap_or(false);
    let page = ConnectPage {
        nav: Some(s.nav(&user, &session, "connections")),
        csrf: &session.csrf_token,
        provider,
        title: &p.spec.title,
        action,
        return_to,
        connected,
    };
    render(StatusCode::OK, &page, target.as_deref())
}

pub async fn connect_page(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let return_to = safe_return(params.single("return").ok().flatten());
    confirm_page(&s, &headers, &provider, "connect", return_to).await
}

pub async fn link_page(State(s): State<AppState>, Path(provider): Path<String>, headers: HeaderMap) -> Response {
    confirm_page(&s, &headers, &provider, "link", None).await
}

/// `POST /account/connections/{provider}/link` (its own route: the GET page shares the path).
pub async fn start_link(
    state: State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(state, Path((provider, "link".to_owned())), headers, body).await
}

/// `POST /account/connections/{provider}/{connect|link|disconnect}`: off to the provider.
pub async fn start(
    State(s): State<AppState>,
    Path((provider, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let u = match upstreams(&s) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (user, form) = match signed_in_form(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let browser = cookie(&headers, s.cookies.upstream);
    let started = match action.as_str() {
        "connect" => {
            let back = safe_return(form.single("return").ok().flatten()).map(str::to_owned);
            u.start(&provider, FlowPurpose::Connect, Some(&user.id), back, browser.as_deref()).await
        }
        "link" if u.provider(&provider).is_ok_and(|p| p.spec.sign_in) => {
            u.start(&provider, FlowPurpose::SignIn, Some(&user.id), None, browser.as_deref()).await
        }
        "disconnect" => {
            return match u.disconnect(&user.id, &provider).await {
                Ok(_) => see_other(&format!(
                    "/account/connections?disconnected={}",
                    form_urlencoded::byte_serialize(provider.as_bytes()).collect::<String>()
                )),
                Err(e) => upstream_failure(u, &provider, &e),
            };
        }
        _ => return error_page(StatusCode::NOT_FOUND, "No such action."),
    };
    match started {
        Ok(started) => to_provider(&s, &started.url, &started.browser),
        Err(e) => upstream_failure(u, &provider, &e),
    }
}
