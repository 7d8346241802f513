//! Prometheus metrics: `GET /metrics` in the text exposition format (0.0.4), for operators.
//!
//! One [`Metrics`] per process: [`Metrics::record`] wraps the whole router (authorization
//! server, `/mcp`, gateway resources) and counts each request by route template, method and
//! status class, with its latency; the service's own counters ([`ServiceCounters`]: token
//! answers, refresh outcomes, live MCP sessions) and the database pool are read at each scrape.
//! Where `/metrics` is served is the caller's choice: on a listener of its own
//! ([`Metrics::endpoint`] without a token), or on the public one behind a bearer token.
//! docs/DEPLOYMENT.md#metrics lists every metric.
//!
//! [`ServiceCounters`]: mandate_core::service::ServiceCounters

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mandate_core::AuthServer;
use mandate_core::secret::SecretHash;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::guarded_body::{hold_until_sent, is_event_stream};

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets, seconds: from a cached document (~1 ms) to a sign-in's password hash and a
/// slow upstream (seconds).
const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The database pool and write queue as they are at a scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabaseStats {
    /// Connections open in the pool, idle or in use.
    pub connections: u32,
    /// Of those, idle ones.
    pub idle: u32,
    /// The most the pool opens.
    pub max_connections: u32,
    /// Writes waiting for SQLite's single writer (0 on PostgreSQL).
    pub write_queue: u64,
}

/// Reads [`DatabaseStats`] (cheap, never blocks: it is called while a scrape is encoded).
pub type DatabaseGauges = Arc<dyn Fn() -> DatabaseStats + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone)]
struct LatencyHistogram;

impl MetricConstructor<Histogram> for LatencyHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// This process's metrics. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, LatencyHistogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics over `auth`'s counters and, when given, the database's pool.
    pub fn new(auth: Arc<AuthServer>, database: Option<DatabaseGauges>) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "mandate_http_requests",
            "HTTP requests answered, by route template (\"other\" when no route matched), method and status class",
            requests.clone(),
        );
        let latency = Family::new_with_constructor(LatencyHistogram);
        registry.register(
            "mandate_http_request_duration_seconds",
            "Time from a request's arrival until its response body was sent (an event stream answering a GET: until its head), by route template and method",
            latency.clone(),
        );
        registry.register_collector(Box::new(ServiceCollector { auth, database }));
        Arc::new(Self { registry, requests, latency })
    }

    /// `app`, with every request it answers counted and timed. Apply it to the whole router, after
    /// every `merge`, so that each route is labelled with its template.
    pub fn record(self: &Arc<Self>, app: Router) -> Router {
        let metrics = self.clone();
        app.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let metrics = metrics.clone();
            async move { metrics.track(req, next).await }
        }))
    }

    async fn track(&self, req: Request, next: Next) -> Response {
        let started = Instant::now();
        // The template (`/mcp`, `/upstream/{provider}/callback`), never the path: bounded labels.
        let route = req.extensions().get::<MatchedPath>().map_or("other", MatchedPath::as_str).to_owned();
        let get = req.method() == Method::GET;
        let method = method_label(req.method());
        let response = next.run(req).await;
        let status = status_class(response.status());
        self.requests.get_or_create(&RequestLabels { route: route.clone(), method, status }).inc();
        let histogram = self.latency.get_or_create_owned(&LatencyLabels { route, method });
        if get && is_event_stream(&response) {
            // A server-to-client channel stays open for as long as the client keeps it.
            histogram.observe(started.elapsed().as_secs_f64());
            return response;
        }
        hold_until_sent(response, Timed { started, histogram })
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }

    /// `GET /metrics`. With `token`, a scrape must send `Authorization: Bearer <token>` (compared
    /// in constant time); anything else gets `401` and nothing more.
    pub fn endpoint(self: &Arc<Self>, token: Option<&str>) -> Router {
        let expected = token.map(SecretHash::of);
        Router::new().route("/metrics", get(scrape)).with_state((self.clone(), expected.map(Arc::new)))
    }
}

async fn scrape(
    State((metrics, token)): State<(Arc<Metrics>, Option<Arc<SecretHash>>)>,
    headers: HeaderMap,
) -> Response {
    if let Some(expected) = token
        && !bearer(&headers).is_some_and(|t| SecretHash::of(t).ct_eq(&expected))
    {
        let mut r = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"metrics\""));
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    let mut r = metrics.render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The token of `Authorization: Bearer <token>`, if that is what was sent.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Records its request's latency when dropped: once the response body is sent, or the client
/// went away.
struct Timed {
    started: Instant,
    histogram: Histogram,
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// What is read at each scrape: the service's counters and the database pool.
struct ServiceCollector {
    auth: Arc<AuthServer>,
    database: Option<DatabaseGauges>,
}

impl std::fmt::Debug for ServiceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCollector").finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ServiceCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = self.auth.counters();
        {
            let mut m = e.encode_descriptor(
                "mandate_token_requests",
                "Token endpoint answers by grant type (authorization_code, refresh_token, other, none) and outcome: issued, or the OAuth error code the request was refused with",
                None,
                MetricType::Counter,
            )?;
            for (grant_type, outcome, n) in c.token_requests() {
                let labels = [("grant_type", grant_type), ("outcome", outcome)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut e,
            "mandate_refresh_rotations",
            "Refresh tokens rotated: the presented token spent, a new one issued",
            c.refresh_rotated.get(),
        )?;
        counter(
            &mut e,
            "mandate_refresh_grace_retries",
            "Rotated refresh tokens presented again inside the grace window, their successor unused: answered with that same successor",
            c.refresh_grace_retries.get(),
        )?;
        counter(
            &mut e,
            "mandate_refresh_races_lost",
            "Rotated refresh tokens presented again an instant after the rotation with no grace window: refused, nothing revoked",
            c.refresh_races_lost.get(),
        )?;
        counter(
            &mut e,
            "mandate_refresh_reuse_detections",
            "Rotated refresh tokens presented again outside the grace window: the whole token family revoked",
            c.refresh_reuse_detected.get(),
        )?;
        counter(
            &mut e,
            "mandate_pkce_challenge_reuses",
            "Authorization requests repeating a PKCE challenge the same client sent in the last day (recorded, not refused)",
            c.pkce_challenge_reuses.get(),
        )?;
        {
            let mut m = e.encode_descriptor(
                "mandate_code_replays",
                "Authorization codes presented again; grant_revoked=\"true\" when the replay proved possession and the grant was revoked",
                None,
                MetricType::Counter,
            )?;
            let revoking = c.code_replays_revoking.get();
            for (revoked, n) in [("false", c.code_replays.get().saturating_sub(revoking)), ("true", revoking)] {
                ConstCounter::new(n).encode(m.encode_family(&[("grant_revoked", revoked)])?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "mandate_mcp_sessions",
                "MCP sessions this instance holds in memory, by resource (its demo endpoint and each gateway resource)",
                None,
                MetricType::Gauge,
            )?;
            for (resource, n) in c.mcp_sessions_by_resource() {
                let labels = [("resource", resource.as_str())];
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(m.encode_family(&labels)?)?;
            }
        }
        if let Some(read) = &self.database {
            let s = read();
            gauge(
                &mut e,
                "mandate_db_pool_connections",
                "Database connections open in the pool, idle or in use",
                s.connections.into(),
            )?;
            gauge(&mut e, "mandate_db_pool_idle_connections", "Idle database connections in the pool", s.idle.into())?;
            gauge(
                &mut e,
                "mandate_db_pool_max_connections",
                "The most database connections the pool opens",
                s.max_connections.into(),
            )?;
            gauge(
                &mut e,
                "mandate_db_write_queue_depth",
                "Writes waiting for SQLite's single writer connection (always 0 on PostgreSQL)",
                i64::try_from(s.write_queue).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap_or(Method::CONNECT)), "other");
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::SEE_OTHER), "3xx");
        assert_eq!(status_class(StatusCode::UNAUTHORIZED), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }

    #[test]
    fn only_a_bearer_token_is_read() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            m
        };
        assert_eq!(bearer(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&h("bearer abc")), Some("abc"));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearerabc")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
