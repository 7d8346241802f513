//! Issue 13, who may learn or guess what: audience-scoped introspection (RV-09), the per-account
//! sign-in lock across addresses (UI-11, UI-13) and the client-secret lock (UI-14).

use reqwest::StatusCode;
use serde_json::{Value, json};

use mandate_core::scope::{ResourceDef, ScopeDef};
use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";
const RS_B: &str = "https://b.test/mcp";

/// A second resource, B, besides the demo apps (A, at `<base>/mcp`).
fn with_resource_b() -> Options {
    Options {
        extra_resources: vec![ResourceDef {
            uri: RS_B.into(),
            name: "Notes".into(),
            scopes: vec![ScopeDef {
                name: "notes.read".into(),
                description: "Read your notes".into(),
                tools: Vec::new(),
                irreversible: false,
            }],
            default_scopes: vec!["notes.read".into()],
        }],
        ..Options::default()
    }
}

/// Authorizes `client` for `resource` with `scope` and redeems the code: the token response.
async fn tokens_for(s: &TestServer, client: &str, resource: &str, scope: &str) -> Value {
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(client, CB, &challenge);
    authz.resource = Some(resource.into());
    authz.scope = Some(scope.into());
    let loc = consent_flow(&mut b, &authz, "alice", &[scope]).await;
    let code = query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"));
    let (status, tok) = redeem(s, client, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    tok
}

#[tokio::test]
async fn a_resource_server_learns_only_about_tokens_for_its_own_resource_rv_09() {
    let s = TestServer::start_with(with_resource_b()).await;
    let client = s.register_public(CB).await;
    // RS A serves the demo apps; RS B serves the notes; an operator's other confidential client
    // serves nothing.
    let (rs_a, rs_a_secret) = s.resource_server().await;
    let (rs_b, rs_b_secret) = s.preregister_serving("https://b.test/cb", true, vec![RS_B.into()]).await;
    let rs_b_secret = rs_b_secret.unwrap();
    let (other, other_secret) = s.preregister("https://other.test/cb", true).await;
    let other_secret = other_secret.unwrap();

    let for_a = tokens_for(&s, &client, &s.resource(), "customers.read").await;
    for t in ["access_token", "refresh_token"] {
        let t = for_a[t].as_str().unwrap();
        assert_eq!(s.introspect(&rs_b, &rs_b_secret, t).await, json!({"active": false}), "RS B, a token for A");
        assert_eq!(s.introspect(&other, &other_secret, t).await, json!({"active": false}), "serves nothing");
        assert_eq!(s.introspect(&rs_a, &rs_a_secret, t).await["active"], true, "RS A, its own audience");
    }
    let info = s.introspect(&rs_a, &rs_a_secret, for_a["access_token"].as_str().unwrap()).await;
    assert_eq!(info["aud"], s.resource());

    let for_b = tokens_for(&s, &client, RS_B, "notes.read").await;
    let at_b = for_b["access_token"].as_str().unwrap();
    assert_eq!(s.introspect(&rs_a, &rs_a_secret, at_b).await, json!({"active": false}), "RS A, a token for B");
    let info = s.introspect(&rs_b, &rs_b_secret, at_b).await;
    assert_eq!((info["active"].clone(), info["aud"].clone()), (json!(true), json!(RS_B)));
}

#[tokio::test]
async fn an_operator_names_only_configured_resources_and_needs_a_secret_rv_09() {
    let s = TestServer::start().await;
    let add = |resources: Vec<String>, confidential: bool| mandate_core::service::ClientRegistration {
        name: "RS".into(),
        redirect_uris: vec!["https://rs.test/cb".into()],
        confidential,
        allow_refresh: false,
        scope: None,
        resources,
    };
    let e = s.auth.add_client(add(vec!["https://elsewhere.test/mcp".into()], true)).await.unwrap_err();
    assert!(e.to_string().contains("no configured resource"), "{e}");
    let e = s.auth.add_client(add(vec![s.resource()], false)).await.unwrap_err();
    assert!(e.to_string().contains("--confidential"), "{e}");
    let (c, _) = s.auth.add_client(add(vec![s.resource(), s.resource()], true)).await.unwrap();
    assert_eq!(c.served_resources, vec![s.resource()]);
}

/// One sign-in attempt for alice from `from` (a trusted proxy names the address).
async fn sign_in_from(s: &TestServer, user: &str, password: &str, from: &str) -> Reply {
    let mut b = s.browser();
    let page = b.get("/login").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let body = format!("csrf={csrf}&username={user}&password={}", password.replace(' ', "+"));
    let origin = s.base.clone();
    b.post_raw("/login", body, &[("x-forwarded-for", from), ("origin", &origin)]).await
}

/// The page without the form's one-time CSRF value.
fn without_csrf(body: &str) -> String {
    match hidden(body, "csrf") {
        Some(v) => body.replace(&v, ""),
        None => body.to_owned(),
    }
}

#[tokio::test]
async fn guesses_spread_over_twenty_addresses_lock_the_account_for_a_while_ui_11_ui_13() {
    let s = TestServer::start_with(Options { trust_forwarded_for: true, ..Options::default() }).await;
    // Nine wrong passwords from nine addresses: each address alone stays below its own lock.
    for i in 0..9 {
        let r = sign_in_from(&s, "alice", "wrong password", &format!("198.51.100.{i}")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // The tenth locks the account everywhere, for a minute.
    let r = sign_in_from(&s, "alice", "wrong password", "198.51.100.9").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "60");
    for i in 10..20 {
        let r = sign_in_from(&s, "alice", "wrong password", &format!("198.51.100.{i}")).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "attempt {i}");
    }
    // During the lock the right password, from an address never seen, is answered exactly as a
    // wrong one.
    let right = sign_in_from(&s, "alice", PASSWORD, "203.0.113.9").await;
    let wrong = sign_in_from(&s, "alice", "wrong password", "203.0.113.10").await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((right.status, &right.headers["retry-after"]), (wrong.status, &wrong.headers["retry-after"]));
    assert_eq!(without_csrf(&right.body), without_csrf(&wrong.body));
    assert!(right.headers.get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("mandate_session=")));
    // Another person is not affected.
    assert_eq!(sign_in_from(&s, "bob", PASSWORD, "198.51.100.1").await.status, StatusCode::SEE_OTHER);
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "user.login" && e.outcome == "account_locked"));

    // Temporary (UI-13): a minute later the person signs in.
    s.clock.advance(61);
    assert_eq!(sign_in_from(&s, "alice", PASSWORD, "203.0.113.9").await.status, StatusCode::SEE_OTHER);
    // The count stays for its hour: the next failure locks again, twice as long.
    let r = sign_in_from(&s, "alice", "wrong password", "198.51.100.30").await;
    assert_eq!((r.status, r.headers["retry-after"].to_str().unwrap()), (StatusCode::TOO_MANY_REQUESTS, "120"));
    s.clock.advance(121);
    assert_eq!(sign_in_from(&s, "alice", PASSWORD, "203.0.113.9").await.status, StatusCode::SEE_OTHER);
}

/// A token request authenticated with `secret` for `client` (the code is garbage: only client
/// authentication matters here).
async fn token_with_secret(s: &TestServer, client: &str, secret: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "authorization_code"), ("code", "mac_nothing"), ("redirect_uri", CB)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("www-authenticate").is_some(), r.status() == StatusCode::UNAUTHORIZED);
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn guessing_a_client_secret_locks_it_for_a_while_ui_14() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs, rs_secret) = s.resource_server().await;
    let tok = tokens_for(&s, &client, &s.resource(), "customers.read").await;
    let at = tok["access_token"].as_str().unwrap();
    let refused = json!({"error": "invalid_client", "error_description": "client authentication failed"});

    // The right secret works (the code is garbage: invalid_grant, past client authentication).
    assert_eq!(token_with_secret(&s, &rs, &rs_secret).await.1["error"], "invalid_grant");
    for i in 0..10 {
        assert_eq!(token_with_secret(&s, &rs, "mcs_wrong").await, (StatusCode::UNAUTHORIZED, refused.clone()), "{i}");
    }
    // Locked: the right secret gets the wrong secret's answer, at /token, /introspect and /revoke.
    assert_eq!(token_with_secret(&s, &rs, &rs_secret).await, (StatusCode::UNAUTHORIZED, refused.clone()));
    for path in ["/introspect", "/revoke"] {
        let r = s.http.post(s.url(path)).basic_auth(&rs, Some(&rs_secret)).form(&[("token", at)]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), refused, "{path}");
    }
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "client.auth" && e.outcome == "secret_locked"));
    assert!(events.iter().any(|e| e.kind == "client.auth" && e.outcome == "locked"));
    // Other clients are not affected; a minute later the right secret works again.
    let (other, other_secret) = s.preregister("https://other.test/cb", true).await;
    assert_eq!(token_with_secret(&s, &other, &other_secret.unwrap()).await.1["error"], "invalid_grant");
    s.clock.advance(61);
    assert_eq!(s.introspect(&rs, &rs_secret, at).await["active"], true);
}
