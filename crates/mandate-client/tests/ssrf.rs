//! C22: a metadata URL whose host *resolves* to a private address is refused on the address the
//! client would dial, not on the name; the error says so and nothing is fetched from it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use mandate_client::{ClientError, ConnectOptions, Connection, CredentialVault, LoginMode, NetPolicy};
use mandate_testkit::{FakeMcp, FakeServer};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;

/// Resolves `as.internal.test` to a private address and everything else to loopback.
struct Rebinding;

impl Resolve for Rebinding {
    fn resolve(&self, name: Name) -> Resolving {
        let ip = if name.as_str() == "as.internal.test" { "10.0.0.5" } else { "127.0.0.1" };
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        Box::pin(async move { Ok(Box::new(vec![addr].into_iter()) as Addrs) })
    }
}

#[tokio::test]
async fn authorization_server_name_resolving_to_a_private_address_is_refused_c22() {
    let fake = FakeServer::start_with(FakeMcp::Unauthorized, |_, prm, _| {
        prm["authorization_servers"] = json!(["https://as.internal.test"]);
    })
    .await;
    let mut opts = ConnectOptions::new(fake.mcp_url());
    opts.policy = NetPolicy { allow_loopback_http: true };
    opts.login = LoginMode::Headless;
    opts.resolver = Some(Arc::new(Rebinding));
    let conn = Connection::new(opts, Arc::new(CredentialVault::in_memory())).unwrap();
    let err = conn.login().await.unwrap_err();
    match err {
        ClientError::PrivateAddress { url } => assert!(url.contains("as.internal.test"), "{url}"),
        other => panic!("expected a private-address refusal, got {other}"),
    }
}
