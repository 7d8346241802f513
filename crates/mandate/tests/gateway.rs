//! The gateway as an operator runs it, with upstreams that fail: one that refuses connections,
//! one that never speaks MCP. The server starts anyway, `/readyz` says which upstream is down
//! (and nothing more), an agent gets a JSON-RPC error within the configured time (never a hang),
//! and the demo apps keep working. Real upstreams (server-everything, FastMCP) are exercised in
//! e2e/gateway.test.mjs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use mandate_testkit::McpClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DemoServer, free_port};

/// A server whose configuration names two broken upstreams (start_timeout 2 s).
async fn with_broken_upstreams() -> DemoServer {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    let closed = free_port();
    std::fs::write(
        &config,
        format!(
            "[[resources]]\nname = \"down\"\ntitle = \"Down\"\nupstream_url = \"http://127.0.0.1:{closed}/mcp\"\nstart_timeout = 2\n\n\
             [[resources]]\nname = \"silent\"\ntitle = \"Silent\"\ncommand = \"sleep\"\nargs = [\"600\"]\nstart_timeout = 2\n"
        ),
    )
    .unwrap();
    let server = DemoServer::start_with(&["--config", config.to_str().unwrap()], &[]).await;
    std::mem::forget(dir); // the file is read at start; the server's own temp dir holds the rest
    server
}

/// Initializes an MCP session at `url` with `token`; returns the reply's JSON-RPC message and
/// how long it took.
async fn initialize(url: &str, token: &str) -> (StatusCode, Value, Duration) {
    let mut c = McpClient::new(url, Some(token));
    let started = Instant::now();
    let r = c
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    (r.status, r.message, started.elapsed())
}

#[tokio::test]
async fn broken_upstreams_do_not_stop_the_server_and_answer_with_clear_errors() {
    let s = with_broken_upstreams().await;
    for (name, title) in [("down", "Down"), ("silent", "Silent")] {
        let line =
            s.banner.iter().find(|l| l.contains(&format!("/mcp/{name}"))).unwrap_or_else(|| panic!("{:?}", s.banner));
        assert!(line.contains(title) && line.contains("upstream unreachable"), "{line}");
    }

    // /readyz: ready (the authorization server and the demo apps serve), each upstream's state,
    // and no error text for anyone to read.
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["upstreams"]["down"], json!({"status": "unreachable", "transport": "http"}));
    assert_eq!(body["upstreams"]["silent"]["status"], "unreachable");
    assert_eq!(body["upstreams"]["silent"]["processes"], 0, "the silent process was stopped");

    // Each resource publishes its metadata (scopes offered while its tools are unknown) at the
    // path-inserted location; the root one stays the demo's.
    let prm: Value = reqwest::get(format!("{}/.well-known/oauth-protected-resource/mcp/down", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], format!("{}/mcp/down", s.base));
    assert_eq!(prm["scopes_supported"], json!(["down.read", "down.write", "down.destructive"]));
    let root: Value =
        reqwest::get(format!("{}/.well-known/oauth-protected-resource", s.base)).await.unwrap().json().await.unwrap();
    assert_eq!(root["resource"], format!("{}/mcp", s.base));

    // Without a token: the usual challenge, naming this resource's metadata.
    let r = reqwest::Client::new().post(format!("{}/mcp/down", s.base)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("/.well-known/oauth-protected-resource/mcp/down"), "{challenge}");
    assert!(challenge.contains(r#"scope="down.read""#), "{challenge}");

    let client = s.register("Gateway test agent").await;
    // Refused connection: an error at once.
    let token = s.access_token_for(&client, &format!("{}/mcp/down", s.base), &["down.read"]).await;
    let (status, message, took) = initialize(&format!("{}/mcp/down", s.base), &token).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["error"]["code"], -32603, "{message}");
    assert!(message["error"]["message"].as_str().unwrap().contains("the down server is unreachable"), "{message}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A program that never answers `initialize`: an error once start_timeout (2 s) has passed.
    let token = s.access_token_for(&client, &format!("{}/mcp/silent", s.base), &["silent.read"]).await;
    let (status, message, took) = initialize(&format!("{}/mcp/silent", s.base), &token).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert!(message["error"]["message"].as_str().unwrap().contains("did not start within 2 s"), "{message}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "{took:?}");
    // A token for one resource is refused by another (its own audience).
    let r = initialize(&format!("{}/mcp/down", s.base), &token).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);

    // The demo apps are untouched.
    let token = s.access_token(&client, &["customers.read"]).await;
    let (status, message, _) = initialize(&s.mcp_url(), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(message["result"]["protocolVersion"].is_string(), "{message}");
}

/// `mandate serve --upstream URL` and `mandate serve -- COMMAND`: one upstream at /mcp/upstream
/// (or the --upstream-name given), beside the demo apps.
#[tokio::test]
async fn the_one_line_forms_serve_one_upstream() {
    let closed = free_port();
    let url = format!("http://127.0.0.1:{closed}/mcp");
    let s = DemoServer::start_with(&["--upstream", &url, "--upstream-name", "tickets"], &[]).await;
    assert!(s.banner.iter().any(|l| l.ends_with(&format!("{}/mcp/tickets", s.base))), "{:?}", s.banner);
    let s = DemoServer::start_with(&["--", "false"], &[]).await;
    assert!(s.banner.iter().any(|l| l.ends_with(&format!("{}/mcp/upstream", s.base))), "{:?}", s.banner);
    let prm = reqwest::get(format!("{}/.well-known/oauth-protected-resource/mcp/upstream", s.base)).await.unwrap();
    assert_eq!(prm.status(), StatusCode::OK);
}

#[test]
fn upstream_env_names_a_variable_for_a_stdio_server_only() {
    // Without a command after `--` there is nothing to pass it to (clap: exit 2). What it passes
    // is tested in tests/dev.rs (mandate dev passes the developer's environment with it).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--upstream-env", "HOME", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--upstream-env") && err.contains("<COMMAND>"), "{err}");
}
