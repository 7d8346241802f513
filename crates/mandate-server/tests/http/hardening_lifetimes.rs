//! Issue 13, what is remembered and for how long: consent per exact redirect URI for unverified
//! clients (UI-20), the refresh family's absolute lifetime (RT-12), constant PKCE challenges
//! (PK-12), and the global bound on dynamic registrations with their collection (DC-10).

use reqwest::StatusCode;
use serde_json::{Value, json};

use mandate_testkit::*;

const DAY: i64 = 24 * 3600;

/// Registers a public client with several redirect URIs through RFC 7591.
async fn register_with(
    s: &TestServer,
    redirect_uris: &[&str],
    from: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let body = json!({
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "Loopback agent",
    });
    let r = s.http.post(s.url("/register")).header("x-forwarded-for", from).json(&body).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// GET /authorize for a signed-in browser: (status, Location).
async fn authorize(b: &mut Browser, client: &str, redirect_uri: &str) -> (StatusCode, String) {
    let (_, challenge) = pkce();
    let r = b.get(&Authz::new(client, redirect_uri, &challenge).url()).await;
    (r.status, r.location.unwrap_or_default())
}

/// Allows everything on the consent page at `location`; returns the final redirect.
async fn allow_all(b: &mut Browser, location: &str) -> String {
    let page = b.get(location).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let r = submit_consent(b, &page, "allow", &["customers.read", "customers.write"]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    r.location.unwrap()
}

#[tokio::test]
async fn consent_for_an_unverified_client_is_remembered_per_exact_redirect_uri_ui_20() {
    let s = TestServer::start().await;
    let (status, _, reg) = register_with(&s, &["http://127.0.0.1/cb", "http://127.0.0.1/other"], "127.0.0.1").await;
    assert_eq!(status, StatusCode::CREATED);
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    assert_eq!(b.login("alice", None).await.status, StatusCode::SEE_OTHER);

    // First request: the consent page.
    let (status, loc) = authorize(&mut b, &client, "http://127.0.0.1:5000/cb").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(loc.starts_with("/consent?request="), "{loc}");
    assert!(allow_all(&mut b, &loc).await.starts_with("http://127.0.0.1:5000/cb?code="));
    // The same redirect URI and scopes again: straight back with a code.
    let (status, loc) = authorize(&mut b, &client, "http://127.0.0.1:5000/cb").await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(loc.starts_with("http://127.0.0.1:5000/cb?code="), "{loc}");
    // Another loopback port, or another path on the same host: asked again.
    for other in ["http://127.0.0.1:5001/cb", "http://127.0.0.1:5000/other"] {
        let (status, loc) = authorize(&mut b, &client, other).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{other}");
        assert!(loc.starts_with("/consent?request="), "{other}: {loc}");
    }
    let (_, loc) = authorize(&mut b, &client, "http://127.0.0.1:5001/cb").await;
    let page = b.get(&loc).await;
    assert!(page.body.contains("customers.read"), "every scope is asked for again: {}", page.body);

    // A client an operator registered keeps consent per redirect host (any loopback port).
    let (verified, _) = s.preregister("http://127.0.0.1/cb", false).await;
    let (_, loc) = authorize(&mut b, &verified, "http://127.0.0.1:5000/cb").await;
    assert!(allow_all(&mut b, &loc).await.starts_with("http://127.0.0.1:5000/cb?code="));
    let (status, loc) = authorize(&mut b, &verified, "http://127.0.0.1:5001/cb").await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(loc.starts_with("http://127.0.0.1:5001/cb?code="), "{loc}");
}

const CB: &str = "https://agent.test/callback";

#[tokio::test]
async fn a_refresh_family_ends_at_its_absolute_lifetime_however_often_refreshed_rt_12() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs, rs_secret) = s.resource_server().await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (status, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK);
    let mut rt = tok["refresh_token"].as_str().unwrap().to_owned();
    // (a) Refreshed well within the 30-day idle timeout, up to just before 90 days.
    for _ in 0..4 {
        s.clock.advance(22 * DAY);
        let (status, next) = refresh(&s, &client, &rt).await;
        assert_eq!(status, StatusCode::OK, "{next}");
        rt = next["refresh_token"].as_str().unwrap().to_owned();
    }
    s.clock.advance(DAY + DAY / 2); // 89.5 days
    let (status, next) = refresh(&s, &client, &rt).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    rt = next["refresh_token"].as_str().unwrap().to_owned();
    // The last token expires with the family, not 30 days later.
    assert_eq!(s.introspect(&rs, &rs_secret, &rt).await["exp"], START + 90 * DAY);
    s.clock.advance(DAY / 2); // 90 days from the grant
    let (status, err) = refresh(&s, &client, &rt).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // (b) Idle timeout: a fresh family unused for 30 days expires.
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let rt = tok["refresh_token"].as_str().unwrap().to_owned();
    s.clock.advance(30 * DAY + 1);
    let (status, err) = refresh(&s, &client, &rt).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

#[tokio::test]
async fn a_challenge_sent_again_by_the_same_client_is_recorded_not_refused_pk_12() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let other = s.register_public(CB).await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let (_, constant) = pkce();
    for i in 0..20 {
        let r = b.get(&Authz::new(&client, CB, &constant).url()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "request {i} is not refused");
        assert!(r.location.unwrap().starts_with("/consent?request="));
    }
    assert_eq!(s.auth.counters().pkce_challenge_reuses.get(), 19);
    let reused = |events: &[mandate_core::model::AuditEvent]| {
        events.iter().filter(|e| e.kind == "authorize.pkce_challenge_reused").cloned().collect::<Vec<_>>()
    };
    let events = reused(&s.auth.audit_events(&Default::default()).await.unwrap());
    // Recorded at the first repeat and every 10th after, not 19 times.
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].client_id.as_deref(), Some(client.as_str()));
    assert!(events[0].detail.as_deref().unwrap().contains("in 2 authorization requests"));
    // Fresh challenges, and another client's use of the same one, are not repeats.
    b.get(&Authz::new(&client, CB, &pkce().1).url()).await;
    b.get(&Authz::new(&other, CB, &constant).url()).await;
    assert_eq!(s.auth.counters().pkce_challenge_reuses.get(), 19);
    // A day later the window has passed.
    s.clock.advance(DAY + 1);
    b.login("alice", None).await;
    b.get(&Authz::new(&client, CB, &constant).url()).await;
    assert_eq!(s.auth.counters().pkce_challenge_reuses.get(), 19);
}

fn five_per_minute(s: &mut mandate_core::Settings) {
    s.registrations_per_minute = 5;
}

fn three_unused(s: &mut mandate_core::Settings) {
    s.max_unused_clients = 3;
}

fn limits(settings: fn(&mut mandate_core::Settings)) -> Options {
    Options { trust_forwarded_for: true, settings: Some(settings), ..Options::default() }
}

#[tokio::test]
async fn registrations_from_every_address_together_are_bounded_per_minute_dc_10() {
    let s = TestServer::start_with(limits(five_per_minute)).await;
    for i in 0..5 {
        let (status, _, _) = register_with(&s, &[CB], &format!("198.51.100.{i}")).await;
        assert_eq!(status, StatusCode::CREATED, "{i}");
    }
    let (status, headers, body) = register_with(&s, &[CB], "203.0.113.1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["error"], "temporarily_unavailable");
    s.clock.advance(61);
    assert_eq!(register_with(&s, &[CB], "203.0.113.1").await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn unused_dynamic_clients_are_capped_then_collected_but_used_ones_never_dc_10() {
    let s = TestServer::start_with(limits(three_unused)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, _, body) = register_with(&s, &[CB], &format!("198.51.100.{i}")).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(body["client_id"].as_str().unwrap().to_owned());
    }
    let (status, headers, _) = register_with(&s, &[CB], "203.0.113.1").await;
    assert_eq!((status, headers["retry-after"].to_str().unwrap()), (StatusCode::TOO_MANY_REQUESTS, "60"));
    // The first client gets a code: it is used, and no longer counts against the cap.
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &ids[0], CB, &["customers.read"]).await;
    assert_eq!(redeem(&s, &ids[0], CB, &code, &verifier).await.0, StatusCode::OK);
    let (status, _, body) = register_with(&s, &[CB], "203.0.113.1").await;
    assert_eq!(status, StatusCode::CREATED);
    let late = body["client_id"].as_str().unwrap().to_owned();

    let stored = |s: &TestServer| {
        let auth = s.auth.clone();
        async move { auth.list_clients().await.unwrap().into_iter().map(|c| c.id).collect::<Vec<_>>() }
    };
    // Not yet a day old: nothing is collected.
    s.clock.advance(DAY - 1);
    s.auth.purge_expired().await.unwrap();
    assert_eq!(stored(&s).await.len(), 4);
    // A day after registration, the never-used ones go; the used one stays, even once its
    // grant is revoked and long after.
    s.clock.advance(2);
    s.auth.purge_expired().await.unwrap();
    assert_eq!(stored(&s).await, vec![ids[0].clone()]);
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "client.collected"), "{events:?}");
    for g in s.auth.list_grants().await.unwrap() {
        assert!(s.auth.revoke_grant_by_operator(&g.id).await.unwrap());
    }
    s.clock.advance(30 * DAY);
    s.auth.purge_expired().await.unwrap();
    assert_eq!(stored(&s).await, vec![ids[0].clone()]);
    // A collected client is unknown from then on.
    let (_, ch) = pkce();
    let r = s.browser().get(&Authz::new(&late, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("not registered"), "{}", r.body);
}

fn a_week_of_trail(s: &mut mandate_core::Settings) {
    s.audit_retention = 7 * DAY;
}

#[tokio::test]
async fn the_trail_is_kept_for_audit_retention_and_its_collection_is_recorded() {
    let s = TestServer::start_with(limits(a_week_of_trail)).await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    assert_eq!(redeem(&s, &client, CB, &code, &verifier).await.0, StatusCode::OK);
    let trail = |s: &TestServer| {
        let auth = s.auth.clone();
        async move { auth.audit_events(&Default::default()).await.unwrap() }
    };
    let first = trail(&s).await;
    assert!(first.iter().any(|e| e.kind == "token.issued"), "{first:?}");
    // A week less a second later, everything is kept.
    s.clock.advance(7 * DAY - 1);
    s.auth.purge_expired().await.unwrap();
    assert_eq!(trail(&s).await.len(), first.len());
    // Past the week, the events of that day go, and the collection is itself recorded.
    s.clock.advance(2);
    s.auth.purge_expired().await.unwrap();
    let after = trail(&s).await;
    assert!(after.iter().all(|e| !first.iter().any(|f| f.id == e.id)), "{after:?}");
    let collected = after.iter().find(|e| e.kind == "audit.collected").expect("the collection is recorded");
    let expected = format!("{} audit event(s) older than 7 days deleted (audit_retention)", first.len());
    assert_eq!(collected.detail.as_deref(), Some(expected.as_str()));
}
