//! Shared by the client tests: a `mandate serve --demo` process, the CLI as a process with its own
//! credentials directory, and the test acting as the person in the browser.
#![allow(dead_code)]

pub mod killed;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use mandate_testkit::{Authz, Browser, pkce, submit_consent};
use serde_json::Value;

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `mandate serve --demo` on a free loopback port with a fresh SQLite file.
pub struct DemoServer {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub password: String,
    /// The `MANDATE_DATABASE` it runs on (admin commands can share it).
    pub db: String,
    /// What it printed on start.
    pub banner: Vec<String>,
}

/// Reads what `mandate serve` prints on start, up to its last line.
pub fn read_banner(stdout: impl std::io::Read) -> Vec<String> {
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let last = line.starts_with("Ctrl-C stops it");
        lines.push(line);
        if last {
            break;
        }
    }
    lines
}

/// `mandate serve` as the operator starts it, on `db`, stdout read up to its first lines.
pub fn serve(db: &str, args: &[&str], env: &[(&str, &str)]) -> (Proc, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
    cmd.arg("serve")
        .args(args)
        .env("MANDATE_DATABASE", db)
        .env("RUST_LOG", "warn")
        .env_remove("MANDATE_PUBLIC_URL")
        .env_remove("MANDATE_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // stderr is drained for the life of the process (a full pipe would block the server); if the
    // server stops before its banner is out, what it said goes into the banner the test asserts on.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let said = std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut banner = read_banner(child.stdout.take().unwrap());
    if !banner.last().is_some_and(|l| l.starts_with("Ctrl-C stops it")) {
        let _ = child.wait();
        banner.extend(said.join().unwrap_or_default().into_iter().map(|l| format!("stderr: {l}")));
    }
    (Proc(child), banner)
}

pub async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(format!("{base}/.well-known/oauth-authorization-server"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never answered");
}

impl DemoServer {
    pub async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// With extra `serve` flags and environment variables.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("demo.db").display());
        let mut all = vec!["--demo", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (proc, banner) = serve(&db, &all, env);
        let base = banner
            .iter()
            .find_map(|l| l.strip_prefix("mandate is serving "))
            .unwrap_or_else(|| panic!("no serving line in {banner:?}"))
            .to_owned();
        let password =
            banner.iter().find_map(|l| l.strip_prefix("demo user: demo / password: ")).expect("the demo password");
        wait_ready(&base).await;
        Self { proc, dir, password: password.to_owned(), base, db, banner }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn browser(&self) -> Browser {
        Browser::for_base(&self.base)
    }

    /// Registers a public client named `name` (RFC 7591) and returns its id.
    pub async fn register(&self, name: &str) -> String {
        register_at(&self.base, name).await
    }

    /// The person `demo` allows `scopes` to `client` (redirect URI `http://127.0.0.1/cb`); returns
    /// the access token.
    pub async fn access_token(&self, client: &str, scopes: &[&str]) -> String {
        self.access_token_for(client, &self.mcp_url(), scopes).await
    }

    /// Like [`DemoServer::access_token`], for the resource at `resource`.
    pub async fn access_token_for(&self, client: &str, resource: &str, scopes: &[&str]) -> String {
        access_token_as(&self.base, ("demo", &self.password), client, resource, scopes).await
    }
}

/// Registers a public client named `name` (RFC 7591) at `base`; returns its id.
pub async fn register_at(base: &str, name: &str) -> String {
    let reg: Value = reqwest::Client::new()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
                      "client_name": name, "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reg["client_id"].as_str().unwrap().to_owned()
}

/// The person `(name, password)` at `base` allows `scopes` of `resource` to `client` (redirect
/// URI `http://127.0.0.1/cb`); returns the access token.
pub async fn access_token_as(
    base: &str,
    (person, password): (&str, &str),
    client: &str,
    resource: &str,
    scopes: &[&str],
) -> String {
    let mut browser = Browser::for_base(base);
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:5000/cb";
    let mut authz = Authz::new(client, redirect, &challenge);
    authz.resource = Some(resource.to_owned());
    if resource != format!("{base}/mcp") {
        // The default request names the demo apps' scopes.
        authz.scope = Some(scopes.join(" "));
    }
    let mut r = browser.get(&authz.url()).await;
    let mut location = r.location.clone().unwrap_or_else(|| panic!("{} {}", r.status, r.body));
    for _ in 0..3 {
        if let Some(request) = location.strip_prefix("/login?request=") {
            r = browser.login_with(person, password, Some(request)).await;
        } else if location.starts_with("/consent") {
            let page = browser.get(&location).await;
            r = submit_consent(&mut browser, &page, "allow", scopes).await;
        } else {
            break;
        }
        location = r.location.clone().unwrap_or_else(|| panic!("{} {}", r.status, r.body));
    }
    let code = mandate_testkit::query_param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"));
    let tok: Value = reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", client),
            ("redirect_uri", redirect),
            ("resource", resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tok["access_token"].as_str().unwrap_or_else(|| panic!("{tok}")).to_owned()
}

/// The CLI with a credentials directory of its own.
pub struct Cli {
    pub dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Running {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Cli {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mandate"));
        c.args(args)
            .env("MANDATE_CLIENT_DIR", self.dir.path().join("client"))
            .env("MANDATE_CREDENTIAL_STORE", "file")
            .env_remove("RUST_LOG");
        c
    }

    /// Runs to completion with stdin closed.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// Like [`Cli::run`], with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Like [`Cli::run`], with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs to completion with stdin and stdout on a pseudo-terminal (util-linux `script`), as
    /// a person at a terminal would. The output has the terminal's `\r\n` line ends turned into
    /// `\n`, and holds stderr too.
    pub fn run_in_terminal(&self, args: &[&str]) -> Output {
        self.run_in_terminal_typing(args, "")
    }

    /// Like [`Cli::run_in_terminal`], the person typing `input` (echoed in the output).
    pub fn run_in_terminal_typing(&self, args: &[&str], input: &str) -> Output {
        let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
        let line: Vec<String> =
            std::iter::once(env!("CARGO_BIN_EXE_mandate")).chain(args.iter().copied()).map(quote).collect();
        let mut child = Command::new("script")
            .args(["-qec", &line.join(" "), "/dev/null"])
            .env("MANDATE_CLIENT_DIR", self.dir.path().join("client"))
            .env("MANDATE_CREDENTIAL_STORE", "file")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux `script` runs the CLI on a pseudo-terminal");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts a command whose stderr is read line by line (to catch the printed authorization URL).
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut child =
            self.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, stderr: rx, seen: Vec::new() }
    }

    pub fn spawn_bridge(&self, args: &[&str]) -> Bridge {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Bridge { child, stdin: Some(stdin), stdout: rx }
    }
}

impl Running {
    /// Stops the command (it may be waiting for a person who will not come).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the authorization URL the CLI prints on stderr.
    pub fn wait_for_url(&mut self) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no authorization URL; stderr so far: {:?}", self.seen));
            self.seen.push(line.clone());
            let t = line.trim();
            if t.starts_with("http://") || t.starts_with("https://") {
                return t.to_owned();
            }
        }
    }

    pub fn finish(mut self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the command did not finish; stderr: {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
        }
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        Output { code: status.code().unwrap_or(-1), stdout, stderr: self.seen.join("\n") }
    }
}

/// `mandate bridge` driven over its stdio.
pub struct Bridge {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
}

impl Bridge {
    pub fn send(&mut self, message: &Value) {
        self.send_raw(&message.to_string());
    }

    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn recv(&mut self) -> Value {
        let line = self.stdout.recv_timeout(Duration::from_secs(30)).expect("a message from the bridge");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"))
    }

    /// Closes stdin and returns the exit code.
    pub fn close(mut self) -> i32 {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the bridge did not exit after stdin closed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Bridge {
    /// Waits, stdin left open, for the bridge to exit by itself; returns the exit code.
    pub fn wait_exit(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the bridge did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The person: follows the authorization URL, signs in, ticks `scopes` and allows; the browser
/// then lands on the CLI's loopback callback, whose page says access was granted.
pub async fn person_consents(browser: &mut Browser, password: &str, auth_url: &str, scopes: &[&str]) {
    let page = person_decides(browser, password, auth_url, "allow", scopes).await;
    assert!(page.contains("Access granted: you can close this tab"), "{page}");
}

/// The person follows the authorization URL, signs in and submits the consent page with
/// `action` (`allow` or `deny`); returns the page the CLI's loopback callback shows.
pub async fn person_decides(
    browser: &mut Browser,
    password: &str,
    auth_url: &str,
    action: &str,
    scopes: &[&str],
) -> String {
    let mut r = browser.get(auth_url).await;
    for _ in 0..6 {
        let loc = r.location.clone().unwrap_or_else(|| panic!("{} {}", r.status, r.body));
        if let Some(request) = loc.strip_prefix("/login?request=") {
            r = browser.login_with("demo", password, Some(request)).await;
        } else if loc.starts_with("/consent") {
            let page = browser.get(&loc).await;
            r = submit_consent(browser, &page, action, scopes).await;
        } else {
            let cb = reqwest::get(&loc).await.unwrap();
            assert_eq!(cb.status(), 200, "the callback listener answered");
            return cb.text().await.unwrap();
        }
    }
    panic!("the authorization flow did not end at the callback");
}

pub fn query(url: &str, name: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode()
}

/// The stored credentials (rmcp's `StoredCredentials`) for `resource` in the file backend.
pub fn credentials(file: &Path, resource: &str) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["connections"][resource]["secrets"]["credentials"].clone()
}

/// Edits the stored credentials in place (an injected fault).
pub fn write_credentials(file: &Path, resource: &str, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    edit(&mut v["connections"][resource]["secrets"]["credentials"]);
    std::fs::write(file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}
