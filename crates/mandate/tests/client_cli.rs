//! The agent's side end to end: `mandate login/tools/call/logout/connections/bridge` as processes
//! against `mandate serve --demo` over loopback, with the test playing the person in the browser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::{Cli, DemoServer, credentials, person_consents, write_credentials};

#[tokio::test]
async fn login_tools_call_step_up_refresh_logout_c1_c11_c13_c14_c21() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    let mut browser = server.browser();

    // Login asking for customers.read only; the person allows it.
    let mut run = cli.spawn(&["login", &url, "--scope", "customers.read", "--no-browser", "--allow-loopback-http"]);
    let auth_url = run.wait_for_url();
    assert!(auth_url.contains("code_challenge_method=S256"), "{auth_url}");
    assert!(
        auth_url.contains(&format!("resource={}", urlencode(&url))),
        "C14 resource in the authorization request: {auth_url}"
    );
    assert!(auth_url.contains("state="), "{auth_url}");
    person_consents(&mut browser, &server.password, &auth_url, &["customers.read"]).await;
    let out = run.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("scopes: customers.read"), "{out:?}");

    // Stored per server, bound to the issuer, file mode 0600, never printed (C21).
    let file = cli.dir.path().join("client/credentials.json");
    assert_eq!(support::mode(&file) & 0o777, 0o600);
    let stored = credentials(&file, &url);
    let access = stored["token_response"]["access_token"].as_str().unwrap().to_owned();
    let refresh = stored["token_response"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(stored["issuer"], json!(server.base));
    let list = cli.run(&["connections"]);
    assert_eq!(list.code, 0);
    assert!(list.stdout.contains(&url) && list.stdout.contains("issuer: http://127.0.0.1"), "{list:?}");
    assert!(!list.stdout.contains(&access) && !list.stdout.contains(&refresh), "connections never prints a token");
    assert!(!out.stdout.contains(&access) && !out.stderr.contains(&access), "login never prints a token");

    // Even with every log on, no token reaches the terminal (rmcp is capped at info).
    let traced = cli.run_with_env(&["call", &url, "list_customers", "--allow-loopback-http"], &[("RUST_LOG", "trace")]);
    assert_eq!(traced.code, 0, "{traced:?}");
    assert!(traced.stderr.len() > 1000, "trace logging was on");
    assert!(!traced.stderr.contains(&access) && !traced.stderr.contains(&refresh), "a token was logged");

    // Tools with their scopes.
    let tools = cli.run(&["tools", &url, "--no-browser", "--allow-loopback-http"]);
    assert_eq!(tools.code, 0, "{tools:?}");
    let send = tools.stdout.lines().find(|l| l.starts_with("send_invoice")).unwrap();
    assert!(send.contains("invoices.send"), "{send}");
    assert_eq!(tools.stdout.lines().count(), 9, "{}", tools.stdout);

    // A call within the grant.
    let call = cli.run(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser"]);
    assert_eq!(call.code, 0, "{call:?}");

    // A call outside it, without --step-up and no terminal: refused, exit 3, the scope named.
    let denied = cli.run(&[
        "call",
        &url,
        "send_invoice",
        "--args",
        r#"{"invoice_id":"inv_missing"}"#,
        "--allow-loopback-http",
        "--no-browser",
    ]);
    assert_eq!(denied.code, 3, "{denied:?}");
    assert!(denied.stderr.contains("invoices.send") && denied.stderr.contains("--step-up"), "{denied:?}");

    // With --step-up: re-authorization for customers.read ∪ invoices.send (C13); the person allows it.
    let mut run = cli.spawn(&[
        "call",
        &url,
        "send_invoice",
        "--args",
        r#"{"invoice_id":"inv_missing"}"#,
        "--step-up",
        "--allow-loopback-http",
        "--no-browser",
    ]);
    let auth_url = run.wait_for_url();
    let scope = support::query(&auth_url, "scope").unwrap();
    let asked: Vec<&str> = scope.split(' ').collect();
    assert!(
        asked.contains(&"customers.read") && asked.contains(&"invoices.send"),
        "union of held and challenged: {scope}"
    );
    person_consents(&mut browser, &server.password, &auth_url, &["customers.read", "invoices.send"]).await;
    let out = run.finish();
    // The call now reaches the tool, which answers for itself: there is no such invoice.
    assert!(out.stdout.contains("no such invoice"), "{out:?}");
    assert_eq!(out.code, 1, "a tool-level error exits 1: {out:?}");
    let stored = credentials(&file, &url);
    let granted: Vec<String> = serde_json::from_value(stored["granted_scopes"].clone()).unwrap();
    assert!(
        granted.contains(&"invoices.send".to_owned()) && granted.contains(&"customers.read".to_owned()),
        "{granted:?}"
    );

    // Refresh before use after an injected expiry: the stored token looks an hour old.
    let before = credentials(&file, &url);
    write_credentials(&file, &url, |c| c["token_received_at"] = json!(1));
    let call = cli.run(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser"]);
    assert_eq!(call.code, 0, "{call:?}");
    let after = credentials(&file, &url);
    assert_ne!(after["token_response"]["access_token"], before["token_response"]["access_token"]);
    assert_ne!(after["token_response"]["refresh_token"], before["token_response"]["refresh_token"], "rotated");

    // Refresh on 401: the server refuses the stored access token; one refresh, and the call goes on.
    write_credentials(&file, &url, |c| c["token_response"]["access_token"] = json!("not-a-token"));
    let call = cli.run(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser"]);
    assert_eq!(call.code, 0, "{call:?}");
    let fresh = credentials(&file, &url);
    assert_ne!(fresh["token_response"]["access_token"], json!("not-a-token"));

    // Several processes find the token expired at once: refreshes are taken one at a time under
    // the per-server lock, each from the latest stored token, so no refresh token is spent twice
    // and the family survives (a reuse would have revoked it).
    write_credentials(&file, &url, |c| c["token_received_at"] = json!(1));
    let runs: Vec<_> =
        (0..3).map(|_| cli.spawn(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser"])).collect();
    for run in runs {
        let out = run.finish();
        assert_eq!(out.code, 0, "{out:?}");
    }
    let call = cli.run(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser"]);
    assert_eq!(call.code, 0, "the family is intact: {call:?}");
    let fresh = credentials(&file, &url);

    // Logout revokes at the server and forgets locally.
    let rt = fresh["token_response"]["refresh_token"].as_str().unwrap().to_owned();
    let client_id = fresh["client_id"].as_str().unwrap().to_owned();
    let out = cli.run(&["logout", &url, "--allow-loopback-http"]);
    assert_eq!(out.code, 0, "{out:?}");
    let list = cli.run(&["connections"]);
    assert!(list.stdout.contains("No stored connections"), "{list:?}");
    let r = reqwest::Client::new()
        .post(format!("{}/token", server.base))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", &client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "the revoked refresh token no longer works");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bridge_passes_messages_through_over_stdio() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    let mut browser = server.browser();
    let mut run = cli.spawn(&[
        "login",
        &url,
        "--scope",
        "customers.read customers.write",
        "--no-browser",
        "--allow-loopback-http",
    ]);
    let auth_url = run.wait_for_url();
    person_consents(&mut browser, &server.password, &auth_url, &["customers.read", "customers.write"]).await;
    assert_eq!(run.finish().code, 0);

    let mut bridge = cli.spawn_bridge(&["bridge", &url, "--no-browser", "--allow-loopback-http"]);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"host","version":"1"}}});
    bridge.send(&init);
    let r = bridge.recv();
    assert_eq!(r["id"], 1, "{r}");
    assert!(r["result"]["serverInfo"].is_object(), "{r}");
    bridge.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    bridge.send(&json!({"jsonrpc":"2.0","id":"two","method":"tools/list"}));
    let r = bridge.recv();
    assert_eq!(r["id"], "two", "string ids pass through: {r}");
    assert_eq!(r["result"]["tools"].as_array().unwrap().len(), 9);
    bridge.send(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_customer","arguments":{"name":"Amazon"}}}));
    let r = bridge.recv();
    assert_eq!(r["id"], 3);
    assert_eq!(r["result"]["isError"], false, "{r}");
    bridge
        .send(&json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"list_customers","arguments":{}}}));
    let r = bridge.recv();
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("Amazon"), "{r}");
    // A line that is not JSON-RPC gets a parse error back, and the bridge carries on.
    bridge.send_raw("this is not json");
    let r = bridge.recv();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    bridge.send(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}));
    assert_eq!(bridge.recv()["id"], 5);
    let code = bridge.close();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn state_mismatch_on_the_callback_is_refused_c18() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let mut run = cli.spawn(&["login", &server.mcp_url(), "--no-browser", "--allow-loopback-http"]);
    let auth_url = run.wait_for_url();
    let redirect = support::query(&auth_url, "redirect_uri").unwrap();
    // Someone else's response arrives at the listener first.
    let r = reqwest::get(format!("{redirect}?code=stolen&state=not-ours")).await.unwrap();
    assert_eq!(r.status(), 200);
    let out = run.finish();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("state does not match"), "{out:?}");
    assert!(cli.run(&["connections"]).stdout.contains("No stored connections"));
}

#[tokio::test]
async fn plain_http_needs_the_development_flag_c22() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let out = cli.run(&["tools", &server.mcp_url(), "--no-browser"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--allow-loopback-http"), "{out:?}");
    let out = cli.run(&["tools", "http://example.com/mcp", "--no-browser", "--allow-loopback-http"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("use https"), "{out:?}");
    let out = cli.run(&["call", &server.mcp_url(), "list_customers", "--args", "[1]", "--allow-loopback-http"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--args must be a JSON object"));
}

#[tokio::test]
async fn credentials_stay_with_their_issuer_and_a_dead_refresh_means_a_new_login_c10_c20() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    let mut browser = server.browser();
    let mut run = cli.spawn(&["login", &url, "--scope", "customers.read", "--no-browser", "--allow-loopback-http"]);
    let auth_url = run.wait_for_url();
    person_consents(&mut browser, &server.password, &auth_url, &["customers.read"]).await;
    assert_eq!(run.finish().code, 0);
    let file = cli.dir.path().join("client/credentials.json");

    // The refresh token is dead and the access token refused: the client asks the person again.
    write_credentials(&file, &url, |c| {
        c["token_response"]["access_token"] = json!("refused");
        c["token_response"]["refresh_token"] = json!("dead");
    });
    let out =
        cli.run(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser", "--login-timeout", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("Open this URL to authorize"), "a new login was started: {out:?}");
    assert!(out.stderr.contains("no authorization response within 1 s"), "{out:?}");

    // Credentials recorded for another issuer are never sent to this server's issuer: they are
    // dropped and the client registers and logs in afresh.
    let mut run = cli.spawn(&["login", &url, "--scope", "customers.read", "--no-browser", "--allow-loopback-http"]);
    let auth_url = run.wait_for_url();
    person_consents(&mut browser, &server.password, &auth_url, &["customers.read"]).await;
    assert_eq!(run.finish().code, 0);
    let before = credentials(&file, &url);
    write_credentials(&file, &url, |c| c["issuer"] = json!("https://previous-issuer.example.com"));
    let out =
        cli.run(&["call", &url, "list_customers", "--allow-loopback-http", "--no-browser", "--login-timeout", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    let auth_line = out.stderr.lines().find(|l| l.trim().starts_with("http")).unwrap();
    let new_client = support::query(auth_line.trim(), "client_id").unwrap();
    assert_ne!(new_client, before["client_id"].as_str().unwrap(), "re-registered at the new issuer");
}

/// CL-11: the token the agent holds for one MCP server is never sent to another, even to one that
/// names the same authorization server. Server B records every request it gets.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_one_server_is_never_sent_to_another_cl_11() {
    use std::sync::{Arc, Mutex};
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    let mut browser = server.browser();
    let mut run = cli.spawn(&["login", &url, "--scope", "customers.read", "--no-browser", "--allow-loopback-http"]);
    let auth_url = run.wait_for_url();
    person_consents(&mut browser, &server.password, &auth_url, &["customers.read"]).await;
    assert_eq!(run.finish().code, 0);
    let stored = credentials(&cli.dir.path().join("client/credentials.json"), &url);
    let access = stored["token_response"]["access_token"].as_str().unwrap().to_owned();
    let refresh = stored["token_response"]["refresh_token"].as_str().unwrap().to_owned();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let prm = json!({"resource": format!("{b}/mcp"), "authorization_servers": [server.base], "scopes_supported": ["customers.read"]});
    let challenge =
        format!(r#"Bearer resource_metadata="{b}/.well-known/oauth-protected-resource/mcp", scope="customers.read""#);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (log, prm, challenge) = (log.clone(), prm.clone(), challenge.clone());
        async move {
            let headers: Vec<String> =
                req.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?"))).collect();
            log.lock().unwrap().push(format!("{} {} {}", req.method(), req.uri(), headers.join(" | ")));
            if req.uri().path().starts_with("/.well-known/oauth-protected-resource") {
                return axum::Json(prm).into_response();
            }
            (axum::http::StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // No token is held for B: the CLI asks the person to log in for it (and is stopped there).
    let mut other =
        cli.spawn(&["call", &format!("{b}/mcp"), "list_customers", "--no-browser", "--allow-loopback-http"]);
    let second = other.wait_for_url();
    other.kill();
    assert!(second.contains(&format!("resource={}", urlencode(&format!("{b}/mcp")))), "{second}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|r| r.starts_with("POST /mcp")), "the CLI did call B: {seen:?}");
    for r in &seen {
        assert!(!r.contains(&access) && !r.contains(&refresh), "A's token reached B: {r}");
        assert!(!r.to_ascii_lowercase().contains("authorization:"), "B got credentials: {r}");
    }
}
