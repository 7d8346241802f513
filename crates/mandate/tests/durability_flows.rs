//! The kill -9 test of the writes before any token (RL-03, RL-06): registrations, consents and
//! code redemptions under way when `mandate serve` gets SIGKILL leave nothing half-written.
//!
//! Four workers each register a client and run a whole authorization (sign-in once, consent, the
//! code redeemed) again and again; once each has done [`FLOWS`], the server is killed with every
//! worker mid-flow. Restarted on the same database and key: every client answered 201 is whole,
//! no consent is stored without its grant, no code is consumed without its tokens nor tokens
//! stored for a code still redeemable, and every redemption answered 200 gave tokens that work.
//! Runs on SQLite and, when `MANDATE_TEST_POSTGRES_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mandate_testkit::{Authz, TestDatabase, pkce, postgres_admin_url, query_param};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::free_port;
use support::killed::{PASSWORD, REDIRECT, SCOPES, USER, admin, resource_server, start};

/// Whole authorizations each worker has answered before the kill.
const FLOWS: usize = 15;

/// What one flow worker saw before the server stopped answering (RL-03, RL-06).
#[derive(Default)]
struct Flows {
    /// Clients whose registration was answered 201.
    registered: Vec<String>,
    /// (client, access token, refresh token) of each code redemption answered 200.
    redeemed: Vec<(String, String, String)>,
    /// An answer that was not the expected one while the server was up.
    refused: Option<String>,
    /// The step that got no answer.
    ended_at: &'static str,
}

/// A browser's cookies, sent with every request and updated from every answer.
#[derive(Default)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    /// Sends `req` with the cookies; (status, Location, body), or `None` when the server gave
    /// no (whole) answer: it was killed.
    async fn answer(&mut self, req: reqwest::RequestBuilder) -> Option<(StatusCode, Option<String>, String)> {
        let cookie = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let r = req.header("cookie", cookie).send().await.ok()?;
        for v in r.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.0.insert(k.to_owned(), val.to_owned());
        }
        let status = r.status();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let body = r.text().await.ok()?;
        Some((status, location, body))
    }
}

/// Registrations and whole authorizations (sign-in, consent, code redeemed), one after another,
/// until the server stops answering. Each worker signs in once, with cookies of its own.
async fn flows_until_killed(base: String, worker: usize, progress: Arc<AtomicUsize>) -> Flows {
    let mut out = Flows::default();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = Jar::default();
    // A form post as a browser sends it from one of our pages.
    let post = |path: &str| {
        http.post(format!("{base}{path}")).header("origin", base.clone()).header("sec-fetch-site", "same-origin")
    };
    macro_rules! step {
        ($what:literal, $req:expr) => {
            match jar.answer($req).await {
                Some(a) => a,
                None => {
                    out.ended_at = $what;
                    return out;
                }
            }
        };
    }
    loop {
        let reg = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                         "client_name": "Agent", "grant_types": ["authorization_code", "refresh_token"]});
        // A new address for each registration: the per-address limit is not what is tested.
        let address = format!("10.{worker}.{}.{}", out.registered.len() / 250, out.registered.len() % 250 + 1);
        let registering = http.post(format!("{base}/register")).header("x-forwarded-for", address.clone()).json(&reg);
        let (status, _, body) = step!("register", registering);
        if status != StatusCode::CREATED {
            out.refused = Some(format!("register: {status} {body}"));
            return out;
        }
        let client = serde_json::from_str::<Value>(&body).unwrap()["client_id"].as_str().unwrap().to_owned();
        out.registered.push(client.clone());
        let (verifier, challenge) = pkce();
        let mut authz = Authz::new(&client, REDIRECT, &challenge);
        authz.resource = Some(format!("{base}/mcp"));
        authz.scope = Some(SCOPES.join(" "));
        // From the same address as the registration: the per-address limit on anonymous
        // authorization requests is not what is tested either.
        let authorizing = http.get(format!("{base}{}", authz.url())).header("x-forwarded-for", address.clone());
        let (status, mut location, _) = step!("authorize", authorizing);
        // Sign in (the first flow only), then consent.
        for _ in 0..3 {
            let Some(next) = location.clone() else { break };
            if let Some(request) = next.strip_prefix("/login?request=") {
                let (_, _, page) = step!("login page", http.get(format!("{base}{next}")));
                let csrf = mandate_testkit::hidden(&page, "csrf").unwrap();
                let form = [("csrf", csrf.as_str()), ("username", USER), ("password", PASSWORD), ("request", request)];
                location = step!("login", post("/login").form(&form)).1;
            } else if next.starts_with("/consent") {
                let (_, _, page) = step!("consent page", http.get(format!("{base}{next}")));
                let csrf = mandate_testkit::hidden(&page, "csrf").unwrap();
                let request = mandate_testkit::hidden(&page, "request").unwrap();
                let mut form = vec![("csrf", csrf.as_str()), ("request", request.as_str()), ("action", "allow")];
                form.extend(SCOPES.iter().map(|s| ("scope", *s)));
                location = step!("consent", post("/consent").form(&form)).1;
            } else {
                break;
            }
        }
        let Some(code) = location.as_deref().and_then(|l| query_param(l, "code")) else {
            out.refused = Some(format!("no code: {location:?} (authorize answered {status})"));
            return out;
        };
        let form = [
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            ("resource", &format!("{base}/mcp")),
        ];
        let (status, _, body) = step!("token", http.post(format!("{base}/token")).form(&form));
        if status != StatusCode::OK {
            out.refused = Some(format!("token: {status} {body}"));
            return out;
        }
        let tok: Value = serde_json::from_str(&body).unwrap();
        let t = |n: &str| tok[n].as_str().unwrap().to_owned();
        out.redeemed.push((client, t("access_token"), t("refresh_token")));
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// RL-03 and RL-06: registrations, consents and code redemptions under way at SIGKILL leave
/// nothing half-written: every client answered 201 is whole after the restart, no consent is
/// stored without its grant, no code is consumed without its tokens (nor tokens without their
/// code consumed), and every redemption answered 200 gave tokens that work after the restart.
async fn every_answered_flow_survives_a_kill9_and_restart(engine: &str, db: &str) {
    const WORKERS: usize = 4;
    let kek = mandate_core::keys::KeyEncryptionKey::generate(&mandate_core::clock::OsRandom).to_base64url();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    admin(db, &kek, &base, &["users", "add", USER, "--password-stdin"], Some(PASSWORD));
    let (rs_id, rs_secret) = resource_server(db, &kek, &base);
    let mut server = start(db, &kek, port).await;
    let progress: Vec<Arc<AtomicUsize>> = (0..WORKERS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let workers: Vec<_> =
        (0..WORKERS).map(|w| tokio::spawn(flows_until_killed(base.clone(), w, progress[w].clone()))).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    while progress.iter().any(|p| p.load(Ordering::Relaxed) < FLOWS) && !workers.iter().any(|w| w.is_finished()) {
        assert!(Instant::now() < deadline, "under {FLOWS} flows per worker after 3 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.0.kill().unwrap(); // SIGKILL, with every worker mid-flow
    assert_eq!(server.0.wait().unwrap().signal(), Some(9));
    let mut runs = Vec::new();
    for w in workers {
        runs.push(w.await.unwrap());
    }
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run.refused, None, "worker {i}: every answer before the kill is the expected one");
    }
    for (i, run) in runs.iter().enumerate() {
        assert!(run.redeemed.len() >= FLOWS, "worker {i} stopped early, at {}", run.ended_at);
    }
    drop(server);
    let _server = start(db, &kek, port).await;

    let store = mandate_store::SqlStore::open(db).await.unwrap();
    let pool = store.pool();
    for run in &runs {
        for client in &run.registered {
            let uris: Option<String> = sqlx::query_scalar("SELECT redirect_uris FROM clients WHERE id = $1")
                .bind(client.clone())
                .fetch_optional(pool)
                .await
                .unwrap();
            let uris = uris.unwrap_or_else(|| panic!("client {client} answered 201 is gone after the restart"));
            assert!(uris.contains(REDIRECT), "client {client} is whole: {uris}");
        }
    }
    let half: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM consents c WHERE NOT EXISTS \
         (SELECT 1 FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(half, 0, "a consent is stored without its grant");
    let consumed_without_tokens: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM authorization_codes a WHERE a.consumed_at IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = a.grant_id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(consumed_without_tokens, 0, "a code was consumed without its tokens");
    let tokens_without_consumed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens r WHERE r.parent_hash IS NULL AND NOT EXISTS \
         (SELECT 1 FROM authorization_codes a WHERE a.grant_id = r.grant_id AND a.consumed_at IS NOT NULL)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(tokens_without_consumed, 0, "tokens exist for a code still redeemable");
    store.close().await;

    let http = reqwest::Client::new();
    let mut checked = 0;
    for run in &runs {
        for (client, access, refresh) in &run.redeemed {
            let v: Value = http
                .post(format!("{base}/introspect"))
                .basic_auth(&rs_id, Some(&rs_secret))
                .form(&[("token", access)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["active"], true, "{engine}: an access token answered 200 is active after the restart: {v}");
            let r = http
                .post(format!("{base}/token"))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{engine}: its refresh token works after the restart");
            checked += 1;
        }
    }
    eprintln!("{engine}: {checked} authorizations answered before SIGKILL, all whole after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rl_03_rl_06_registrations_consents_and_codes_survive_a_kill9_sqlite() {
    let db = TestDatabase::sqlite();
    every_answered_flow_survives_a_kill9_and_restart("SQLite", db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rl_03_rl_06_registrations_consents_and_codes_survive_a_kill9_postgres() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: the PostgreSQL case is skipped");
        return;
    };
    let db = TestDatabase::postgres(&admin).await;
    every_answered_flow_survives_a_kill9_and_restart("PostgreSQL", db.url()).await;
}
