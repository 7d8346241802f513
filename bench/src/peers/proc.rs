//! The server processes: pinning (`taskset`), starting and stopping them, waiting until they
//! say they are ready, and their CPU time from `/proc`.
//!
//! CPU time is utime + stime from `/proc/<pid>/stat`. For a process (a thread group leader's
//! pid) the kernel reports the sum over all its threads, those still running and those already
//! ended (`do_task_stat` with `whole` set), in clock ticks (`getconf CLK_TCK`, 100 per second
//! here: 10 ms resolution per reading).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Which CPU the driver and the servers run on.
#[derive(Clone, Debug)]
pub struct Pin {
    pub driver: usize,
    pub server: usize,
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
fn allowed_cpus() -> Option<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim().to_owned();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Pins every thread of this process (threads started later inherit it) to one CPU, and picks
/// another for the servers.
pub fn pin_driver() -> anyhow::Result<Pin> {
    let cpus = allowed_cpus().context("reading the CPUs allowed (/proc/self/status)")?;
    if cpus.len() < 2 {
        bail!("pinning needs two CPUs, this process may use {cpus:?} (run with --no-pin to measure unpinned)");
    }
    let pin = Pin { driver: cpus[0], server: cpus[1] };
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &pin.driver.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running taskset (util-linux); --no-pin measures unpinned")?;
    if !status.success() {
        bail!("taskset could not pin this process to CPU {} ({status})", pin.driver);
    }
    Ok(pin)
}

/// A server process started for the run; killed when dropped.
pub struct Server {
    pub name: String,
    child: Child,
    /// The pid whose `/proc/<pid>/stat` is read: the server itself (`taskset` execs it).
    pub pid: u32,
    pub log: PathBuf,
}

/// How to start one server.
pub struct Launch<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
    /// Variables of this environment the server must not see.
    pub remove_env: Vec<String>,
    pub cwd: Option<&'a Path>,
    pub pin: Option<usize>,
    pub log_dir: &'a Path,
}

impl Launch<'_> {
    /// Starts the server, its stderr to `<log_dir>/<name>.log`; returns it and its stdout.
    pub fn spawn(self) -> anyhow::Result<(Server, Lines<BufReader<ChildStdout>>)> {
        let file_name: String =
            self.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let log = self.log_dir.join(format!("{file_name}.log"));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = match self.pin {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(self.program);
                c
            }
            None => Command::new(self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        for k in &self.remove_env {
            cmd.env_remove(k);
        }
        if let Some(dir) = self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        let pid = child.id().with_context(|| format!("{} exited at once", self.name))?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok((Server { name: self.name.to_owned(), child, pid, log }, BufReader::new(stdout).lines()))
    }
}

impl Server {
    /// Reads stdout lines until `ready` returns a value (at most `within`); afterwards keeps
    /// reading (and dropping) stdout so that the server never blocks on a full pipe.
    pub async fn wait_ready<T: Send + 'static>(
        &mut self,
        mut lines: Lines<BufReader<ChildStdout>>,
        within: Duration,
        mut ready: impl FnMut(&str) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let waited = tokio::time::timeout(within, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(v) = ready(&line)? {
                    return anyhow::Ok(Some(v));
                }
            }
            Ok(None)
        })
        .await;
        match waited {
            Ok(Ok(Some(v))) => {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok(v)
            }
            Ok(Ok(None)) => bail!("{} exited before it was ready: {}", self.name, self.log_tail()),
            Ok(Err(e)) => bail!("{} was not ready: {e:#}: {}", self.name, self.log_tail()),
            Err(_) => bail!("{} was not ready within {} s: {}", self.name, within.as_secs(), self.log_tail()),
        }
    }

    /// The last lines of its log, to quote in an error.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
        format!("its log {}:\n  {tail}", self.log.display())
    }

    /// An error if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}) during the run; {}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// (utime + stime, cutime + cstime) of `/proc/<pid>/stat`, in clock ticks.
fn stat_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) ": state is field 3; utime, stime, cutime, cstime are fields 14 to 17.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((n(11)? + n(12)?, n(13)? + n(14)?))
}

pub fn process_ticks(pid: u32) -> Option<u64> {
    stat_ticks(pid).map(|(own, _)| own)
}

pub fn own_ticks() -> Option<u64> {
    process_ticks(std::process::id())
}

/// CPU ticks of the PostgreSQL backends serving `database` (found by their process title,
/// `postgres: [CLUSTER: ]USER DATABASE ADDRESS STATE`): the database's own work for one target. Shared
/// background processes (WAL writer, checkpointer) are not counted.
pub fn postgres_backend_ticks(database: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let title = String::from_utf8_lossy(&c).replace('\0', " ");
                let Some(rest) = title.strip_prefix("postgres: ") else { return false };
                let mut words = rest.split_whitespace().peekable();
                // With cluster_name set (Debian: "15/main"), the title starts with "NAME: ".
                if words.peek().is_some_and(|w| w.ends_with(':')) {
                    words.next();
                }
                words.nth(1) == Some(database)
            })
        })
        .filter_map(|pid| stat_ticks(pid).map(|(own, children)| own + children))
        .sum()
}

/// Busy time of all CPUs (user, nice, system, irq, softirq, steal of `/proc/stat`'s `cpu`
/// line), in clock ticks.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?)
}

pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
