//! `tools/call` on a real third-party MCP server, `@modelcontextprotocol/server-everything`
//! (Node, Streamable HTTP, on a loopback port), through mandate's gateway
//! (`<base>/mcp/everything`: guard, relay, upstream session, trail) and directly, in interleaved
//! rounds. Both sides keep one MCP session per worker and call `echo`.
//!
//! CPU per call is read from `/proc/<pid>/stat` (utime + stime) around each round: this process
//! (the load generator, plus the gateway on the gateway side: the difference is the gateway's),
//! its SQLite threads (by name), and the upstream's Node process. With `taskset` and two CPUs the
//! upstream runs on one CPU and this process on the other, so the upstream has the same CPU
//! whichever side is measured (docs/BENCHMARKS.md, "Gateway overhead").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::Router;
use mandate_core::AuthServer;
use mandate_gateway::{Discovered, Limits, Target, UpstreamSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Stats;
use crate::mcp::{Call, Session, round};

/// The gateway resource's name: its path (`/mcp/everything`) and scope prefix.
const NAME: &str = "everything";
/// What `echo` (annotated read-only) needs.
pub(crate) const SCOPE: &str = "everything.read";

/// server-everything over Streamable HTTP, started for this run (killed when dropped).
pub(crate) struct Upstream {
    child: Child,
    pid: u32,
    /// Its MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub(crate) url: String,
    pub(crate) node_version: String,
    pub(crate) pin: Option<Pin>,
}

/// Which CPU each side runs on during the gateway rounds.
#[derive(Clone)]
pub(crate) struct Pin {
    own: usize,
    upstream: usize,
    /// This process's CPUs before, restored afterwards.
    before: String,
}

fn workspace_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1` or `0,2`).
fn allowed_cpus() -> Option<(String, Vec<usize>)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim().to_owned();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some((list, cpus))
}

async fn taskset(args: &[&str]) -> bool {
    Command::new("taskset")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Pins every thread of this process to `cpus` (threads started later inherit it).
async fn pin_self(cpus: &str) -> bool {
    taskset(&["-a", "-p", "-c", cpus, &std::process::id().to_string()]).await
}

impl Pin {
    async fn plan() -> Option<Pin> {
        let (before, cpus) = allowed_cpus()?;
        if cpus.len() < 2 || !taskset(&["-c", &before, "true"]).await {
            return None;
        }
        Some(Pin { own: cpus[0], upstream: cpus[1], before })
    }

    pub(crate) fn describe(&self) -> String {
        format!("upstream on CPU {}, this process (load generator and gateway) on CPU {}", self.upstream, self.own)
    }
}

/// Starts server-everything, or says why it cannot run here (`Ok(Err(reason))`: skip).
pub(crate) async fn launch(node: Option<&Path>, pin: bool) -> anyhow::Result<Result<Upstream, String>> {
    let e2e = workspace_root().join("e2e");
    let script = e2e.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let preload = e2e.join("lib/loopback-only.mjs");
    if !script.is_file() {
        return Ok(Err(format!("{} is not installed (cd e2e && npm ci)", script.display())));
    }
    if !preload.is_file() {
        return Ok(Err(format!("{} is missing (it holds the server to loopback)", preload.display())));
    }
    let local = e2e.join("node_modules/.bin/node");
    let Some(node) =
        node.map(Path::to_path_buf).or_else(|| local.is_file().then_some(local)).or_else(|| on_path("node"))
    else {
        return Ok(Err("no Node (e2e/node_modules/.bin/node, or node on PATH)".to_owned()));
    };
    let version = match Command::new(&node).arg("--version").stdin(Stdio::null()).output().await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => return Ok(Err(format!("{} does not run", node.display()))),
    };
    let pin = if pin { Pin::plan().await } else { None };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cmd = match &pin {
        Some(p) => {
            // taskset execs node: the pid is node's.
            let mut c = Command::new("taskset");
            c.arg("-c").arg(p.upstream.to_string()).arg(&node);
            c
        }
        None => Command::new(&node),
    };
    cmd.arg("--import")
        .arg(&preload)
        .arg(&script)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        // It logs a line per request on stdout; "listening on port N" comes on stderr.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("starting {}", node.display()))?;
    let pid = child.id().context("server-everything exited at once")?;
    let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let wanted = format!("listening on port {port}");
    let mut said = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&wanted) {
                return true;
            }
            said.push(line);
        }
        false
    })
    .await;
    if listening != Ok(true) {
        let _ = child.kill().await;
        bail!("server-everything did not start listening on port {port}: {}", said.join(" | "));
    }
    // Keep reading its stderr, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Ok(Upstream { child, pid, url: format!("http://127.0.0.1:{port}/mcp"), node_version: version, pin }))
}

impl Upstream {
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The upstream as the gateway found it at start.
pub(crate) struct Served {
    pub(crate) spec: UpstreamSpec,
    pub(crate) discovered: Discovered,
    http: reqwest::Client,
}

/// Reads the upstream's tools as `mandate serve` does, before the catalogue is built.
pub(crate) async fn discover(base: &str, url: &str) -> anyhow::Result<Served> {
    let spec = UpstreamSpec {
        name: NAME.to_owned(),
        title: "Everything".to_owned(),
        resource: format!("{base}/mcp/{NAME}"),
        target: Target::Http { url: url.to_owned(), headers: BTreeMap::new() },
        tool_scopes: BTreeMap::new(),
        extra_scopes: Vec::new(),
        default_scopes: Vec::new(),
        identity: false,
        provider: None,
        limits: Limits::default(),
    };
    let http = mandate_gateway::http_client()?;
    let discovered = mandate_gateway::discover(&spec, &http).await?;
    if let Some(e) = &discovered.error {
        bail!("the gateway could not read server-everything's tools: {e}");
    }
    let echo = discovered.mapping.tools.required("echo");
    ensure!(echo == Some(vec![SCOPE.to_owned()]), "echo needs {echo:?}, not {SCOPE}");
    Ok(Served { spec, discovered, http })
}

/// The gateway's router for `s` (guard, relay, metadata), as `mandate serve` mounts it.
pub(crate) fn router(s: Served, auth: &Arc<AuthServer>) -> anyhow::Result<Router> {
    let def = auth.resources.resolve(Some(&s.spec.resource)).map_err(|e| anyhow::anyhow!(e.description.to_string()))?;
    let settings = mandate_mcp::McpSettings::in_process(auth, def, Vec::new());
    let (_upstream, router) = mandate_gateway::serve(s.spec, s.discovered, auth.clone(), s.http, settings, None);
    Ok(router)
}

/// utime + stime of a process (`/proc/<pid>/stat`) or thread (`/proc/<pid>/task/<tid>/stat`),
/// in clock ticks.
fn cpu_ticks(stat: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn process_ticks(pid: u32) -> Option<u64> {
    cpu_ticks(Path::new(&format!("/proc/{pid}/stat")))
}

/// utime + stime of this process's SQLite threads (sqlx runs each connection on a thread of its
/// own, named `sqlx-sqlite-worker-N`): on the gateway side, the trail's insert for each call.
fn sqlite_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("sqlx-sqlite")))
        .filter_map(|t| cpu_ticks(&t.path().join("stat")))
        .sum()
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU used during one side's rounds, in clock ticks.
#[derive(Default)]
pub(crate) struct Cpu {
    /// This process: the load generator, plus the gateway on the gateway side.
    pub(crate) own: u64,
    /// Of `own`, its SQLite threads.
    pub(crate) own_sqlite: u64,
    pub(crate) upstream: u64,
}

pub(crate) struct Comparison {
    pub(crate) direct: Stats,
    pub(crate) gateway: Stats,
    pub(crate) direct_cpu: Cpu,
    pub(crate) gateway_cpu: Cpu,
    pub(crate) ticks_per_second: u64,
}

impl Comparison {
    /// µs of CPU per successful call.
    pub(crate) fn per_call(&self, ticks: u64, calls: usize) -> f64 {
        ticks as f64 * 1e6 / self.ticks_per_second as f64 / calls.max(1) as f64
    }
}

fn echo() -> Arc<Call> {
    Arc::new(Call {
        tool: "echo",
        arguments: json!({"message": "hi"}),
        ok: |r: &Value| r["isError"] != json!(true) && r["content"][0]["text"] == json!("Echo: hi"),
    })
}

/// Runs direct and gateway rounds alternately (direct first in even rounds), after a warm-up
/// of each that is not counted.
pub(crate) async fn compare(
    upstream: &Upstream,
    gateway_url: &str,
    token: &str,
    a: &crate::Args,
) -> anyhow::Result<Comparison> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let mut direct = Vec::new();
    let mut via = Vec::new();
    for _ in 0..a.concurrency {
        direct.push(Arc::new(Session::open(&http, upstream.url.clone(), None, echo()).await?));
        via.push(Arc::new(Session::open(&http, gateway_url.to_owned(), Some(token.to_owned()), echo()).await?));
    }
    if let Some(p) = &upstream.pin
        && !pin_self(&p.own.to_string()).await
    {
        bail!("taskset could not pin this process to CPU {}", p.own);
    }
    let rounds = a.rounds.max(1);
    let per_worker = (a.requests / a.concurrency / rounds).max(1);
    let per_round = Duration::from_secs(a.seconds.max(rounds as u64) / rounds as u64);
    let stats = |name| Stats { name, latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    let mut c = Comparison {
        direct: stats("tools/call echo, direct"),
        gateway: stats("tools/call echo, gateway"),
        direct_cpu: Cpu::default(),
        gateway_cpu: Cpu::default(),
        ticks_per_second: clock_ticks_per_second(),
    };
    // Warm-up (connections, Node's JIT), not counted.
    let warm = (per_worker / 4).clamp(1, 100);
    for sessions in [&direct, &via] {
        let mut w = stats("warm-up");
        round(sessions, warm, Instant::now() + per_round, &mut w).await?;
        ensure!(w.errors == 0, "the warm-up had {} errors", w.errors);
    }
    let me = std::process::id();
    for r in 0..rounds {
        let order = if r % 2 == 0 { [false, true] } else { [true, false] };
        for through_gateway in order {
            let (sessions, stats, cpu) = if through_gateway {
                (&via, &mut c.gateway, &mut c.gateway_cpu)
            } else {
                (&direct, &mut c.direct, &mut c.direct_cpu)
            };
            let before = (process_ticks(me), sqlite_ticks(), process_ticks(upstream.pid));
            round(sessions, per_worker, Instant::now() + per_round, stats).await?;
            let after = (process_ticks(me), sqlite_ticks(), process_ticks(upstream.pid));
            cpu.own += after.0.zip(before.0).map_or(0, |(a, b)| a.saturating_sub(b));
            cpu.own_sqlite += after.1.saturating_sub(before.1);
            cpu.upstream += after.2.zip(before.2).map_or(0, |(a, b)| a.saturating_sub(b));
        }
    }
    if let Some(p) = &upstream.pin {
        pin_self(&p.before).await;
    }
    Ok(c)
}
