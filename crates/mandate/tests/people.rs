//! Issue 13, people lifecycle: `mandate users disable|enable|remove|passwd` against a running
//! `mandate serve` on the same database (RT-11 (a), (b); UI-14, UI-15). Runs on SQLite, and on
//! PostgreSQL when `MANDATE_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mandate_testkit::{Authz, Browser, McpClient, TestDatabase, pkce, postgres_admin_url, query_param, submit_consent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Proc;

const PASSWORD: &str = "a long enough password";
const NEW_PASSWORD: &str = "another long password";

struct Setup {
    db: TestDatabase,
    kek: String,
    base: String,
    _server: Option<Proc>,
}

impl Setup {
    /// alice and bob, and `mandate serve` on `db`.
    async fn start(db: TestDatabase) -> Self {
        let kek = mandate_core::keys::KeyEncryptionKey::generate(&mandate_core::clock::OsRandom).to_base64url();
        // Port 0: a port picked here and bound later by the server can be taken in between by
        // another test's connection (the server then exits with "address in use").
        let (server, banner) = support::serve(db.url(), &["--listen", "127.0.0.1:0"], &[("MANDATE_SECRET_KEY", &kek)]);
        let base = banner
            .iter()
            .find_map(|l| l.strip_prefix("mandate is serving "))
            .unwrap_or_else(|| panic!("no serving line in {banner:?}"))
            .to_owned();
        support::wait_ready(&base).await;
        let s = Self { db, kek, base, _server: Some(server) };
        for user in ["alice", "bob"] {
            s.ok(&["users", "add", user, "--password-stdin"], Some(PASSWORD));
        }
        s
    }

    /// An admin command on the server's database and public URL.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(args)
            .args(["--public-url", &self.base])
            .env("MANDATE_DATABASE", self.db.url())
            .env("MANDATE_SECRET_KEY", &self.kek)
            .env_remove("MANDATE_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            writeln!(child.stdin.take().unwrap(), "{s}").unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    async fn count(&self, sql: &str, bind: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(self.db.url()).await.unwrap();
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(bind).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }

    /// `user` signs in in `browser` and allows a new client; returns (client, access, refresh).
    async fn grant(&self, browser: &mut Browser, user: &str, password: &str) -> (String, String, String) {
        let http = reqwest::Client::new();
        let reg: Value = http
            .post(format!("{}/register", self.base))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
                          "client_name": "Agent", "grant_types": ["authorization_code", "refresh_token"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = reg["client_id"].as_str().unwrap().to_owned();
        let (verifier, challenge) = pkce();
        let mut authz = Authz::new(&client, "http://127.0.0.1:5000/cb", &challenge);
        authz.resource = Some(self.mcp_url());
        authz.scope = Some("customers.read todos.read".into());
        let mut r = browser.get(&authz.url()).await;
        if let Some(request) = r.location.clone().unwrap().strip_prefix("/login?request=") {
            r = browser.login_with(user, password, Some(request)).await;
        }
        let page = browser.get(&r.location.unwrap()).await;
        let r = submit_consent(browser, &page, "allow", &["customers.read", "todos.read"]).await;
        let code = query_param(&r.location.unwrap(), "code").unwrap();
        let tok: Value = http
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client),
                ("redirect_uri", "http://127.0.0.1:5000/cb"),
                ("resource", &self.mcp_url()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = tok["access_token"].as_str().unwrap_or_else(|| panic!("{tok}")).to_owned();
        (client, access, tok["refresh_token"].as_str().unwrap().to_owned())
    }

    async fn refresh(&self, client: &str, rt: &str) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", client)])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// The status of an MCP `initialize` with `access`, once it is `want` (the server may have
    /// answered "still live" from its one-second cache just before). The request alone: the
    /// `initialized` notification a full handshake sends next could meet the revocation the
    /// request did not.
    async fn mcp_until(&self, access: &str, want: StatusCode) -> StatusCode {
        let deadline = Instant::now() + Duration::from_secs(10);
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "people-test", "version": "1"}});
        loop {
            let status =
                McpClient::new(&self.mcp_url(), Some(access)).request("initialize", params.clone()).await.status;
            if status == want || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A sign-in attempt in a fresh browser: the status, and whether it opened a session.
async fn sign_in(base: &str, user: &str, password: &str) -> (StatusCode, bool, String) {
    let mut b = Browser::for_base(base);
    let r = b.login_with(user, password, None).await;
    let signed_in = r.status.is_redirection() && !r.location.as_deref().unwrap_or("/login").starts_with("/login");
    (r.status, signed_in, r.body)
}

async fn lifecycle(db: TestDatabase) {
    let s = Setup::start(db).await;
    let alice_id =
        s.ok(&["users", "list"], None).lines().find(|l| l.contains(" alice ")).unwrap()[..24].trim().to_owned();

    // alice grants an agent access and keeps her browser session.
    let mut browser = Browser::for_base(&s.base);
    let (client, access, rt) = s.grant(&mut browser, "alice", PASSWORD).await;
    assert_eq!(s.mcp_until(&access, StatusCode::OK).await, StatusCode::OK);
    assert_eq!(browser.get("/account/apps").await.status, StatusCode::OK);
    let (bob_client, _, bob_rt) = s.grant(&mut Browser::for_base(&s.base), "bob", PASSWORD).await;

    // Disable (by username): every grant, browser session and MCP session of hers ends at once.
    let out = s.ok(&["users", "disable", "alice"], None);
    assert!(out.contains(&format!("disabled alice ({alice_id})")), "{out}");
    assert!(out.contains("1 grant(s) revoked"), "{out}");
    assert!(out.contains("1 browser session(s)"), "{out}");
    assert!(!out.contains(" 0 MCP session(s)"), "the MCP session opened with her token is forgotten: {out}");
    // RT-11 (a): the refresh token of the earlier family is refused.
    let (status, body) = s.refresh(&client, &rt).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    // The earlier access token is refused at the MCP endpoint.
    assert_eq!(s.mcp_until(&access, StatusCode::UNAUTHORIZED).await, StatusCode::UNAUTHORIZED);
    // Her browser session is gone.
    let r = browser.get("/account/apps").await;
    assert!(r.location.as_deref().is_some_and(|l| l.starts_with("/login")), "{} {:?}", r.status, r.location);
    // UI-15: the right password of a disabled person gets the wrong password's answer.
    let disabled = sign_in(&s.base, "alice", PASSWORD).await;
    let wrong = sign_in(&s.base, "alice", "not her password at all").await;
    assert_eq!((disabled.0, disabled.1), (StatusCode::UNAUTHORIZED, false));
    assert_eq!((wrong.0, wrong.1), (StatusCode::UNAUTHORIZED, false));
    assert!(
        disabled.2.contains("The username or password is wrong.")
            && wrong.2.contains("The username or password is wrong.")
    );
    // bob is untouched.
    let (status, body) = s.refresh(&bob_client, &bob_rt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob_rt = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(s.ok(&["users", "list"], None).lines().any(|l| l.contains(" alice ") && l.ends_with("disabled")));

    // Enable (by id): she signs in again; what was revoked stays revoked.
    let out = s.ok(&["users", "enable", &alice_id], None);
    assert!(out.contains("enabled alice") && out.contains("stay revoked"), "{out}");
    assert!(s.ok(&["users", "enable", "alice"], None).contains("is not disabled; nothing changed"));
    assert!(sign_in(&s.base, "alice", PASSWORD).await.1, "enabled: signs in");
    assert_eq!(s.refresh(&client, &rt).await.1["error"], "invalid_grant");
    assert_eq!(s.mcp_until(&access, StatusCode::UNAUTHORIZED).await, StatusCode::UNAUTHORIZED);

    // passwd (RT-11 (b)): the old password is refused, the new one accepted; grants and browser
    // sessions end.
    let mut browser = Browser::for_base(&s.base);
    let (client, access, rt) = s.grant(&mut browser, "alice", PASSWORD).await;
    let out = s.ok(&["users", "passwd", "alice", "--password-stdin"], Some(NEW_PASSWORD));
    assert!(out.contains("set a new password for alice") && out.contains("1 grant(s) revoked"), "{out}");
    assert!(!sign_in(&s.base, "alice", PASSWORD).await.1, "the old password is refused");
    assert!(sign_in(&s.base, "alice", NEW_PASSWORD).await.1, "the new password is accepted");
    assert_eq!(s.refresh(&client, &rt).await.1["error"], "invalid_grant");
    assert_eq!(s.mcp_until(&access, StatusCode::UNAUTHORIZED).await, StatusCode::UNAUTHORIZED);
    let r = browser.get("/account/apps").await;
    assert!(r.location.as_deref().is_some_and(|l| l.starts_with("/login")), "browser session ended");
    // --keep-grants: browser sessions end, grants stay.
    let mut browser = Browser::for_base(&s.base);
    let (client, access, rt) = s.grant(&mut browser, "alice", NEW_PASSWORD).await;
    let out = s.ok(&["users", "passwd", "alice", "--password-stdin", "--keep-grants"], Some(PASSWORD));
    assert!(out.contains("grants kept"), "{out}");
    assert!(browser.get("/account/apps").await.location.is_some_and(|l| l.starts_with("/login")));
    let (status, body) = s.refresh(&client, &rt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();

    // Remove: the person and their data go in one transaction; the audit trail stays.
    assert!(!sign_in(&s.base, "alice", "a wrong password").await.1);
    // One row per (account, address) and one for the account from every address (UI-11).
    let failures = "SELECT COUNT(*) FROM login_failures WHERE username LIKE $1";
    assert_eq!(s.count(failures, "%alice%").await, 2);
    assert!(s.count("SELECT COUNT(*) FROM consents WHERE user_id = $1", &alice_id).await > 0);
    let out = s.ok(&["users", "remove", "alice"], None);
    assert!(out.contains(&format!("removed alice ({alice_id})")), "{out}");
    for table in ["grants", "consents", "sessions", "authorization_codes", "upstream_accounts", "federated_identities"]
    {
        let n = s.count(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"), &alice_id).await;
        assert_eq!(n, 0, "{table} keeps nothing of hers");
    }
    assert_eq!(s.count(failures, "%alice%").await, 0, "her sign-in failure counts are gone");
    assert_eq!(s.refresh(&client, &rt).await.1["error"], "invalid_grant");
    assert_eq!(s.mcp_until(&access, StatusCode::UNAUTHORIZED).await, StatusCode::UNAUTHORIZED);
    assert!(!sign_in(&s.base, "alice", PASSWORD).await.1);
    assert!(!s.ok(&["users", "list"], None).contains(" alice "));
    assert!(s.count("SELECT COUNT(*) FROM audit_events WHERE user_id = $1", &alice_id).await > 5, "trail kept");
    let audit = s.ok(&["audit", "--json"], None);
    for kind in ["user.disabled", "user.enabled", "user.password_set", "user.removed"] {
        assert!(audit.contains(&format!("\"kind\":\"{kind}\"")), "{kind} audited");
    }
    assert!(audit.contains("\\\"alice\\\" removed by an operator"), "the removal names the username");
    let (status, body) = s.refresh(&bob_client, &bob_rt).await;
    assert_eq!(status, StatusCode::OK, "bob is untouched: {body}");

    // An unknown person: a clear message and a non-zero exit, for each command.
    for args in [
        vec!["users", "disable", "alice"],
        vec!["users", "enable", "nobody"],
        vec!["users", "remove", &alice_id],
        vec!["users", "passwd", "nobody", "--password-stdin"],
    ] {
        let out = s.run(&args, Some(PASSWORD));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("no person with the id or username"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_11_people_disable_enable_passwd_remove_sqlite() {
    lifecycle(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_11_people_disable_enable_passwd_remove_postgres() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: the PostgreSQL people test is skipped");
        return;
    };
    lifecycle(TestDatabase::postgres(&admin).await).await;
}
