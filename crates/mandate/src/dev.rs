//! `mandate dev -- COMMAND`: a developer's stdio MCP server behind mandate on loopback, the
//! authorization server and the gateway in one `mandate serve`, restarted when the project's
//! files change. The database and the dev sign-in live in `.mandate/` of the project, so tokens,
//! grants and the trail survive each restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::watch::{Change, Watcher};

#[derive(clap::Args)]
pub struct DevArgs {
    /// The loopback port mandate listens on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The resource's name: its path (/mcp/NAME) and scope prefix (NAME.read) [default: the
    /// directory's name]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// What to watch for changes (repeatable) [default: the current directory]
    #[arg(long, value_name = "PATH")]
    watch: Vec<PathBuf>,
    /// Where the database and the dev sign-in are kept.
    #[arg(long, value_name = "DIR", default_value = ".mandate")]
    data: PathBuf,
    /// The MCP server: a program speaking MCP on stdin/stdout, and its arguments (no shell).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The person the developer signs in as.
const PERSON: &str = "dev";

pub async fn run(args: DevArgs) -> ExitCode {
    match supervise(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A resource name from the project directory's name: lower-case, other characters as `-`.
fn name_from(dir: &Path) -> String {
    let raw = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name: String =
        raw.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '-' }).collect();
    let name = name.trim_matches('-').chars().take(40).collect::<String>();
    if mandate_gateway::valid_name(&name) { name } else { "dev".to_owned() }
}

async fn supervise(args: DevArgs) -> anyhow::Result<()> {
    let here = std::env::current_dir().context("reading the current directory")?;
    let name = match args.name {
        Some(n) if mandate_gateway::valid_name(&n) => n,
        Some(n) => bail!("--name {n:?}: use lower-case letters, digits, `-` and `_`, starting with a letter"),
        None => name_from(&here),
    };
    let data = std::path::absolute(&args.data).context("resolving --data")?;
    prepare(&data)?;
    let database = format!("sqlite://{}", data.join("dev.db").display());
    let exe = std::env::current_exe().context("finding the mandate binary")?;
    let password = dev_login(&exe, &database, &data).await?;
    let watched: Vec<PathBuf> = if args.watch.is_empty() { vec![here.clone()] } else { args.watch };
    let (_watcher, mut changes) = Watcher::start(&watched, std::slice::from_ref(&data))?;
    let mut signals = crate::shutdown::Signals::install().context("listening for SIGTERM and SIGINT")?;
    let server = Server { exe, database, port: args.port, name, command: args.command };
    let mut first = true;
    loop {
        changes.drain();
        let mut child = server.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("mandate serve has no stdout"))?;
        // A signal while it starts (reading the tools may mean building them first) stops it.
        let seen = tokio::select! {
            seen = server.banner(stdout) => seen,
            _ = signals.next() => {
                stop(&mut child).await;
                return Ok(());
            }
        };
        let started = match seen.map(|seen| server.started(&seen)) {
            Ok(Some(s)) => s,
            failed => {
                stop(&mut child).await;
                let why = match failed {
                    Err(e) => format!("{e:#}"),
                    _ => "it stopped before serving; what it said is above".to_owned(),
                };
                // The first start failing is an error (a taken port, a bad flag); a restart
                // failing waits for the next change.
                if first {
                    bail!("mandate serve did not start: {why}");
                }
                say(&[format!("[dev] mandate did not start again ({why}); it tries again when a file changes")]);
                tokio::select! {
                    _ = changes.next() => continue,
                    _ = signals.next() => return Ok(()),
                }
            }
        };
        if first {
            say(&banner(&server, &started, &password, &data, &watched));
            first = false;
        } else {
            say(&[format!("[dev] restarted: {} ({})", started.resource, started.tools)]);
        }
        // Runs until a change, a signal, or the server ending by itself.
        let why = tokio::select! {
            change = changes.next() => Next::Change(change),
            _ = signals.next() => Next::Stop,
            status = child.wait() => Next::Ended(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
        };
        match why {
            Next::Stop => {
                stop(&mut child).await;
                return Ok(());
            }
            Next::Change(change) => {
                say(&[format!("[dev] changed: {}; restarting", change.describe(&here))]);
                stop(&mut child).await;
            }
            Next::Ended(status) => {
                say(&[format!("[dev] mandate stopped ({status}); it starts again when a file changes")]);
                tokio::select! {
                    _ = changes.next() => {}
                    _ = signals.next() => return Ok(()),
                }
            }
        }
    }
}

enum Next {
    Change(Change),
    Stop,
    Ended(String),
}

/// The data directory, when `mandate dev` makes it: the owner's only, and never committed.
fn prepare(data: &Path) -> anyhow::Result<()> {
    if data.is_dir() {
        // Made before (by an earlier run, or the developer's own choice): left as it is.
        return Ok(());
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", data.display()))?;
    }
    let ignore = data.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(())
}

/// The dev person's password: made once (kept in `<data>/dev-login`, the owner's only), the
/// person added to the database with it.
async fn dev_login(exe: &Path, database: &str, data: &Path) -> anyhow::Result<String> {
    let file = data.join("dev-login");
    let kept = std::fs::read_to_string(&file).ok().and_then(|k| k.lines().next().map(str::to_owned));
    if let Some(password) = kept.filter(|p| !p.is_empty()) {
        // The person is added again if the database was deleted; one already there keeps it.
        match admin(exe, database, &["users", "add", PERSON, "--password-stdin"], &password).await {
            Ok(()) => {}
            Err(e) if e.to_string().contains("already exists") => {}
            Err(e) => return Err(e),
        }
        return Ok(password);
    }
    let password = mandate_core::secret::random_token(&mandate_core::clock::OsRandom);
    // A database kept from before may know the person already: then the password is replaced.
    if admin(exe, database, &["users", "add", PERSON, "--password-stdin"], &password).await.is_err() {
        admin(exe, database, &["users", "passwd", PERSON, "--password-stdin"], &password).await?;
    }
    write_private(&file, &format!("{password}\n"))?;
    Ok(password)
}

fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(file).with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("writing {}", file.display()))
}

/// Runs an admin command of this binary on the dev database, the password on its stdin.
async fn admin(exe: &Path, database: &str, args: &[&str], password: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new(exe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MANDATE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(args)
        .env("MANDATE_DATABASE", database)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running mandate users")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{password}\n").as_bytes()).await.context("passing the password")?;
    }
    let out = child.wait_with_output().await.context("running mandate users")?;
    if out.status.success() {
        Ok(())
    } else {
        Err(anyhow!("mandate {}: {}", args[..2].join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// How one `mandate serve` is started.
struct Server {
    exe: PathBuf,
    database: String,
    port: u16,
    name: String,
    command: Vec<String>,
}

/// What a started server said.
struct Started {
    base: String,
    resource: String,
    /// "3 tools", or that they could not be read.
    tools: String,
}

impl Server {
    /// Starts `mandate serve` in a process group of its own (stopping it stops the group;
    /// `serve` stops the developer's server, in a group of its own, on its way out). Its own
    /// settings come from here, not from `MANDATE_*` in the developer's environment; it drains
    /// for at most 3 s, well within [`stop`]'s 10 s.
    fn spawn(&self) -> anyhow::Result<Child> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--upstream-name", &self.name])
            .args(passed_env().flat_map(|k| ["--upstream-env".to_owned(), k]))
            .arg("--")
            .args(&self.command);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MANDATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("MANDATE_DATABASE", &self.database)
            .env("MANDATE_INSPECTOR_OPERATORS", format!("[{PERSON}]"))
            .env("MANDATE_SHUTDOWN_TIMEOUT", "3")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        cmd.spawn().context("starting mandate serve")
    }

    /// Reads the banner of a started `serve` (up to its last line), then what it said.
    async fn banner(&self, stdout: tokio::process::ChildStdout) -> anyhow::Result<Vec<String>> {
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        while let Some(l) = lines.next_line().await.context("reading what mandate serve printed")? {
            let done = l.starts_with("Ctrl-C stops it");
            seen.push(l);
            if done {
                break;
            }
        }
        // What it prints later (nothing, today) is read and dropped, so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(seen)
    }

    /// What the banner says: where it serves and how many tools it read; `None` when it never
    /// said it serves (it stopped first).
    fn started(&self, seen: &[String]) -> Option<Started> {
        let base = seen.iter().find_map(|l| l.strip_prefix("mandate is serving "))?;
        let resource = format!("{base}/mcp/{}", self.name);
        let said = seen
            .iter()
            .find(|l| l.ends_with(&resource))
            .and_then(|l| Some(l.split_once('(')?.1.split_once(')')?.0.to_owned()))
            .unwrap_or_else(|| "tools unknown".to_owned());
        let tools = match said.as_str() {
            "tools not read yet: upstream unreachable" => {
                "could not be read (the error is above): fix the server and save".to_owned()
            }
            _ => said,
        };
        Some(Started { base: base.to_owned(), resource, tools })
    }
}

/// The developer's environment, for their server (it runs as it would from their shell): every
/// variable but mandate's own settings (`MANDATE_*`) and those that are not UTF-8.
fn passed_env() -> impl Iterator<Item = String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !k.starts_with("MANDATE_") && !k.is_empty())
        .map(|(k, _)| k)
}

/// SIGTERM to the server's process group (mandate drains for at most 3 s, then stops the
/// developer's server), SIGKILL after 10 s.
async fn stop(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        use nix::sys::signal::{Signal, killpg};
        let _ = killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_ok() {
            return;
        }
        let _ = killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn banner(server: &Server, started: &Started, password: &str, data: &Path, watched: &[PathBuf]) -> Vec<String> {
    let line = |what: &str, value: &str| format!("  {:<28} {value}", format!("{what}:"));
    let watching: Vec<String> = watched.iter().map(|p| p.display().to_string()).collect();
    vec![
        format!("mandate dev: {} behind mandate at {}", server.command.join(" "), started.base),
        line("open the inspector", &format!("{}/inspector", started.base)),
        line("add to your MCP client", &started.resource),
        line("its tools", &started.tools),
        line("sign in as", &format!("{PERSON} / {password}   (kept in {})", data.join("dev-login").display())),
        line("what agents may do", &format!("{}/account/apps", started.base)),
        line("what they did", &format!("{}/account/activity", started.base)),
        line("restarted when these change", &watching.join(", ")),
        "Ctrl-C stops it.".to_owned(),
    ]
}

fn say(lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", lines.join("\n"));
    let _ = out.flush();
}

/// The changes the watcher reports.
trait Changes {
    fn drain(&mut self);
    async fn next(&mut self) -> Change;
}

impl Changes for UnboundedReceiver<Change> {
    fn drain(&mut self) {
        while self.try_recv().is_ok() {}
    }

    async fn next(&mut self) -> Change {
        match self.recv().await {
            Some(c) => c,
            // The watcher is gone: nothing will change again.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_from_the_directory() {
        assert_eq!(name_from(Path::new("/home/a/notes")), "notes");
        assert_eq!(name_from(Path::new("/home/a/My Notes.v2")), "my-notes-v2");
        assert_eq!(name_from(Path::new("/home/a/2024")), "dev");
        assert_eq!(name_from(Path::new("/")), "dev");
    }
}
