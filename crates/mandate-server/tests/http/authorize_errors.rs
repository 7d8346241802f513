//! Bad authorization requests: each with its exact status and error.

use reqwest::StatusCode;

use mandate_testkit::*;

pub(crate) const CB: &str = "https://agent.test/callback";

/// A signed-in browser and a client an operator registered (verified, so errors redirect).
pub(crate) async fn signed_in() -> (TestServer, Browser, String) {
    let s = TestServer::start().await;
    let (client, _) = s.preregister(CB, false).await;
    let mut b = s.browser();
    assert_eq!(b.login("alice", None).await.status, StatusCode::SEE_OTHER);
    (s, b, client)
}

/// The error redirect for `authz`: asserts it goes to the client with `state` and `iss`.
async fn error_redirect(s: &TestServer, b: &mut Browser, authz: &Authz) -> String {
    let r = b.get(&authz.url()).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let loc = r.location.unwrap();
    assert!(loc.starts_with(CB), "{loc}");
    assert!(query_param(&loc, "code").is_none());
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(s.base.as_str()), "AZ-14");
    query_param(&loc, "error").unwrap()
}

#[tokio::test]
async fn plain_pkce_is_refused_pk_03() {
    let (s, mut b, client) = signed_in().await;
    let url = Authz::new(&client, CB, &"a".repeat(43))
        .url()
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let r = b.get(&url).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    assert!(query_param(&loc, "error_description").unwrap().contains("S256"));
    let _ = s;
}

#[tokio::test]
async fn missing_challenge_is_refused_pk_01() {
    let (s, mut b, client) = signed_in().await;
    let a = Authz::new(&client, CB, "");
    assert_eq!(error_redirect(&s, &mut b, &a).await, "invalid_request");
    // PK-04: a challenge without its method means plain.
    let (_, ch) = pkce();
    let url = Authz::new(&client, CB, &ch).url().replace("&code_challenge_method=S256", "");
    let loc = b.get(&url).await.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn redirect_mismatch_shows_a_page_and_never_redirects_az_01_az_08() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    for bad in [
        "https://agent.test/callback/",
        "https://agent.test/callback?x=1",
        "https://evil.test/callback",
        "https://AGENT.test/callback",
        "javascript:alert(1)",
    ] {
        let r = b.get(&Authz::new(&client, bad, &ch).url()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.location.is_none(), "{bad} must not redirect");
        assert!(r.body.contains("does not match"), "{bad}");
    }
    let _ = s;
}

#[tokio::test]
async fn unknown_or_missing_client_shows_a_page_az_05() {
    let (s, mut b, _) = signed_in().await;
    let (_, ch) = pkce();
    let r = b.get(&Authz::new("nope", CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    let r = b.get("/authorize?response_type=code").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    let _ = s;
}

#[tokio::test]
async fn errors_with_an_attacker_redirect_are_not_redirected_az_06() {
    let (s, mut b, client) = signed_in().await;
    let mut a = Authz::new(&client, "https://evil.test/cb", "");
    a.extra.push(("response_type".into(), "token".into()));
    let r = b.get(&a.url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    let _ = s;
}

#[tokio::test]
async fn unknown_resource_is_invalid_target_jw_03() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.resource = Some("https://unknown.test/mcp".into());
    assert_eq!(error_redirect(&s, &mut b, &a).await, "invalid_target");
    a.resource = Some(format!("{}#frag", s.resource()));
    assert_eq!(error_redirect(&s, &mut b, &a).await, "invalid_target");
}

#[tokio::test]
async fn unknown_scope_and_response_type_az_10_az_17() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.scope = Some("customers.read admin".into());
    assert_eq!(error_redirect(&s, &mut b, &a).await, "invalid_scope");
    let url = Authz::new(&client, CB, &ch).url().replace("response_type=code", "response_type=token");
    let loc = b.get(&url).await.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("unsupported_response_type"));
    assert!(!loc.contains("access_token"));
}

#[tokio::test]
async fn repeated_parameters_are_refused_az_11() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.extra.push(("code_challenge".into(), ch.clone()));
    assert_eq!(error_redirect(&s, &mut b, &a).await, "invalid_request");
    let mut a = Authz::new(&client, CB, &ch);
    a.extra.push(("redirect_uri".into(), "https://evil.test/cb".into()));
    let r = b.get(&a.url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
}

#[tokio::test]
async fn anonymous_visitors_of_unverified_clients_get_a_page_not_a_redirect_az_09() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let mut a = Authz::new(&client, CB, "");
    a.scope = Some("bogus".into());
    let r = b.get(&a.url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    assert!(r.body.contains("invalid_request"));
}

#[tokio::test]
async fn consent_without_csrf_token_is_refused_ui_01() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let page = open_consent(&mut b, &Authz::new(&client, CB, &ch).url(), "alice").await;
    let request = hidden(&page.body, "request").unwrap();
    let r = b.post("/consent", &[("request", &request), ("action", "allow"), ("scope", "customers.read")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.location.is_none(), "no code issued");
    let r = b.post("/consent", &[("csrf", "forged"), ("request", &request), ("action", "allow")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A correct token from a cross-site form is refused too.
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b
        .post_raw(
            "/consent",
            format!("csrf={csrf}&request={request}&action=allow"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The request is still usable by the person themselves.
    let r = b
        .post("/consent", &[("csrf", &csrf), ("request", &request), ("action", "allow"), ("scope", "customers.read")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(query_param(&r.location.unwrap(), "code").is_some());
}

#[tokio::test]
async fn pending_requests_belong_to_one_person_and_expire() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut alice = s.browser();
    let (_, ch) = pkce();
    let r = alice.get(&Authz::new(&client, CB, &ch).url()).await;
    let req = r.location.unwrap().trim_start_matches("/login?request=").to_owned();
    alice.login("alice", Some(&req)).await;
    let mut bob = s.browser();
    bob.login("bob", None).await;
    let r = bob.get(&format!("/consent?request={req}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("This sign-in link belongs to someone else"), "{}", r.body);
    s.clock.advance(601);
    let r = alice.get(&format!("/consent?request={req}")).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(r.body.contains("This sign-in link has expired"), "{}", r.body);
    assert!(r.body.contains("connect again"), "a next step: {}", r.body);
    let r = alice.get("/consent?request=no-such-request").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("This sign-in link is not valid"));
}

#[tokio::test]
async fn unverified_clients_get_a_page_with_a_way_back_not_a_redirect() {
    // RFC 9700 §4.11.2: even for a signed-in person, an error is not sent automatically to a
    // redirect URI nobody vouched for; the person may follow a link back.
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let r = b.get(&Authz::new(&client, CB, "").url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    assert!(r.body.contains("not sent back automatically"));
    let href =
        r.body.split("class=\"return\" href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&#38;", "&");
    assert!(href.starts_with(CB), "{href}");
    assert_eq!(query_param(&href, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&href, "iss").as_deref(), Some(s.base.as_str()));
}

#[tokio::test]
async fn offline_access_alone_means_the_baseline_scopes() {
    // Claude sends scope=offline_access (or "+offline_access"); refresh follows grant_types.
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.scope = Some(" offline_access".into());
    let r = b.get(&a.url()).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for baseline in ["customers.read", "invoices.read", "todos.read"] {
        assert!(page.body.contains(&format!(r#"name="scope" value="{baseline}""#)), "{baseline}");
    }
    assert!(!page.body.contains("offline_access"));
    let _ = s;
}

#[tokio::test]
async fn control_characters_are_invalid_requests_fz_03() {
    let (s, mut b, client) = signed_in().await;
    let r = b.get("/authorize?client_id=a%00b&response_type=code").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("control characters"));
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.state = "a\u{0}b".into();
    let loc = b.get(&a.url()).await.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    let (st, _, v) = s.token(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", "a\u{0}")]).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
}
