//! The whole guard in front of a trivial handler, in process (no sockets): what one `tools/call`
//! costs with the guard (Host/Origin, bearer, cached validation, scope check on the decoded
//! JSON-RPC body, session binding) against the same router without it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use mandate_core::clock::{OsRandom, SystemClock};
use mandate_core::keys::{KeyEncryptionKey, KeyRing, SigningAlg, generate_key};
use mandate_core::tokens::{AccessClaims, mint};
use mandate_guard::{
    Guard, GuardConfig, KeySource, TokenCheck, ToolScopes, Validator, VerificationKey, keys_from_jwks,
};
use tower::ServiceExt;

struct Static(HashMap<String, VerificationKey>);

#[async_trait]
impl KeySource for Static {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        self.0.get(kid).cloned()
    }
}

const BODY: &str =
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_customers","arguments":{}}}"#;

fn request(token: Option<&str>) -> http::Request<Body> {
    let mut b = http::Request::post("http://mcp.test/mcp")
        .header("host", "mcp.test")
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(BODY)).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let ring = KeyRing::load(&[generate_key(SigningAlg::Es256, &kek, &OsRandom, 0, 0).unwrap()], &kek, 3600).unwrap();
    let now = mandate_core::clock::Clock::now(&SystemClock);
    let claims = AccessClaims {
        iss: "https://as.test".into(),
        sub: "user-1".into(),
        aud: "https://mcp.test/mcp".into(),
        client_id: "client-1".into(),
        scope: "customers.read".into(),
        iat: now,
        exp: now + 3600,
        jti: "jti-1".into(),
        grant_id: "grant-1".into(),
    };
    let token = mint(&ring, &claims, now).unwrap();
    let keys = Arc::new(Static(keys_from_jwks(&ring.jwks(0))));
    let mut config = GuardConfig::new("https://mcp.test/mcp", "https://as.test");
    config.tools = ToolScopes::new().with("list_customers", &["customers.read"]);
    let validator = Validator::new("https://as.test", "https://mcp.test/mcp", keys, Arc::new(SystemClock));
    let guard = Arc::new(Guard::new(config, TokenCheck::Jwt(validator)));
    let inner = Router::new().route("/mcp", post(|body: String| async move { body.len().to_string() }));
    let guarded = guard.protect(inner.clone());

    c.bench_function("tools/call through the router, no guard", |b| {
        b.iter(|| rt.block_on(inner.clone().oneshot(request(None))).unwrap())
    });
    c.bench_function("tools/call through the router, guard (cached token)", |b| {
        b.iter(|| {
            let r = rt.block_on(guarded.clone().oneshot(request(Some(&token)))).unwrap();
            assert_eq!(r.status(), 200);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
