//! `mandate serve` as a process: the public URL a loopback `--listen` implies, binding before
//! anything is created or printed, what it prints on start, and graceful shutdown on SIGTERM and
//! Ctrl-C (requests in flight finish, event streams do not hold it, the drain is bounded, the
//! database is closed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mandate_testkit::{McpClient, hidden};
use reqwest::StatusCode;
use serde_json::Value;
use support::{DemoServer, Proc, free_port, serve, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn signal(proc: &Proc, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(proc.0.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits for the process to exit; returns its exit code and how long it took.
fn wait_exit(proc: &mut Proc, within: Duration) -> (i32, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), start.elapsed());
        }
        assert!(start.elapsed() < within, "the server was still running {within:?} after the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("m.db").display())
}

async fn issuer_of(base: &str) -> String {
    let v: Value =
        reqwest::get(format!("{base}/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    v["issuer"].as_str().unwrap().to_owned()
}

fn serving(banner: &[String]) -> String {
    banner.iter().find_map(|l| l.strip_prefix("mandate is serving ")).unwrap_or_else(|| panic!("{banner:?}")).to_owned()
}

/// AS1: the issuer is the URL the server is reached at. On loopback, `--listen` alone says it.
#[tokio::test]
async fn as1_a_loopback_listen_address_is_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_p, banner) = serve(&sqlite(&dir), &["--listen", &format!("127.0.0.1:{port}")], &[]);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(serving(&banner), base);
    wait_ready(&base).await;
    assert_eq!(issuer_of(&base).await, base);
    let prm: Value =
        reqwest::get(format!("{base}/.well-known/oauth-protected-resource/mcp")).await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], format!("{base}/mcp"));
    assert_eq!(prm["authorization_servers"][0], base);
    drop(_p);

    // Port 0: the port bound, not 0, is in every document.
    let dir = tempfile::tempdir().unwrap();
    let (_p, banner) = serve(&sqlite(&dir), &["--listen", "127.0.0.1:0"], &[]);
    let base = serving(&banner);
    let port: u16 = base.strip_prefix("http://127.0.0.1:").unwrap().parse().unwrap();
    assert_ne!(port, 0);
    wait_ready(&base).await;
    assert_eq!(issuer_of(&base).await, base);

    // IPv6 loopback, where the machine has it: bracketed.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let (_p, banner) = serve(&sqlite(&dir), &["--listen", "[::1]:0"], &[]);
        let base = serving(&banner);
        assert!(base.starts_with("http://[::1]:"), "{base}");
        wait_ready(&base).await;
        assert_eq!(issuer_of(&base).await, base);
    }
}

/// An explicit public URL wins over the one `--listen` implies: from a flag or the environment.
#[tokio::test]
async fn as1_an_explicit_public_url_wins() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_p, banner) = serve(&sqlite(&dir), &["--listen", &listen, "--public-url", "http://localhost:9"], &[]);
    assert_eq!(serving(&banner), "http://localhost:9");
    let direct = format!("http://{listen}");
    wait_ready(&direct).await;
    assert_eq!(issuer_of(&direct).await, "http://localhost:9");
    drop(_p);
    let (_p, banner) =
        serve(&sqlite(&dir), &["--listen", &listen], &[("MANDATE_PUBLIC_URL", "https://auth.example.com")]);
    assert_eq!(serving(&banner), "https://auth.example.com");
    wait_ready(&direct).await;
    assert_eq!(issuer_of(&direct).await, "https://auth.example.com");
}

fn run_serve(dir: &tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
    cmd.arg("serve")
        .args(args)
        .env("MANDATE_DATABASE", sqlite(dir))
        .env_remove("MANDATE_PUBLIC_URL")
        .env_remove("MANDATE_LISTEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn files_in(dir: &tempfile::TempDir) -> Vec<String> {
    std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Off loopback there is no URL to guess: the operator is asked for one, and nothing starts.
#[test]
fn as1_a_non_loopback_listen_address_needs_a_public_url() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env) in [
        (vec!["--listen", "0.0.0.0:8080"], vec![]),
        (vec![], vec![("MANDATE_LISTEN", "0.0.0.0:8080")]),
        (vec!["--listen", "192.0.2.1:8080"], vec![]),
    ] {
        let out = run_serve(&dir, &args, &env);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a loopback address") && err.contains("--public-url https://"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = run_serve(&dir, &["--listen", "localhost:8080"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an address such as 127.0.0.1:8080"));
    assert_eq!(files_in(&dir), Vec::<String>::new(), "nothing created");
}

/// With the port taken: a clear error, a non-zero exit, nothing printed on stdout, and neither
/// the database nor the key file created.
#[test]
fn a_taken_port_fails_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = run_serve(&dir, &["--listen", &format!("127.0.0.1:{port}"), "--demo"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}: address already in use")), "{err}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(files_in(&dir), Vec::<String>::new(), "no database, no key file");
}

/// The first lines say what to open next, and every URL in them answers.
#[tokio::test]
async fn serve_prints_what_to_open_next() {
    let server = DemoServer::start().await;
    let base = &server.base;
    let b = &server.banner;
    assert_eq!(b[0], format!("mandate is serving {base}"));
    let url_on = |what: &str| {
        b.iter()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line in {b:?}"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    assert_eq!(url_on("add to an MCP client"), format!("{base}/mcp"));
    assert_eq!(url_on("what agents may do for you"), format!("{base}/account/apps"));
    assert_eq!(url_on("what they did"), format!("{base}/account/activity"));
    assert!(b.iter().any(|l| l.starts_with("demo user: demo / password: ")));
    assert!(b.last().unwrap().starts_with("Ctrl-C stops it"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for page in [url_on("what agents may do for you"), url_on("what they did")] {
        let r = http.get(&page).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}: sign in first");
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/login"), "{page}");
    }
    let r = http.post(url_on("add to an MCP client")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the MCP endpoint asks for a token");

    // Without --demo, on a database nobody can sign in to yet, it says how to add a person.
    let dir = tempfile::tempdir().unwrap();
    let (_p, banner) = serve(&sqlite(&dir), &["--listen", "127.0.0.1:0"], &[]);
    assert!(banner.iter().any(|l| l.contains("`mandate users add NAME`")), "{banner:?}");
    assert!(!banner.iter().any(|l| l.starts_with("demo user")));
}

/// A sign-in (argon2) sent up to the middle of its form body; the rest is sent later.
struct SlowSignIn {
    tcp: tokio::net::TcpStream,
    rest: String,
}

impl SlowSignIn {
    async fn start(server: &DemoServer) -> Self {
        let mut browser = server.browser();
        let page = browser.get("/login").await;
        let csrf = hidden(&page.body, "csrf").unwrap();
        let cookie = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &csrf)
            .append_pair("username", "demo")
            .append_pair("password", &server.password)
            .finish();
        let host = server.base.strip_prefix("http://").unwrap();
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nOrigin: {}\r\nSec-Fetch-Site: same-origin\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            server.base,
            body.len()
        );
        let (first, rest) = body.split_at(body.len() / 2);
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(first.as_bytes()).await.unwrap();
        Self { tcp, rest: rest.to_owned() }
    }

    /// Sends the rest and reads the whole response: (status line, headers, body).
    async fn finish(mut self) -> (String, String, Vec<u8>) {
        self.tcp.write_all(self.rest.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        self.tcp.read_to_end(&mut raw).await.expect("the response, not a reset");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let body = raw[split + 4..].to_vec();
        let (status, headers) = head.split_once("\r\n").unwrap();
        (status.to_owned(), headers.to_lowercase(), body)
    }
}

/// RL-15: SIGTERM while eight sign-ins are in flight: no new connections are accepted, every
/// sign-in gets its whole response, and the process exits 0 within the bound.
#[tokio::test]
async fn rl15_sigterm_lets_requests_in_flight_finish() {
    let mut server = DemoServer::start().await;
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        in_flight.push(SlowSignIn::start(&server).await);
    }
    // Every head has long been read: the handlers wait for the rest of their bodies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&server.proc, "TERM");
    let signalled = Instant::now();
    let host = server.base.strip_prefix("http://").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(&host).await {
            // Refused, or reset when the handshake raced the listener's close: not accepted.
            Err(e) => {
                assert!(
                    matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset),
                    "{e}"
                );
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "still accepting connections 5 s after SIGTERM"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The bodies arrive after the signal; each sign-in runs argon2 and answers in full.
    let answers = futures_join(in_flight.into_iter().map(SlowSignIn::finish).collect()).await;
    for (status, headers, body) in answers {
        assert_eq!(status, "HTTP/1.1 303 See Other", "{headers}");
        assert!(headers.contains("location: /account/apps"), "{headers}");
        assert!(headers.contains("set-cookie: mandate_session="), "signed in: {headers}");
        let length: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|n| n.trim().parse().unwrap())
            .unwrap_or(0);
        assert_eq!(body.len(), length, "the whole body");
    }
    let answered = signalled.elapsed();
    let (code, _) = wait_exit(&mut server.proc, Duration::from_secs(10));
    assert_eq!(code, 0);
    eprintln!("8 sign-ins answered {answered:?} after SIGTERM; exited {:?} after it", signalled.elapsed());
    // The database was closed: SQLite folded its write-ahead log into the file.
    assert!(server.dir.path().join("demo.db").exists());
    assert!(!server.dir.path().join("demo.db-wal").exists(), "the database was closed cleanly");
}

/// Awaits every future, concurrently.
async fn futures_join<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Ctrl-C with an MCP event stream open (GET /mcp): the stream ends cleanly and the process
/// exits 0 at once, not at the end of the 10 s bound.
#[tokio::test]
async fn ctrl_c_ends_open_mcp_event_streams() {
    let mut server = DemoServer::start().await;
    let client = server.register("Agent").await;
    let token = server.access_token(&client, &["customers.read"]).await;
    let mut mcp = McpClient::new(&server.mcp_url(), Some(&token));
    assert_eq!(mcp.initialize().await.status, StatusCode::OK);
    let mut stream = reqwest::Client::new()
        .get(server.mcp_url())
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", mcp.session.clone().unwrap())
        .header("mcp-protocol-version", mcp.protocol.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // The stream is open: nothing more arrives for a while.
    while let Ok(chunk) = tokio::time::timeout(Duration::from_millis(300), stream.chunk()).await {
        assert!(chunk.unwrap().is_some(), "the stream ended before the signal");
    }
    signal(&server.proc, "INT");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .expect("the event stream ended");
    assert!(ended, "the stream ended cleanly, not with a reset");
    let (code, took) = wait_exit(&mut server.proc, Duration::from_secs(5));
    assert_eq!(code, 0);
    eprintln!("with an event stream open, exited {took:?} after the stream ended");
}

/// The drain is bounded: a request whose body never arrives holds the process only for
/// `shutdown_timeout`, then it exits 0 with a log line saying so.
#[tokio::test]
async fn shutdown_is_bounded_by_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MANDATE_DATABASE", sqlite(&dir))
        .env("MANDATE_SHUTDOWN_TIMEOUT", "1")
        .env("RUST_LOG", "info")
        .env_remove("MANDATE_PUBLIC_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let banner = support::read_banner(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let mut proc = Proc(child);
    let base = serving(&banner);
    wait_ready(&base).await;
    let host = base.strip_prefix("http://").unwrap();
    let mut stuck = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type="
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&proc, "TERM");
    let (code, took) = wait_exit(&mut proc, Duration::from_secs(8));
    assert_eq!(code, 0);
    assert!(took >= Duration::from_millis(900), "it waited for the request: {took:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut logs).unwrap();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("requests still in flight after 1 s (shutdown_timeout): exiting anyway"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "no colour codes in piped logs: {logs}");
}

/// A start that waits on the database (here: another instance holds the migrations table, as
/// during a long migration) still obeys SIGTERM: the process stops before serving, non-zero.
#[tokio::test]
async fn a_signal_while_waiting_for_the_database_stops_the_start() {
    let Some(admin) = mandate_testkit::postgres_admin_url() else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: the start-interrupted case skipped");
        return;
    };
    use sqlx::Connection;
    let db = mandate_testkit::TestDatabase::postgres(&admin).await;
    let kek = mandate_core::keys::KeyEncryptionKey::generate(&mandate_core::clock::OsRandom).to_base64url();
    // Migrated once, then the migrations table locked by "another instance".
    let migrated = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["migrate", "--database", db.url()])
        .env("MANDATE_SECRET_KEY", &kek)
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let mut holder = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();

    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database", db.url()])
        .env("MANDATE_SECRET_KEY", &kek)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    // Bound (it binds first), then stuck on the lock: nothing printed, nothing served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server never bound its port");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(proc.0.try_wait().unwrap().is_none(), "still waiting for the database");
    signal(&proc, "TERM");
    let (code, took) = wait_exit(&mut proc, Duration::from_secs(5));
    assert_ne!(code, 0, "a start that did not finish is not a clean exit");
    let mut stderr = String::new();
    std::io::Read::read_to_string(proc.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("received while starting"), "{stderr}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(proc.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(!stdout.contains("mandate is serving"), "{stdout}");
    assert!(took < Duration::from_secs(5));
    tx.rollback().await.unwrap();
    holder.close().await.unwrap();
    drop(db);
}

/// The URL on the banner line naming `what`.
fn banner_url(banner: &[String], what: &str) -> String {
    let line = banner.iter().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} line in {banner:?}"));
    line.split_whitespace().last().unwrap().to_owned()
}

/// One scrape: its status and text.
async fn scrape(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Issue 12: `--metrics-listen` serves `/metrics` on a listener of its own, never on the public
/// one; it works with `--mcp-only` too.
#[tokio::test]
async fn metrics_listen_serves_metrics_on_a_listener_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, banner) = serve(&sqlite(&dir), &["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], &[]);
    let base = serving(&banner);
    let metrics = banner_url(&banner, "metrics, for Prometheus:");
    assert!(metrics.starts_with("http://127.0.0.1:") && metrics.ends_with("/metrics"), "{metrics}");
    assert_ne!(metrics, format!("{base}/metrics"));
    assert_eq!(issuer_of(&base).await, base);
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not on the public listener");
    let r = reqwest::get(&metrics).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    for line in [
        r#"mandate_http_requests_total{route="/.well-known/oauth-authorization-server",method="GET",status="2xx"} 1"#,
        r#"mandate_http_requests_total{route="other",method="GET",status="4xx"} 1"#,
        &format!(r#"mandate_mcp_sessions{{resource="{base}/mcp"}} 0"#),
        "mandate_db_pool_max_connections 8",
        "mandate_db_write_queue_depth 0",
        "mandate_refresh_reuse_detections_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // Scrapes of the metrics listener are not counted as the public listener's requests.
    assert!(!text.contains(r#"route="/metrics""#), "{text}");

    // An MCP server on its own (--mcp-only) has metrics too.
    let dir2 = tempfile::tempdir().unwrap();
    let (_m, banner) = serve(
        &sqlite(&dir2),
        &["--mcp-only", "--issuer", &base, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        &[],
    );
    let mcp_base = serving(&banner).trim_end_matches(" (the MCP endpoint only)").to_owned();
    let r = reqwest::Client::new().post(format!("{mcp_base}/mcp")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, text) = scrape(&banner_url(&banner, "metrics, for Prometheus:"), None).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"mandate_http_requests_total{route="/mcp",method="POST",status="4xx"} 1"#,
        &format!(r#"mandate_mcp_sessions{{resource="{mcp_base}/mcp"}} 0"#),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

/// Issue 12: `MANDATE_METRICS_TOKEN` alone puts `/metrics` on the public listener behind that
/// bearer token; with `--metrics-listen` the separate listener asks for it too. It is never
/// printed or logged.
#[tokio::test]
async fn metrics_token_guards_metrics_wherever_they_are_served() {
    const TOKEN: &str = "metrics-token-for-the-test-0123";
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("MANDATE_DATABASE", sqlite(&dir))
        .env("MANDATE_METRICS_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .env_remove("MANDATE_PUBLIC_URL")
        .env_remove("MANDATE_LISTEN")
        .env_remove("MANDATE_METRICS_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Read as it comes, so that the logs never fill the pipe.
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
        logs
    });
    let banner = support::read_banner(child.stdout.take().unwrap());
    let mut proc = Proc(child);
    let base = serving(&banner);
    let url = banner_url(&banner, "metrics, with the bearer token:");
    assert_eq!(url, format!("{base}/metrics"));
    for wrong in [None, Some("metrics-token-for-the-test-0124"), Some("nope")] {
        let (status, body) = scrape(&url, wrong).await;
        assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized\n"));
    }
    let (status, text) = scrape(&url, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let line = r#"mandate_http_requests_total{route="/metrics",method="GET",status="4xx"} 3"#;
    assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    signal(&proc, "TERM");
    assert_eq!(wait_exit(&mut proc, Duration::from_secs(10)).0, 0);
    let logs = logs.join().unwrap();
    assert!(logs.contains("mandate is serving"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token is never logged");
    assert!(!banner.join("\n").contains(TOKEN), "nor printed");

    // With a listener of its own, that listener asks for the token too.
    let dir = tempfile::tempdir().unwrap();
    let (_p, banner) = serve(
        &sqlite(&dir),
        &["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        &[("MANDATE_METRICS_TOKEN", TOKEN)],
    );
    let base = serving(&banner);
    assert_eq!(reqwest::get(format!("{base}/metrics")).await.unwrap().status(), StatusCode::NOT_FOUND);
    let url = banner_url(&banner, "metrics, for Prometheus:");
    assert_eq!(scrape(&url, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&url, Some(TOKEN)).await.0, StatusCode::OK);
}
