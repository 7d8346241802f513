//! Bad token, refresh, revocation and introspection requests: exact status and error.

use reqwest::StatusCode;
use serde_json::json;

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

async fn issued() -> (TestServer, String, serde_json::Value) {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (status, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    (s, client, tok)
}

fn err(status: StatusCode, v: &serde_json::Value) -> (StatusCode, &str) {
    (status, v["error"].as_str().unwrap_or("<none>"))
}

#[tokio::test]
async fn wrong_verifier_fails_and_consumes_the_code_pk_08() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let wrong = "w".repeat(43);
    let (st, v) = redeem(&s, &client, CB, &code, &wrong).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, v) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "the code is spent");
}

#[tokio::test]
async fn missing_verifier_and_challenge_as_verifier_pk_07_pk_11() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, _) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (st, _, v) = s
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", &client), ("redirect_uri", CB)])
        .await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn code_replay_is_refused_and_revokes_what_it_issued_ac_01_ac_02() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs, rs_secret) = s.resource_server().await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let at = tok["access_token"].as_str().unwrap();
    assert_eq!(s.introspect(&rs, &rs_secret, at).await, json!({"active": false}));
    let (st, v) = refresh(&s, &client, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "code.replay_detected"));
}

#[tokio::test]
async fn a_garbled_replay_does_not_revoke_ac_03() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let (st, v) = redeem(&s, &client, CB, &code, &"x".repeat(43)).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, _) = refresh(&s, &client, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "the legitimate tokens survive");
}

#[tokio::test]
async fn expired_code_is_refused_ac_07() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    s.clock.advance(61);
    let (st, v) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert!(v["error_description"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn code_is_bound_to_client_redirect_and_resource_ac_05_ac_06() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let other = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (st, v) = redeem(&s, &other, CB, &code, &verifier).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, _, v) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &client),
            ("redirect_uri", CB),
            ("resource", "https://unknown.test/mcp"),
        ])
        .await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_target"));

    // Both scopes: the first consent gave only customers.read, so this asks for customers.write.
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.write"]).await;
    let (st, v) = redeem(&s, &client, "https://agent.test/other", &code, &verifier).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn refresh_reuse_after_the_grace_window_revokes_the_family_rt_02() {
    let (s, client, tok) = issued().await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let (st, tok2) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK);
    let rt2 = tok2["refresh_token"].as_str().unwrap().to_owned();
    s.clock.advance(11);
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, v) = refresh(&s, &client, &rt2).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "the whole family is revoked");
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    let reuse = events.iter().find(|e| e.kind == "token.reuse_detected").unwrap();
    assert_eq!(reuse.outcome, "grant_revoked");
    assert_eq!(reuse.client_id.as_deref(), Some(client.as_str()));
}

#[tokio::test]
async fn a_lost_refresh_response_is_retried_and_gets_the_same_successor_rt_07() {
    let (s, client, tok) = issued().await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let (st, tok2) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK);
    let rt2 = tok2["refresh_token"].as_str().unwrap().to_owned();
    s.clock.advance(5);
    // The response carrying rt2 was lost; the client retries rt1 inside the window.
    let (st, retry) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK, "{retry}");
    assert_eq!(retry["refresh_token"], rt2.as_str(), "the same successor, not a new one");
    assert_ne!(retry["access_token"], tok2["access_token"], "a fresh access token");
    let (rs, rs_secret) = s.resource_server().await;
    assert_eq!(s.introspect(&rs, &rs_secret, retry["access_token"].as_str().unwrap()).await["active"], true);
    let (st, tok3) = refresh(&s, &client, &rt2).await;
    assert_eq!(st, StatusCode::OK, "the family lives on: {tok3}");
    // Once the successor is used, rt1 leads nowhere: presenting it is reuse.
    let (st, v) = refresh(&s, &client, &rt1).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, v) = refresh(&s, &client, tok3["refresh_token"].as_str().unwrap()).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "the whole family is revoked");
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "token.refreshed"
        && e.detail.as_deref() == Some("retry inside the grace window: the same successor was returned")));
    assert!(events.iter().any(|e| e.kind == "token.reuse_detected"));
}

#[tokio::test]
async fn refresh_expires_when_idle_and_scope_cannot_grow_rt_10_rt_12() {
    let (s, client, tok) = issued().await;
    let rt = tok["refresh_token"].as_str().unwrap();
    let (st, _, v) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &client),
            ("scope", "customers.read invoices.send"),
        ])
        .await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_scope"));
    s.clock.advance(30 * 24 * 3600 + 1);
    let (st, v) = refresh(&s, &client, rt).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn refresh_token_bound_to_its_client_rt_08() {
    let (s, client, tok) = issued().await;
    let other = s.register_public(CB).await;
    let rt = tok["refresh_token"].as_str().unwrap();
    let (st, v) = refresh(&s, &other, rt).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, _) = refresh(&s, &client, rt).await;
    assert_eq!(st, StatusCode::OK, "another client's attempt changed nothing");
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client_401_tk_04() {
    let s = TestServer::start().await;
    let (id, secret) = s.register_confidential(CB).await;
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(&id, Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_client");
    // TK-05: no secret at all for a confidential client.
    let (st, _, v) = s.token(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", &id)]).await;
    assert_eq!(err(st, &v), (StatusCode::UNAUTHORIZED, "invalid_client"));
    // TK-07: the right secret by a method it did not register.
    let (st, _, v) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(err(st, &v), (StatusCode::UNAUTHORIZED, "invalid_client"));
    // TK-06: two methods at once.
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_secret", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The right secret by Basic authenticates (and the bogus token is then the problem).
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
    // Unknown client.
    let (st, _, v) = s.token(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", "nope")]).await;
    assert_eq!(err(st, &v), (StatusCode::UNAUTHORIZED, "invalid_client"));
}

#[tokio::test]
async fn grant_types_and_encodings_tk_02_tk_08() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    for (gt, code) in [
        ("password", "unsupported_grant_type"),
        ("client_credentials", "unsupported_grant_type"),
        ("", "invalid_request"),
    ] {
        let (st, _, v) = s.token(&[("grant_type", gt), ("client_id", &client)]).await;
        assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, code), "{gt}");
    }
    let r = s.http.get(s.url("/token")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = s.http.post(s.url("/token")).json(&json!({"grant_type": "authorization_code"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    let (st, _, v) =
        s.token(&[("grant_type", "authorization_code"), ("grant_type", "refresh_token"), ("client_id", &client)]).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_request"));
    // AC-09: a code is not a refresh token.
    let (st, _, v) =
        s.token(&[("grant_type", "refresh_token"), ("refresh_token", "mac_x"), ("client_id", &client)]).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn revocation_and_introspection_rules_rv_03_rv_04_rv_07() {
    let (s, client, tok) = issued().await;
    let (rs, rs_secret) = s.resource_server().await;
    let other = s.register_public(CB).await;
    let rt = tok["refresh_token"].as_str().unwrap();
    // RV-04: garbage is answered 200.
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("token", "garbage"), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // RV-03: another client cannot revoke it.
    let r = s.http.post(s.url("/revoke")).form(&[("token", rt), ("client_id", other.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.introspect(&rs, &rs_secret, rt).await["active"], true);
    // RV-07: introspection needs an authenticated confidential client.
    let r = s.http.post(s.url("/introspect")).form(&[("token", rt)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r =
        s.http.post(s.url("/introspect")).form(&[("token", rt), ("client_id", client.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_client");
    // RV-02 / RV-05: an access token revoked with a wrong hint is still revoked.
    let at = tok["access_token"].as_str().unwrap();
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("token", at), ("token_type_hint", "refresh_token"), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.introspect(&rs, &rs_secret, at).await, json!({"active": false}));
    // An expired access token is inactive.
    s.clock.advance(3601);
    let (_, tok2) = refresh(&s, &client, rt).await;
    s.clock.advance(3601);
    assert_eq!(s.introspect(&rs, &rs_secret, tok2["access_token"].as_str().unwrap()).await, json!({"active": false}));
}
