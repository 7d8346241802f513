#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: failing loudly is the point
//! `mandate doctor` as people run it: the text report and exit status, `--json`, and a bad URL.
//! The checks themselves are tested in `mandate-doctor` (mandate itself, broken fixtures).

use std::process::Output;

use mandate_testkit::TestServer;
use serde_json::Value;

async fn doctor(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mandate")).arg("doctor").args(&args).output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn doctor_passes_mandate_and_exits_0_and_warns_with_1() {
    let s = TestServer::start().await;
    let url = s.url("/mcp");
    // Its own origin is allowed: every check passes.
    let out = doctor(&[&url, "--origin", &s.base]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("pass  as.issuer") && text.contains(" 0 warning(s), 0 failed"), "{text}");
    // The MCP Inspector's origin (the default) is not allowed by this server: a warning, exit 1.
    let out = doctor(&[&url, "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["url"], url);
    let cors = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "cors").unwrap();
    assert_eq!(cors["status"], "warn");
    assert!(cors["fix"].as_str().unwrap().contains("mcp_allowed_origins"));
}

#[tokio::test]
async fn doctor_fails_with_2_on_an_unreachable_server_and_refuses_a_bad_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = doctor(&[&format!("http://{closed}/mcp")]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("FAIL  mcp.unauthorized") && text.contains("could not connect"), "{text}");
    let out = doctor(&["not a url"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an http(s) URL"));
}
