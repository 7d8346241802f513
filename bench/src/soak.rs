//! `--scenario soak` (security-tests.md RL-13): whole authorizations at a fixed rate for a
//! bounded time, with assertions. Each iteration of a worker is what an agent does in a day's
//! use: `/authorize` with the person signed in and consent remembered (signing in again when the
//! browser session has expired), the code redeemed, a refresh, introspection of the new access
//! token by a resource server, a `tools/call` on the worker's MCP session with it, and the
//! refresh token revoked; every tenth iteration also registers a client that is never used.
//!
//! The server's clock runs `--speedup` times faster than the wall clock (time is injected), so
//! that a run of half an hour covers more than a day of lifetimes: browser sessions and tokens
//! expire, and what collection removes (codes and pending requests a day after expiry, unused
//! clients after a day, revoked grants once nothing refers to them) is removed while the run
//! watches. Collection runs every 2 s (4 simulated minutes at the default speed-up; `mandate
//! serve` runs it every 10 minutes).
//!
//! Judged at the end:
//! - no request failed;
//! - in the steady state (once the server's clock has passed the longest retention, so the data
//!   set no longer grows, and not before a fifth of the run), the median resident memory and open
//!   descriptors of its last third are within 10 % of its first third's, and the median p99
//!   within 1.5x (+5 ms); judged only on runs of at least 10 minutes with six such windows;
//! - every table, the audit trail included (kept a day, `audit_retention`), plateaus: once more
//!   than a simulated day and two hours have passed, it grows less than 10 % (+20 rows) to the
//!   end; judged only when the run goes on for a while after that point.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mandate_core::Settings;
use mandate_core::clock::{Clock, UnixTime};
use mandate_core::service::ClientRegistration;
use serde_json::{Value, json};

use crate::Args;
use crate::mcp;
use crate::target::{self, CB, DEMO, Session, Target, param};

/// Collection's longest wait: codes and pending requests are kept a day after they expire.
const LONGEST_RETENTION: i64 = 24 * 3600 + 2 * 3600;
/// Tables watched for a plateau (the audit trail too: the soak keeps a day of it,
/// `audit_retention`, as an operator who wants a bounded database does).
const TABLES: [&str; 10] = [
    "authorization_codes",
    "pending_authorizations",
    "grants",
    "refresh_tokens",
    "revoked_access_tokens",
    "sessions",
    "mcp_sessions",
    "clients",
    "consents",
    "audit_events",
];
/// Runs shorter than this report memory, descriptors and latency but do not judge them.
const JUDGED_AFTER: Duration = Duration::from_secs(600);

/// A clock `factor` times faster than the wall clock, from now.
struct Accelerated {
    origin: Instant,
    base: UnixTime,
    factor: i64,
}

impl Clock for Accelerated {
    fn now(&self) -> UnixTime {
        let elapsed_ms = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX / 1024);
        self.base + elapsed_ms * self.factor / 1000
    }
}

/// Lifetimes that collection can be seen working on within the run: refresh tokens unused for
/// two (simulated) hours expire, so revoked families leave. Codes live ten simulated minutes
/// (5 s at the default speed-up: room for a loaded machine between issue and redemption). The
/// trail is kept a day (left to grow, it is a data set that never stops growing, and so is the
/// memory SQLite's page caches hold for it).
fn settings(s: &mut Settings) {
    s.refresh_token_idle_ttl = 2 * 3600;
    s.code_ttl = 600;
    s.audit_retention = 24 * 3600;
}

#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    iterations: usize,
    sign_ins: usize,
}

struct Sample {
    at: Duration,
    simulated: i64,
    ok: usize,
    errors: usize,
    iterations: usize,
    sign_ins: usize,
    p50_ms: f64,
    p99_ms: f64,
    rss_kib: u64,
    fds: usize,
    tables: Vec<i64>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let n = sorted.len();
    sorted.get(((n as f64 * p) as usize).min(n.saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Times `f` into the window: its latency, or its failure.
async fn step<T>(window: &Mutex<Window>, name: &str, f: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
    let t0 = Instant::now();
    let result = f.await;
    let mut w = window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match result {
        Ok(v) => {
            w.latencies.push(t0.elapsed());
            Some(v)
        }
        Err(e) => {
            w.errors += 1;
            w.first_error.get_or_insert_with(|| format!("{name}: {e:#}"));
            None
        }
    }
}

/// One agent: a person, a client, a signed-in browser and an MCP session.
struct Agent {
    t: Arc<Target>,
    user: String,
    client: String,
    browser: Session,
    mcp: mcp::Session,
    /// The resource server's client id and secret (introspection).
    rs: Arc<(String, String)>,
}

impl Agent {
    async fn new(t: Arc<Target>, n: usize, rs: Arc<(String, String)>) -> anyhow::Result<Self> {
        let user = format!("user{}", 8 + n % 56);
        let client = t.register().await?;
        let browser = t.session(&user, &client, DEMO).await?;
        let (code, verifier) = t.code(&browser, &client, DEMO).await?;
        let first = t.redeem(&client, &code, &verifier).await?;
        let token = first["access_token"].as_str().context("no access token")?.to_owned();
        let mcp = mcp::Session::open(&t.http, format!("{}/mcp", t.base), Some(token), mcp::list_customers()).await?;
        Ok(Self { t, user, client, browser, mcp, rs })
    }

    /// A code through `/authorize`; signs in again first when the browser session has expired.
    async fn code(&mut self, window: &Mutex<Window>) -> anyhow::Result<(String, String)> {
        for _ in 0..2 {
            let verifier = mandate_core::secret::random_token(&mandate_core::clock::OsRandom);
            let challenge = mandate_core::pkce::s256(&verifier);
            let url = self.t.authorize_url(&self.client, &challenge, DEMO);
            let r = self.t.http.get(url).header("cookie", &self.browser.cookie).send().await?;
            let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if loc.starts_with(CB) {
                return Ok((param(&loc, "code").context("no code")?, verifier));
            }
            if !loc.starts_with("/login") {
                bail!("authorize: {} {loc}", r.status());
            }
            let (_, cookie) = self.t.login(&self.user).await?;
            self.browser.cookie = cookie.context("sign-in failed")?;
            window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).sign_ins += 1;
        }
        bail!("authorize: still asked to sign in after signing in")
    }

    async fn form(&self, path: &str, form: &[(&str, &str)], basic: bool) -> anyhow::Result<Value> {
        let mut req = self.t.http.post(format!("{}{path}", self.t.base)).form(form);
        if basic {
            req = req.basic_auth(&self.rs.0, Some(&self.rs.1));
        }
        let r = req.send().await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(if body.is_empty() { Value::Null } else { serde_json::from_str(&body)? })
    }

    /// One whole iteration; stops at the first failed step (recorded in the window).
    async fn iterate(&mut self, window: &Mutex<Window>, n: usize) {
        let Some((code, verifier)) = step(window, "authorize", self.code(window)).await else { return };
        let client = self.client.clone();
        let Some(tokens) = step(window, "redeem", self.t.redeem(&client, &code, &verifier)).await else { return };
        let Some(rt) = tokens["refresh_token"].as_str() else { return record(window, "redeem: no refresh token") };
        let form = [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", &client)];
        let Some(next) = step(window, "refresh", self.form("/token", &form, false)).await else { return };
        let (Some(at), Some(rt)) = (next["access_token"].as_str(), next["refresh_token"].as_str()) else {
            return record(window, "refresh: no tokens");
        };
        let Some(seen) = step(window, "introspect", self.form("/introspect", &[("token", at)], true)).await else {
            return;
        };
        if seen["active"] != json!(true) {
            return record(window, &format!("introspect: {seen}"));
        }
        if step(window, "tools/call", self.mcp.call_as(n as u64 + 1, Some(at))).await.is_none() {
            return;
        }
        let revoke = [("token", rt), ("token_type_hint", "refresh_token"), ("client_id", &client)];
        if step(window, "revoke", self.form("/revoke", &revoke, false)).await.is_none() {
            return;
        }
        if n % 10 == 9 && step(window, "register", self.t.register()).await.is_none() {
            return;
        }
        window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iterations += 1;
    }
}

fn record(window: &Mutex<Window>, what: &str) {
    let mut w = window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    w.errors += 1;
    w.first_error.get_or_insert_with(|| what.to_owned());
}

async fn table_sizes(store: &mandate_store::SqlStore) -> anyhow::Result<Vec<i64>> {
    let mut sizes = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        sizes.push(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await?);
    }
    Ok(sizes)
}

pub(crate) async fn run(a: &Args) -> anyhow::Result<()> {
    if !(a.rate > 0.0 && a.rate <= 1000.0) || a.speedup == 0 {
        bail!("--rate must be in (0, 1000] and --speedup at least 1");
    }
    let origin = Instant::now();
    let start_unix = mandate_core::clock::SystemClock.now();
    let clock = Arc::new(Accelerated { origin, base: start_unix, factor: i64::from(a.speedup) });
    let t = Arc::new(target::start_with(a.database.as_deref(), None, clock.clone(), settings).await?);
    let local = t.local.as_ref().context("the soak runs its server in this process")?;
    let resource =
        local.auth.resources.resolve(None).map_err(|e| anyhow::anyhow!(e.description.to_string()))?.uri.clone();
    let (rs, secret) = local
        .auth
        .add_client(ClientRegistration {
            name: "Soak resource server".into(),
            redirect_uris: vec![CB.into()],
            confidential: true,
            allow_refresh: false,
            scope: None,
            resources: vec![resource],
        })
        .await?;
    let rs = Arc::new((rs.id, secret.context("no secret")?.expose().to_owned()));
    let length = Duration::from_secs(a.seconds);
    let window_len = (length / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    println!(
        "mandate-load soak: {} workers, {} authorizations/s, {} s (the server's clock {}x), windows of {} s, target {}",
        a.concurrency,
        a.rate,
        a.seconds,
        a.speedup,
        window_len.as_secs(),
        t.base
    );

    // Collection (`mandate serve` runs the same every 10 minutes).
    let purger = {
        let auth = local.auth.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                if let Err(e) = auth.purge_expired().await {
                    eprintln!("soak: purge failed: {e}");
                }
            }
        })
    };

    let window = Arc::new(Mutex::new(Window::default()));
    let deadline = Instant::now() + length;
    let interval = Duration::from_secs_f64(a.concurrency as f64 / a.rate);
    // Bounded by the fixed rate and the time (--requests does not apply: it would end the
    // iterations before the time does).
    let per_worker = (a.rate * a.seconds as f64 / a.concurrency as f64).ceil() as usize + 1;
    let mut workers = Vec::new();
    let workers_count = a.concurrency;
    for n in 0..a.concurrency {
        let mut agent = Agent::new(t.clone(), n, rs.clone()).await?;
        let window = window.clone();
        workers.push(tokio::spawn(async move {
            // Spread the workers' starts over one interval.
            let mut next = Instant::now() + interval.mul_f64(n as f64 / workers_count as f64);
            for i in 0..per_worker {
                if next >= deadline {
                    break;
                }
                tokio::time::sleep_until(next.into()).await;
                agent.iterate(&window, i).await;
                // A fixed rate: a late iteration is not made up for with a burst.
                next = (next + interval).max(Instant::now());
            }
        }));
    }

    let mut samples = Vec::new();
    let mut tick = tokio::time::interval_at((Instant::now() + window_len).into(), window_len);
    println!(
        "{:>6} {:>8} {:>6} {:>4} {:>5} {:>8} {:>8} {:>9} {:>5}  tables ({})",
        "s",
        "sim h",
        "ok",
        "err",
        "iter",
        "p50 ms",
        "p99 ms",
        "RSS KiB",
        "fds",
        TABLES.join(" ")
    );
    while Instant::now() < deadline {
        tick.tick().await;
        let w = std::mem::take(&mut *window.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut lat = w.latencies;
        lat.sort();
        let s = Sample {
            at: origin.elapsed(),
            simulated: clock.now() - start_unix,
            ok: lat.len(),
            errors: w.errors,
            iterations: w.iterations,
            sign_ins: w.sign_ins,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            rss_kib: rss_kib(),
            fds: open_fds(),
            tables: table_sizes(&local.store).await?,
        };
        println!(
            "{:>6} {:>8.1} {:>6} {:>4} {:>5} {:>8.2} {:>8.2} {:>9} {:>5}  {}{}",
            s.at.as_secs(),
            s.simulated as f64 / 3600.0,
            s.ok,
            s.errors,
            s.iterations,
            s.p50_ms,
            s.p99_ms,
            s.rss_kib,
            s.fds,
            s.tables.iter().map(i64::to_string).collect::<Vec<_>>().join(" "),
            w.first_error.map(|e| format!("  first error: {e}")).unwrap_or_default(),
        );
        samples.push(s);
    }
    for w in workers {
        w.await?;
    }
    purger.abort();
    judge(&samples, length)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The assertions; prints each verdict and fails on the first that does not hold.
fn judge(samples: &[Sample], length: Duration) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let (ok, errors) = samples.iter().fold((0, 0), |(o, e), s| (o + s.ok, e + s.errors));
    let sign_ins: usize = samples.iter().map(|s| s.sign_ins).sum();
    let iterations: usize = samples.iter().map(|s| s.iterations).sum();
    println!(
        "soak: {ok} requests, {errors} failed, {iterations} whole iterations, {sign_ins} sign-ins after session expiry"
    );
    if errors > 0 {
        failures.push(format!("{errors} requests failed"));
    }
    if ok == 0 {
        failures.push("no request completed".to_owned());
    }
    // Steady state: once collection has caught up with the longest retention (the data set, and
    // with it SQLite's page caches, stops growing), and never before a fifth of the run. Each
    // figure is the median of the first and of the last third of it: a sign-in's 19 MiB argon2
    // buffer or a busy neighbour in one window is not a trend.
    let warm =
        samples.iter().position(|s| s.simulated >= LONGEST_RETENTION).unwrap_or(samples.len()).max(samples.len() / 5);
    let steady = &samples[warm.min(samples.len())..];
    if length >= JUDGED_AFTER && steady.len() >= 6 {
        let third = steady.len() / 3;
        let (early, late) = (&steady[..third], &steady[steady.len() - third..]);
        let thirds =
            |f: fn(&Sample) -> f64| (median(early.iter().map(f).collect()), median(late.iter().map(f).collect()));
        let (rss_early, rss_late) = thirds(|s| s.rss_kib as f64);
        let rss_growth = rss_late / rss_early.max(1.0) - 1.0;
        println!(
            "soak: steady state from {} s: resident memory {rss_early:.0} -> {rss_late:.0} KiB ({:+.1} %)",
            steady[0].at.as_secs(),
            rss_growth * 100.0
        );
        if rss_growth >= 0.10 {
            failures.push(format!("resident memory grew {:.1} % in the steady state", rss_growth * 100.0));
        }
        let (fds_early, fds_late) = thirds(|s| s.fds as f64);
        println!("soak: open descriptors {fds_early:.0} -> {fds_late:.0}");
        if fds_late > fds_early * 1.1 + 4.0 {
            failures.push(format!("open descriptors grew from {fds_early:.0} to {fds_late:.0}"));
        }
        let (p99_early, p99_late) = thirds(|s| s.p99_ms);
        println!("soak: p99 {p99_early:.2} ms in the first third of the steady state, {p99_late:.2} ms in the last");
        if p99_late > p99_early * 1.5 + 5.0 {
            failures.push(format!("p99 rose from {p99_early:.2} ms to {p99_late:.2} ms"));
        }
    } else {
        println!(
            "soak: memory, descriptors and latency are reported, not judged (they are on runs of at least {} s with six windows after {} simulated hours)",
            JUDGED_AFTER.as_secs(),
            LONGEST_RETENTION / 3600
        );
    }
    match samples.iter().position(|s| s.simulated >= LONGEST_RETENTION) {
        Some(from) if samples.len() - from >= 3 => {
            let (base, end) = (&samples[from], &samples[samples.len() - 1]);
            for (i, table) in TABLES.iter().enumerate() {
                let (b, e) = (base.tables[i], end.tables[i]);
                let plateau = e <= b + b / 10 + 20;
                println!(
                    "soak: {table:<24} {b:>7} -> {e:>7} rows after {:.0} simulated hours{}",
                    base.simulated as f64 / 3600.0,
                    if plateau { "" } else { "  GROWING" }
                );
                if !plateau {
                    failures.push(format!("{table} grew from {b} to {e} rows after collection had caught up"));
                }
            }
        }
        _ => println!(
            "soak: table sizes are reported, not judged (they are once the server's clock has passed {} h with three windows to spare)",
            LONGEST_RETENTION / 3600
        ),
    }
    println!(
        "{}",
        json!({"scenario": "soak", "ok": ok, "errors": errors, "iterations": iterations, "failures": failures})
    );
    if failures.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        bail!("soak failed: {}", failures.join("; "))
    }
}
