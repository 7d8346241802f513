//! mandate-testkit: a real mandate (authorization server and MCP endpoint, one router) on a
//! loopback port, backed by a SQLite file in a temp dir, with a manual clock; a cookie-keeping
//! "browser" that never follows redirects; a raw JSON-RPC MCP client; and a fake MCP server for
//! the client's tests. Test support only: failing loudly (unwrap) is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod database;
mod fake;
mod mcp;
mod proxy;

pub use database::{TestDatabase, engine_is_postgres, postgres_admin_url};
pub use fake::{Captured, FAKE_SESSION, FakeMcp, FakeServer};
pub use proxy::TcpProxy;

pub use mcp::{McpClient, McpReply};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mandate_core::clock::{ManualClock, OsRandom};
use mandate_core::keys::KeyEncryptionKey;
use mandate_core::scope::ResourceCatalog;
use mandate_core::ssrf::FetchPolicy;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_server::{GuardedFetcher, RateLimits, router};
use mandate_store::SqlStore;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

pub const START: i64 = 1_800_000_000;
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub base: String,
    pub auth: Arc<AuthServer>,
    pub store: SqlStore,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub db: TestDatabase,
    /// The key-encryption key (a second instance on the same database needs it).
    pub kek: KeyEncryptionKey,
}

pub struct Options {
    pub fetch_policy: FetchPolicy,
    pub resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    /// Pretend a trusted proxy is in front (`X-Forwarded-For` names the client).
    pub trust_forwarded_for: bool,
    /// Sign-in posts allowed per address before the rate limit (default: effectively none).
    pub login_burst: u32,
    /// `GET /authorize` requests allowed per address before the rate limit (default: effectively none).
    pub authorize_burst: u32,
    /// `anonymous_authorizations_per_minute` (0, the default here: unbounded).
    pub anonymous_authorizations_per_minute: u32,
    /// `Settings::refresh_grace` (seconds); the production default unless a test sets it.
    pub refresh_grace: i64,
    /// A clock shared with another server in the same test (default: a new one at [`START`]).
    pub clock: Option<ManualClock>,
    /// `Settings::access_token_ttl` (seconds); the default unless a test sets it.
    pub access_token_ttl: Option<i64>,
    /// Record metrics and serve `/metrics` behind this bearer token (as `mandate serve` does
    /// with `metrics_token` and no `metrics_listen`); no metrics by default.
    pub metrics_token: Option<String>,
    /// Resources served besides the demo apps (which stay the default, at `<base>/mcp`).
    pub extra_resources: Vec<mandate_core::scope::ResourceDef>,
    /// Adjusts the settings last (a test's own limits and lifetimes).
    pub settings: Option<fn(&mut Settings)>,
    /// `RateLimits::request_timeout` and `max_in_flight` (the production defaults otherwise).
    pub request_timeout: Option<std::time::Duration>,
    pub max_in_flight: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        // Tests serve client metadata documents from loopback over http.
        Self {
            fetch_policy: FetchPolicy { allow_loopback: true, allow_http: true },
            resolver: None,
            trust_forwarded_for: false,
            login_burst: 1000,
            authorize_burst: 100_000,
            anonymous_authorizations_per_minute: 0,
            refresh_grace: Settings::new("http://localhost").refresh_grace,
            clock: None,
            access_token_ttl: None,
            metrics_token: None,
            extra_resources: Vec::new(),
            settings: None,
            request_timeout: None,
            max_in_flight: None,
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let db = TestDatabase::create().await;
        let store = SqlStore::open(db.url()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = opts.clock.clone().unwrap_or_else(|| ManualClock::new(START));
        let kek = KeyEncryptionKey::generate(&OsRandom);
        let mut settings = Settings::new(&base);
        settings.fetch_policy = opts.fetch_policy;
        settings.refresh_grace = opts.refresh_grace;
        if let Some(ttl) = opts.access_token_ttl {
            settings.access_token_ttl = ttl;
        }
        if let Some(adjust) = opts.settings {
            adjust(&mut settings);
        }
        let fetcher = match opts.resolver {
            Some(r) => GuardedFetcher::with_resolver(opts.fetch_policy, r),
            None => GuardedFetcher::new(opts.fetch_policy),
        }
        .unwrap();
        let demo: Arc<dyn mandate_core::demo::DemoStore> = Arc::new(store.clone());
        let kept = store.clone();
        let deps = Dependencies {
            store: Arc::new(store),
            clock: Arc::new(clock.clone()),
            rng: Arc::new(OsRandom),
            kek: kek.clone(),
            documents: Arc::new(fetcher),
        };
        let mut resources = ResourceCatalog::demo(&base).unwrap().resources().to_vec();
        resources.extend(opts.extra_resources.iter().cloned());
        let catalog = ResourceCatalog::new(resources).unwrap();
        let auth = Arc::new(AuthServer::new(settings, catalog, deps).await.unwrap());
        auth.add_user("alice", PASSWORD.into()).await.unwrap();
        auth.add_user("bob", PASSWORD.into()).await.unwrap();
        let limits = RateLimits {
            login_burst: opts.login_burst,
            register_burst: 1000,
            authorize_burst: opts.authorize_burst,
            anonymous_authorizations_per_minute: opts.anonymous_authorizations_per_minute,
            trust_forwarded_for: opts.trust_forwarded_for,
            request_timeout: opts.request_timeout.unwrap_or(RateLimits::default().request_timeout),
            max_in_flight: opts.max_in_flight.unwrap_or(RateLimits::default().max_in_flight),
            ..RateLimits::default()
        };
        let resource = auth.resources.resolve(None).unwrap().clone();
        let mcp = mandate_mcp::router(
            mandate_mcp::McpSettings::in_process(&auth, &resource, Vec::new()),
            auth.clone(),
            demo.clone(),
        );
        let mut app =
            router(auth.clone(), Some(demo), limits).merge(mcp).merge(mandate_server::health_routes(auth.clone()));
        if let Some(token) = &opts.metrics_token {
            let pool = kept.pool().clone();
            let writes = kept.clone();
            let database: mandate_server::DatabaseGauges = Arc::new(move || mandate_server::DatabaseStats {
                connections: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap(),
                max_connections: pool.options().get_max_connections(),
                write_queue: writes.write_queue_depth() as u64,
            });
            let metrics = mandate_server::Metrics::new(auth.clone(), Some(database));
            app = metrics.record(app.merge(metrics.endpoint(Some(token))));
        }
        // As `mandate serve` does: request-head limits, keep-alive after unread bodies.
        let app = mandate_server::harden(app).into_make_service_with_connect_info::<SocketAddr>();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base, auth, store: kept, clock, http, db, kek }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn resource(&self) -> String {
        self.url("/mcp")
    }

    pub fn browser(&self) -> Browser {
        Browser { http: self.http.clone(), base: self.base.clone(), cookies: HashMap::new() }
    }

    /// Registers a public client through RFC 7591.
    pub async fn register_public(&self, redirect_uri: &str) -> String {
        let body = serde_json::json!({
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Test agent",
        });
        let r = self.http.post(self.url("/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned()
    }

    /// Registers a confidential client (client_secret_basic); returns (id, secret).
    pub async fn register_confidential(&self, redirect_uri: &str) -> (String, String) {
        let body = serde_json::json!({
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Confidential agent",
        });
        let r = self.http.post(self.url("/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (v["client_id"].as_str().unwrap().to_owned(), v["client_secret"].as_str().unwrap().to_owned())
    }

    /// A client pre-registered by an operator (shown as verified); public or confidential.
    pub async fn preregister(&self, redirect_uri: &str, confidential: bool) -> (String, Option<String>) {
        self.preregister_serving(redirect_uri, confidential, Vec::new()).await
    }

    /// A client pre-registered by an operator, serving `resources` (it may introspect tokens
    /// issued for them).
    pub async fn preregister_serving(
        &self,
        redirect_uri: &str,
        confidential: bool,
        resources: Vec<String>,
    ) -> (String, Option<String>) {
        let (client, secret) = self
            .auth
            .add_client(mandate_core::service::ClientRegistration {
                name: "Operator app".into(),
                redirect_uris: vec![redirect_uri.into()],
                confidential,
                allow_refresh: true,
                scope: None,
                resources,
            })
            .await
            .unwrap();
        (client.id, secret.map(|s| s.expose().to_owned()))
    }

    /// The resource server of [`TestServer::resource`] as an operator registers it: a verified
    /// confidential client serving that resource, so it may introspect tokens issued for it.
    pub async fn resource_server(&self) -> (String, String) {
        let (id, secret) = self.preregister_serving("https://rs.test/cb", true, vec![self.resource()]).await;
        (id, secret.unwrap())
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        let r = self.http.post(self.url("/token")).form(form).send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    /// One integer the database answers (`SELECT COUNT(*) ...`), to check stored state.
    pub async fn db_count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.store.pool()).await.unwrap()
    }

    /// Runs a statement against the database (a test tampering with stored state); returns the rows affected.
    pub async fn db_execute(&self, sql: &'static str) -> u64 {
        sqlx::query(sql).execute(self.store.pool()).await.unwrap().rows_affected()
    }

    /// The first (text) column of every row the database answers.
    pub async fn db_strings(&self, sql: &'static str) -> Vec<String> {
        sqlx::query_scalar(sql).fetch_all(self.store.pool()).await.unwrap()
    }

    pub async fn introspect(&self, id: &str, secret: &str, token: &str) -> Value {
        let r = self
            .http
            .post(self.url("/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

/// PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = mandate_core::secret::random_token(&OsRandom);
    let challenge = mandate_core::pkce::s256(&verifier);
    (verifier, challenge)
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The value of a hidden form field in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
}

pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    /// A browser for a server at `base` (for servers run as separate processes).
    pub fn for_base(base: &str) -> Self {
        // A connection per request, so a load balancer in front can send each to another instance.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Self { http, base: base.to_owned(), cookies: HashMap::new() }
    }

    fn absorb(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let s = v.to_str().unwrap();
            let pair = s.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || s.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn abs(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") { path_or_url.to_owned() } else { format!("{}{path_or_url}", self.base) }
    }

    async fn finish(&mut self, r: reqwest::Response) -> Reply {
        let status = r.status();
        let headers = r.headers().clone();
        self.absorb(&headers);
        let location = headers.get(LOCATION).map(|v| v.to_str().unwrap().to_owned());
        Reply { status, location, headers, body: r.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let r = self.http.get(self.abs(path)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.finish(r).await
    }

    /// A POST as a browser sends it from one of this site's pages: its cookies, and (pages use
    /// `Referrer-Policy: same-origin`) its real `Origin` and `Sec-Fetch-Site: same-origin`.
    fn same_origin_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.abs(path))
            .header("cookie", self.cookie_header())
            .header("origin", self.base.clone())
            .header("sec-fetch-site", "same-origin")
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let r = self.same_origin_post(path).form(form).send().await.unwrap();
        self.finish(r).await
    }

    /// A same-origin `fetch` POST of JSON, as a page's script sends it.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Reply {
        let r = self.same_origin_post(path).json(body).send().await.unwrap();
        self.finish(r).await
    }

    pub async fn post_raw(&mut self, path: &str, body: String, extra: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(self.abs(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        self.finish(r).await
    }

    /// Signs in on the login page (optionally continuing a pending request).
    pub async fn login(&mut self, user: &str, request: Option<&str>) -> Reply {
        self.login_with(user, PASSWORD, request).await
    }

    /// Signs in with a given password.
    pub async fn login_with(&mut self, user: &str, password: &str, request: Option<&str>) -> Reply {
        let page = self.get(&format!("/login{}", request.map(|r| format!("?request={r}")).unwrap_or_default())).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = hidden(&page.body, "csrf").unwrap();
        let mut form = vec![("csrf", csrf.as_str()), ("username", user), ("password", password)];
        if let Some(r) = request {
            form.push(("request", r));
        }
        self.post("/login", &form).await
    }
}

/// An authorization request URL.
pub struct Authz {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub state: String,
    pub extra: Vec<(String, String)>,
}

impl Authz {
    pub fn new(client_id: &str, redirect_uri: &str, challenge: &str) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            challenge: challenge.into(),
            scope: Some("customers.read customers.write".into()),
            resource: None,
            state: "st-123".into(),
            extra: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("code_challenge", &self.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &self.state);
        if let Some(sc) = &self.scope {
            s.append_pair("scope", sc);
        }
        if let Some(r) = &self.resource {
            s.append_pair("resource", r);
        }
        for (k, v) in &self.extra {
            s.append_pair(k, v);
        }
        format!("/authorize?{}", s.finish())
    }
}

/// GET the authorization URL, sign in as `user`, and open the consent page.
pub async fn open_consent(b: &mut Browser, authorize_url: &str, user: &str) -> Reply {
    let r = b.get(authorize_url).await;
    let request = r.location.expect("a redirect to sign in").trim_start_matches("/login?request=").to_owned();
    let consent = b.login(user, Some(&request)).await.location.expect("a redirect to consent");
    b.get(&consent).await
}

/// Submits a consent page with `action` (allow or deny) and the ticked `scopes`.
pub async fn submit_consent(b: &mut Browser, page: &Reply, action: &str, scopes: &[&str]) -> Reply {
    let csrf = hidden(&page.body, "csrf").expect("csrf field");
    let request = hidden(&page.body, "request").expect("request field");
    let mut form = vec![("csrf", csrf.as_str()), ("request", request.as_str()), ("action", action)];
    form.extend(scopes.iter().map(|s| ("scope", *s)));
    b.post("/consent", &form).await
}

/// Runs authorize → login → consent (allowing `allow`) and returns the final redirect.
pub async fn consent_flow(b: &mut Browser, authz: &Authz, user: &str, allow: &[&str]) -> String {
    let r = b.get(&authz.url()).await;
    let mut next = r.location.clone().unwrap_or_else(|| panic!("{} {}", r.status, r.body));
    if let Some(req) = next.strip_prefix("/login?request=") {
        let req = req.to_owned();
        let r = b.login(user, Some(&req)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        next = r.location.unwrap();
    }
    if next.starts_with("/consent") {
        let page = b.get(&next).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = hidden(&page.body, "csrf").unwrap();
        let request = hidden(&page.body, "request").unwrap();
        let mut form = vec![("csrf", csrf.as_str()), ("request", request.as_str()), ("action", "allow")];
        for s in allow {
            form.push(("scope", s));
        }
        let r = b.post("/consent", &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        next = r.location.unwrap();
    }
    next
}

/// A full authorization: returns (code, verifier).
pub async fn authorize_code(
    s: &TestServer,
    b: &mut Browser,
    client_id: &str,
    redirect: &str,
    allow: &[&str],
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let loc = consent_flow(b, &Authz::new(client_id, redirect, &challenge), "alice", allow).await;
    assert!(loc.starts_with(redirect), "{loc}");
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(s.base.as_str()));
    (query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}")), verifier)
}

pub async fn redeem(
    s: &TestServer,
    client_id: &str,
    redirect: &str,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let (st, _, v) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("client_id", client_id),
            ("redirect_uri", redirect),
        ])
        .await;
    (st, v)
}

pub async fn refresh(s: &TestServer, client_id: &str, rt: &str) -> (StatusCode, Value) {
    let (st, _, v) = s.token(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", client_id)]).await;
    (st, v)
}
