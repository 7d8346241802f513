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
//! - `gateway`: `tools/call` on a real third-party MCP server (server-everything, Node) through
//!   mandate's gateway and directly, in interleaved rounds; skipped when Node or the server is
//!   not installed (e2e/node_modules).
//! - `sessions` (only when asked for): the memory of idle MCP sessions in a separate
//!   `mandate serve --demo` (the release binary), opened, closed, and past the per-person cap.
#![allow(clippy::print_stdout)]

mod gateway;
mod mcp;
mod sessions;
mod soak;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

use target::{Access, DEMO, Target, start};

/// The allocator `mandate` ships with (crates/mandate/src/main.rs): the server runs in this
/// process, and its memory (the soak's resident-memory judgement) should behave as it does there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// refresh, code, mcp, gateway, login or all; or sessions or soak (not part of all).
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
    /// gateway: interleaved rounds per side (direct, gateway, gateway, direct, ...).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// gateway: the Node 22 binary (default: e2e/node_modules/.bin/node, else `node` on PATH).
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// gateway: do not pin (by default, with taskset and two CPUs, the upstream runs on one CPU
    /// and this process, load generator and gateway, on the other).
    #[arg(long)]
    no_pin: bool,
    /// sessions: how many MCP sessions to open (--smoke: 200).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// sessions: the `mandate` binary to start (default: target/release/mandate).
    #[arg(long, value_name = "PATH")]
    mandate: Option<PathBuf>,
    /// soak: whole authorizations started per second, across the workers (a fixed rate).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// soak: how much faster the server's clock runs than the wall clock, so lifetimes and
    /// collection (a day for codes and unused clients) pass within the run.
    #[arg(long, default_value_t = 120)]
    speedup: u32,
}

pub(crate) struct Stats {
    pub(crate) name: &'static str,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
}

impl Stats {
    /// The `p` quantile in ms (sorts the latencies).
    pub(crate) fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let n = self.latencies.len();
        self.latencies.get(((n as f64 * p) as usize).min(n.saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    /// Successful requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&mut self) {
        let n = self.latencies.len();
        let rps = self.rate();
        let [p50, p90, p99, max] = [0.5, 0.9, 0.99, 1.0].map(|p| self.percentile(p));
        println!(
            "{:<26} ok={n:<6} errors={:<4} {:>8.0} req/s  p50={p50:>6.2}ms p90={p90:>6.2}ms p99={p99:>6.2}ms max={max:>7.2}ms",
            self.name, self.errors, rps,
        );
        println!(
            "{}",
            json!({"scenario": self.name, "ok": n, "errors": self.errors, "rps": rps, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max})
        );
    }
}

async fn refresh_scenario(t: Arc<Target>, a: &Args) -> anyhow::Result<Stats> {
    let client = t.register().await?;
    let s = t.session("user0", &client, DEMO).await?;
    let mut tokens = Vec::new();
    for _ in 0..a.concurrency {
        let (code, v) = t.code(&s, &client, DEMO).await?;
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
    let s = Arc::new(t.session("user1", &client, DEMO).await?);
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
                match t.code(&s, &client, DEMO).await {
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
        a.rounds = 2;
    }
    if a.concurrency == 0 || a.requests < a.concurrency {
        bail!("--requests must be at least --concurrency, and --concurrency at least 1");
    }
    if a.scenario == "sessions" {
        return sessions::run(&a).await;
    }
    if a.scenario == "soak" {
        return soak::run(&a).await;
    }
    // The gateway's upstream runs before the server starts: its tools are part of the catalogue.
    let upstream = if matches!(a.scenario.as_str(), "gateway" | "all") {
        gateway::launch(a.node.as_deref(), !a.no_pin).await?
    } else {
        Err("not asked for".to_owned())
    };
    let t = Arc::new(start(a.database.as_deref(), upstream.as_ref().ok().map(|u| u.url.as_str())).await?);
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
        let token = t.access_token("user2", DEMO).await?;
        let (off, on) = mcp::compare(&t.base, &token, a.concurrency, a.requests, a.seconds).await?;
        let ratio = off.rate() / on.rate();
        report(off);
        report(on);
        println!("auth overhead: throughput off/on = {ratio:.3} ({:+.1}%)", (ratio - 1.0) * 100.0);
    }
    if matches!(a.scenario.as_str(), "gateway" | "all") {
        match (upstream, &t.gateway) {
            (Ok(u), Some(resource)) => {
                let token = t.access_token("user3", Access { scope: gateway::SCOPE, resource: Some(resource) }).await?;
                println!(
                    "gateway: server-everything (Node {}) at {}, through {resource}; {}; {} rounds per side",
                    u.node_version,
                    u.url,
                    u.pin.as_ref().map_or_else(|| "not pinned".to_owned(), gateway::Pin::describe),
                    a.rounds.max(1)
                );
                let mut c = gateway::compare(&u, resource, &token, &a).await?;
                let pinned = u.pin.is_some();
                u.stop().await;
                let (p50, p90, p99) = (
                    [&mut c.direct, &mut c.gateway].map(|s| s.percentile(0.5)),
                    [&mut c.direct, &mut c.gateway].map(|s| s.percentile(0.9)),
                    [&mut c.direct, &mut c.gateway].map(|s| s.percentile(0.99)),
                );
                let ratio = c.gateway.rate() / c.direct.rate();
                let (n_direct, n_gateway) = (c.direct.latencies.len(), c.gateway.latencies.len());
                let cpu = [
                    c.per_call(c.direct_cpu.own, n_direct),
                    c.per_call(c.gateway_cpu.own, n_gateway),
                    c.per_call(c.direct_cpu.upstream, n_direct),
                    c.per_call(c.gateway_cpu.upstream, n_gateway),
                    c.per_call(c.direct_cpu.own_sqlite, n_direct),
                    c.per_call(c.gateway_cpu.own_sqlite, n_gateway),
                ];
                let gateway::Comparison { direct, gateway, .. } = c;
                report(direct);
                report(gateway);
                println!(
                    "gateway overhead: p50 {:+.3} ms ({:.2} -> {:.2}), p90 {:+.3} ms, p99 {:+.3} ms; throughput gateway/direct = {ratio:.3}",
                    p50[1] - p50[0],
                    p50[0],
                    p50[1],
                    p90[1] - p90[0],
                    p99[1] - p99[0],
                );
                println!(
                    "cpu per call: this process {:.0} µs direct (load generator) -> {:.0} µs gateway (load generator + gateway): gateway {:.0} µs, of which SQLite threads {:.0} µs (the trail); upstream {:.0} -> {:.0} µs",
                    cpu[0],
                    cpu[1],
                    cpu[1] - cpu[0],
                    cpu[5] - cpu[4],
                    cpu[2],
                    cpu[3]
                );
                println!(
                    "{}",
                    json!({"scenario": "gateway overhead", "added_p50_ms": p50[1] - p50[0], "added_p90_ms": p90[1] - p90[0],
                           "added_p99_ms": p99[1] - p99[0], "throughput_ratio": ratio,
                           "cpu_us_per_call": {"own_direct": cpu[0], "own_gateway": cpu[1], "gateway": cpu[1] - cpu[0],
                                               "own_sqlite_direct": cpu[4], "own_sqlite_gateway": cpu[5],
                                               "upstream_direct": cpu[2], "upstream_gateway": cpu[3]},
                           "pinned": pinned})
                );
            }
            (Err(why), _) => println!("gateway: skipped: {why}"),
            (Ok(_), None) => bail!("the gateway is not served"),
        }
    }
    if matches!(a.scenario.as_str(), "login" | "all") {
        login_scenario(t.clone(), &a).await?.into_iter().for_each(&mut report);
    }
    if failed {
        bail!("a scenario had errors or completed no request");
    }
    Ok(())
}
