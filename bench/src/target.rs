//! The server under load: an in-process mandate on a loopback port with the demo apps, the
//! guarded MCP endpoint and (for the gateway scenario) a gateway resource, and the browser and
//! client steps the scenarios drive it with.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use mandate_core::clock::{Clock, OsRandom, SystemClock};
use mandate_core::keys::KeyEncryptionKey;
use mandate_core::scope::ResourceCatalog;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_server::{GuardedFetcher, RateLimits, router};
use mandate_store::SqlStore;
use serde_json::{Value, json};

use crate::{gateway, mcp};

pub(crate) const CB: &str = "https://agent.bench/callback";
pub(crate) const PASSWORD: &str = "bench password 1";

pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    /// The server's own handles, when it runs in this process.
    pub(crate) local: Option<Local>,
    /// The gateway's resource URL, when an upstream is served (`<base>/mcp/everything`).
    pub(crate) gateway: Option<String>,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

/// An in-process server's authorization server and store.
pub(crate) struct Local {
    pub(crate) auth: Arc<AuthServer>,
    pub(crate) store: SqlStore,
}

/// What a token is for: its scope, and its resource (none: the default one, the demo apps).
#[derive(Clone, Copy)]
pub(crate) struct Access<'a> {
    pub(crate) scope: &'a str,
    pub(crate) resource: Option<&'a str>,
}

pub(crate) const DEMO: Access<'static> = Access { scope: "customers.read", resource: None };

/// Starts the server; with `upstream` (a Streamable HTTP MCP server's URL), also serves it
/// through the gateway at `<base>/mcp/everything`, its resource in the catalogue.
pub(crate) async fn start(database: Option<&str>, upstream: Option<&str>) -> anyhow::Result<Target> {
    start_with(database, upstream, Arc::new(SystemClock), |_| {}).await
}

/// [`start`] on `clock`, with `adjust` applied to the settings last (the soak's lifetimes).
pub(crate) async fn start_with(
    database: Option<&str>,
    upstream: Option<&str>,
    clock: Arc<dyn Clock>,
    adjust: fn(&mut Settings),
) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let url = match database {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let store = SqlStore::open(&url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut settings = Settings::new(&base);
    adjust(&mut settings);
    let upstream = match upstream {
        Some(url) => Some(gateway::discover(&base, url).await?),
        None => None,
    };
    let mut resources = ResourceCatalog::demo(&base)?.resources().to_vec();
    resources.extend(upstream.as_ref().map(|u| u.discovered.mapping.resource.clone()));
    let demo: Arc<dyn mandate_core::demo::DemoStore> = Arc::new(store.clone());
    let deps = Dependencies {
        store: Arc::new(store.clone()),
        clock,
        rng: Arc::new(OsRandom),
        kek: KeyEncryptionKey::generate(&OsRandom),
        documents: Arc::new(GuardedFetcher::new(settings.fetch_policy)?),
    };
    let auth = Arc::new(AuthServer::new(settings, ResourceCatalog::new(resources)?, deps).await?);
    for i in 0..64 {
        // user2 is also the fixed caller of the unguarded endpoint (see `mcp`); user3 calls the
        // gateway.
        auth.add_user(&format!("user{i}"), PASSWORD.into()).await?;
    }
    // Bench traffic comes from one address: lift the per-IP limits for it.
    let limits = RateLimits {
        login_burst: 1_000_000,
        register_burst: 1_000_000,
        authorize_burst: 1_000_000,
        anonymous_authorizations_per_minute: 0,
        ..RateLimits::default()
    };
    let host = base.trim_start_matches("http://").to_owned();
    let def = auth.resources.resolve(None).map_err(|e| anyhow::anyhow!(e.description.to_string()))?.clone();
    let settings = mandate_mcp::McpSettings::in_process(&auth, &def, Vec::new());
    let guarded = mandate_mcp::router(settings, auth.clone(), demo.clone());
    let bench_user = auth.store().user_by_name("user2").await?.context("bench user")?;
    let open = mcp::open_router(auth.clone(), demo.clone(), vec![host], mcp::caller(&bench_user.id, "bench-open"));
    let gateway = upstream.as_ref().map(|u| u.spec.resource.clone());
    let mut app = router(auth.clone(), Some(demo), limits).merge(guarded).merge(open);
    if let Some(u) = upstream {
        app = app.merge(gateway::router(u, &auth)?);
    }
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(64).build()?;
    Ok(Target { base, http, local: Some(Local { auth, store }), gateway, _dir: Some(dir) })
}

pub(crate) fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A signed-in browser session for `user` that has consented once for `client`.
pub(crate) struct Session {
    pub(crate) cookie: String,
}

impl Target {
    pub(crate) async fn register(&self) -> anyhow::Result<String> {
        let body = json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"], "client_name": "bench"});
        let v: Value = self.http.post(format!("{}/register", self.base)).json(&body).send().await?.json().await?;
        v["client_id"].as_str().map(str::to_owned).context("registration failed")
    }

    pub(crate) async fn login(&self, user: &str) -> anyhow::Result<(reqwest::StatusCode, Option<String>)> {
        let page = self.http.get(format!("{}/login", self.base)).send().await?;
        let csrf_cookie = page
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .context("no login cookie")?;
        let csrf = hidden(&page.text().await?, "csrf").context("no csrf")?;
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .header("cookie", csrf_cookie)
            .form(&[("csrf", csrf.as_str()), ("username", user), ("password", PASSWORD)])
            .send()
            .await?;
        let session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("mandate_session="))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned);
        Ok((r.status(), session))
    }

    pub(crate) fn authorize_url(&self, client: &str, challenge: &str, access: Access<'_>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", CB)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", access.scope)
            .append_pair("state", "s");
        if let Some(r) = access.resource {
            q.append_pair("resource", r);
        }
        format!("{}/authorize?{}", self.base, q.finish())
    }

    pub(crate) async fn session(&self, user: &str, client: &str, access: Access<'_>) -> anyhow::Result<Session> {
        let (_, cookie) = self.login(user).await?;
        let cookie = cookie.context("login failed")?;
        let challenge = mandate_core::pkce::s256(&"v".repeat(43));
        let r = self.http.get(self.authorize_url(client, &challenge, access)).header("cookie", &cookie).send().await?;
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).context("no redirect")?.to_owned();
        let page = self.http.get(format!("{}{loc}", self.base)).header("cookie", &cookie).send().await?.text().await?;
        let form = [
            ("csrf", hidden(&page, "csrf").context("csrf")?),
            ("request", hidden(&page, "request").context("request")?),
            ("action", "allow".into()),
            ("scope", access.scope.into()),
        ];
        self.http
            .post(format!("{}/consent", self.base))
            .header("cookie", &cookie)
            .header("origin", &self.base)
            .form(&form)
            .send()
            .await?;
        Ok(Session { cookie })
    }

    /// One code through /authorize with remembered consent; returns (code, verifier).
    pub(crate) async fn code(&self, s: &Session, client: &str, access: Access<'_>) -> anyhow::Result<(String, String)> {
        let verifier = mandate_core::secret::random_token(&OsRandom);
        let challenge = mandate_core::pkce::s256(&verifier);
        let r =
            self.http.get(self.authorize_url(client, &challenge, access)).header("cookie", &s.cookie).send().await?;
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).context("no redirect")?;
        Ok((param(loc, "code").context("no code")?, verifier))
    }

    /// An access token for `user` through the whole flow: registration, sign-in, consent,
    /// code, redemption.
    pub(crate) async fn access_token(&self, user: &str, access: Access<'_>) -> anyhow::Result<String> {
        let client = self.register().await?;
        let s = self.session(user, &client, access).await?;
        let (code, v) = self.code(&s, &client, access).await?;
        Ok(self.redeem(&client, &code, &v).await?["access_token"].as_str().context("no token")?.to_owned())
    }

    pub(crate) async fn redeem(&self, client: &str, code: &str, verifier: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", client),
                ("redirect_uri", CB),
            ])
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("redeem: {}", r.status());
        }
        Ok(r.json().await?)
    }
}
