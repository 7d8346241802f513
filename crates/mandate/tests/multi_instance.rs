//! Several `mandate serve` processes on one PostgreSQL database behind a load balancer: any
//! instance finishes what another began, a revocation on one is refused by the other within a
//! second, a key rotated anywhere is published everywhere, refresh rotation is exactly-once across
//! instances, and an instance rides out a database outage without a restart.
//! Runs when `MANDATE_TEST_POSTGRES_URL` is set (`.ci/run` sets it); skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mandate_testkit::{
    Authz, Browser, McpClient, TcpProxy, TestDatabase, pkce, postgres_admin_url, query_param, submit_consent,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Proc, free_port};

const PASSWORD: &str = "a long enough password";

struct Cluster {
    /// Between the instances and PostgreSQL, when the test wants to cut it.
    db_line: Option<TcpProxy>,
    db: TestDatabase,
    kek: String,
    lb: TcpProxy,
    public: String,
    instances: Vec<(Proc, SocketAddr)>,
}

fn mandate(db: &str, kek: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mandate"));
    c.env("MANDATE_DATABASE", db).env("MANDATE_SECRET_KEY", kek).env("RUST_LOG", "warn");
    c
}

impl Cluster {
    /// `n` instances sharing one database and one public URL (the load balancer's).
    async fn start(n: usize) -> Option<Self> {
        Self::start_with(n, false).await
    }

    /// Like [`Cluster::start`]; with `cuttable`, the instances reach PostgreSQL through a proxy.
    async fn start_with(n: usize, cuttable: bool) -> Option<Self> {
        let Some(admin) = postgres_admin_url() else {
            eprintln!("MANDATE_TEST_POSTGRES_URL not set: multi-instance test skipped");
            return None;
        };
        let db = TestDatabase::postgres(&admin).await;
        let (db_line, db_url) = if cuttable {
            let u = url::Url::parse(db.url()).unwrap();
            let pg = tokio::net::lookup_host((u.host_str().unwrap(), u.port().unwrap_or(5432)))
                .await
                .unwrap()
                .next()
                .unwrap();
            let line = TcpProxy::start(vec![pg]).await;
            let mut via = u.clone();
            via.set_host(Some("127.0.0.1")).unwrap();
            via.set_port(Some(line.addr().port())).unwrap();
            (Some(line), via.to_string())
        } else {
            (None, db.url().to_owned())
        };
        let kek = mandate_core::keys::KeyEncryptionKey::generate(&mandate_core::clock::OsRandom).to_base64url();
        let lb = TcpProxy::start(Vec::new()).await;
        let public = format!("http://{}", lb.addr());
        // Migrate once, and add two people, before any instance starts.
        for user in ["alice", "bob"] {
            let mut child = mandate(&db_url, &kek)
                .args(["users", "add", user, "--password-stdin", "--public-url", &public])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
            assert!(child.wait().unwrap().success());
        }
        let mut instances = Vec::new();
        for _ in 0..n {
            let port = free_port();
            let mut child = mandate(&db_url, &kek)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &public])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            for line in BufReader::new(out).lines() {
                if line.unwrap().starts_with("mandate is serving") {
                    break;
                }
            }
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            instances.push((Proc(child), addr));
        }
        lb.set_targets(instances.iter().map(|(_, a)| *a).collect());
        let cluster = Self { db_line, db, kek, lb, public, instances };
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    fn direct(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.instances[i].1)
    }

    async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(self.direct(i, "/readyz")).await.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {i} never became ready");
    }

    /// Sends the next requests through the load balancer to instance `i`.
    fn on(&self, i: usize) -> &Self {
        self.lb.route_to(i);
        self
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.public)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(0).build().unwrap()
}

/// Registers a public client, then login on A, consent on B, token on A; returns (client, tokens).
async fn split_flow(c: &Cluster, user: &str, scopes: &[&str]) -> (String, Value) {
    let http = http();
    c.on(0);
    let reg: Value = http
        .post(format!("{}/register", c.public))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
                      "client_name": "Agent", "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let mut browser = Browser::for_base(&c.public);
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(&client, "http://127.0.0.1:5000/cb", &challenge);
    authz.resource = Some(c.mcp_url());
    authz.scope = Some(scopes.join(" "));
    let r = browser.get(&authz.url()).await;
    let request = r.location.unwrap().trim_start_matches("/login?request=").to_owned();
    let consent = browser.login_with(user, PASSWORD, Some(&request)).await.location.unwrap();
    c.on(1);
    let page = browser.get(&consent).await;
    assert_eq!(page.status, StatusCode::OK, "instance B shows the consent page A's login led to");
    let r = submit_consent(&mut browser, &page, "allow", scopes).await;
    let code = query_param(&r.location.unwrap(), "code").unwrap();
    c.on(0);
    let tok: Value = http
        .post(format!("{}/token", c.public))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &client),
            ("redirect_uri", "http://127.0.0.1:5000/cb"),
            ("resource", &c.mcp_url()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tok["access_token"].is_string(), "{tok}");
    (client, tok)
}

async fn refresh(url: &str, client: &str, rt: &str) -> (StatusCode, Value) {
    let r = http()
        .post(url)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", client)])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_flows_sessions_revocations_and_keys() {
    let Some(c) = Cluster::start(2).await else { return };

    // Login on A, consent on B, token on A, refresh on B.
    let (client, tok) = split_flow(&c, "alice", &["customers.read", "customers.write"]).await;
    c.on(1);
    let (status, refreshed) =
        refresh(&format!("{}/token", c.public), &client, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap().to_owned();

    // An MCP session opened on A is served by B, and only for its owner (RS14).
    c.on(0);
    let mut agent = McpClient::new(&c.mcp_url(), Some(&access));
    assert_eq!(agent.initialize().await.status, StatusCode::OK);
    assert!(agent.session.is_some());
    c.on(1);
    let r = agent.call("create_customer", json!({"name": "Amazon"})).await;
    assert_eq!(r.status, StatusCode::OK, "B serves A's session: {:?}", r.message);
    assert_eq!(r.message["result"]["isError"], false, "{:?}", r.message);
    c.on(0);
    let r = agent.call("list_customers", json!({})).await;
    assert!(r.tool_text().contains("Amazon"), "{:?}", r.message);
    let (_, bob) = split_flow(&c, "bob", &["customers.read"]).await;
    let mut intruder = McpClient::new(&c.mcp_url(), bob["access_token"].as_str());
    intruder.session = agent.session.clone();
    intruder.protocol = agent.protocol.clone();
    c.on(1);
    let r = intruder.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another user's session id is unknown to them");

    // B has just said "live" for this token (its answer is cached for up to a second); revoked on
    // A, B refuses it long before that cache would expire: the NOTIFY reached it.
    c.on(1);
    let r = agent.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    c.on(0);
    let r = http()
        .post(format!("{}/revoke", c.public))
        .form(&[("token", refreshed["refresh_token"].as_str().unwrap()), ("client_id", &client)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let revoked_at = Instant::now();
    c.on(1);
    let refused_after = loop {
        let r = agent.call("list_customers", json!({})).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert!(r.www_authenticate().contains("invalid_token"));
            break revoked_at.elapsed();
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(3), "B still serves a revoked grant");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused_after < Duration::from_millis(500), "refused after {refused_after:?}");

    // `mandate keys rotate` (any process) is published by B within seconds.
    let before: Value = reqwest::get(c.direct(1, "/jwks.json")).await.unwrap().json().await.unwrap();
    let out = mandate(c.db.url(), &c.kek).args(["keys", "rotate", "--public-url", &c.public]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kids = |v: &Value| -> Vec<String> {
        v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now: Value = reqwest::get(c.direct(1, "/jwks.json")).await.unwrap().json().await.unwrap();
        if kids(&now).len() > kids(&before).len() {
            break;
        }
        assert!(Instant::now() < deadline, "B never published the rotated-in key: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Inside the grace window (10 s, the default) every presentation gets the one successor,
/// whichever instance answers. Past the window the original is reuse: covered in-process on
/// PostgreSQL (`refresh_concurrency.rs` with `MANDATE_TEST_ENGINE=postgres`), without sleeping here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_refreshes_over_two_instances_share_one_successor_rt_05_rt_06() {
    let Some(c) = Cluster::start(2).await else { return };
    let (client, tok) = split_flow(&c, "alice", &["customers.read"]).await;
    let rt = tok["refresh_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = c.direct(i % 2, "/token");
        let (client, rt) = (client.clone(), rt.clone());
        tasks.push(tokio::spawn(async move { refresh(&url, &client, &rt).await }));
    }
    let mut successors = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "every presentation inside the window is answered: {body}");
        assert!(body["access_token"].is_string(), "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(successors.len(), 1, "every 200 carries the same successor");
    let successor = successors.into_iter().next().unwrap();
    // Exactly one successor was ever stored; it is the one live token; the family is intact.
    let pool = sqlx::postgres::PgPool::connect(c.db.url()).await.unwrap();
    let (rows, grants_revoked): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM refresh_tokens), (SELECT COUNT(*) FROM grants WHERE revoked_at IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let live: Vec<String> =
        sqlx::query_scalar("SELECT hash FROM refresh_tokens WHERE rotated_at IS NULL AND revoked_at IS NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(rows, 2, "the original and one successor");
    assert_eq!(live, vec![mandate_core::secret::SecretHash::of(&successor).0], "one live successor");
    assert_eq!(grants_revoked, 0, "the family is intact");
    // The successor refreshes on either instance.
    let (s, body) = refresh(&c.direct(1, "/token"), &client, &successor).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503s_then_the_instance_recovers_by_itself() {
    let Some(c) = Cluster::start_with(1, true).await else { return };
    let line = c.db_line.as_ref().unwrap();
    let (client, tok) = split_flow(&c, "alice", &["customers.read"]).await;
    let mut agent = McpClient::new(&c.mcp_url(), tok["access_token"].as_str());
    assert_eq!(agent.initialize().await.status, StatusCode::OK);

    // Load: one refresh after another, each spending the token the previous one returned. A
    // rotation half-written during the outage would leave a spent token, and the next refresh
    // would be taken as reuse and kill the family.
    let load = {
        let (url, client) = (format!("{}/token", c.public), client.clone());
        let mut rt = tok["refresh_token"].as_str().unwrap().to_owned();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let until = Instant::now() + Duration::from_secs(40);
            while Instant::now() < until {
                let (status, body) = refresh(&url, &client, &rt).await;
                if status == StatusCode::OK {
                    rt = body["refresh_token"].as_str().unwrap().to_owned();
                }
                let done = status == StatusCode::OK
                    && seen.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).count() >= 2;
                seen.push((status, body));
                if done {
                    break; // the outage was seen, and it is over
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    line.cut();
    let cut_at = Instant::now();
    let probe = http();
    let ready = probe.get(c.direct(0, "/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "database unreachable");
    assert_eq!(probe.get(c.direct(0, "/healthz")).send().await.unwrap().status(), StatusCode::OK);
    // Past the key ring's reload interval: a valid token is still recognised (the last good
    // ring is kept), and the checks that need the database say 503, not 401 (which would send
    // the agent to re-authorize over an outage).
    while cut_at.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = agent.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?} {}", r.message, r.www_authenticate());
    while cut_at.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back: the same process serves again without a restart.
    line.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = probe.get(c.direct(0, "/readyz")).send().await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the instance did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = load.await.unwrap();
    let mut unavailable = 0;
    for (status, body) in &seen {
        match *status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["error"], "temporarily_unavailable", "a clear body: {body}");
                unavailable += 1;
            }
            other => panic!("only success or 503 during an outage, got {other}: {body}"),
        }
    }
    assert!(unavailable >= 2, "the outage was seen as 503s: {seen:?}");
    assert_eq!(seen.last().map(|(s, _)| *s), Some(StatusCode::OK), "served again after the outage");
    let pool = sqlx::postgres::PgPool::connect(c.db.url()).await.unwrap();
    let (live, revoked): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM refresh_tokens WHERE rotated_at IS NULL AND revoked_at IS NULL), \
                (SELECT COUNT(*) FROM grants WHERE revoked_at IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!((live, revoked), (1, 0), "one live refresh token, no grant revoked: nothing half-written");
}

#[tokio::test]
async fn postgresql_requires_a_key_encryption_key() {
    let Some(admin) = postgres_admin_url() else { return };
    let db = TestDatabase::postgres(&admin).await;
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MANDATE_DATABASE", db.url())
        .env_remove("MANDATE_SECRET_KEY")
        .env_remove("MANDATE_SECRET_KEY_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a key-encryption key is required"), "{err}");
}
