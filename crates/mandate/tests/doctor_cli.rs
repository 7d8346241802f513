#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: failing loudly is the point
//! `mandate doctor` as people run it: the text report and exit status, `--json`, and a bad URL;
//! `--login`, with the person consenting to part of what the server offers. The checks themselves
//! are tested in `mandate-doctor` (mandate itself, broken fixtures).

mod support;

use std::process::Output;

use support::{Cli, DemoServer, person_consents};

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

#[tokio::test]
async fn doctor_login_reads_the_token_and_checks_the_403_names_the_missing_scope() {
    let s = DemoServer::start().await;
    let url = s.mcp_url();
    let cli = Cli::new();
    let mut running = cli.spawn(&[
        "doctor",
        &url,
        "--json",
        "--origin",
        &s.base,
        "--login",
        "--no-browser",
        "--scope",
        "customers.read",
        "--call-without-scope",
        "send_invoice",
    ]);
    let auth_url = running.wait_for_url();
    let mut browser = s.browser();
    person_consents(&mut browser, &s.password, &auth_url, &["customers.read"]).await;
    // Then once more as clients that omit `resource` sign in: the same client and scopes, no
    // `resource` (another loopback port, so mandate asks the person again).
    let again = running.wait_for_url();
    assert!(!again.contains("resource="), "{again}");
    assert!(again.contains("scope=customers.read") && again.contains("code_challenge_method=S256"), "{again}");
    person_consents(&mut browser, &s.password, &again, &["customers.read"]).await;
    let out = tokio::task::spawn_blocking(move || running.finish()).await.unwrap();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let check = |id: &str| {
        report["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no {id}")).clone()
    };
    for id in ["login", "token.format", "token.iss", "token.aud", "token.scope", "token.lifetime", "token.accepted"] {
        assert_eq!(check(id)["status"], "pass", "{id}: {}", check(id));
    }
    assert_eq!(check("token.iss")["saw"], s.base.as_str());
    assert_eq!(check("token.aud")["saw"], url.as_str());
    assert_eq!(check("token.scope")["saw"], "customers.read");
    assert!(
        check("token.lifetime")["saw"].as_str().unwrap().contains("lifetime 3600 s"),
        "{}",
        check("token.lifetime")
    );
    // A client that omits `resource` still gets a token for this server (mandate defaults the
    // audience to the one resource), which the server accepts.
    let quirk = check("quirk.no_resource");
    assert_eq!(quirk["status"], "pass", "{quirk}");
    assert!(quirk["saw"].as_str().unwrap().contains(&format!("aud is still {url}")), "{quirk}");
    // MCP RS11: the refusal names the scope the tool needs.
    let refused = check("challenge.insufficient_scope");
    assert_eq!(refused["status"], "pass", "{refused}");
    assert!(refused["saw"].as_str().unwrap().contains("invoices.send"), "{refused}");
}

#[tokio::test]
async fn doctor_login_is_not_tried_past_a_failure_and_its_flags_need_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = doctor(&[&format!("http://{closed}/mcp"), "--login", "--json"]).await;
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Nothing to sign in at: the unreachable server is the one failure reported.
    assert!(report["checks"].as_array().unwrap().iter().all(|c| c["id"] != "login"), "{report}");
    let out = doctor(&["http://127.0.0.1:1/mcp", "--scope", "a"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--login"), "{}", String::from_utf8_lossy(&out.stderr));
}
