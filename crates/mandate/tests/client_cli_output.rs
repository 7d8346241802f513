//! What the agent's CLI tells the person, as processes against `mandate serve --demo`: `tools`
//! marks what the held scopes allow, `call` pretty-prints on a terminal and prints exactly what
//! the server sent otherwise, step-up explains itself before any URL, a denial exits 3, the
//! callback page says how the login went, and an unknown tool is an error at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use mandate_testkit::McpClient;
use serde_json::Value;
use support::{Cli, DemoServer, credentials, person_consents, person_decides};

const LOCAL: [&str; 2] = ["--allow-loopback-http", "--no-browser"];

fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().copied().chain(LOCAL).collect()
}

/// Logs the CLI in to the demo server with `scopes`, the person allowing them.
async fn login(server: &DemoServer, cli: &Cli, scopes: &[&str]) {
    let url = server.mcp_url();
    let scope = scopes.join(" ");
    let mut run = cli.spawn(&with(&["login", &url, "--scope", &scope]));
    let auth_url = run.wait_for_url();
    person_consents(&mut server.browser(), &server.password, &auth_url, scopes).await;
    let out = run.finish();
    assert_eq!(out.code, 0, "{out:?}");
}

fn line<'a>(out: &'a str, tool: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("{tool} "))).unwrap_or_else(|| panic!("{tool} in {out}"))
}

#[tokio::test]
async fn tools_mark_what_the_held_scopes_allow_and_call_prints_for_its_reader() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    login(&server, &cli, &["customers.read"]).await;

    let tools = cli.run(&with(&["tools", &url]));
    assert_eq!(tools.code, 0, "{tools:?}");
    assert!(line(&tools.stdout, "list_customers").contains(" ✓ "), "{}", tools.stdout);
    assert!(line(&tools.stdout, "send_invoice").contains("needs invoices.send"), "{}", tools.stdout);
    assert!(line(&tools.stdout, "create_customer").contains("needs customers.write"), "{}", tools.stdout);
    let json = cli.run(&with(&["tools", &url, "--json"]));
    let list: Value = serde_json::from_str(&json.stdout).unwrap();
    let tool = |name: &str| list.as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(tool("list_customers")["allowed"], true);
    assert_eq!(tool("send_invoice")["allowed"], false);
    assert_eq!(tool("send_invoice")["missing"], serde_json::json!(["invoices.send"]));

    // What the server sends for list_customers, asked directly with the CLI's own token.
    let file = cli.dir.path().join("client/credentials.json");
    let token = credentials(&file, &url)["token_response"]["access_token"].as_str().unwrap().to_owned();
    let mut raw = McpClient::new(&url, Some(&token));
    assert_eq!(raw.initialize().await.status, 200);
    let sent = raw.call("list_customers", serde_json::json!({})).await.tool_text();
    assert!(sent.starts_with("{\"customers\":[{"), "compact JSON: {sent}");

    // Not a terminal: exactly as sent, for scripts.
    let piped = cli.run(&with(&["call", &url, "list_customers"]));
    assert_eq!(piped.code, 0, "{piped:?}");
    assert_eq!(piped.stdout, format!("{sent}\n"));

    // A terminal: the same value, pretty-printed.
    let shown = cli.run_in_terminal(&with(&["call", &url, "list_customers"]));
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(shown.stdout.starts_with("{\n  \"customers\": [\n    {\n"), "{}", shown.stdout);
    let parsed: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(parsed, serde_json::from_str::<Value>(&sent).unwrap());
}

#[tokio::test]
async fn step_up_explains_itself_first_and_a_denial_exits_3_c13() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    login(&server, &cli, &["customers.read"]).await;

    let call = ["call", url.as_str(), "send_invoice", "--args", r#"{"invoice_id":"inv_x"}"#, "--step-up"];
    let mut run = cli.spawn(&with(&call));
    let auth_url = run.wait_for_url();
    let page = person_decides(&mut server.browser(), &server.password, &auth_url, "deny", &[]).await;
    assert!(page.contains("<h1>Access denied</h1>"), "the callback page says so: {page}");
    let out = run.finish();
    let why = out
        .stderr
        .find("send_invoice needs the scope `invoices.send`, which you have not granted to this agent. Asking the server for it: open the URL below and allow it there.")
        .unwrap_or_else(|| panic!("the explanation: {out:?}"));
    assert!(why < out.stderr.find(&auth_url).unwrap(), "explained before the URL: {out:?}");
    assert_eq!(out.code, 3, "a denial exits 3: {out:?}");
    assert!(
        out.stderr.contains("access denied: you did not grant the scope `invoices.send` to this agent at the consent page; send_invoice was not called"),
        "{out:?}"
    );
    let file = cli.dir.path().join("client/credentials.json");
    assert_eq!(credentials(&file, &url)["granted_scopes"], serde_json::json!(["customers.read"]), "nothing changed");

    // On a terminal without --step-up: the same explanation, as a question; "n" is exit 3.
    let asked = cli.run_in_terminal_typing(&with(&call[..5]), "n\n");
    assert_eq!(asked.code, 3, "{asked:?}");
    assert!(
        asked.stdout.contains("send_invoice needs the scope `invoices.send`, which you have not granted to this agent. Ask the server for it now? [y/N]"),
        "{asked:?}"
    );
    assert!(!asked.stdout.contains("/authorize?"), "no URL after a no: {asked:?}");

    // Without --step-up and no terminal: exit 3 at once, saying what is missing.
    let refused = cli.run(&with(&call[..5]));
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stderr.contains("send_invoice needs the scope(s) `invoices.send`, which you have not granted to this agent; run again with --step-up"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn waiting_for_the_person_does_not_count_against_the_timeout() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    login(&server, &cli, &["customers.read"]).await;
    let call = ["call", url.as_str(), "send_invoice", "--args", r#"{"invoice_id":"inv_x"}"#, "--step-up"];
    let mut args = call.to_vec();
    args.extend(["--timeout", "2"]);
    let mut run = cli.spawn(&with(&args));
    let auth_url = run.wait_for_url();
    tokio::time::sleep(Duration::from_secs(4)).await; // the person reads the consent page
    person_consents(&mut server.browser(), &server.password, &auth_url, &["customers.read", "invoices.send"]).await;
    let out = run.finish();
    assert!(!out.stderr.contains("timed out"), "{out:?}");
    assert!(out.stdout.contains("no such invoice"), "the call went through after the step-up: {out:?}");
    assert_eq!(out.code, 1, "the tool's own error: {out:?}");
    // Now the held scopes allow it.
    let tools = cli.run(&with(&["tools", &url]));
    assert!(line(&tools.stdout, "send_invoice").contains(" ✓ "), "{}", tools.stdout);
}

#[tokio::test]
async fn an_unknown_tool_fails_at_once_with_the_servers_error() {
    let server = DemoServer::start().await;
    let cli = Cli::new();
    let url = server.mcp_url();
    login(&server, &cli, &["customers.read"]).await;
    let started = Instant::now();
    let out = cli.run(&with(&["call", &url, "list_customer"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("the server answered error -32602: Unknown tool: list_customer"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "no waiting: {:?}", started.elapsed());
}
