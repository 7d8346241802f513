//! CL-12: twenty tool calls refused at once with 401 (the access token expired on the server's
//! clock, not yet on the client's) lead to exactly one refresh at the authorization server, and
//! every call then succeeds with the one new token. Against the real server (mandate-testkit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use mandate_client::{ConnectOptions, Connection, CredentialVault, LoginMode, McpSession, NetPolicy, PinnedEndpoints};
use mandate_testkit::*;
use serde_json::json;

const CB: &str = "http://127.0.0.1/callback";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_refused_at_once_refresh_once_cl_12() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    // The client's store, as a login would have left it.
    let vault = Arc::new(CredentialVault::in_memory());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stored = serde_json::from_value(json!({
        "client_id": client,
        "token_response": tok,
        "granted_scopes": ["customers.read"],
        "token_received_at": now,
        "issuer": s.base,
    }))
    .unwrap();
    vault.save(&s.resource(), stored, Some(None)).unwrap();
    vault
        .set_endpoints(
            &s.resource(),
            PinnedEndpoints { token_endpoint: s.url("/token"), revocation_endpoint: Some(s.url("/revoke")) },
        )
        .unwrap();
    let mut opts = ConnectOptions::new(s.resource());
    opts.policy = NetPolicy { allow_loopback_http: true };
    opts.login = LoginMode::Headless;
    let conn = Arc::new(Connection::new(opts, vault).unwrap());
    let session = Arc::new(McpSession::open(&conn).await.unwrap());
    let refreshed = |s: &TestServer| {
        let auth = s.auth.clone();
        async move {
            let events = auth.audit_events(&Default::default()).await.unwrap();
            events.iter().filter(|e| e.kind == "token.refreshed" && e.outcome == "success").count()
        }
    };
    assert_eq!(refreshed(&s).await, 0);
    // The access token expires on the server's clock; the client still thinks it good.
    s.clock.advance(3600 + 61);
    let calls = (0..20).map(|_| {
        let session = session.clone();
        tokio::spawn(async move { session.call("list_customers", Some(serde_json::Map::new())).await })
    });
    for call in futures::future::join_all(calls).await {
        let result = call.unwrap().unwrap_or_else(|e| panic!("a call failed: {e}"));
        assert!(!result.is_error.unwrap_or(false), "{result:?}");
    }
    assert_eq!(refreshed(&s).await, 1, "one refresh for twenty refused calls");
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "token.reuse_detected"), "no self-inflicted reuse (RT-02)");
}
