//! No upstream token reaches a log line or an error, with every crate logging at trace level:
//! connecting, using, refreshing (before expiry and after a 401), a refresh the provider refuses,
//! and disconnecting. The stored row holds neither token in the clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

/// Everything logged, by every thread of this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_upstream_token_in_any_log_line_or_error_at_trace_level() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let h = handle(&p.upstreams);
    let mut seen = Vec::new();
    let first = h.token(&alice).await.unwrap();
    assert!(works_upstream(&p, first.expose()).await);
    seen.push(first.expose().to_owned());
    // Before expiry, then after a 401.
    p.ours.clock.advance(3590);
    let second = h.token(&alice).await.unwrap();
    seen.push(second.expose().to_owned());
    let third = h.rejected(&alice, &second).await.unwrap();
    seen.push(third.expose().to_owned());
    // The refresh tokens, read back through the key-encryption key (never in the clear).
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed_tokens FROM upstream_accounts").fetch_one(p.ours.store.pool()).await.unwrap();
    let plain = p.ours.auth.open_secret(&sealed, &format!("upstream-account\u{1f}{alice}\u{1f}up")).unwrap();
    let tokens: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let refresh = tokens["r"].as_str().unwrap().to_owned();
    assert_eq!(tokens["a"], third.expose());
    for t in [&refresh, &third.expose().to_owned()] {
        assert!(!String::from_utf8_lossy(&sealed).contains(t.as_str()), "the row holds a token in the clear");
    }
    seen.push(refresh);
    // Debug of a token shows no secret.
    assert!(!format!("{third:?}").contains(third.expose()));

    // The provider refuses the refresh token: errors and their detail name no token.
    let provider_alice = user_id(&p.provider, "alice").await;
    p.provider.auth.store().revoke_user_client(&provider_alice, &p.client_id, p.provider.auth.now()).await.unwrap();
    p.ours.clock.advance(3700);
    let e = h.token(&alice).await.unwrap_err();
    let error_text = format!("{e} {e:?}");
    // Connected again, then disconnected (revoked at the provider).
    connect(&p).await;
    let again = h.token(&alice).await.unwrap();
    seen.push(again.expose().to_owned());
    assert!(p.upstreams.disconnect(&alice, "up").await.unwrap());

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.lines().count() > 100, "trace logging was captured ({} lines)", logged.lines().count());
    for secret in &seen {
        assert!(!logged.contains(secret.as_str()), "a token reached the logs");
        assert!(!error_text.contains(secret.as_str()), "a token reached an error");
        // Not even a prefix long enough to matter.
        assert!(!logged.contains(&secret[..16]), "a token prefix reached the logs");
    }
    let trail = p.ours.db_strings("SELECT COALESCE(detail, '') FROM audit_events").await.join("\n");
    for secret in &seen {
        assert!(!trail.contains(secret.as_str()), "a token reached the audit trail");
    }
}
