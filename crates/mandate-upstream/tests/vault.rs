//! The vault against a real OAuth provider: another mandate (its own database, the same manual
//! clock), with a confidential client registered for us. A person connects their account there;
//! tokens are refreshed before expiry, once per expiry however many calls arrive, on one
//! instance and across two sharing the database; a refresh token revoked at the provider asks
//! the person to connect again; disconnecting revokes at the provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mandate_core::model::FlowPurpose;
use mandate_testkit::{START, query_param};
use mandate_upstream::{Callback, NotConnected, UpstreamError};

#[tokio::test]
async fn a_connected_account_is_refreshed_once_per_expiry_whatever_the_load() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let h = handle(&p.upstreams);
    let first = h.token(&alice).await.unwrap();
    assert!(works_upstream(&p, first.expose()).await);
    assert_eq!(first.expires_at, Some(START + 3600));
    assert_eq!(refreshes_at_provider(&p).await, 0);

    // Stored sealed: the ciphertext holds neither token.
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed_tokens FROM upstream_accounts").fetch_one(p.ours.store.pool()).await.unwrap();
    let hay = String::from_utf8_lossy(&sealed);
    assert!(!hay.contains(first.expose()) && !sealed.windows(16).any(|w| first.expose().as_bytes().starts_with(w)));

    // Not yet due: the same token, no refresh.
    p.ours.clock.advance(3000);
    assert_eq!(h.token(&alice).await.unwrap(), first);

    // Due (within the last quarter minute... of the hour: 60 s): 50 calls at once, one refresh.
    p.ours.clock.advance(560);
    let calls = (0..50).map(|_| {
        let h = h.clone();
        let alice = alice.clone();
        tokio::spawn(async move { h.token(&alice).await.unwrap() })
    });
    let got: Vec<_> = futures_join(calls).await;
    assert_eq!(refreshes_at_provider(&p).await, 1, "one refresh for 50 calls");
    assert!(got.iter().all(|t| *t == got[0]), "every call got the refreshed token");
    assert_ne!(got[0], first);
    assert!(works_upstream(&p, got[0].expose()).await);

    // Past the old token's expiry: the new one keeps working; the old one does not.
    p.ours.clock.advance(100);
    assert!(!works_upstream(&p, first.expose()).await);
    assert_eq!(h.token(&alice).await.unwrap(), got[0]);
    assert!(works_upstream(&p, got[0].expose()).await);
}

#[tokio::test]
async fn two_instances_refresh_once_between_them() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let other = second_instance(&p).await;
    let (a, b) = (handle(&p.upstreams), handle(&other));
    let first = a.token(&alice).await.unwrap();
    p.ours.clock.advance(3600 + 1);
    let calls = (0..50).map(|i| {
        let h = if i % 2 == 0 { a.clone() } else { b.clone() };
        let alice = alice.clone();
        tokio::spawn(async move { h.token(&alice).await.unwrap() })
    });
    let got: Vec<_> = futures_join(calls).await;
    assert_eq!(refreshes_at_provider(&p).await, 1, "one refresh across both instances");
    assert!(got.iter().all(|t| *t == got[0] && *t != first));
    assert!(works_upstream(&p, got[0].expose()).await);
}

#[tokio::test]
async fn a_token_the_upstream_rejects_is_refreshed_once() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let h = handle(&p.upstreams);
    let first = h.token(&alice).await.unwrap();
    let calls = (0..20).map(|_| {
        let (h, alice, first) = (h.clone(), alice.clone(), first.clone());
        tokio::spawn(async move { h.rejected(&alice, &first).await.unwrap() })
    });
    let got: Vec<_> = futures_join(calls).await;
    assert_eq!(refreshes_at_provider(&p).await, 1);
    assert!(got.iter().all(|t| *t == got[0] && *t != first));
}

#[tokio::test]
async fn a_refresh_token_revoked_at_the_provider_asks_the_person_to_connect_again() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let h = handle(&p.upstreams);
    h.token(&alice).await.unwrap();
    // The person revokes our access at the provider.
    let provider_alice = user_id(&p.provider, "alice").await;
    let revoked =
        p.provider.auth.store().revoke_user_client(&provider_alice, &p.client_id, p.provider.auth.now()).await.unwrap();
    assert_eq!(revoked, 1);
    p.ours.clock.advance(3600);
    let e = h.token(&alice).await.unwrap_err();
    assert!(matches!(e, UpstreamError::NotConnected { why: NotConnected::Refused, .. }), "{e:?}");
    assert_eq!(h.connect_url(), format!("{}/account/connections/up", p.ours.base));
    // Asked again: still not connected, and no second refresh attempt.
    let e = h.token(&alice).await.unwrap_err();
    assert!(matches!(e, UpstreamError::NotConnected { why: NotConnected::Refused, .. }), "{e:?}");
    let failures = p
        .ours
        .db_strings("SELECT detail FROM audit_events WHERE kind = 'upstream.refresh' AND outcome = 'failure'")
        .await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("connect again"), "{failures:?}");
    // Connecting again works.
    connect(&p).await;
    assert!(works_upstream(&p, h.token(&alice).await.unwrap().expose()).await);
}

#[tokio::test]
async fn disconnecting_revokes_at_the_provider_and_forgets_the_tokens() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let h = handle(&p.upstreams);
    let token = h.token(&alice).await.unwrap();
    assert!(works_upstream(&p, token.expose()).await);
    assert!(p.upstreams.disconnect(&alice, "up").await.unwrap());
    // Observed at the provider: the grant is revoked, the access token refused.
    assert_eq!(
        p.provider.db_count("SELECT COUNT(*) FROM grants WHERE revoked_at IS NULL AND activated_at IS NOT NULL").await,
        0
    );
    assert!(!works_upstream(&p, token.expose()).await);
    assert_eq!(p.ours.db_count("SELECT COUNT(*) FROM upstream_accounts").await, 0);
    let e = h.token(&alice).await.unwrap_err();
    assert!(matches!(e, UpstreamError::NotConnected { why: NotConnected::Never, .. }), "{e:?}");
    let trail = p.ours.db_strings("SELECT kind FROM audit_events WHERE kind LIKE 'upstream.%' ORDER BY at, id").await;
    assert!(
        trail.contains(&"upstream.connect".to_owned()) && trail.contains(&"upstream.disconnect".to_owned()),
        "{trail:?}"
    );
    // Disconnecting again: nothing there.
    assert!(!p.upstreams.disconnect(&alice, "up").await.unwrap());
}

#[tokio::test]
async fn an_answer_is_taken_once_from_the_browser_that_left_with_the_provider_named() {
    let p = pair().await;
    let alice = p.ours.auth.store().user_by_name("alice").await.unwrap().unwrap();
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let state = query_param(&started.url, "state").unwrap();
    // Another browser: refused (and the request is spent).
    let answer = Callback { state: Some(&state), code: Some("x"), error: None, iss: Some(&p.provider.base) };
    let e = p.upstreams.finish("up", &answer, Some("another-browser"), Some(&alice.id)).await.err().unwrap();
    assert!(matches!(e, UpstreamError::UnknownFlow), "{e:?}");
    let e = p.upstreams.finish("up", &answer, Some(&started.browser), Some(&alice.id)).await.err().unwrap();
    assert!(matches!(e, UpstreamError::UnknownFlow), "{e:?}");
    // RFC 9207: an answer naming another issuer (a mix-up) is refused.
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let state = query_param(&started.url, "state").unwrap();
    let answer = Callback { state: Some(&state), code: Some("x"), error: None, iss: Some("https://evil.example") };
    let e = p.upstreams.finish("up", &answer, Some(&started.browser), Some(&alice.id)).await.err().unwrap();
    assert!(matches!(e, UpstreamError::WrongIssuer), "{e:?}");
    // mandate says it sends `iss`: an answer without one is refused too.
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let state = query_param(&started.url, "state").unwrap();
    let answer = Callback { state: Some(&state), code: Some("x"), error: None, iss: None };
    let e = p.upstreams.finish("up", &answer, Some(&started.browser), Some(&alice.id)).await.err().unwrap();
    assert!(matches!(e, UpstreamError::WrongIssuer), "{e:?}");
    // The person said no: the provider's error, no exchange.
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let state = query_param(&started.url, "state").unwrap();
    let answer =
        Callback { state: Some(&state), code: None, error: Some("access_denied"), iss: Some(&p.provider.base) };
    let e = p.upstreams.finish("up", &answer, Some(&started.browser), Some(&alice.id)).await.err().unwrap();
    assert!(matches!(&e, UpstreamError::Denied(c) if c == "access_denied"), "{e:?}");
    // Answered where alice is no longer signed in: refused before the code is redeemed.
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let state = query_param(&started.url, "state").unwrap();
    let answer = Callback { state: Some(&state), code: Some("x"), error: None, iss: Some(&p.provider.base) };
    let e = p.upstreams.finish("up", &answer, Some(&started.browser), None).await.err().unwrap();
    assert!(matches!(e, UpstreamError::SignedOut), "{e:?}");
    // An expired request.
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let state = query_param(&started.url, "state").unwrap();
    p.ours.clock.advance(601);
    let answer = Callback { state: Some(&state), code: Some("x"), error: None, iss: Some(&p.provider.base) };
    let e = p.upstreams.finish("up", &answer, Some(&started.browser), Some(&alice.id)).await.err().unwrap();
    assert!(matches!(e, UpstreamError::UnknownFlow), "{e:?}");
}

async fn futures_join<T: Send + 'static>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_refresh_begun_before_a_reconnection_cannot_land_on_it() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let store = p.ours.auth.store();
    let first = store.upstream_account(&alice, "up").await.unwrap().unwrap();
    // Disconnected and connected again while a refresh over the first connection is in flight.
    assert!(p.upstreams.disconnect(&alice, "up").await.unwrap());
    connect(&p).await;
    let second = store.upstream_account(&alice, "up").await.unwrap().unwrap();
    assert_ne!(first.version, second.version, "a new connection never reuses a version");
    let now = p.ours.auth.now();
    assert!(!store.finish_upstream_refresh(&alice, "up", first.version, b"stale", None, None, now).await.unwrap());
    store.abandon_upstream_refresh(&alice, "up", first.version, true).await.unwrap();
    let after = store.upstream_account(&alice, "up").await.unwrap().unwrap();
    assert!(after.connected && after.sealed_tokens == second.sealed_tokens, "the new connection is untouched");
    assert!(works_upstream(&p, handle(&p.upstreams).token(&alice).await.unwrap().expose()).await);
    // A refresh over the current version lands, and the scope the provider names replaces the
    // stored one (an answer without scope keeps it).
    let current = store.upstream_account(&alice, "up").await.unwrap().unwrap();
    let sealed = current.sealed_tokens.clone();
    assert!(
        store
            .finish_upstream_refresh(
                &alice,
                "up",
                current.version,
                &sealed,
                None,
                Some("customers.read invoices.read"),
                now
            )
            .await
            .unwrap()
    );
    let after = store.upstream_account(&alice, "up").await.unwrap().unwrap();
    assert_eq!(after.scope.as_deref(), Some("customers.read invoices.read"));
    assert_eq!(after.version, current.version + 1);
    assert!(store.finish_upstream_refresh(&alice, "up", after.version, &sealed, None, None, now).await.unwrap());
    let kept = store.upstream_account(&alice, "up").await.unwrap().unwrap();
    assert_eq!(kept.scope.as_deref(), Some("customers.read invoices.read"));
}
