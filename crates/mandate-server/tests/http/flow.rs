//! The whole flow, and what a person sees and controls.

use reqwest::StatusCode;

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

#[tokio::test]
async fn full_flow_register_authorize_consent_token_refresh_revoke_introspect() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs_id, rs_secret) = s.resource_server().await;
    let mut b = s.browser();

    // The person ticks only customers.read of the two requested scopes.
    let (verifier, challenge) = pkce();
    let loc = consent_flow(&mut b, &Authz::new(&client, CB, &challenge), "alice", &["customers.read"]).await;
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(s.base.as_str()), "AS13: iss in the response");
    let code = query_param(&loc, "code").unwrap();

    let (status, headers, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &client),
            ("redirect_uri", CB),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    assert_eq!(headers["cache-control"], "no-store", "TK-01");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["scope"], "customers.read");
    let at = tok["access_token"].as_str().unwrap().to_owned();
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();

    // JW-01/JW-02: an RFC 9068 token bound to the resource (AS12, JW-03).
    let header = jsonwebtoken::decode_header(&at).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let info = s.introspect(&rs_id, &rs_secret, &at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["aud"], s.resource());
    assert_eq!(info["iss"], s.base);
    assert_eq!(info["client_id"], client);
    assert_eq!(info["scope"], "customers.read");
    assert_eq!(info["exp"], START + 3600);

    // RT-01: rotation; the new pair works, the old refresh token is spent.
    s.clock.advance(60);
    let (status, tok2) = refresh(&s, &client, &rt1).await;
    assert_eq!(status, StatusCode::OK, "{tok2}");
    let rt2 = tok2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let at2 = tok2["access_token"].as_str().unwrap().to_owned();

    // RV-01: revoking the refresh token revokes the grant, and with it the access tokens.
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("token", rt2.as_str()), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.introspect(&rs_id, &rs_secret, &rt2).await, serde_json::json!({"active": false}), "RV-08");
    assert_eq!(s.introspect(&rs_id, &rs_secret, &at2).await, serde_json::json!({"active": false}));
    assert_eq!(s.introspect(&rs_id, &rs_secret, &at).await, serde_json::json!({"active": false}));
    let (status, err) = refresh(&s, &client, &rt2).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // The audit trail holds the story.
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for k in ["client.registered", "user.login", "consent", "token.issued", "token.refreshed", "grant.revoked"] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
}

#[tokio::test]
async fn an_independent_oauth_client_completes_the_flow() {
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse, TokenUrl,
    };
    let s = TestServer::start().await;
    let client_id = s.register_public(CB).await;
    let client = oauth2::basic::BasicClient::new(ClientId::new(client_id.clone()))
        .set_auth_uri(AuthUrl::new(s.url("/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(s.url("/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("todos.read".into()))
        .add_extra_param("resource", s.resource())
        .set_pkce_challenge(challenge)
        .url();
    let mut b = s.browser();
    let page = open_consent(&mut b, auth_url.as_str(), "alice").await;
    let r = submit_consent(&mut b, &page, "allow", &["todos.read"]).await;
    let loc = r.location.unwrap();
    assert_eq!(query_param(&loc, "state").as_deref(), Some(csrf.secret().as_str()));
    let code = query_param(&loc, "code").unwrap();

    let http = s.http.clone();
    let send = move |req: oauth2::HttpRequest| {
        let http = http.clone();
        async move {
            let (parts, body) = req.into_parts();
            let resp =
                http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
            let mut out = oauth2::HttpResponse::new(resp.bytes().await?.to_vec());
            *out.status_mut() = StatusCode::OK;
            Ok::<_, reqwest::Error>(out)
        }
    };
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .add_extra_param("resource", s.resource())
        .request_async(&send)
        .await
        .unwrap();
    assert_eq!(token.scopes().unwrap()[0].as_str(), "todos.read");
    assert!(token.refresh_token().is_some());
}

#[tokio::test]
async fn consent_is_remembered_and_only_new_scopes_are_asked_for() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let mut authz = Authz::new(&client, CB, &ch);
    authz.scope = Some("customers.read".into());
    let loc = consent_flow(&mut b, &authz, "alice", &["customers.read"]).await;
    assert!(query_param(&loc, "code").is_some());

    // Same scopes again: no consent page, straight back with a code.
    let r = b.get(&authz.url()).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(query_param(r.location.as_deref().unwrap(), "code").is_some());

    // More scopes: the page asks only for the new one and lists the old one as granted.
    authz.scope = Some("customers.read invoices.send".into());
    let r = b.get(&authz.url()).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"name="scope" value="invoices.send""#));
    assert!(!page.body.contains(r#"name="scope" value="customers.read""#));
    assert!(page.body.contains("You already allowed it to"));
    assert!(page.body.contains("Send invoices to your customers"), "plain-language description");
}

#[tokio::test]
async fn consent_page_names_the_client_and_the_redirect_host_as7_ui_19() {
    let s = TestServer::start().await;
    let body = serde_json::json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none", "client_name": "<script>alert(1)</script>"});
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    let client = r.json::<serde_json::Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (_, ch) = pkce();
    let page = open_consent(&mut b, &Authz::new(&client, "http://127.0.0.1:5555/cb", &ch).url(), "alice").await;
    assert!(page.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "DC-11: escaped");
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains(r#"<span class="badge unverified">unverified</span>"#));
    assert!(page.body.contains("<bdi class=\"app\">&#60;script"), "the name is isolated");
    assert!(
        page.body.contains(r#"<strong class="host">an app on this computer (port 5555)</strong>"#),
        "SS-15: a loopback redirect reads as an app on this computer: {}",
        page.body
    );
    assert!(page.body.contains("Continue only if you just started this app"), "SS-15: a calm, specific warning");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "UI-04");
    assert!(csp.contains("form-action 'self' http://127.0.0.1:5555"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["cache-control"], "no-store", "UI-21");
}

#[tokio::test]
async fn denying_consent_redirects_access_denied_az_15() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let page = open_consent(&mut b, &Authz::new(&client, CB, &ch).url(), "alice").await;
    let r = submit_consent(&mut b, &page, "deny", &[]).await;
    let loc = r.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(s.base.as_str()));
    assert!(query_param(&loc, "code").is_none());
    // UI-02: the consent cannot be replayed.
    let r = submit_consent(&mut b, &page, "deny", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("already finished"));
    assert!(r.location.is_none());
}

#[tokio::test]
async fn connected_apps_lists_and_revokes_ca_01_ca_02_ca_04() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (rs_id, rs_secret) = s.resource_server().await;
    let mut alice = s.browser();
    let (code, verifier) = authorize_code(&s, &mut alice, &client, CB, &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let at = tok["access_token"].as_str().unwrap();
    let rt = tok["refresh_token"].as_str().unwrap();

    let page = alice.get("/account/apps").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Test agent"));
    assert!(page.body.contains("unverified"));
    assert!(page.body.contains("Create customers in your name"));
    let csrf = hidden(&page.body, "csrf").unwrap();

    // Bob cannot see or revoke Alice's app.
    let mut bob = s.browser();
    bob.login("bob", None).await;
    let bob_page = bob.get("/account/apps").await;
    assert!(!bob_page.body.contains("Test agent"));
    let bob_csrf = hidden(&bob_page.body, "csrf").unwrap();
    let r = bob.post("/account/apps/revoke", &[("csrf", &bob_csrf), ("client_id", &client)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(s.introspect(&rs_id, &rs_secret, at).await["active"], true);

    // CA-03: no CSRF token, no revocation.
    let r = alice.post("/account/apps/revoke", &[("client_id", &client)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = alice.post("/account/apps/revoke", &[("csrf", &csrf), ("client_id", &client)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(s.introspect(&rs_id, &rs_secret, at).await["active"], false);
    let (status, err) = refresh(&s, &client, rt).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let page = alice.get("/account/apps").await;
    assert!(page.body.contains("No application can act for you"));

    // The next authorization asks for consent again (remembered consent was forgotten).
    let (_, ch) = pkce();
    let r = alice.get(&Authz::new(&client, CB, &ch).url()).await;
    assert!(r.location.unwrap().starts_with("/consent"));
}

#[tokio::test]
async fn login_failures_and_sessions_ui_03_ui_09() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let page = b.get("/login").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b.post("/login", &[("csrf", &csrf), ("username", "alice"), ("password", "wrong password")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("The username or password is wrong."));
    let page = b.get("/login").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b.post("/login", &[("csrf", &csrf), ("username", "nobody"), ("password", "wrong password")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "UI-15: same answer for unknown users");
    // UI-03: no CSRF token, or a cross-site origin, is refused before the password is checked.
    let r = b.post("/login", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post_raw("/login", format!("csrf={csrf}&username=alice&password=x"), &[("origin", "https://evil.test")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // UI-09: a planted session id is never authenticated; login issues a fresh one.
    b.cookies.insert("mandate_session".into(), "mss_planted".into());
    let r = b.login("alice", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_ne!(b.cookies["mandate_session"], "mss_planted");
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mandate_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "UI-08: {cookie}"
    );
    // Sign out: the cookie no longer works.
    let page = b.get("/account/apps").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let old = b.cookies["mandate_session"].clone();
    b.post("/logout", &[("csrf", &csrf)]).await;
    b.cookies.insert("mandate_session".into(), old);
    assert_eq!(b.get("/account/apps").await.location.as_deref(), Some("/login"), "UI-10");
}

#[tokio::test]
async fn deny_is_always_access_denied_even_with_earlier_consent_az_15() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let mut authz = Authz::new(&client, CB, &ch);
    authz.scope = Some("customers.read".into());
    consent_flow(&mut b, &authz, "alice", &["customers.read"]).await;
    authz.scope = Some("customers.read invoices.send".into());
    let r = b.get(&authz.url()).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    let r = submit_consent(&mut b, &page, "deny", &[]).await;
    let loc = r.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert!(query_param(&loc, "code").is_none());
}

#[tokio::test]
async fn self_registered_clients_learn_nothing_about_other_tokens_rv_09() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let (snoop, snoop_secret) = s.register_confidential("https://snoop.test/cb").await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    for t in [tok["access_token"].as_str().unwrap(), tok["refresh_token"].as_str().unwrap()] {
        assert_eq!(s.introspect(&snoop, &snoop_secret, t).await, serde_json::json!({"active": false}));
    }
    let (rs, rs_secret) = s.resource_server().await;
    assert_eq!(s.introspect(&rs, &rs_secret, tok["access_token"].as_str().unwrap()).await["active"], true);
}

#[tokio::test]
async fn an_account_is_locked_after_repeated_failures_ui_11() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let attempt = |password: &'static str, user: &'static str| {
        let mut b2 = s.browser();
        async move {
            let page = b2.get("/login").await;
            let csrf = hidden(&page.body, "csrf").unwrap();
            b2.post("/login", &[("csrf", &csrf), ("username", user), ("password", password)]).await
        }
    };
    for _ in 0..4 {
        assert_eq!(attempt("wrong password", "alice").await.status, StatusCode::UNAUTHORIZED);
    }
    let r = attempt("wrong password", "alice").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "60");
    // While locked, the right password gets the same answer as a wrong one.
    let r = attempt(PASSWORD, "alice").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("Too many failed sign-ins"));
    // Unknown accounts lock the same way, so the lock says nothing about who exists.
    for _ in 0..5 {
        attempt("wrong password", "nobody").await;
    }
    assert_eq!(attempt("wrong password", "nobody").await.status, StatusCode::TOO_MANY_REQUESTS);
    // Bob is not affected; after a minute Alice can sign in, which clears her count.
    assert_eq!(b.login("bob", None).await.status, StatusCode::SEE_OTHER);
    s.clock.advance(61);
    assert_eq!(attempt(PASSWORD, "alice").await.status, StatusCode::SEE_OTHER);
    assert_eq!(attempt("wrong password", "alice").await.status, StatusCode::UNAUTHORIZED);
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "user.login" && e.outcome == "locked"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_lock_is_per_client_address_ui_13() {
    let s = TestServer::start_with(Options { trust_forwarded_for: true, ..Options::default() }).await;
    let attempt = |password: &'static str, from: &'static str| {
        let mut b = s.browser();
        let origin = s.base.clone();
        async move {
            let page = b.get("/login").await;
            let csrf = hidden(&page.body, "csrf").unwrap();
            let body = format!("csrf={csrf}&username=alice&password={}", password.replace(' ', "+"));
            b.post_raw("/login", body, &[("x-forwarded-for", from), ("origin", &origin)]).await
        }
    };
    for _ in 0..5 {
        attempt("wrong password", "198.51.100.7").await;
    }
    assert_eq!(
        attempt(PASSWORD, "198.51.100.7").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's address is locked"
    );
    assert_eq!(attempt(PASSWORD, "203.0.113.9").await.status, StatusCode::SEE_OTHER, "Alice, elsewhere, is not");
}

#[tokio::test]
async fn irreversible_scopes_are_left_unticked() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let mut authz = Authz::new(&client, CB, &ch);
    authz.scope = Some("customers.read invoices.send".into());
    let page = open_consent(&mut b, &authz.url(), "alice").await;
    assert!(page.body.contains(r#"value="customers.read" checked"#), "ordinary scopes are pre-ticked");
    assert!(page.body.contains(r#"value="invoices.send">"#), "invoices.send is not: {}", page.body);
    assert!(page.body.contains("Cannot be undone"));
}
