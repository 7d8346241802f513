//! The agent's side on the wire, against the shared fake MCP server (`mandate_testkit::FakeServer`)
//! that records every request: the protocol version offered and the `MCP-Protocol-Version`
//! header after `initialize` (H10, H11), and a bound on every request (a server that accepts and
//! never answers makes the CLI fail with a timeout, within `--timeout`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use mandate_testkit::{Captured, FAKE_SESSION, FakeMcp, FakeServer};
use reqwest::Method;
use serde_json::json;
use support::{Cli, Output};

async fn run(args: Vec<String>) -> (Output, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = Cli::new().run(&args);
        (out, started.elapsed())
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Everything after the `initialize` POST carries the negotiated version and the session.
fn assert_negotiated(requests: &[Captured], version: &str) {
    let (init, rest) = requests.split_first().expect("requests reached the server");
    assert_eq!(init.rpc_method(), Some("initialize"));
    assert_eq!(init.body["params"]["protocolVersion"], "2025-11-25", "the client offers what it implements");
    assert!(init.header("mcp-session-id").is_none());
    assert!(!rest.is_empty());
    for r in rest {
        let what = format!("{} {:?}", r.method, r.rpc_method());
        assert_eq!(r.header("mcp-protocol-version"), Some(version), "H10: {what}");
        assert_eq!(r.header("mcp-session-id"), Some(FAKE_SESSION), "H9: {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_offers_2025_11_25_and_sends_the_negotiated_version_on_every_request_h10_h11() {
    for version in ["2025-11-25", "2025-06-18"] {
        let fake = FakeServer::start(FakeMcp::Open { version: version.into() }).await;
        let url = fake.mcp_url();
        let (out, _) =
            run(args(&["call", &url, "echo", "--args", r#"{"a":1}"#, "--allow-loopback-http", "--no-browser"])).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, "{\"arguments\":{\"a\":1},\"tool\":\"echo\"}\n", "printed as sent: {out:?}");
        let requests = fake.requests();
        assert_negotiated(&requests, version);
        let methods: Vec<_> = requests.iter().map(|r| (r.method.clone(), r.rpc_method().map(str::to_owned))).collect();
        for expected in [
            (Method::POST, Some("notifications/initialized".to_owned())),
            (Method::POST, Some("tools/call".to_owned())),
            (Method::DELETE, None),
        ] {
            assert!(methods.contains(&expected), "{expected:?} in {methods:?}");
        }

        let fake = FakeServer::start(FakeMcp::Open { version: version.into() }).await;
        let (out, _) = run(args(&["tools", &fake.mcp_url(), "--allow-loopback-http", "--no-browser"])).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.starts_with("echo "), "{out:?}");
        assert_negotiated(&fake.requests(), version);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_probe_offers_2025_11_25() {
    let fake = FakeServer::start(FakeMcp::Unauthorized).await;
    let (out, _) = run(args(&["login", &fake.mcp_url(), "--headless", "--allow-loopback-http"])).await;
    assert_eq!(out.code, 1, "the fake's authorization server is not real: {out:?}");
    let first = fake.requests().into_iter().next().unwrap();
    assert_eq!(first.rpc_method(), Some("initialize"));
    assert_eq!(first.body["params"]["protocolVersion"], "2025-11-25");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_lowers_a_newer_offer_to_2025_11_25_h11() {
    let fake = FakeServer::start(FakeMcp::Open { version: "2025-11-25".into() }).await;
    let url = fake.mcp_url();
    let cli = Cli::new();
    let mut bridge = cli.spawn_bridge(&["bridge", &url, "--allow-loopback-http", "--no-browser"]);
    bridge.send(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"host","version":"1"}}}));
    let r = tokio::task::spawn_blocking(move || {
        let r = bridge.recv();
        (bridge, r)
    })
    .await
    .unwrap();
    let (mut bridge, init) = r;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    bridge.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    bridge.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}));
    let (bridge, list) = tokio::task::spawn_blocking(move || {
        let r = bridge.recv();
        (bridge, r)
    })
    .await
    .unwrap();
    assert_eq!(list["result"]["tools"][0]["name"], "echo", "{list}");
    assert_eq!(tokio::task::spawn_blocking(move || bridge.close()).await.unwrap(), 0);
    assert_negotiated(&fake.requests(), "2025-11-25");
}

/// `--timeout 2` against a server that never answers: exit 1 with a timeout message, after the
/// bound and well before anything else would have given up.
async fn times_out(fake: &FakeServer, command: &[&str], what: &str) {
    let url = fake.mcp_url();
    let mut list = vec![command[0], url.as_str()];
    list.extend_from_slice(&command[1..]);
    list.extend_from_slice(&["--allow-loopback-http", "--no-browser", "--timeout", "2"]);
    let (out, took) = run(args(&list)).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("timed out") && out.stderr.contains("--timeout"), "{out:?}");
    assert!(out.stderr.contains(what), "{what}: {out:?}");
    assert!(took >= Duration::from_secs(2), "not before the bound: {took:?}");
    assert!(took < Duration::from_secs(12), "within the bound (plus start-up): {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gives_up_after_the_timeout() {
    let silent = FakeServer::start(FakeMcp::Silent).await;
    let stalls = FakeServer::start(FakeMcp::StallsToolCalls { version: "2025-11-25".into() }).await;
    tokio::join!(
        times_out(&silent, &["tools"], "initialize"),
        times_out(&silent, &["call", "echo"], "initialize"),
        times_out(&silent, &["login"], "timed out, no answer within the limit"),
        // The response starts (an event stream) and never brings the result.
        times_out(&stalls, &["call", "echo"], "tools/call echo"),
    );
    let calls = stalls.requests().iter().filter(|r| r.rpc_method() == Some("tools/call")).count();
    assert_eq!(calls, 1, "sent once, not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_gives_up_on_a_server_that_never_answers() {
    let silent = FakeServer::start(FakeMcp::Silent).await;
    let url = silent.mcp_url();
    let cli = Cli::new();
    let started = Instant::now();
    let mut bridge = cli.spawn_bridge(&["bridge", &url, "--allow-loopback-http", "--no-browser", "--timeout", "2"]);
    bridge.send(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"host","version":"1"}}}));
    let code = tokio::task::spawn_blocking(move || bridge.wait_exit()).await.unwrap();
    assert_eq!(code, 1);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(12), "{took:?}");
}
