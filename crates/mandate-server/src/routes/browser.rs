//! The browser-facing flow: /authorize, sign-in, consent, sign-out.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::model::{Session, User};
use mandate_core::params::Params;
use mandate_core::scope::ScopeSet;
use mandate_core::secret::ct_str_eq;
use mandate_core::service::{AuthorizeOutcome, ConsentDecision, LoginError};

use crate::AppState;
use crate::http::{cookie, cross_site, form_params, redirect, see_other};
use crate::pages::{
    ConsentPage, HomePage, LoginPage, error_page, error_page_with_return, failure_page, render, stale_page,
};

/// The signed-in person, if the session cookie is valid. Store failures surface as `Err`.
pub(crate) async fn current_session(s: &AppState, headers: &HeaderMap) -> Result<Option<(Session, User)>, Response> {
    let Some(value) = cookie(headers, s.cookies.session) else {
        return Ok(None);
    };
    s.auth.session(&value).await.map_err(|e| failure_page(&e))
}

/// The signed-in person for an account page, or the redirect to the sign-in page.
pub(crate) async fn signed_in_page(s: &AppState, headers: &HeaderMap) -> Result<(Session, User), Response> {
    match current_session(s, headers).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(see_other("/login")),
        Err(r) => Err(r),
    }
}

/// A form post by the signed-in person: same-site, with the session's CSRF token (UI-01,
/// CA-03). Returns the person and the form, or the page that refuses it.
pub(crate) async fn signed_in_form(
    s: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(User, Params), Response> {
    signed_in_form_with_session(s, headers, body).await.map(|(_, user, form)| (user, form))
}

/// [`signed_in_form`], also returning the session.
pub(crate) async fn signed_in_form_with_session(
    s: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Session, User, Params), Response> {
    if let Some(r) = refuse_cross_site(s, headers) {
        return Err(r);
    }
    let (session, user) = match current_session(s, headers).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(error_page(StatusCode::FORBIDDEN, "You are not signed in.")),
        Err(r) => return Err(r),
    };
    let form = form_params(headers, body)
        .map_err(|_| error_page(StatusCode::BAD_REQUEST, "The form was not sent as a form."))?;
    if !form.single("csrf").ok().flatten().is_some_and(|c| ct_str_eq(c, &session.csrf_token)) {
        return Err(error_page(StatusCode::FORBIDDEN, "The form expired or did not come from this site."));
    }
    Ok((session, user, form))
}

/// Refuses cross-site form posts (UI-01, UI-03, CA-03).
pub(crate) fn refuse_cross_site(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    cross_site(headers, &s.auth.settings.issuer)
        .then(|| error_page(StatusCode::FORBIDDEN, "This form was submitted from another site."))
}

fn outcome_response(outcome: AuthorizeOutcome, after_post: bool) -> Response {
    match outcome {
        AuthorizeOutcome::ErrorPage(msg) => error_page(StatusCode::BAD_REQUEST, &msg),
        AuthorizeOutcome::ErrorWithReturn { error, return_to, host } => {
            error_page_with_return(&error, &return_to, &host)
        }
        AuthorizeOutcome::Stale(stale) => stale_page(stale),
        // Only the consent handler produces it; it renders the page itself.
        AuthorizeOutcome::NothingChosen { pending_id } => see_other(&format!("/consent?request={pending_id}")),
        AuthorizeOutcome::Redirect(url) => {
            redirect(if after_post { StatusCode::SEE_OTHER } else { StatusCode::FOUND }, &url)
        }
        AuthorizeOutcome::Login { pending_id } => see_other(&format!("/login?request={pending_id}")),
        AuthorizeOutcome::Consent { pending_id } => see_other(&format!("/consent?request={pending_id}")),
    }
}

pub async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let session = current_session(&s, &headers).await.ok().flatten();
    let nav = session.as_ref().map(|(session, user)| s.nav(user, session, ""));
    render(StatusCode::OK, &HomePage { nav }, None)
}

pub async fn authorize(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let session = match current_session(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if session.is_none()
        && let (Some(budget), Some(ip)) =
            (&s.anonymous_authorize, crate::client_ip::client_ip(&headers, Some(peer.ip()), s.trust_forwarded_for))
        && let Err(spent) = budget.take(ip)
    {
        return match spent {
            crate::client_ip::Spent::Address(wait) => crate::pages::too_many_authorizations_page(wait),
            crate::client_ip::Spent::Everyone(wait) => {
                tracing::warn!("anonymous authorization requests past anonymous_authorizations_per_minute: refused");
                crate::pages::too_many_authorizations_everywhere_page(wait)
            }
        };
    }
    match s.auth.authorize(&params, session.as_ref().map(|(_, u)| u)).await {
        Ok(outcome) => outcome_response(outcome, false),
        Err(e) => failure_page(&e),
    }
}

/// An account page a sign-in may return to (`/login?return=...`): only mandate's own connection
/// pages, so the parameter cannot send anyone elsewhere.
pub(crate) fn safe_return(r: Option<&str>) -> Option<&str> {
    let token =
        |s: &str| !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    r.filter(|r| match (r.strip_prefix("/account/connections/"), r.strip_prefix("/consent?request=")) {
        (Some(name), _) => token(name),
        (_, Some(request)) => token(request),
        _ => *r == "/inspector",
    })
}

/// The sign-in form; `username` is what was typed before (kept after a failed attempt).
async fn login_form(
    s: &AppState,
    status: StatusCode,
    request: Option<&str>,
    return_to: Option<&str>,
    username: &str,
    error: Option<&str>,
) -> Response {
    let csrf = s.auth.new_secret();
    let app = match request {
        Some(r) => s.auth.pending_client(r).await.ok().flatten(),
        None => None,
    };
    let providers = s
        .upstreams
        .as_ref()
        .map(|u| {
            u.sign_in_providers()
                .map(|p| {
                    let name = form_urlencoded::byte_serialize(p.name.as_bytes()).collect::<String>();
                    let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                    let href = match (request, safe_return(return_to)) {
                        (Some(r), _) => format!("/login/with/{name}?request={}", enc(r)),
                        (None, Some(back)) => format!("/login/with/{name}?return={}", enc(back)),
                        (None, None) => format!("/login/with/{name}"),
                    };
                    (href, p.title.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    let page = LoginPage {
        nav: None,
        csrf: &csrf,
        request,
        app,
        username,
        error,
        password: s.password_login,
        providers,
        return_to: safe_return(return_to),
    };
    let mut resp = render(status, &page, None);
    if let Ok(v) = HeaderValue::from_str(&s.cookies.set(s.cookies.login_csrf, &csrf, 600)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn login_page(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let request = params.single("request").ok().flatten();
    let return_to = safe_return(params.single("return").ok().flatten());
    if let Ok(Some((_, user))) = current_session(&s, &headers).await {
        return match request {
            Some(r) => match s.auth.after_login(r, &user).await {
                Ok(o) => outcome_response(o, true),
                Err(e) => failure_page(&e),
            },
            None => see_other(return_to.unwrap_or("/account/apps")),
        };
    }
    login_form(&s, StatusCode::OK, request, return_to, "", None).await
}

pub async fn login_submit(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = refuse_cross_site(&s, &headers) {
        return r;
    }
    if !s.password_login {
        return error_page(StatusCode::FORBIDDEN, "Signing in with a password is turned off here.");
    }
    let Ok(form) = form_params(&headers, &body) else {
        return error_page(StatusCode::BAD_REQUEST, "The sign-in form was not sent as a form.");
    };
    let field = |n: &str| form.single(n).ok().flatten();
    let csrf_ok = match (field("csrf"), cookie(&headers, s.cookies.login_csrf)) {
        (Some(f), Some(c)) => ct_str_eq(f, &c),
        _ => false,
    };
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or did not come from this site. Reload the page and try again.",
        );
    }
    let request = field("request");
    let return_to = safe_return(field("return"));
    let typed = field("username").unwrap_or_default();
    let typed = if typed.chars().count() <= 200 { typed } else { "" };
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return login_form(
            &s,
            StatusCode::BAD_REQUEST,
            request,
            return_to,
            typed,
            Some("Enter your username and password."),
        )
        .await;
    };
    let client = crate::client_ip::client_ip(&headers, Some(peer.ip()), s.trust_forwarded_for).unwrap_or(peer.ip());
    let (secret, _session, user) = match s.auth.login(username, password, &client.to_string()).await {
        Ok(v) => v,
        Err(LoginError::BadCredentials) => {
            return login_form(
                &s,
                StatusCode::UNAUTHORIZED,
                request,
                return_to,
                typed,
                Some("The username or password is wrong."),
            )
            .await;
        }
        Err(LoginError::Locked { until }) => {
            let minutes = ((until - s.auth.now()).max(1) + 59) / 60;
            let message = format!("Too many failed sign-ins for this account. Try again in {minutes} minute(s).");
            let mut resp =
                login_form(&s, StatusCode::TOO_MANY_REQUESTS, request, return_to, typed, Some(&message)).await;
            if let Ok(v) = HeaderValue::from_str(&(minutes * 60).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Err(LoginError::Server(e)) => return failure_page(&e),
    };
    let mut resp = match request {
        Some(r) => match s.auth.after_login(r, &user).await {
            Ok(o) => outcome_response(o, true),
            Err(e) => failure_page(&e),
        },
        None => see_other(return_to.unwrap_or("/account/apps")),
    };
    let ttl = s.auth.settings.session_ttl;
    for c in [s.cookies.set(s.cookies.session, secret.expose(), ttl), s.cookies.set(s.cookies.login_csrf, "", 0)] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub async fn consent_page(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let Some(request) = params.single("request").ok().flatten() else {
        return error_page(StatusCode::BAD_REQUEST, "No sign-in request was named.");
    };
    let (session, user) = match current_session(&s, &headers).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return see_other(&format!(
                "/login?request={}",
                form_urlencoded::byte_serialize(request.as_bytes()).collect::<String>()
            ));
        }
        Err(r) => return r,
    };
    consent_form(&s, request, &session, &user, StatusCode::OK, None).await
}

/// The consent page for a pending request (again, with `error`, after an unusable answer).
async fn consent_form(
    s: &AppState,
    request: &str,
    session: &Session,
    user: &User,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    match s.auth.consent_view(request, user).await {
        Ok(Ok(view)) => {
            let connect = match connection_needed(s, &view.resource, user).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            let page = ConsentPage {
                nav: None,
                v: &view,
                csrf: &session.csrf_token,
                username: &user.username,
                error,
                connect,
            };
            render(status, &page, view.redirect_csp_source.as_deref())
        }
        Ok(Err(stale)) => stale_page(stale),
        Err(e) => failure_page(&e),
    }
}

pub async fn consent_submit(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, user, form) = match signed_in_form_with_session(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let field = |n: &str| form.single(n).ok().flatten();
    let Some(request) = field("request") else {
        return error_page(StatusCode::BAD_REQUEST, "No sign-in request was named.");
    };
    let decision = match field("action") {
        Some("allow") => {
            // A resource that acts with the person's account elsewhere needs it connected first.
            let resource = match s.auth.consent_view(request, &user).await {
                Ok(Ok(view)) => view.resource,
                Ok(Err(stale)) => return stale_page(stale),
                Err(e) => return failure_page(&e),
            };
            match connection_needed(&s, &resource, &user).await {
                Ok(None) => {}
                Ok(Some((_, title))) => {
                    let message = format!("Connect your {title} account first: the application acts with it.");
                    return consent_form(&s, request, &session, &user, StatusCode::BAD_REQUEST, Some(&message)).await;
                }
                Err(r) => return r,
            }
            ConsentDecision::Allow { scopes: ScopeSet::from_names(form.all("scope")) }
        }
        Some("deny") => ConsentDecision::Deny,
        _ => return error_page(StatusCode::BAD_REQUEST, "Choose Allow or Deny."),
    };
    match s.auth.decide_consent(request, &user, decision).await {
        Ok(AuthorizeOutcome::NothingChosen { pending_id }) => {
            let message = "Nothing is ticked, so nothing would be allowed. Tick what you allow, or choose Deny.";
            consent_form(&s, &pending_id, &session, &user, StatusCode::BAD_REQUEST, Some(message)).await
        }
        Ok(o) => outcome_response(o, true),
        Err(e) => failure_page(&e),
    }
}

/// The provider account a resource acts with, when the person has not connected it: (name,
/// title).
async fn connection_needed(s: &AppState, resource: &str, user: &User) -> Result<Option<(String, String)>, Response> {
    let (Some(provider), Some(u)) = (s.resource_providers.get(resource), s.upstreams.as_ref()) else {
        return Ok(None);
    };
    let connected = u.is_connected(&user.id, provider).await.map_err(|e| {
        tracing::error!(error = %e, "reading an upstream account");
        error_page(StatusCode::SERVICE_UNAVAILABLE, "The server is temporarily unavailable. Try again shortly.")
    })?;
    let title = u.provider(provider).map(|p| p.spec.title.clone()).unwrap_or_else(|_| provider.clone());
    Ok((!connected).then(|| (provider.clone(), title)))
}

pub async fn logout(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refuse_cross_site(&s, &headers) {
        return r;
    }
    let Ok(Some((session, _))) = current_session(&s, &headers).await else {
        return see_other("/");
    };
    let form = form_params(&headers, &body).unwrap_or_default();
    if !form.single("csrf").ok().flatten().is_some_and(|c| ct_str_eq(c, &session.csrf_token)) {
        return error_page(StatusCode::FORBIDDEN, "The sign-out form did not come from this site.");
    }
    if let Some(v) = cookie(&headers, s.cookies.session)
        && let Err(e) = s.auth.logout(&v).await
    {
        return failure_page(&e);
    }
    let mut resp = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&s.cookies.set(s.cookies.session, "", 0)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_the_exact_return_shapes_pass() {
        for ok in ["/account/connections/github", "/consent?request=abc_DEF-123", "/inspector"] {
            assert_eq!(safe_return(Some(ok)), Some(ok));
        }
        for bad in [
            "/account/connections/../../admin",
            "/account/connections/%2e%2e",
            "/account/connections/a/b",
            "/account/connections/",
            "//evil.example/account/connections/x",
            "https://evil.example/consent?request=x",
            "/consent?request=x&next=https://evil.example",
            "/consent?request=",
            "/account/apps",
            "/inspector/callback?code=x",
            "/inspector/../admin",
            "\\evil.example",
        ] {
            assert_eq!(safe_return(Some(bad)), None, "{bad}");
        }
    }
}
