//! `mandate-peers`: mandate against peer servers, each in a process of its own pinned to one CPU
//! (`taskset`), driven by this one load driver (pinned to another CPU) with the same HTTP client
//! code path for every target, in interleaved rounds. Reports req/s, p50/p99, errors and server
//! CPU µs per request (`/proc/<pid>/stat`), and the ratios mandate/peer. bench/peers/README.md
//! says what is measured and how; `bench/peers/run.sh` installs, builds and runs it.
//!
//! Targets: the release `mandate serve --demo` (fresh SQLite file; and a fresh PostgreSQL
//! database when a server is there), the MCP TypeScript SDK's demo authorization server and a
//! `requireBearerAuth` MCP server (bench/peers/ts-sdk-*.mjs), panva's oidc-provider
//! (bench/peers/oidc-provider.mjs), and mandate's MCP endpoint with its auth-off twin
//! (`--serve-twin`, this binary).
//!
//! Scenarios: `authorize` (a code per GET with a signed-in session and remembered consent),
//! `code` (redeem those codes with PKCE), `refresh` (each worker rotates its own refresh-token
//! family), `tools_call` (one MCP session per worker, auth on and off).
#![allow(clippy::print_stdout)]

mod load;
mod mcp;
mod oauth;
mod proc;
mod report;
mod setup;
mod twin;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;

use crate::load::{Probe, Worker};
use crate::oauth::{AuthServer, Jar, SignIn};
use crate::proc::Server;
use crate::report::Record;

#[derive(Parser)]
struct Args {
    /// Counted rounds; the order of the targets is reversed every other round (A B C, C B A, …).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of load per target, scenario and round (at most 25: codes live 60 s).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds per unit of the warm-up round (not counted; 0: none).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Workers (requests in flight) per target.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// A tiny run to check that the harness works (CI): 1 round of 1 s, 2 workers.
    #[arg(long)]
    smoke: bool,
    /// The mandate binary [default: target/release/mandate].
    #[arg(long, value_name = "PATH")]
    mandate: Option<PathBuf>,
    /// Node 22 [default: bench/peers/node_modules/.bin/node].
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// A PostgreSQL server to add `mandate (PostgreSQL)` with (a fresh database is created and
    /// dropped); default: postgres://$USER@127.0.0.1:5432/postgres when that port answers.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// No PostgreSQL variant.
    #[arg(long)]
    no_postgres: bool,
    /// Scenarios to report (code needs the codes of authorize, which then runs too).
    #[arg(long, value_delimiter = ',', default_value = "authorize,code,refresh,tools_call")]
    scenarios: Vec<String>,
    /// Do not pin the driver and the servers to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Internal: serve mandate's MCP endpoint and its auth-off twin (see twin.rs).
    #[arg(long, hide = true)]
    serve_twin: bool,
}

fn workspace_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

/// An authorization server measured in `authorize`, `code` and `refresh`.
struct AsTarget {
    label: String,
    mandate: bool,
    server: usize,
    probe: Probe,
    workers: Vec<Worker>,
}

/// An MCP endpoint measured in `tools_call`.
struct McpTarget {
    label: String,
    mandate: bool,
    server: usize,
    probe: Probe,
    auth: (String, bool),
    sessions: Vec<Arc<mcp::Session>>,
}

struct Run {
    a: Args,
    servers: Vec<Server>,
    oauth: Vec<AsTarget>,
    mcp: Vec<McpTarget>,
    records: Vec<Record>,
    notes: Vec<String>,
    /// The PostgreSQL database created for this run: (admin URL, name).
    pg_database: Option<(String, String)>,
}

/// An MCP endpoint to measure.
struct Endpoint<'a> {
    label: &'a str,
    server: usize,
    probe: Probe,
    url: &'a str,
    token: Option<&'a str>,
    /// The server it belongs to, and whether auth is on.
    auth: (String, bool),
    mandate: bool,
}

impl Run {
    fn probe(&self, server: usize, postgres_database: Option<String>) -> Probe {
        Probe { pid: self.servers[server].pid, postgres_database }
    }

    /// Gives every worker a grant of its own, and starts its refresh family with a first code:
    /// where the server registers clients (mandate, the TS SDK), a client of its own, signed in
    /// once as the one person and consenting for each client; where it has a pre-registered
    /// client and any number of accounts (oidc-provider), an account of its own, signed in
    /// separately. Returns worker 0's client and session.
    async fn add_oauth(
        &mut self,
        label: &str,
        server: usize,
        probe: Probe,
        auth: AuthServer,
        mandate: bool,
    ) -> anyhow::Result<(Arc<AuthServer>, Jar)> {
        let mut workers: Vec<Worker> = Vec::new();
        let per_account = matches!(auth.sign_in, SignIn::OidcDev);
        for w in 0..self.a.concurrency {
            let mine = match (w, &auth.registration_endpoint) {
                (1.., Some(_)) => {
                    let id =
                        auth.register().await.with_context(|| format!("{label}: registering worker {w}'s client"))?;
                    AuthServer { client_id: id, ..auth.clone() }
                }
                _ => auth.clone(),
            };
            let mut jar = match workers.first() {
                Some(first) if !per_account => first.jar.clone(),
                _ => Jar::default(),
            };
            let (code, verifier) = mine
                .sign_in(&mut jar, &format!("bench-{w}"))
                .await
                .with_context(|| format!("{label}: signing in worker {w}"))?;
            let tokens = mine.redeem(&code, &verifier).await.with_context(|| format!("{label}: first code"))?;
            let refresh = tokens.refresh.with_context(|| format!("{label}: no refresh token with the first code"))?;
            workers.push(Worker { auth: Arc::new(mine), jar, refresh: Some(refresh), codes: Default::default() });
        }
        let first = workers.first().map(|w| (w.auth.clone(), w.jar.clone())).context("no workers")?;
        self.oauth.push(AsTarget { label: label.to_owned(), mandate, server, probe, workers });
        Ok(first)
    }

    /// One MCP session per worker at the endpoint.
    async fn add_mcp(&mut self, e: Endpoint<'_>) -> anyhow::Result<()> {
        let http = oauth::client()?;
        let mut sessions = Vec::new();
        for _ in 0..self.a.concurrency {
            sessions
                .push(Arc::new(mcp::Session::open(&http, e.url, e.token).await.with_context(|| e.label.to_owned())?));
        }
        let t = McpTarget {
            label: e.label.to_owned(),
            mandate: e.mandate,
            server: e.server,
            probe: e.probe,
            auth: e.auth,
            sessions,
        };
        self.mcp.push(t);
        Ok(())
    }

    fn wants(&self, scenario: &str) -> bool {
        self.a.scenarios.iter().any(|s| s == scenario)
    }

    fn record(&mut self, scenario: &'static str, label: &str) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.scenario == scenario && r.target == label)
    }

    /// One round: authorize+code per target, refresh per target, tools_call per endpoint;
    /// every group in reverse order on odd rounds.
    async fn round(&mut self, index: usize, seconds: u64, counted: bool) -> anyhow::Result<()> {
        let order = |n: usize| -> Vec<usize> {
            if index.is_multiple_of(2) { (0..n).collect() } else { (0..n).rev().collect() }
        };
        let span = Duration::from_secs(seconds);
        let settle = Duration::from_millis(300);
        let oauth_units = self.wants("authorize") || self.wants("code") || self.wants("refresh");
        for (scenario, enabled) in
            [("authorize", self.wants("authorize") || self.wants("code")), ("refresh", self.wants("refresh"))]
        {
            if !oauth_units || !enabled {
                continue;
            }
            for i in order(self.oauth.len()) {
                self.servers[self.oauth[i].server].check_alive()?;
                let (probe, label) = (self.oauth[i].probe.clone(), self.oauth[i].label.clone());
                let workers = std::mem::take(&mut self.oauth[i].workers);
                let steps: Vec<&'static str> =
                    if scenario == "authorize" { vec!["authorize", "code"] } else { vec!["refresh"] };
                let mut workers = Some(workers);
                for step in steps {
                    let before = probe.read()?;
                    let deadline = Instant::now() + span;
                    let w = workers.take().unwrap_or_default();
                    let (w, out) = match step {
                        "authorize" => load::authorize(w, deadline).await?,
                        "code" => load::code(w, deadline).await?,
                        _ => load::refresh(w, deadline).await?,
                    };
                    let ticks = probe.read()?.since(before);
                    workers = Some(w);
                    if counted && let Some(r) = self.record(step, &label) {
                        r.add(out, ticks);
                    }
                }
                self.oauth[i].workers = workers.unwrap_or_default();
                tokio::time::sleep(settle).await;
            }
        }
        if self.wants("tools_call") {
            for i in order(self.mcp.len()) {
                self.servers[self.mcp[i].server].check_alive()?;
                let (probe, label) = (self.mcp[i].probe.clone(), self.mcp[i].label.clone());
                let sessions = std::mem::take(&mut self.mcp[i].sessions);
                let before = probe.read()?;
                let (sessions, out) = load::tools_call(sessions, Instant::now() + span).await?;
                let ticks = probe.read()?.since(before);
                self.mcp[i].sessions = sessions;
                if counted && let Some(r) = self.record("tools_call", &label) {
                    r.add(out, ticks);
                }
                tokio::time::sleep(settle).await;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.serve_twin {
        return twin::serve().await;
    }
    if a.smoke {
        (a.rounds, a.seconds, a.warmup, a.concurrency) = (1, 1, 1, 2);
    }
    ensure!(a.rounds >= 1 && a.concurrency >= 1, "--rounds and --concurrency must be at least 1");
    ensure!(
        (1..=25).contains(&a.seconds),
        "--seconds must be 1 to 25 (codes issued in one unit are redeemed in the next; they live 60 s)"
    );
    for s in &a.scenarios {
        ensure!(["authorize", "code", "refresh", "tools_call"].contains(&s.as_str()), "unknown scenario {s:?}");
    }
    let root = workspace_root();
    // Absolute: the servers run in directories of their own.
    let bin = std::path::absolute(a.mandate.clone().unwrap_or_else(|| root.join("target/release/mandate")))?;
    ensure!(
        bin.is_file(),
        "no mandate binary at {} (cargo build --release -p mandate, or --mandate PATH)",
        bin.display()
    );
    let node = std::path::absolute(a.node.clone().unwrap_or_else(|| root.join("bench/peers/node_modules/.bin/node")))?;
    ensure!(node.is_file(), "no Node at {} (bench/peers/run.sh installs it: cd bench/peers && npm ci)", node.display());
    let v = std::process::Command::new(&node).arg("--version").output().context("running node --version")?;
    let node_version = String::from_utf8_lossy(&v.stdout).trim().to_owned();
    let major = node_version.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
    ensure!(major.is_some_and(|m| m >= 22), "Node 22 or later is needed, {} is {node_version:?}", node.display());
    let pin = if a.no_pin { None } else { Some(proc::pin_driver()?) };
    let logs = root.join("target/peers");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let work = tempfile::tempdir()?;
    let postgres = match (&a.postgres, a.no_postgres) {
        (_, true) => None,
        (Some(url), false) => Some((url.clone(), true)),
        (None, false) => {
            std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], 5432).into(), Duration::from_millis(300))
                .ok()
                .map(|_| (format!("postgres://{}@127.0.0.1:5432/postgres", setup::user_name()), false))
        }
    };
    let ctx = setup::Ctx {
        mandate: bin.clone(),
        node,
        pin: pin.as_ref().map(|p| p.server),
        logs: logs.clone(),
        work: work.path().to_path_buf(),
        postgres,
    };
    let mut run = Run {
        a,
        servers: Vec::new(),
        oauth: Vec::new(),
        mcp: Vec::new(),
        records: Vec::new(),
        notes: Vec::new(),
        pg_database: None,
    };
    let result = async {
        let (n, w) = (run.a.concurrency, run.a.seconds);
        println!(
            "mandate-peers: {} rounds of {w} s per target and scenario (+ a warm-up of {} s), {n} workers per target",
            run.a.rounds, run.a.warmup
        );
        match &pin {
            Some(p) => println!("pinned: driver on CPU {}, every server on CPU {} (taskset)", p.driver, p.server),
            None => println!("not pinned"),
        }
        run.start_targets(&ctx).await?;
        for scenario in ["authorize", "code", "refresh"] {
            if run.wants(scenario) {
                let rows: Vec<Record> = run
                    .oauth
                    .iter()
                    .map(|t| Record::new(scenario, &t.label, t.mandate, None, t.probe.postgres_database.is_some()))
                    .collect();
                run.records.extend(rows);
            }
        }
        if run.wants("tools_call") {
            let rows: Vec<Record> = run
                .mcp
                .iter()
                .map(|t| {
                    Record::new(
                        "tools_call",
                        &t.label,
                        t.mandate,
                        Some(t.auth.clone()),
                        t.probe.postgres_database.is_some(),
                    )
                })
                .collect();
            run.records.extend(rows);
        }
        println!(
            "machine: {} CPUs, {}; Linux {}; load average at start {}",
            std::fs::read_to_string("/proc/cpuinfo")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model(),
            first_line("/proc/sys/kernel/osrelease"),
            first_line("/proc/loadavg")
        );
        println!("node {node_version}; mandate {}", bin.display());
        run.notes.iter().for_each(|n| println!("  {n}"));
        if run.a.warmup > 0 {
            println!("warm-up round ({} s per unit, not counted)", run.a.warmup);
            run.round(0, run.a.warmup, false).await?;
        }
        for r in 0..run.a.rounds {
            let started = Instant::now();
            run.round(r, run.a.seconds, true).await?;
            println!("round {} of {} done in {:.0} s", r + 1, run.a.rounds, started.elapsed().as_secs_f64());
        }
        println!("load average at end {}", first_line("/proc/loadavg"));
        anyhow::Ok(())
    }
    .await;
    let failed = match &result {
        Ok(()) => report::print(
            &mut run.records,
            proc::clock_ticks_per_second(),
            &format!("{} rounds × {} s, {} workers", run.a.rounds, run.a.seconds, run.a.concurrency),
        ),
        Err(_) => true,
    };
    for s in std::mem::take(&mut run.servers) {
        s.stop().await;
    }
    if let Some((admin, name)) = run.pg_database.take() {
        setup::drop_database(&admin, &name).await;
    }
    println!("server logs: {}", logs.display());
    result?;
    if failed {
        bail!("a target answered errors or completed nothing (see above); its figures are not counted");
    }
    Ok(())
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().lines().next().unwrap_or_default().trim().to_owned()
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or_else(String::new, |m| m.trim_start_matches([' ', '\t', ':']).to_owned())
}
