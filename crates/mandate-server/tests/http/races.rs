//! Revocation racing refresh, family isolation, and interleaved clients (RV-10, CA-05, RT-15,
//! TK-13): whatever order the server sees, no valid token outlives its revocation and no answer
//! carries another client's identity.

use reqwest::StatusCode;
use serde_json::Value;

use mandate_core::tokens::AccessClaims;
use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";
/// What `Authz::new` asks for: allowing both means a later request asks for nothing new.
const BOTH: &[&str] = &["customers.read", "customers.write"];

fn claims(at: &str) -> AccessClaims {
    jsonwebtoken::dangerous::insecure_decode::<AccessClaims>(at).unwrap().claims
}

/// A refresh on a connection of its own.
async fn refresh_alone(url: String, client: String, rt: String) -> (StatusCode, Value) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let r = http
        .post(url)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// After the race: the grant is revoked, no refresh token of it is live, and every access and
/// refresh token ever answered is refused.
async fn nothing_survives(s: &TestServer, rs: (&str, &str), client: &str, grant: &str, tokens: &[Value]) {
    for t in tokens {
        if let Some(at) = t["access_token"].as_str() {
            assert_eq!(s.introspect(rs.0, rs.1, at).await, serde_json::json!({"active": false}), "{t}");
        }
        if let Some(rt) = t["refresh_token"].as_str() {
            let (st, v) = refresh(s, client, rt).await;
            assert_eq!((st, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{v}");
        }
    }
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens WHERE grant_id = $1 AND rotated_at IS NULL AND revoked_at IS NULL \
         AND EXISTS (SELECT 1 FROM grants WHERE id = $1 AND revoked_at IS NULL)",
    )
    .bind(grant)
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    assert_eq!(live, 0, "grant {grant} still has a usable refresh token");
}

#[tokio::test]
async fn revocation_racing_a_refresh_leaves_no_valid_token_rv_10() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs, rs_secret) = s.resource_server().await;
    let mut b = s.browser();
    for round in 0..100 {
        let (code, verifier) = authorize_code(&s, &mut b, &client, CB, BOTH).await;
        let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
        assert_eq!(st, StatusCode::OK, "round {round}: {tok}");
        let rt = tok["refresh_token"].as_str().unwrap().to_owned();
        let grant = claims(tok["access_token"].as_str().unwrap()).grant_id;
        let refreshing = tokio::spawn(refresh_alone(s.url("/token"), client.clone(), rt.clone()));
        let (url, c, r) = (s.url("/revoke"), client.clone(), rt.clone());
        let revoking = tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            http.post(url).form(&[("token", r.as_str()), ("client_id", c.as_str())]).send().await.unwrap().status()
        });
        let (refreshed, revoked) = (refreshing.await.unwrap(), revoking.await.unwrap());
        assert_eq!(revoked, StatusCode::OK, "round {round}");
        assert!(
            refreshed.0 == StatusCode::OK || refreshed.0 == StatusCode::BAD_REQUEST,
            "round {round}: {refreshed:?}"
        );
        nothing_survives(&s, (&rs, &rs_secret), &client, &grant, &[tok, refreshed.1]).await;
    }
}

#[tokio::test]
async fn revoking_on_the_connected_apps_page_during_parallel_refreshes_ca_05() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs, rs_secret) = s.resource_server().await;
    let mut b = s.browser();
    for round in 0..50 {
        let (code, verifier) = authorize_code(&s, &mut b, &client, CB, BOTH).await;
        let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
        let rt = tok["refresh_token"].as_str().unwrap().to_owned();
        let grant = claims(tok["access_token"].as_str().unwrap()).grant_id;
        let page = b.get("/account/apps").await;
        let csrf = hidden(&page.body, "csrf").unwrap();
        let refreshes: Vec<_> =
            (0..20).map(|_| tokio::spawn(refresh_alone(s.url("/token"), client.clone(), rt.clone()))).collect();
        let r = b.post("/account/apps/revoke", &[("csrf", &csrf), ("client_id", &client)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "round {round}");
        let mut answered = vec![tok];
        for h in refreshes {
            let (st, v) = h.await.unwrap();
            assert!(st == StatusCode::OK || st == StatusCode::BAD_REQUEST, "round {round}: {st} {v}");
            answered.push(v);
        }
        nothing_survives(&s, (&rs, &rs_secret), &client, &grant, &answered).await;
    }
}

#[tokio::test]
async fn reuse_in_one_family_leaves_the_persons_other_grant_alone_rt_15() {
    // Outside any grace window, so presenting a rotated token is reuse at once.
    let s = TestServer::start_with(Options { refresh_grace: 0, ..Options::default() }).await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, BOTH).await;
    let (_, first) = redeem(&s, &client, CB, &code, &verifier).await;
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, BOTH).await;
    let (_, second) = redeem(&s, &client, CB, &code, &verifier).await;
    let (g1, g2) = (
        claims(first["access_token"].as_str().unwrap()).grant_id,
        claims(second["access_token"].as_str().unwrap()).grant_id,
    );
    assert_ne!(g1, g2, "each authorization is a family of its own");
    let rt1 = first["refresh_token"].as_str().unwrap();
    let (st, next) = refresh(&s, &client, rt1).await;
    assert_eq!(st, StatusCode::OK);
    s.clock.advance(5);
    let (st, v) = refresh(&s, &client, rt1).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "reuse");
    let (st, _) = refresh(&s, &client, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the reused family F1 is revoked");
    let (st, v) = refresh(&s, &client, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "F2 is unaffected (docs/SECURITY.md): {v}");
}

#[tokio::test]
async fn interleaved_token_requests_of_two_clients_never_cross_tk_13() {
    let s = TestServer::start().await;
    let public = s.register_public(CB).await;
    let (confidential, secret) = s.register_confidential(CB).await;
    let mut b = s.browser();
    // One refresh token per client, then 200 interleaved refreshes (100 each), each rotating its
    // own chain; every answer must name its requester.
    let (code, verifier) = authorize_code(&s, &mut b, &public, CB, &["customers.read"]).await;
    let (_, p) = redeem(&s, &public, CB, &code, &verifier).await;
    let (verifier2, challenge) = pkce();
    let loc = consent_flow(&mut b, &Authz::new(&confidential, CB, &challenge), "alice", &["customers.read"]).await;
    let code = query_param(&loc, "code").unwrap();
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(&confidential, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier2),
            ("redirect_uri", CB),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    let mut rts = [p["refresh_token"].as_str().unwrap().to_owned(), c["refresh_token"].as_str().unwrap().to_owned()];
    for _ in 0..100 {
        let pub_task = tokio::spawn(refresh_alone(s.url("/token"), public.clone(), rts[0].clone()));
        let (url, id, sec, rt) = (s.url("/token"), confidential.clone(), secret.clone(), rts[1].clone());
        let conf_task = tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let r = http
                .post(url)
                .basic_auth(&id, Some(&sec))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        });
        let (pp, cc) = (pub_task.await.unwrap(), conf_task.await.unwrap());
        for (i, ((st, v), who)) in [(pp, &public), (cc, &confidential)].into_iter().enumerate() {
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(&claims(v["access_token"].as_str().unwrap()).client_id, who);
            rts[i] = v["refresh_token"].as_str().unwrap().to_owned();
        }
    }
}
