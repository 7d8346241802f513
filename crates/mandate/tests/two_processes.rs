//! The authorization server and the MCP server as two `mandate` processes on two ports: the MCP
//! server trusts the issuer's published keys, knows nothing of its database, and still refuses
//! what the person did not allow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use mandate_testkit::{Authz, Browser, McpClient, pkce, query_param, submit_consent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Proc, free_port};

/// Starts `mandate serve` with `args` on its own SQLite file; returns the process and its first
/// stdout lines.
fn serve(dir: &std::path::Path, name: &str, args: &[&str]) -> (Proc, Vec<String>) {
    let db = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    support::serve(&db, args, &[])
}

/// Waits until `url` answers 200 (unlike `support::wait_ready`, any URL: the MCP server alone
/// publishes no authorization server metadata).
async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered");
}

#[tokio::test]
async fn authorization_server_and_mcp_server_in_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{a}");
    let mcp_base = format!("http://127.0.0.1:{b}");
    let mcp_url = format!("{mcp_base}/mcp");
    let (_as, lines) = serve(
        dir.path(),
        "as",
        &["--listen", &format!("127.0.0.1:{a}"), "--public-url", &issuer, "--resource-url", &mcp_url, "--demo"],
    );
    let password = lines.iter().find_map(|l| l.strip_prefix("demo user: demo / password: ")).unwrap().to_owned();
    // The authorization server points at the MCP endpoint it issues tokens for, served elsewhere.
    assert_eq!(lines[0], format!("mandate is serving {issuer}"));
    assert!(lines.iter().any(|l| l.contains("served elsewhere") && l.ends_with(&mcp_url)), "{lines:?}");
    wait_ready(&format!("{issuer}/.well-known/oauth-authorization-server")).await;
    let (_mcp, lines) = serve(
        dir.path(),
        "mcp",
        &["--mcp-only", "--issuer", &issuer, "--listen", &format!("127.0.0.1:{b}"), "--public-url", &mcp_base],
    );
    assert_eq!(lines[0], format!("mandate is serving {mcp_base} (the MCP endpoint only)"));
    assert!(lines.iter().any(|l| l.contains("add to an MCP client") && l.ends_with(&mcp_url)), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("tokens from") && l.ends_with(&issuer)), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("/account/")), "no account pages on an MCP-only server: {lines:?}");
    wait_ready(&format!("{mcp_base}/.well-known/oauth-protected-resource/mcp")).await;

    // The authorization server does not serve /mcp itself: it would accept the other server's tokens.
    let r = reqwest::Client::new().post(format!("{issuer}/mcp")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Discovery from the MCP server's 401 leads to the other process.
    let mut anonymous = McpClient::new(&mcp_url, None);
    let r = anonymous.initialize().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let http = reqwest::Client::new();
    let prm: Value = http
        .get(format!("{mcp_base}/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert_eq!(prm["resource"], mcp_url);
    // Every scope in the metadata; the challenge asks for the default set (RS7: no offline_access).
    let all = ["customers.read", "customers.write", "invoices.read", "invoices.send", "todos.read", "todos.write"];
    assert_eq!(prm["scopes_supported"], json!(all));
    let challenge = r.www_authenticate();
    assert!(challenge.ends_with(r#"scope="customers.read invoices.read todos.read""#), "{challenge}");

    // Register and consent at the authorization server, for the MCP server's resource.
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none", "client_name": "Agent",
                      "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = reg["client_id"].as_str().unwrap();
    let mut browser = Browser::for_base(&issuer);
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(client, "http://127.0.0.1:5000/cb", &challenge);
    authz.resource = Some(mcp_url.clone());
    let r = browser.get(&authz.url()).await;
    let request = r.location.unwrap().trim_start_matches("/login?request=").to_owned();
    let consent = browser.login_with("demo", &password, Some(&request)).await.location.unwrap();
    let page = browser.get(&consent).await;
    let r = submit_consent(&mut browser, &page, "allow", &["customers.read", "customers.write"]).await;
    let code = query_param(&r.location.unwrap(), "code").unwrap();
    let tok: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", client),
            ("redirect_uri", "http://127.0.0.1:5000/cb"),
            ("resource", &mcp_url),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tok["access_token"].as_str().unwrap();

    // The MCP process validates the token against the issuer's JWKS.
    let mut agent = McpClient::new(&mcp_url, Some(access));
    assert_eq!(agent.initialize().await.status, StatusCode::OK);
    let r = agent.call("create_customer", json!({"name": "Amazon"})).await;
    assert_eq!(r.message["result"]["isError"], false, "{:?}", r.message);
    let r = agent.call("list_customers", json!({})).await;
    assert!(r.tool_text().contains("Amazon"));
    let r = agent.call("send_invoice", json!({"invoice_id": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.challenge_scopes().contains(&"invoices.send".to_owned()), "{}", r.www_authenticate());

    // Without a `resource` parameter the token is for the MCP server the operator configured (AS12).
    let mut other = authz;
    other.resource = None;
    let (v2, c2) = pkce();
    other.challenge = c2;
    let r = browser.get(&other.url()).await;
    let loc = r.location.unwrap();
    let loc = if loc.starts_with("/consent") {
        let page = browser.get(&loc).await;
        submit_consent(&mut browser, &page, "allow", &["customers.read"]).await.location.unwrap()
    } else {
        loc
    };
    let tok2: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &query_param(&loc, "code").unwrap()),
            ("code_verifier", &v2),
            ("client_id", client),
            ("redirect_uri", "http://127.0.0.1:5000/cb"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let aud = jsonwebtoken::dangerous::insecure_decode::<Value>(tok2["access_token"].as_str().unwrap()).unwrap().claims
        ["aud"]
        .clone();
    assert_eq!(aud, json!(mcp_url), "the default resource is the one the operator configured");
}
