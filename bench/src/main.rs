//! `mandate-load`: load scenarios against an in-process mandate on a loopback port, backed by a
//! SQLite file. Every scenario is bounded by a request count and a wall-clock limit, targets only
//! 127.0.0.1, and stops by itself.
//!
//! Scenarios:
//! - `refresh`: F refresh-token families, one worker each, rotating as fast as they can.
//! - `code`: issue codes through /authorize (remembered consent), then redeem them concurrently.
//! - `login`: a storm of password logins (argon2id) while a probe measures /.well-known latency,
//!   showing that password hashing does not block the async runtime.
//! - `mcp`: `tools/call` with auth on and auth off on the same server, in interleaved rounds.
#![allow(clippy::print_stdout)]

mod mcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use mandate_core::clock::{OsRandom, SystemClock};
use mandate_core::keys::KeyEncryptionKey;
use mandate_core::scope::ResourceCatalog;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_server::{GuardedFetcher, RateLimits, router};
use mandate_store::SqlStore;
use serde_json::{Value, json};

const CB: &str = "https://agent.bench/callback";
const PASSWORD: &str = "bench password 1";

#[derive(Parser)]
struct Args {
    /// refresh, code, login or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Upper bound on requests per scenario.
    #[arg(long, default_value_t = 4000)]
    requests: usize,
    /// Upper bound on seconds per scenario.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Tiny run to check the scenarios still work (CI).
    #[arg(long)]
    smoke: bool,
    /// An empty database to run on (e.g. postgres://…/bench); default: a fresh SQLite file.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

struct Target {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(database: Option<&str>) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let url = match database {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let store = SqlStore::open(&url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let settings = Settings::new(&base);
    let demo: Arc<dyn mandate_core::demo::DemoStore> = Arc::new(store.clone());
    let deps = Dependencies {
        store: Arc::new(store),
        clock: Arc::new(SystemClock),
        rng: Arc::new(OsRandom),
        kek: KeyEncryptionKey::generate(&OsRandom),
        documents: Arc::new(GuardedFetcher::new(settings.fetch_policy)?),
    };
    let auth = Arc::new(AuthServer::new(settings, ResourceCatalog::demo(&base)?, deps).await?);
    for i in 0..64 {
        // user2's session is also the fixed caller of the unguarded endpoint (see `mcp`).
        auth.add_user(&format!("user{i}"), PASSWORD.into()).await?;
    }
    // Bench traffic comes from one address: lift the per-IP limits for it.
    let limits = RateLimits { login_burst: 1_000_000, register_burst: 1_000_000, ..RateLimits::default() };
    let host = base.trim_start_matches("http://").to_owned();
    let def = auth.resources.resolve(None).map_err(|e| anyhow::anyhow!(e.description.to_string()))?.clone();
    let settings = mandate_mcp::McpSettings::in_process(&auth, &def, Vec::new());
    let guarded = mandate_mcp::router(settings, auth.clone(), demo.clone());
    let bench_user = auth.store().user_by_name("user2").await?.context("bench user")?;
    let open = mcp::open_router(auth.clone(), demo.clone(), vec![host], mcp::caller(&bench_user.id, "bench-open"));
    let app =
        router(auth, Some(demo), limits).merge(guarded).merge(open).into_make_service_with_connect_info::<SocketAddr>();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(64).build()?;
    Ok(Target { base, http, _dir: dir })
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A signed-in browser session for `user` that has consented once for `client`.
struct Session {
    cookie: String,
}

impl Target {
    async fn register(&self) -> anyhow::Result<String> {
        let body = json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"], "client_name": "bench"});
        let v: Value = self.http.post(format!("{}/register", self.base)).json(&body).send().await?.json().await?;
        v["client_id"].as_str().map(str::to_owned).context("registration failed")
    }

    async fn login(&self, user: &str) -> anyhow::Result<(reqwest::StatusCode, Option<String>)> {
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

    fn authorize_url(&self, client: &str, challenge: &str) -> String {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", CB)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", "customers.read")
            .append_pair("state", "s")
            .finish();
        format!("{}/authorize?{q}", self.base)
    }

    async fn session(&self, user: &str, client: &str) -> anyhow::Result<Session> {
        let (_, cookie) = self.login(user).await?;
        let cookie = cookie.context("login failed")?;
        let challenge = mandate_core::pkce::s256(&"v".repeat(43));
        let r = self.http.get(self.authorize_url(client, &challenge)).header("cookie", &cookie).send().await?;
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).context("no redirect")?.to_owned();
        let page = self.http.get(format!("{}{loc}", self.base)).header("cookie", &cookie).send().await?.text().await?;
        let form = [
            ("csrf", hidden(&page, "csrf").context("csrf")?),
            ("request", hidden(&page, "request").context("request")?),
            ("action", "allow".into()),
            ("scope", "customers.read".into()),
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
    async fn code(&self, s: &Session, client: &str) -> anyhow::Result<(String, String)> {
        let verifier = mandate_core::secret::random_token(&OsRandom);
        let challenge = mandate_core::pkce::s256(&verifier);
        let r = self.http.get(self.authorize_url(client, &challenge)).header("cookie", &s.cookie).send().await?;
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).context("no redirect")?;
        Ok((param(loc, "code").context("no code")?, verifier))
    }

    async fn redeem(&self, client: &str, code: &str, verifier: &str) -> anyhow::Result<Value> {
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

pub(crate) struct Stats {
    pub(crate) name: &'static str,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
}

impl Stats {
    fn print(&mut self) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            self.latencies
                .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        let rps = n as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:<26} ok={n:<6} errors={:<4} {:>8.0} req/s  p50={:>6.2}ms p90={:>6.2}ms p99={:>6.2}ms max={:>7.2}ms",
            self.name,
            self.errors,
            rps,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        println!(
            "{}",
            json!({"scenario": self.name, "ok": n, "errors": self.errors, "rps": rps, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": pct(1.0)})
        );
    }
}

async fn refresh_scenario(t: Arc<Target>, a: &Args) -> anyhow::Result<Stats> {
    let client = t.register().await?;
    let s = t.session("user0", &client).await?;
    let mut tokens = Vec::new();
    for _ in 0..a.concurrency {
        let (code, v) = t.code(&s, &client).await?;
        tokens.push(
            t.redeem(&client, &code, &v).await?["refresh_token"].as_str().context("no refresh token")?.to_owned(),
        );
    }
    let per_worker = a.requests / a.concurrency;
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for mut rt in tokens {
        let t = t.clone();
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let (mut lat, errors) = (Vec::new(), 0usize);
            for _ in 0..per_worker {
                if Instant::now() > deadline {
                    break;
                }
                let t0 = Instant::now();
                let r = t
                    .http
                    .post(format!("{}/token", t.base))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", rt.as_str()),
                        ("client_id", client.as_str()),
                    ])
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        lat.push(t0.elapsed());
                        match v["refresh_token"].as_str() {
                            Some(next) => rt = next.to_owned(),
                            None => return (lat, errors + 1),
                        }
                    }
                    _ => return (lat, errors + 1),
                }
            }
            (lat, errors)
        }));
    }
    let mut stats = Stats { name: "refresh_token grant", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    for h in handles {
        let (l, e) = h.await?;
        stats.latencies.extend(l);
        stats.errors += e;
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

async fn code_scenario(t: Arc<Target>, a: &Args) -> anyhow::Result<Vec<Stats>> {
    let client = t.register().await?;
    let s = Arc::new(t.session("user1", &client).await?);
    // Codes live 60 s: issue a batch that can be redeemed well inside that.
    let n = a.requests.min(3000);
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let issue_start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..a.concurrency {
        let (t, s, client) = (t.clone(), s.clone(), client.clone());
        let count = n / a.concurrency + usize::from(w < n % a.concurrency);
        handles.push(tokio::spawn(async move {
            let (mut codes, mut lat, mut errors) = (Vec::new(), Vec::new(), 0usize);
            for _ in 0..count {
                if Instant::now() > deadline {
                    break;
                }
                let t0 = Instant::now();
                match t.code(&s, &client).await {
                    Ok(c) => {
                        lat.push(t0.elapsed());
                        codes.push(c);
                    }
                    Err(_) => errors += 1,
                }
            }
            (codes, lat, errors)
        }));
    }
    let mut issue =
        Stats { name: "authorize (code issued)", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    let mut batches = Vec::new();
    for h in handles {
        let (codes, l, e) = h.await?;
        batches.push(codes);
        issue.latencies.extend(l);
        issue.errors += e;
    }
    issue.elapsed = issue_start.elapsed();

    let redeem_start = Instant::now();
    let mut handles = Vec::new();
    for codes in batches {
        let (t, client) = (t.clone(), client.clone());
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            for (code, v) in codes {
                let t0 = Instant::now();
                match t.redeem(&client, &code, &v).await {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut redeem =
        Stats { name: "authorization_code grant", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    for h in handles {
        let (l, e) = h.await?;
        redeem.latencies.extend(l);
        redeem.errors += e;
    }
    redeem.elapsed = redeem_start.elapsed();
    Ok(vec![issue, redeem])
}

async fn probe(t: &Target, count: usize) -> Stats {
    let mut s = Stats { name: "metadata probe", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    let start = Instant::now();
    for _ in 0..count {
        let t0 = Instant::now();
        match t.http.get(format!("{}/.well-known/oauth-authorization-server", t.base)).send().await {
            Ok(r) if r.status().is_success() => s.latencies.push(t0.elapsed()),
            _ => s.errors += 1,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.elapsed = start.elapsed();
    s
}

async fn login_scenario(t: Arc<Target>, a: &Args) -> anyhow::Result<Vec<Stats>> {
    let probes = if a.smoke { 20 } else { 200 };
    let mut idle = probe(&t, probes).await;
    idle.name = "metadata probe, idle";
    let logins = (a.requests / 10).clamp(a.concurrency, 400);
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..a.concurrency {
        let t = t.clone();
        let count = logins / a.concurrency;
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            for i in 0..count {
                if Instant::now() > deadline {
                    break;
                }
                let t0 = Instant::now();
                match t.login(&format!("user{}", (w * 7 + i) % 64)).await {
                    Ok((st, Some(_))) if st.is_redirection() => lat.push(t0.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut busy = probe(&t, probes).await;
    busy.name = "metadata probe, login storm";
    let mut storm =
        Stats { name: "password login (argon2id)", latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    for h in handles {
        let (l, e) = h.await?;
        storm.latencies.extend(l);
        storm.errors += e;
    }
    storm.elapsed = start.elapsed();
    Ok(vec![idle, storm, busy])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.concurrency = 2;
        a.requests = 40;
        a.seconds = 10;
    }
    if a.concurrency == 0 || a.requests < a.concurrency {
        bail!("--requests must be at least --concurrency, and --concurrency at least 1");
    }
    let t = Arc::new(start(a.database.as_deref()).await?);
    println!(
        "mandate-load: {} workers, at most {} requests and {} s per scenario, target {}",
        a.concurrency, a.requests, a.seconds, t.base
    );
    let mut failed = false;
    let mut report = |mut s: Stats| {
        failed |= s.errors > 0 || s.latencies.is_empty();
        s.print();
    };
    if matches!(a.scenario.as_str(), "refresh" | "all") {
        report(refresh_scenario(t.clone(), &a).await?);
    }
    if matches!(a.scenario.as_str(), "code" | "all") {
        code_scenario(t.clone(), &a).await?.into_iter().for_each(&mut report);
    }
    if matches!(a.scenario.as_str(), "mcp" | "all") {
        let client = t.register().await?;
        let s = t.session("user2", &client).await?;
        let (code, v) = t.code(&s, &client).await?;
        let token = t.redeem(&client, &code, &v).await?["access_token"].as_str().context("no token")?.to_owned();
        let (off, on) = mcp::compare(&t.base, &token, a.concurrency, a.requests, a.seconds).await?;
        let ratio = (off.latencies.len() as f64 / off.elapsed.as_secs_f64())
            / (on.latencies.len() as f64 / on.elapsed.as_secs_f64());
        report(off);
        report(on);
        println!("auth overhead: throughput off/on = {ratio:.3} ({:+.1}%)", (ratio - 1.0) * 100.0);
    }
    if matches!(a.scenario.as_str(), "login" | "all") {
        login_scenario(t.clone(), &a).await?.into_iter().for_each(&mut report);
    }
    if failed {
        bail!("a scenario had errors or completed no request");
    }
    Ok(())
}
