//! `sessions`: the memory of idle MCP sessions, in a separate `mandate serve --demo` process
//! (the release binary) whose resident set is read from `/proc/<pid>/status` (VmRSS, RssAnon).
//!
//! 1. `mandate users add` creates enough people for `--sessions` sessions under the per-person
//!    cap ([`mandate_guard::SESSIONS_PER_USER`]), then `serve --demo` starts on a loopback port
//!    and a fresh SQLite file (`trust_forwarded_for`, so that each sign-in comes from an address
//!    of its own and the per-address limits stay out of the way).
//! 2. RSS idle after start; each person signs in (argon2id) and gets an access token through the
//!    whole flow; RSS after those sign-ins.
//! 3. `--sessions` sessions (`initialize`, then `notifications/initialized`), at most the cap per
//!    person; RSS with them just opened, then once they have been idle for
//!    [`mandate_mcp::IDLE_IN_MEMORY`] and a parking round (they leave memory and stay in the
//!    database); the first and the last still answer `ping`. Then each is closed (`DELETE` with
//!    its `Mcp-Session-Id`); RSS after closing, and again [`LATER`] after that.
//! 4. The cap: `--sessions` sessions opened by one person, who keeps only the newest
//!    [`mandate_guard::SESSIONS_PER_USER`]; RSS; the oldest answers 404, the newest `ping`;
//!    the kept ones closed; RSS.
//!
//! Each RSS figure is read after the process has been left alone for [`SETTLE`]; the idle ones
//! (after start, after the sign-ins) and a second look after closing [`LATER`] later still, for
//! allocators that give freed memory back after a delay (jemalloc's decay: ~10 s).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::Args;
use crate::target::{DEMO, PASSWORD, Target};

/// How long the server is left alone before its RSS is read.
const SETTLE: Duration = Duration::from_secs(3);
/// A second look, for allocators that give memory back after a delay.
const LATER: Duration = Duration::from_secs(12);
/// How long sessions are left idle before the "idle" figure: past the server's idle time in
/// memory and its next parking round (every 15 s).
const IDLE_WAIT: Duration = Duration::from_secs(mandate_mcp::IDLE_IN_MEMORY.as_secs() + 20);
const PROTOCOL: &str = "2025-11-25";

/// The resident set of a process, in KiB.
#[derive(Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
}

impl Rss {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status.lines().find_map(|l| l.strip_prefix(name)).with_context(|| format!("no {name}"))?;
            Ok(line.trim().trim_end_matches("kB").trim().parse()?)
        };
        Ok(Self { total: field("VmRSS:")?, anon: field("RssAnon:")? })
    }

    fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }

    fn json(self) -> Value {
        json!({"rss_kib": self.total, "rss_anon_kib": self.anon})
    }
}

/// `mandate serve --demo`, started for this run.
struct Server {
    child: Child,
    pid: u32,
    base: String,
}

impl Server {
    async fn start(mandate: &Path, env: &[(String, String)], log: &Path, demo: bool) -> anyhow::Result<Self> {
        let mut cmd = Command::new(mandate);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(demo.then_some("--demo"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", mandate.display()))?;
        let pid = child.id().context("mandate exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let started = tokio::time::timeout(Duration::from_secs(120), async {
            let mut base = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("mandate is serving ") {
                    base = Some(url.split_whitespace().next().unwrap_or_default().to_owned());
                }
                if line.starts_with("Ctrl-C stops it") {
                    return base;
                }
            }
            None
        })
        .await;
        let Ok(Some(base)) = started else {
            let _ = child.kill().await;
            bail!("mandate serve did not start (its log: {})", log.display());
        };
        // Keep reading its stdout, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, pid, base })
    }

    async fn rss(&self) -> anyhow::Result<Rss> {
        tokio::time::sleep(SETTLE).await;
        Rss::read(self.pid)
    }

    /// RSS once an allocator that gives freed memory back after a delay has done so.
    async fn rss_settled(&self) -> anyhow::Result<Rss> {
        tokio::time::sleep(SETTLE + LATER).await;
        Rss::read(self.pid)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s.
    async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// `mandate users add NAME --password-stdin` on the run's database.
async fn add_user(mandate: &Path, env: &[(String, String)], name: &str) -> anyhow::Result<()> {
    let mut child = Command::new(mandate)
        .args(["users", "add", name, "--password-stdin"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    ensure!(out.status.success(), "users add {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

fn person(i: usize) -> String {
    format!("bench{i}")
}

/// An open MCP session and the token of the person who opened it.
struct Open {
    id: String,
    token: Arc<str>,
    /// False when its `notifications/initialized` was answered 404: past the per-person cap, the
    /// database had already dropped it for newer sessions of the same person.
    initialized: bool,
}

fn mcp_request(http: &reqwest::Client, method: reqwest::Method, url: &str, token: &str) -> reqwest::RequestBuilder {
    http.request(method, url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
}

async fn open(http: &reqwest::Client, url: &str, token: Arc<str>) -> anyhow::Result<Open> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench-sessions", "version": "1"}}});
    let r = mcp_request(http, reqwest::Method::POST, url, &token).json(&init).send().await?;
    ensure!(r.status().is_success(), "initialize: {}", r.status());
    let id = r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).context("no session id")?.to_owned();
    let body = r.text().await?;
    ensure!(body.contains("\"protocolVersion\""), "initialize failed: {body}");
    let r = mcp_request(http, reqwest::Method::POST, url, &token)
        .header("mcp-session-id", &id)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await?;
    let initialized = r.status() != reqwest::StatusCode::NOT_FOUND;
    ensure!(!initialized || r.status().is_success(), "notifications/initialized: {}", r.status());
    Ok(Open { id, token, initialized })
}

/// The HTTP status a `ping` in the session gets.
async fn ping(http: &reqwest::Client, url: &str, s: &Open) -> anyhow::Result<reqwest::StatusCode> {
    let r = mcp_request(http, reqwest::Method::POST, url, &s.token)
        .header("mcp-session-id", &s.id)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await?;
    let status = r.status();
    r.bytes().await?;
    Ok(status)
}

/// Ends the session (`DELETE`); false when it was not there any more (404).
async fn close(http: &reqwest::Client, url: &str, s: &Open) -> anyhow::Result<bool> {
    let r = mcp_request(http, reqwest::Method::DELETE, url, &s.token).header("mcp-session-id", &s.id).send().await?;
    let status = r.status();
    r.bytes().await?;
    ensure!(status.is_success() || status == reqwest::StatusCode::NOT_FOUND, "DELETE: {status}");
    Ok(status.is_success())
}

/// Opens `n` sessions with `workers` in parallel; session `k` is opened with `token_of(k)`.
async fn open_many(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    workers: usize,
    token_of: impl Fn(usize) -> Arc<str> + Send + Sync + 'static,
) -> anyhow::Result<(Vec<Open>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let token_of = Arc::new(token_of);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (http, url, next, token_of) = (http.clone(), url.to_owned(), next.clone(), token_of.clone());
        tasks.spawn(async move {
            let mut opened = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return anyhow::Ok(opened);
                }
                opened.push((k, open(&http, &url, (*token_of)(k)).await.with_context(|| format!("session {k}"))?));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort_by_key(|(k, _)| *k);
    Ok((all.into_iter().map(|(_, s)| s).collect(), start.elapsed()))
}

/// Closes every session with `workers` in parallel; how long it took and how many were still
/// there to close (the others answered 404).
async fn close_many(
    http: &reqwest::Client,
    url: &str,
    sessions: Vec<Open>,
    workers: usize,
) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(sessions));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (http, url, queue) = (http.clone(), url.to_owned(), queue.clone());
        tasks.spawn(async move {
            let mut closed = 0;
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(s) = next else { return anyhow::Ok(closed) };
                closed += usize::from(close(&http, &url, &s).await?);
            }
        });
    }
    let mut closed = 0;
    while let Some(done) = tasks.join_next().await {
        closed += done??;
    }
    Ok((start.elapsed(), closed))
}

fn default_mandate() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).join("target/release/mandate")
}

pub(crate) async fn run(a: &Args) -> anyhow::Result<()> {
    let mandate = a.mandate.clone().unwrap_or_else(default_mandate);
    ensure!(mandate.is_file(), "{} not found: cargo build --release -p mandate", mandate.display());
    let n = if a.smoke { 200 } else { a.sessions };
    let cap = mandate_guard::SESSIONS_PER_USER;
    let people = n.div_ceil(cap).max(1);
    let dir = tempfile::tempdir()?;
    let env: Vec<(String, String)> = [
        ("MANDATE_DATABASE", format!("sqlite://{}", dir.path().join("mandate.db").display())),
        ("MANDATE_TRUST_FORWARDED_FOR", "true".to_owned()),
        ("MANDATE_LOG", "warn".to_owned()),
        // The cap phase opens every session as one person: not what the new-session limit is for.
        ("MANDATE_MCP_NEW_SESSIONS_BURST", n.max(1).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    // People first (the first one alone: it creates the database and its key).
    let t0 = Instant::now();
    add_user(&mandate, &env, &person(0)).await?;
    let next = Arc::new(AtomicUsize::new(1));
    let mut adding = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (mandate, env, next) = (mandate.clone(), env.clone(), next.clone());
        adding.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= people {
                    return anyhow::Ok(());
                }
                add_user(&mandate, &env, &person(i)).await?;
            }
        });
    }
    while let Some(done) = adding.join_next().await {
        done??;
    }
    println!("sessions: {people} people added with `mandate users add` in {:.1} s", t0.elapsed().as_secs_f64());

    // `serve` without the demo first: its idle figure alone.
    let plain = Server::start(&mandate, &env, &dir.path().join("serve-plain.log"), false).await?;
    let plain_idle = plain.rss_settled().await?;
    plain.stop().await;
    println!(
        "sessions: {} serve: idle after start {:.1} MiB (anon {:.1} MiB)",
        mandate.display(),
        Rss::mib(plain_idle.total),
        Rss::mib(plain_idle.anon)
    );
    let server = Server::start(&mandate, &env, &dir.path().join("serve.log"), true).await?;
    let url = format!("{}/mcp", server.base);
    let idle = server.rss_settled().await?;
    println!(
        "sessions: {} serve --demo at {} (pid {}): idle after start {:.1} MiB (anon {:.1} MiB)",
        mandate.display(),
        server.base,
        server.pid,
        Rss::mib(idle.total),
        Rss::mib(idle.anon)
    );

    // One token per person, each through registration, sign-in (argon2id), consent and code,
    // each from an address of its own.
    let t0 = Instant::now();
    let mut tokens: Vec<Option<Arc<str>>> = vec![None; people];
    let next = Arc::new(AtomicUsize::new(0));
    let mut signing = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (next, base) = (next.clone(), server.base.clone());
        signing.spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= people {
                    return anyhow::Ok(got);
                }
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(
                    "x-forwarded-for",
                    format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256).parse()?,
                );
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .default_headers(headers)
                    .build()?;
                let t = Target { base: base.clone(), http, local: None, gateway: None, _dir: None };
                got.push((i, Arc::<str>::from(t.access_token(&person(i), DEMO).await?)));
            }
        });
    }
    while let Some(done) = signing.join_next().await {
        for (i, t) in done?? {
            tokens[i] = Some(t);
        }
    }
    let tokens: Arc<Vec<Arc<str>>> = Arc::new(tokens.into_iter().collect::<Option<_>>().context("a token is missing")?);
    let after_logins = server.rss_settled().await?;
    println!(
        "sessions: {people} sign-ins (argon2id) in {:.1} s; RSS after them {:.1} MiB (anon {:.1} MiB)",
        t0.elapsed().as_secs_f64(),
        Rss::mib(after_logins.total),
        Rss::mib(after_logins.anon)
    );

    let workers = a.concurrency.max(1);
    let http = reqwest::Client::builder().pool_max_idle_per_host(workers * 2).build()?;
    let before = Rss::read(server.pid)?;
    let by_person = tokens.clone();
    let (sessions, took) = open_many(&http, &url, n, workers, move |k| by_person[k / cap].clone()).await?;
    ensure!(sessions.iter().all(|s| s.initialized), "a session within the cap was dropped");
    let with = server.rss().await?;
    let per_session = (with.total as f64 - before.total as f64) / n as f64;
    println!(
        "sessions: {n} sessions opened in {:.1} s ({} people, at most {cap} each); RSS {:.1} MiB (anon {:.1} MiB): {:.1} KiB per session over the {:.1} MiB before",
        took.as_secs_f64(),
        people,
        Rss::mib(with.total),
        Rss::mib(with.anon),
        per_session,
        Rss::mib(before.total)
    );
    tokio::time::sleep(IDLE_WAIT).await;
    let idle_sessions = Rss::read(server.pid)?;
    let per_idle = (idle_sessions.total as f64 - before.total as f64) / n as f64;
    println!(
        "sessions: the {n} left idle {} s; RSS {:.1} MiB (anon {:.1} MiB): {:.1} KiB per idle session",
        IDLE_WAIT.as_secs(),
        Rss::mib(idle_sessions.total),
        Rss::mib(idle_sessions.anon),
        per_idle
    );
    for s in [&sessions[0], &sessions[n - 1]] {
        let status = ping(&http, &url, s).await?;
        ensure!(status.is_success(), "an idle session answered ping with {status}");
    }
    let (took, count) = close_many(&http, &url, sessions, workers).await?;
    ensure!(count == n, "{} sessions were gone before their DELETE", n - count);
    let closed = server.rss().await?;
    tokio::time::sleep(LATER).await;
    let closed_later = Rss::read(server.pid)?;
    println!(
        "sessions: closed (DELETE) in {:.1} s; RSS {:.1} MiB (anon {:.1} MiB), {} s later {:.1} MiB (anon {:.1} MiB)",
        took.as_secs_f64(),
        Rss::mib(closed.total),
        Rss::mib(closed.anon),
        LATER.as_secs(),
        Rss::mib(closed_later.total),
        Rss::mib(closed_later.anon)
    );

    // The per-person cap: one person opens them all; the database keeps the newest `cap`.
    let before_cap = Rss::read(server.pid)?;
    let one = tokens[0].clone();
    // One after the other: a session opened in parallel with others of the same person may be
    // dropped (and closed) between its initialize and its next request.
    let (sessions, took) = open_many(&http, &url, n, 1, move |_| one.clone()).await?;
    let capped = server.rss().await?;
    let oldest = ping(&http, &url, &sessions[0]).await?;
    let newest = ping(&http, &url, &sessions[n - 1]).await?;
    let early = sessions.iter().filter(|s| !s.initialized).count();
    println!(
        "sessions: {n} sessions opened by one person in {:.1} s (the cap keeps {cap}; {early} dropped before their notifications/initialized, opened one at a time); RSS {:.1} MiB (anon {:.1} MiB): {:.1} KiB per session opened; the oldest answers {}, the newest {}",
        took.as_secs_f64(),
        Rss::mib(capped.total),
        Rss::mib(capped.anon),
        (capped.total as f64 - before_cap.total as f64) / n as f64,
        oldest.as_u16(),
        newest.as_u16()
    );
    // Every one: those the cap dropped answer 404, the others are closed.
    let (_, kept) = close_many(&http, &url, sessions, workers).await?;
    let capped_closed = server.rss().await?;
    tokio::time::sleep(LATER).await;
    let capped_closed_later = Rss::read(server.pid)?;
    println!(
        "sessions: the {kept} kept closed; RSS {:.1} MiB (anon {:.1} MiB), {} s later {:.1} MiB (anon {:.1} MiB)",
        Rss::mib(capped_closed.total),
        Rss::mib(capped_closed.anon),
        LATER.as_secs(),
        Rss::mib(capped_closed_later.total),
        Rss::mib(capped_closed_later.anon)
    );
    server.stop().await;
    println!(
        "{}",
        json!({"scenario": "sessions", "sessions": n, "people": people, "cap": cap,
               "idle_after_start_plain": plain_idle.json(),
               "idle_after_start": idle.json(), "after_sign_ins": after_logins.json(),
               "before_sessions": before.json(), "with_sessions": with.json(),
               "per_session_kib": per_session, "sessions_idle": idle_sessions.json(),
               "per_idle_session_kib": per_idle, "after_closing": closed.json(),
               "after_closing_later": closed_later.json(),
               "one_person": {"with_sessions": capped.json(), "oldest_status": oldest.as_u16(),
                              "newest_status": newest.as_u16(), "dropped_before_initialized": early,
                              "after_closing": capped_closed.json(),
                              "after_closing_later": capped_closed_later.json()}})
    );
    Ok(())
}
