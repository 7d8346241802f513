//! CL-16: a login's callback is bound to that login. An authorization response that belongs to
//! another login (another `state`), or that names another authorization server (`iss`, the
//! mix-up), arriving at this login's redirect URI aborts it, and no code is sent to any token
//! endpoint. The person's browser is played by a plain HTTP request to the CLI's loopback listener.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Cli, DemoServer, query};

/// Starts `mandate login` on the demo server's /mcp and answers its redirect URI with `answer`
/// (given the state it expects); returns what the CLI said.
async fn login_answered_with(s: &DemoServer, answer: impl FnOnce(&str) -> String) -> support::Output {
    let cli = Cli::new();
    let mut running =
        cli.spawn(&["login", &s.mcp_url(), "--no-browser", "--allow-loopback-http", "--login-timeout", "20"]);
    let auth_url = running.wait_for_url();
    let redirect = query(&auth_url, "redirect_uri").unwrap();
    let state = query(&auth_url, "state").unwrap();
    let page = reqwest::get(format!("{redirect}?{}", answer(&state))).await.unwrap();
    assert_eq!(page.status(), 200, "the listener shows a page");
    tokio::task::spawn_blocking(move || running.finish()).await.unwrap()
}

async fn token_requests(s: &DemoServer) -> usize {
    let out = tokio::task::spawn_blocking({
        let db = s.db.clone();
        move || Cli::new().run_with_env(&["audit", "--json"], &[("MANDATE_DATABASE", &db)])
    })
    .await
    .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.lines().count() > 0, "the trail is read (the demo's own events): {out:?}");
    out.stdout.lines().filter(|l| l.contains("\"token.")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_of_another_login_or_another_issuer_aborts_and_redeems_nothing_cl_16() {
    let s = DemoServer::start().await;
    let before = token_requests(&s).await;
    let iss = url::form_urlencoded::byte_serialize(s.base.as_bytes()).collect::<String>();
    // Another login's response: its own state.
    let out = login_answered_with(&s, |_| format!("code=code-of-another-login&state=another-state&iss={iss}")).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("state does not match"), "{}", out.stderr);
    // This login's state, from another authorization server: the mix-up.
    let out = login_answered_with(&s, |state| {
        format!("code=code-from-elsewhere&state={state}&iss=https%3A%2F%2Fother-as.test")
    })
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("iss") || out.stderr.contains("mix-up"), "{}", out.stderr);
    assert_eq!(token_requests(&s).await, before, "no code reached a token endpoint");
}
