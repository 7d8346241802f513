//! mandate-server: the HTTP surface of the authorization server. Handlers are thin: they read
//! the request, call `mandate_core::AuthServer`, and render what it returns.

mod admission;
pub mod client_ip;
pub mod fetch;
pub mod guarded_body;
mod health;
mod http;
pub mod metrics;
mod pages;
pub mod request_head;
mod routes;
mod signed_in;

/// The request parsers that take outside input, for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http::{basic_credentials, form_params};
}

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use mandate_core::AuthServer;
use mandate_core::demo::DemoStore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use fetch::GuardedFetcher;
pub use health::{ReadinessDetail, health_routes, health_routes_with};
pub use metrics::{DatabaseGauges, DatabaseStats, Metrics};
pub use request_head::harden;
pub use signed_in::SignedIn;

/// Largest request body accepted anywhere (FZ-02).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Rate limits for the endpoints that check secrets or create state, per client IP.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Login attempts: burst, then one more every `login_period`.
    pub login_burst: u32,
    pub login_period: Duration,
    /// Dynamic client registrations.
    pub register_burst: u32,
    pub register_period: Duration,
    /// `GET /authorize` without a signed-in person: each one may store a pending authorization
    /// request, so one address gets a burst, then one more every `authorize_period` (429 with
    /// `Retry-After` past it). Requests of a signed-in person are not counted.
    pub authorize_burst: u32,
    pub authorize_period: Duration,
    /// The same requests from every address together, per minute (0: unbounded): many addresses
    /// each within their budget still cannot fill the database with pending requests.
    pub anonymous_authorizations_per_minute: u32,
    /// A trusted reverse proxy sits in front: use the address it appends to `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Requests answered at once; one more is refused at once with 503 (RL-14, [`admission`]).
    pub max_in_flight: usize,
    /// A request not answered by then is answered 503 and its work dropped (RL-08).
    pub request_timeout: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_burst: 10,
            login_period: Duration::from_secs(6),
            register_burst: 20,
            register_period: Duration::from_secs(3),
            authorize_burst: 30,
            authorize_period: Duration::from_secs(2),
            anonymous_authorizations_per_minute: 3000,
            trust_forwarded_for: false,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<AuthServer>,
    /// Whether `X-Forwarded-For` names the client (see [`client_ip`]).
    pub trust_forwarded_for: bool,
    /// The demo apps' data, when they are served by this process (`/apps`).
    pub demo: Option<Arc<dyn DemoStore>>,
    pub cookies: CookieNames,
    /// Upstream providers: sign-in with them, connected accounts.
    pub upstreams: Option<Arc<mandate_upstream::Upstreams>>,
    /// Whether the sign-in page offers the password form.
    pub password_login: bool,
    /// Resource URI → the provider whose account it acts with.
    pub resource_providers: std::collections::HashMap<String, String>,
    /// Anonymous `GET /authorize` per client address (each may store a pending request).
    pub anonymous_authorize: Option<Arc<client_ip::AddressBudget>>,
}

impl AppState {
    /// The account navigation for a signed-in page.
    pub(crate) fn nav<'a>(
        &self,
        user: &'a mandate_core::model::User,
        session: &'a mandate_core::model::Session,
        current: &'static str,
    ) -> pages::Nav<'a> {
        pages::Nav {
            username: &user.username,
            csrf: &session.csrf_token,
            current,
            demo: self.demo.is_some(),
            connections: self.upstreams.is_some(),
        }
    }
}

/// Cookie names and attributes; `__Host-` prefixed and `Secure` when served over https.
#[derive(Clone, Debug)]
pub struct CookieNames {
    pub session: &'static str,
    pub login_csrf: &'static str,
    /// Binds a provider's answer to the browser that went there.
    pub upstream: &'static str,
    pub secure: bool,
}

impl CookieNames {
    pub fn for_https(https: bool) -> Self {
        if https {
            Self {
                session: "__Host-mandate_session",
                login_csrf: "__Host-mandate_login",
                upstream: "__Host-mandate_upstream",
                secure: true,
            }
        } else {
            Self {
                session: "mandate_session",
                login_csrf: "mandate_login",
                upstream: "mandate_upstream",
                secure: false,
            }
        }
    }

    pub fn set(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }
}

/// Sign-in with upstream providers and connected accounts (docs/UPSTREAM.md).
#[derive(Clone)]
pub struct Federation {
    pub upstreams: Arc<mandate_upstream::Upstreams>,
    /// Whether the sign-in page still offers the password form.
    pub password_login: bool,
    /// Resource URI → the provider whose account it acts with (the consent page asks the person
    /// to connect it first).
    pub resource_providers: std::collections::HashMap<String, String>,
}

/// The whole authorization-server router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (rate limits key on the peer address).
pub fn router(auth: Arc<AuthServer>, demo: Option<Arc<dyn DemoStore>>, limits: RateLimits) -> Router {
    router_with(auth, demo, limits, None)
}

/// [`router`], with upstream providers.
pub fn router_with(
    auth: Arc<AuthServer>,
    demo: Option<Arc<dyn DemoStore>>,
    limits: RateLimits,
    federation: Option<Federation>,
) -> Router {
    let https = auth.settings.is_https();
    let state = AppState {
        auth,
        trust_forwarded_for: limits.trust_forwarded_for,
        demo,
        cookies: CookieNames::for_https(https),
        password_login: federation.as_ref().is_none_or(|f| f.password_login),
        resource_providers: federation.as_ref().map(|f| f.resource_providers.clone()).unwrap_or_default(),
        anonymous_authorize: client_ip::AddressBudget::new(limits.authorize_burst, limits.authorize_period).map(|b| {
            let budget = Arc::new(b.with_global_per_minute(limits.anonymous_authorizations_per_minute));
            client_ip::sweep_every_minute(Arc::downgrade(&budget), client_ip::AddressBudget::forget_idle);
            budget
        }),
        upstreams: federation.map(|f| f.upstreams),
    };
    let admission = admission::Admission::new(limits.max_in_flight, limits.request_timeout);
    let mut app = routes::routes(state, limits)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(admission, admission::admit))
        // The request span names the method and the path, never the query: a client that puts
        // a token there (refused, RS-04) must not get it into the debug log either.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }))
        .layer(CatchPanicLayer::new());
    if https {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    app
}
