//! Routes, one module per area.

mod account;
mod activity;
mod browser;
mod discovery;
mod personal;
mod protocol;
mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::response::Response;
use axum::routing::{get, post};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::cors::{Any, CorsLayer};

use crate::{AppState, RateLimits};

/// Applies a per-client-address rate limit to `router` (429 with `Retry-After` past the burst),
/// answered by `page` when people meet it in a browser.
fn limited(
    router: Router<AppState>,
    burst: u32,
    period: std::time::Duration,
    trust_forwarded_for: bool,
    page: Option<fn(GovernorError) -> Response>,
) -> Router<AppState> {
    let key = crate::client_ip::ClientIpKeyExtractor { trust_forwarded_for };
    let Some(config) = GovernorConfigBuilder::default().period(period).burst_size(burst).key_extractor(key).finish()
    else {
        return router;
    };
    // The limiter keeps an entry per address it has seen; those whose budget is whole again are
    // forgotten every minute (tower_governor leaves that to its user).
    crate::client_ip::sweep_every_minute(Arc::downgrade(config.limiter()), |l| {
        l.retain_recent();
        l.shrink_to_fit();
    });
    let layer = GovernorLayer::new(Arc::new(config));
    match page {
        Some(page) => router.layer(layer.error_handler(page)),
        None => router.layer(layer),
    }
}

/// The sign-in form posted too often from one address: a page, not a bare text body.
fn login_rate_limited(e: GovernorError) -> Response {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => crate::pages::rate_limited_page(wait_time),
        other => other.into_response().map(axum::body::Body::from),
    }
}

pub fn routes(state: AppState, limits: RateLimits) -> Router {
    let login = limited(
        Router::new()
            .route("/login", post(browser::login_submit))
            // Each one stores a pending request to a provider.
            .route("/login/with/{provider}", get(upstream::sign_in_with)),
        limits.login_burst,
        limits.login_period,
        limits.trust_forwarded_for,
        Some(login_rate_limited),
    );
    let register = limited(
        Router::new().route("/register", post(protocol::register)),
        limits.register_burst,
        limits.register_period,
        limits.trust_forwarded_for,
        None,
    );
    // Machine-facing endpoints are called cross-origin by browser-based MCP clients; they carry
    // no cookies, so CORS without credentials is safe. Browser pages get no CORS (AZ-16).
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        // Browser SDKs send MCP-Protocol-Version on discovery requests too.
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, HeaderName::from_static("mcp-protocol-version")])
        .max_age(std::time::Duration::from_secs(3600));
    let machine = Router::new()
        .route("/.well-known/oauth-authorization-server", get(discovery::metadata))
        .route("/.well-known/openid-configuration", get(discovery::metadata))
        .route("/jwks.json", get(discovery::jwks))
        .route("/token", post(protocol::token))
        .route("/revoke", post(protocol::revoke))
        .route("/introspect", post(protocol::introspect))
        .merge(register)
        .layer(cors);
    Router::new()
        .route("/", get(browser::home))
        .route("/static/mandate.css", get(discovery::stylesheet))
        .route("/login", get(browser::login_page))
        .route("/consent", get(browser::consent_page).post(browser::consent_submit))
        .route("/logout", post(browser::logout))
        .route("/account/apps", get(account::apps_page))
        .route("/account/apps/revoke", get(account::confirm_revoke).post(account::revoke_app))
        .route("/account/activity", get(activity::activity))
        .route("/upstream/{provider}/callback", get(upstream::callback))
        .route("/account/link", post(upstream::confirm_link))
        .route("/account/connections", get(upstream::connections))
        .route("/account/connections/{provider}", get(upstream::connect_page))
        .route("/account/connections/{provider}/link", get(upstream::link_page).post(upstream::start_link))
        .route("/account/connections/{provider}/{action}", post(upstream::start))
        .route("/apps", get(personal::apps))
        .route("/apps/customers", post(personal::create_customer))
        .route("/apps/todos", post(personal::add_todo))
        .merge(login)
        // Anonymous requests are counted per address in the handler (each may store a pending
        // authorization request; issue 13), a signed-in person's are not.
        .route("/authorize", get(browser::authorize))
        .merge(machine)
        .with_state(state)
}
