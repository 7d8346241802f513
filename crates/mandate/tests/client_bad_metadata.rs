//! The client refuses bad metadata with a clear error and a non-zero exit, before it registers,
//! opens a browser or sends anyone anywhere. The shared fake MCP server and authorization server
//! (`mandate_testkit::FakeServer`) on loopback serve each bad document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mandate_testkit::{FakeMcp, FakeServer};
use serde_json::{Value, json};
use support::Cli;

/// The shared fake: `/mcp` always 401, the protected resource metadata and the authorization
/// server metadata each edited by the test.
async fn fake(edit_prm: impl FnOnce(&str, &mut Value), edit_asm: impl FnOnce(&str, &mut Value)) -> FakeServer {
    FakeServer::start_with(FakeMcp::Unauthorized, |base, prm, asm| {
        edit_prm(base, prm);
        edit_asm(base, asm);
    })
    .await
}

async fn login_fails(f: &FakeServer) -> String {
    let url = format!("{}/mcp", f.base);
    let out = tokio::task::spawn_blocking(move || {
        Cli::new().run(&["login", &url, "--no-browser", "--allow-loopback-http", "--login-timeout", "2"])
    })
    .await
    .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.stderr.contains("Open this URL"), "nothing was opened: {out:?}");
    out.stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_authorization_endpoint_is_refused_c23() {
    let f = fake(|_, _| {}, |_, a| a["authorization_endpoint"] = json!("javascript:alert(document.cookie)")).await;
    let err = login_fails(&f).await;
    assert!(err.contains("refused the authorization endpoint javascript:"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_authorization_endpoint_is_refused_c23() {
    let f = fake(|_, _| {}, |_, a| a["authorization_endpoint"] = json!("file:///etc/passwd")).await;
    let err = login_fails(&f).await;
    assert!(err.contains("refused the authorization endpoint file:///etc/passwd"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_resource_metadata_for_another_origin_is_refused_c3() {
    let f = fake(|_, p| p["resource"] = json!("https://evil.example.com/mcp"), |_, _| {}).await;
    let err = login_fails(&f).await;
    assert!(err.contains("resource mismatch") && err.contains("evil.example.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_mismatch_is_refused_c5() {
    let f = fake(|_, _| {}, |_, a| a["issuer"] = json!("https://other-issuer.example.com")).await;
    let err = login_fails(&f).await;
    assert!(err.contains("issuer mismatch") && err.contains("other-issuer.example.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_at_a_private_address_is_refused_c22() {
    let f = fake(|_, p| p["authorization_servers"] = json!(["https://10.0.0.5/tenant"]), |_, _| {}).await;
    let err = login_fails(&f).await;
    assert!(err.contains("10.0.0.5"), "{err}");
    assert!(err.contains("private"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_server_without_s256_is_refused_c17() {
    let f = fake(
        |_, _| {},
        |_, a| a.as_object_mut().unwrap().remove("code_challenge_methods_supported").map(|_| ()).unwrap(),
    )
    .await;
    let err = login_fails(&f).await;
    assert!(err.contains("PKCE S256"), "{err}");
}

/// A hostile-but-complete fake: its authorization server issues tokens to anyone, and its MCP
/// endpoint refuses every one of them. Counts what reaches it. Once `moved` is set, its metadata
/// names other token and revocation endpoints (same issuer), which record every request.
mod hostile {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    #[derive(Default)]
    pub struct Hits {
        pub token: AtomicUsize,
        pub authorize: AtomicUsize,
        pub revoke: AtomicUsize,
        /// Serve the moved endpoints in the metadata.
        pub moved: AtomicBool,
        /// Every request to a moved endpoint: its path, `Authorization` header and body.
        pub at_moved: Mutex<Vec<(String, String, String)>>,
    }

    #[derive(Clone)]
    struct St {
        base: String,
        issuer: String,
        /// Where the 401 says the resource metadata is (defaults to the fake's own).
        resource_metadata: String,
        hits: Arc<Hits>,
    }

    pub struct Hostile {
        pub base: String,
        pub hits: Arc<Hits>,
    }

    /// `issuer`: what the metadata claims (defaults to the fake's own base).
    pub async fn start(issuer: Option<&str>) -> Hostile {
        start_with(issuer, None).await
    }

    /// Like [`start`], with the 401 naming `resource_metadata` instead of the fake's own.
    pub async fn start_with(issuer: Option<&str>, resource_metadata: Option<&str>) -> Hostile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Hits::default());
        let st = St {
            base: base.clone(),
            issuer: issuer.unwrap_or(&base).to_owned(),
            resource_metadata: resource_metadata
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{base}/.well-known/oauth-protected-resource/mcp")),
            hits: hits.clone(),
        };
        let app = Router::new()
            .route("/mcp", post(mcp))
            .route("/.well-known/oauth-protected-resource/mcp", get(prm))
            .route("/.well-known/oauth-authorization-server", get(asm))
            .route(
                "/register",
                post(|axum::Json(asked): axum::Json<Value>| async move {
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({"client_id": "c1", "redirect_uris": asked["redirect_uris"]})),
                    )
                }),
            )
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/moved/token", post(moved))
            .route("/moved/revoke", post(moved))
            .with_state(st);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hostile { base, hits }
    }

    async fn mcp(State(st): State<St>) -> Response {
        let mut h = HeaderMap::new();
        let c = format!(r#"Bearer error="invalid_token", resource_metadata="{}""#, st.resource_metadata);
        h.insert("www-authenticate", c.parse().unwrap());
        (StatusCode::UNAUTHORIZED, h).into_response()
    }

    async fn prm(State(st): State<St>) -> axum::Json<Value> {
        axum::Json(json!({"resource": format!("{}/mcp", st.base), "authorization_servers": [st.base]}))
    }

    async fn asm(State(st): State<St>) -> axum::Json<Value> {
        let b = &st.base;
        let m = if st.hits.moved.load(Ordering::SeqCst) { "/moved" } else { "" };
        axum::Json(json!({
            "issuer": st.issuer,
            "authorization_endpoint": format!("{b}/authorize"),
            "token_endpoint": format!("{b}{m}/token"),
            "registration_endpoint": format!("{b}/register"),
            "revocation_endpoint": format!("{b}{m}/revoke"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }))
    }

    async fn authorize(State(st): State<St>, Query(q): Query<Vec<(String, String)>>) -> Redirect {
        st.hits.authorize.fetch_add(1, Ordering::SeqCst);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let redirect = get("redirect_uri");
        let state = get("state");
        Redirect::to(&format!("{redirect}?code=c&state={state}"))
    }

    async fn token(State(st): State<St>) -> axum::Json<Value> {
        let n = st.hits.token.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({"access_token": format!("at{n}"), "token_type": "Bearer", "expires_in": 3600,
                          "refresh_token": format!("rt{n}")}))
    }

    async fn revoke(State(st): State<St>) -> StatusCode {
        st.hits.revoke.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    }

    /// A moved endpoint: records the request, and answers as the token endpoint would.
    async fn moved(State(st): State<St>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> axum::Json<Value> {
        let auth = headers.get("authorization").map(|v| v.to_str().unwrap_or_default().to_owned()).unwrap_or_default();
        st.hits.at_moved.lock().unwrap().push((uri.path().to_owned(), auth, body));
        axum::Json(
            json!({"access_token": "moved-at", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "moved-rt"}),
        )
    }
}

/// Writes a stored connection for `resource`, as an earlier login at `issuer` would have, pinned
/// to the token and revocation endpoints of `pinned` (a base URL) when given.
fn seed_credentials(cli: &Cli, resource: &str, issuer: &str, pinned: Option<&str>) {
    let dir = cli.dir.path().join("client");
    std::fs::create_dir_all(&dir).unwrap();
    let creds = json!({"client_id": "old-client", "granted_scopes": [], "token_received_at": 4_000_000_000_u64,
        "issuer": issuer,
        "token_response": {"access_token": "stored-at", "token_type": "bearer", "expires_in": 3600, "refresh_token": "stored-rt"}});
    let mut file = json!({"version": 1, "connections": {resource: {"issuer": issuer, "client_id": "old-client", "scopes": [],
        "expires_at": null, "has_refresh_token": true, "secrets_in": "file",
        "secrets": {"credentials": creds, "client_secret": "old-secret"}}}});
    if let Some(b) = pinned {
        file["connections"][resource]["endpoints"] =
            json!({"token_endpoint": format!("{b}/token"), "revocation_endpoint": format!("{b}/revoke")});
    }
    let path = dir.join("credentials.json");
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
    std::io::Write::write_all(&mut f, file.to_string().as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_never_sends_tokens_to_a_changed_authorization_server_c10_c16() {
    let h = hostile::start(None).await;
    let cli = Cli::new();
    let url = format!("{}/mcp", h.base);
    // The tokens were issued by another authorization server than the one the server names now.
    seed_credentials(&cli, &url, "https://the-real-issuer.example.com", None);
    let out = tokio::task::spawn_blocking(move || {
        let out = cli.run(&["logout", &url, "--allow-loopback-http"]);
        (out, cli.run(&["connections"]))
    })
    .await
    .unwrap();
    let (out, list) = out;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("not sending it the tokens"), "{out:?}");
    assert_eq!(h.hits.revoke.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was posted to its /revoke");
    assert!(list.stdout.contains("No stored connections"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_refuses_every_token_cannot_loop_the_client_c13() {
    let h = hostile::start(None).await;
    let cli = Cli::new();
    let url = format!("{}/mcp", h.base);
    seed_credentials(&cli, &url, &h.base, Some(&h.base));
    let out = tokio::task::spawn_blocking(move || cli.run(&["call", &url, "x", "--headless", "--allow-loopback-http"]))
        .await
        .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("giving up"), "{out:?}");
    let (tokens, logins) = (
        h.hits.token.load(std::sync::atomic::Ordering::SeqCst),
        h.hits.authorize.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(logins <= 3, "at most 3 authorizations: {logins}");
    assert!(tokens <= 1 + 3, "one refresh, then one code exchange per authorization: {tokens}");
}

/// What reached the moved endpoints so far.
fn at_moved(h: &hostile::Hostile) -> Vec<(String, String, String)> {
    h.hits.at_moved.lock().unwrap().clone()
}

/// Logs in at the hostile fake with a pre-registered client and its secret, headless.
async fn login_with_secret(cli: std::sync::Arc<Cli>, url: &str) {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        cli.run_with_stdin(
            &["login", &url, "--headless", "--allow-loopback-http", "--client-id", "pre", "--client-secret-stdin"],
            "pre-secret\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cl_07_a_changed_token_endpoint_gets_neither_the_refresh_token_nor_the_client_secret() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = hostile::start(None).await;
    let cli = std::sync::Arc::new(Cli::new());
    let url = format!("{}/mcp", h.base);
    login_with_secret(cli.clone(), &url).await;
    assert_eq!(h.hits.token.load(SeqCst), 1, "the login's code exchange");

    // Same issuer, another token endpoint: the stored refresh token and secret stay home.
    h.hits.moved.store(true, SeqCst);
    let (c, u) = (cli.clone(), url.clone());
    let out = tokio::task::spawn_blocking(move || c.run(&["call", &u, "x", "--headless", "--allow-loopback-http"]))
        .await
        .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("token endpoint changed since you logged in"), "{out:?}");
    assert!(out.stderr.contains(&format!("{}/moved/token", h.base)), "{out:?}");
    assert!(out.stderr.contains(&format!("mandate login {url}")), "{out:?}");
    assert_eq!(at_moved(&h), [], "nothing reached the new endpoint");
    assert_eq!(h.hits.token.load(SeqCst), 1, "nor the old one");
    assert_eq!(h.hits.authorize.load(SeqCst), 1, "no login was started either");

    // The person logs in again: a fresh registration and code exchange at the new endpoint,
    // without the stored secret or refresh token.
    let (c, u) = (cli.clone(), url.clone());
    let out = tokio::task::spawn_blocking(move || c.run(&["login", &u, "--headless", "--allow-loopback-http"]))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let seen = at_moved(&h);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (path, auth, body) = &seen[0];
    assert_eq!(path, "/moved/token");
    assert!(body.contains("grant_type=authorization_code") && body.contains("client_id=c1"), "{body}");
    assert!(auth.is_empty(), "no client authentication: {auth}");
    assert!(!body.contains("pre-secret") && !body.contains("refresh_token"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cl_07_logout_sends_nothing_to_a_changed_revocation_endpoint() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = hostile::start(None).await;
    let cli = std::sync::Arc::new(Cli::new());
    let url = format!("{}/mcp", h.base);
    login_with_secret(cli.clone(), &url).await;
    h.hits.moved.store(true, SeqCst);
    let (c, u) = (cli.clone(), url.clone());
    let (out, list) =
        tokio::task::spawn_blocking(move || (c.run(&["logout", &u, "--allow-loopback-http"]), c.run(&["connections"])))
            .await
            .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("changed since you logged in") && out.stderr.contains("not sending"), "{out:?}");
    assert_eq!(at_moved(&h), [], "nothing reached the new revocation endpoint");
    assert_eq!(h.hits.revoke.load(SeqCst), 0);
    assert!(list.stdout.contains("No stored connections"), "forgotten locally: {list:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cl_07_credentials_stored_before_pinning_are_not_sent() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = hostile::start(None).await;
    let cli = Cli::new();
    let url = format!("{}/mcp", h.base);
    seed_credentials(&cli, &url, &h.base, None);
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || cli.run(&["call", &u, "x", "--headless", "--allow-loopback-http"]))
        .await
        .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("older mandate") && out.stderr.contains(&format!("mandate login {url}")), "{out:?}");
    assert_eq!(h.hits.token.load(SeqCst), 0, "the stored refresh token and secret were not sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn cl_06_resource_metadata_on_another_origin_is_refused() {
    use std::sync::atomic::Ordering::SeqCst;
    let elsewhere = hostile::start(None).await;
    let prm = format!("{}/.well-known/oauth-protected-resource/mcp", elsewhere.base);
    let h = hostile::start_with(None, Some(&prm)).await;
    let url = format!("{}/mcp", h.base);
    let out = tokio::task::spawn_blocking(move || {
        Cli::new().run(&["login", &url, "--headless", "--allow-loopback-http", "--login-timeout", "2"])
    })
    .await
    .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("on another origin than the MCP server"), "{out:?}");
    for f in [&h, &elsewhere] {
        assert_eq!(f.hits.authorize.load(SeqCst) + f.hits.token.load(SeqCst), 0, "no login anywhere");
    }
}

/// CL-08: an authorization URL full of shell metacharacters reaches the browser as one argument,
/// byte for byte, and nothing in it runs: the browser is started directly (`xdg-open URL`), never
/// through a shell. A stand-in `xdg-open` on PATH records the arguments it got.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn the_browser_gets_the_url_as_one_argument_and_no_shell_runs_it_cl_08() {
    let bin = tempfile::tempdir().unwrap();
    let marker = bin.path().join("pwned");
    let argv = bin.path().join("argv.txt");
    let opener = bin.path().join("xdg-open");
    std::fs::write(&opener, format!("#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > '{}'\n", argv.display())).unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hostile = format!("/authorize?x=$(touch {m})&y=`touch {m}`;touch {m}|touch {m}&z='\"", m = marker.display());
    let f = fake(|_, _| {}, move |base, a| a["authorization_endpoint"] = json!(format!("{base}{hostile}"))).await;
    let url = format!("{}/mcp", f.base);
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = tokio::task::spawn_blocking(move || {
        Cli::new().run_with_env(
            &["login", &url, "--client-id", "pre-registered", "--allow-loopback-http", "--login-timeout", "3"],
            &[("PATH", &path), ("DISPLAY", ":0")],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.code, 1, "no one signs in: the wait times out: {out:?}");
    let printed = out
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http://") && l.contains("/authorize?"))
        .unwrap_or_else(|| panic!("the URL is printed too: {}", out.stderr))
        .to_owned();
    let got = std::fs::read_to_string(&argv).unwrap_or_else(|_| panic!("the browser was started: {}", out.stderr));
    let mut lines = got.lines();
    assert_eq!(lines.next(), Some("1"), "one argument: {got}");
    assert_eq!(lines.next(), Some(printed.as_str()), "the URL, byte for byte");
    assert!(printed.contains("$(touch") && printed.contains('`'), "the metacharacters were kept: {printed}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!marker.exists(), "nothing in the URL ran");
}
