//! `mandate grants list` and `mandate audit` name the person and the client, on a database a
//! `mandate serve` process filled through real authorization flows. A self-registered client's
//! name is quoted and marked unverified, so it cannot pass for a label an operator gave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};

use serde_json::Value;
use support::DemoServer;

fn admin(server: &DemoServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env("MANDATE_DATABASE", &server.db)
        .env("MANDATE_PUBLIC_URL", &server.base)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn grants_and_audit_show_user_and_client_names() {
    let server = DemoServer::start().await;
    // A client an operator registered (verified), and one that registered itself choosing a
    // name meant to look like an operator's label.
    let added = admin(
        &server,
        &["clients", "add", "--name", "Billing bot", "--redirect-uri", "http://127.0.0.1/cb", "--no-refresh"],
    );
    let verified = added.lines().find_map(|l| l.strip_prefix("client_id: ")).unwrap().to_owned();
    // (Registration refuses control, bidi and invisible characters; quotes get through.)
    let sneaky = "Claude\" (verified)";
    let unverified = server.register(sneaky).await;
    server.access_token(&verified, &["customers.read"]).await;
    server.access_token(&unverified, &["customers.read", "todos.read"]).await;

    let grants = admin(&server, &["grants", "list"]);
    let mut lines = grants.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "USER", "CLIENT", "CLIENT", "ID", "GRANTED", "SCOPE"]);
    let row = |id: &str| grants.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{id} in {grants}"));
    let ours = row(&verified);
    assert!(ours.contains(" demo ") && ours.contains(r#""Billing bot""#), "{ours}");
    assert!(!ours.contains("unverified"), "{ours}");
    let theirs = row(&unverified);
    assert!(theirs.contains(" demo "), "{theirs}");
    assert!(theirs.contains(r#""Claude\" (verified)" (unverified)"#), "quoted, escaped, marked: {theirs}");

    let audit = admin(&server, &["audit"]);
    let issued: Vec<&str> = audit.lines().filter(|l| l.contains("user=demo")).collect();
    assert!(!issued.is_empty(), "{audit}");
    assert!(
        audit
            .lines()
            .any(|l| l
                .contains(&format!(r#"user=demo client="Claude\" (verified)" (unverified) client_id={unverified} "#))),
        "{audit}"
    );
    assert!(audit.lines().any(|l| l.contains(&format!(r#"client="Billing bot" client_id={verified} "#))), "{audit}");

    // JSON keeps the ids and adds the names beside them.
    let json = admin(&server, &["audit", "--json", "--client", &unverified]);
    let events: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["client_id"], unverified.as_str());
        assert_eq!(e["client_name"], sneaky);
        assert_eq!(e["client_verified"], false);
        if e["user_id"].is_string() {
            assert_eq!(e["user_name"], "demo", "{e}");
        }
    }
    assert!(events.iter().any(|e| e["user_name"] == "demo"), "{json}");

    // A removed client's events keep its id and say it is gone.
    admin(&server, &["clients", "remove", &verified]);
    let audit = admin(&server, &["audit", "--client", &verified]);
    assert!(audit.lines().count() >= 2, "its registration and grant are still in the trail: {audit}");
    assert!(audit.lines().all(|l| l.contains(&format!("client=(removed) client_id={verified}"))), "{audit}");
    let grants = admin(&server, &["grants", "list"]);
    assert!(!grants.contains(&verified), "its grants were revoked: {grants}");
}
