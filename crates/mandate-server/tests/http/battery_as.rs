//! The attack battery's remaining authorization-server cases, black-box, each with its exact
//! answer: redirect URIs that confuse hosts or schemes (AZ-02, AZ-04), implicit and hybrid
//! response types (AZ-10), unknown and empty parameters (AZ-12), `state` returned byte for byte
//! (AZ-13), PKCE for confidential clients (PK-02), a code used as a refresh token or a bearer
//! token (AC-09), narrower scope on refresh (RT-10), tampered refresh tokens (RT-14), unique `jti`
//! (JW-02), hostile registration JSON (DC-09), garbage encodings (FZ-03), and the headers of every
//! page (UI-04, UI-05, UI-21).

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use mandate_testkit::*;

use super::authorize_errors::{CB, signed_in};

#[tokio::test]
async fn redirect_uris_that_confuse_the_host_get_a_page_az_02() {
    let s = TestServer::start().await;
    let (client, _) = s.preregister("https://app.test/cb", false).await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let (_, ch) = pkce();
    for bad in [
        "https://app.test.evil.test/cb",
        "https://evil.test/.app.test/cb",
        "https://app.test@evil.test/cb",
        "https://a@b@evil.test/cb",
        "https://evil.test\\@app.test/cb",
        "https://app.test%40evil.test/cb",
        "https://xn--pp-8ka.test/cb",
        "https://app.test:443@evil.test/cb",
    ] {
        let r = b.get(&Authz::new(&client, bad, &ch).url()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.location.is_none(), "{bad} must not redirect");
        assert!(!r.body.contains("evil.test/cb\""), "{bad}: not reflected as a link");
    }
}

#[tokio::test]
async fn fragments_and_script_schemes_get_a_page_never_reflected_az_04() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    for bad in [
        "https://agent.test/callback#x",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
    ] {
        let r = b.get(&Authz::new(&client, bad, &ch).url()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.location.is_none(), "{bad}");
        assert!(!r.body.contains("<script>alert(1)"), "{bad}: reflected unescaped");
        assert!(
            !r.body.contains("href=\"javascript:") && !r.body.to_lowercase().contains("href=\"javascript:"),
            "{bad}"
        );
    }
    let _ = s;
}

#[tokio::test]
async fn implicit_and_hybrid_response_types_are_refused_without_a_token_az_10() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    for rt in ["token", "code token", "id_token", "code id_token", "none"] {
        let url = Authz::new(&client, CB, &ch)
            .url()
            .replace("response_type=code", &format!("response_type={}", rt.replace(' ', "+")));
        let r = b.get(&url).await;
        assert_eq!(r.status, StatusCode::FOUND, "{rt}: {}", r.body);
        let loc = r.location.unwrap();
        assert!(loc.starts_with(CB), "{rt}: {loc}");
        assert_eq!(query_param(&loc, "error").as_deref(), Some("unsupported_response_type"), "{rt}");
        assert!(!loc.contains("access_token") && !loc.contains("id_token=") && !loc.contains('#'), "{rt}: {loc}");
        assert!(query_param(&loc, "code").is_none(), "{rt}");
    }
    // Missing: invalid_request.
    let url = Authz::new(&client, CB, &ch).url().replace("response_type=code&", "");
    let loc = b.get(&url).await.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(s.base.as_str()));
}

#[tokio::test]
async fn unknown_parameters_are_ignored_and_empty_ones_are_absent_az_12() {
    let (s, mut b, client) = signed_in().await;
    let (verifier, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.scope = Some("customers.read".into());
    a.extra.push(("extra".into(), "foobar".into()));
    a.extra.push(("ui_locales".into(), "fr".into()));
    let loc = consent_flow(&mut b, &a, "alice", &["customers.read"]).await;
    let code = query_param(&loc, "code").unwrap_or_else(|| panic!("an unknown parameter fails nothing: {loc}"));
    assert_eq!(redeem(&s, &client, CB, &code, &verifier).await.0, StatusCode::OK);
    // An empty state is no state: the response carries none.
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.scope = Some("customers.read".into());
    a.state = String::new();
    let loc = consent_flow(&mut b, &a, "alice", &["customers.read"]).await;
    assert!(query_param(&loc, "code").is_some(), "{loc}");
    assert!(query_param(&loc, "state").is_none(), "{loc}");
    // An empty code_challenge is a missing one (PK-01): invalid_request.
    let mut a = Authz::new(&client, CB, "");
    a.state = "st".into();
    let loc = b.get(&a.url()).await.location.unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn state_comes_back_byte_for_byte_az_13() {
    let (_s, mut b, client) = signed_in().await;
    let long = "s".repeat(2048);
    for state in ["x", long.as_str(), "a&b=c#d%e+f g", "ünï©ødé ✓"] {
        // In a success …
        let (_, ch) = pkce();
        let mut a = Authz::new(&client, CB, &ch);
        a.scope = Some("customers.read".into());
        a.state = state.to_owned();
        let loc = consent_flow(&mut b, &a, "alice", &["customers.read"]).await;
        assert_eq!(query_param(&loc, "state").as_deref(), Some(state), "success, {} chars", state.len());
        // … and in an error.
        let mut a = Authz::new(&client, CB, &ch);
        a.state = state.to_owned();
        a.scope = Some("nonsense".into());
        let loc = b.get(&a.url()).await.location.unwrap();
        assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_scope"));
        assert_eq!(query_param(&loc, "state").as_deref(), Some(state), "error, {} chars", state.len());
    }
}

#[tokio::test]
async fn confidential_clients_need_pkce_too_pk_02() {
    let s = TestServer::start().await;
    let (client, secret) = s.preregister(CB, true).await;
    assert!(secret.is_some());
    let mut b = s.browser();
    b.login("alice", None).await;
    let r = b.get(&Authz::new(&client, CB, "").url()).await;
    let loc = r.location.unwrap_or_else(|| panic!("{} {}", r.status, r.body));
    assert!(loc.starts_with(CB), "{loc}");
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    assert!(query_param(&loc, "error_description").unwrap().contains("code_challenge"), "{loc}");
    assert!(query_param(&loc, "code").is_none());
}

#[tokio::test]
async fn a_code_is_neither_a_refresh_token_nor_a_bearer_token_ac_09() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (status, body) = refresh(&s, &client, &code).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let r = s
        .http
        .post(s.url("/mcp"))
        .bearer_auth(&code)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
    // The code was not spent by either attempt.
    assert_eq!(redeem(&s, &client, CB, &code, &verifier).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_narrower_scope_on_refresh_gives_a_narrower_token_and_the_grant_keeps_its_own_rt_10() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let rt = tok["refresh_token"].as_str().unwrap();
    let (status, _, narrower) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &client),
            ("scope", "customers.read"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{narrower}");
    assert_eq!(narrower["scope"], "customers.read");
    let claims =
        jsonwebtoken::dangerous::insecure_decode::<Value>(narrower["access_token"].as_str().unwrap()).unwrap().claims;
    assert_eq!(claims["scope"], "customers.read");
    // The new refresh token still carries the whole grant.
    let (status, whole) = refresh(&s, &client, narrower["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let mut scopes: Vec<&str> = whole["scope"].as_str().unwrap().split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["customers.read", "customers.write"]);
}

#[tokio::test]
async fn tampered_refresh_tokens_are_invalid_grant_rt_14() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let rt = tok["refresh_token"].as_str().unwrap().to_owned();
    let mut flipped = rt.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, bad) in [
        ("a changed character", flipped),
        ("truncated", rt[..rt.len() - 1].to_owned()),
        ("extended", format!("{rt}A")),
        ("upper-cased", rt.to_uppercase()),
    ] {
        let (status, body) = refresh(&s, &client, &bad).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{what}");
    }
    // The real one still works: tampering is not reuse.
    assert_eq!(refresh(&s, &client, &rt).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_access_token_has_its_own_jti_jw_02() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    let mut rt = tok["refresh_token"].as_str().unwrap().to_owned();
    let mut seen = HashSet::new();
    let jti = |t: &Value| {
        let c = jsonwebtoken::dangerous::insecure_decode::<Value>(t["access_token"].as_str().unwrap()).unwrap().claims;
        assert_eq!(c["iss"], s.base.as_str());
        assert!(c["sub"].is_string() && c["client_id"] == client.as_str() && c["aud"] == s.resource().as_str());
        assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 3600, "short-lived");
        c["jti"].as_str().unwrap().to_owned()
    };
    assert!(seen.insert(jti(&tok)));
    // 2,000 rotations (the battery says 10,000; each is a whole refresh grant here).
    for i in 0..2000 {
        let (status, next) = refresh(&s, &client, &rt).await;
        assert_eq!(status, StatusCode::OK, "rotation {i}: {next}");
        assert!(seen.insert(jti(&next)), "a jti repeated at rotation {i}");
        rt = next["refresh_token"].as_str().unwrap().to_owned();
    }
}

#[tokio::test]
async fn hostile_registration_json_is_refused_quickly_dc_09() {
    let s = TestServer::start().await;
    let post =
        |body: String| s.http.post(s.url("/register")).header("content-type", "application/json").body(body).send();
    let started = std::time::Instant::now();
    // A 1 MB body: over the body limit.
    let r = post(format!(r#"{{"redirect_uris":["{CB}"],"client_name":"{}"}}"#, "n".repeat(1024 * 1024))).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // 10,000 redirect URIs: about 160 KB, over the body limit too.
    let many: Vec<String> = (0..10_000).map(|i| format!("https://a.t/{i}")).collect();
    let r = post(json!({"redirect_uris": many, "token_endpoint_auth_method": "none"}).to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // 200 short ones fit the body: refused for their number (at most 10).
    let many: Vec<String> = (0..200).map(|i| format!("https://a.t/{i}")).collect();
    let r = post(json!({"redirect_uris": many, "token_endpoint_auth_method": "none"}).to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri");
    // A number beyond f64, where a name is read or in a member mandate ignores; a member twice.
    let r = post(format!(r#"{{"redirect_uris":["{CB}"],"token_endpoint_auth_method":"none","client_name":1e400}}"#))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    let r =
        post(format!(r#"{{"redirect_uris":["{CB}"],"token_endpoint_auth_method":"none","default_max_age":1e400}}"#))
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "anywhere: a number JSON cannot hold");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    let r = post(format!(
        r#"{{"redirect_uris":["https://evil.test/cb"],"redirect_uris":["{CB}"],"token_endpoint_auth_method":"none"}}"#
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn garbage_encodings_are_invalid_requests_never_errors_fz_03() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    let good = Authz::new(&client, CB, &ch).url();
    for (what, url) in [
        ("a bad escape", good.replace("state=st-123", "state=%zz")),
        ("a truncated escape", good.replace("state=st-123", "state=ab%2")),
        ("invalid UTF-8", good.replace("state=st-123", "state=%ff%fe")),
        ("a NUL", good.replace("state=st-123", "state=a%00b")),
    ] {
        let r = b.get(&url).await;
        assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::FOUND, "{what}: {}", r.status);
        if let Some(loc) = r.location {
            assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"), "{what}: {loc}");
            assert!(query_param(&loc, "code").is_none());
        }
    }
    // `;` is not a separator, and `&&` is harmless: the same request as without them.
    let r = b.get(&good.replace("&state=", "&&state=")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "&& ignored: {}", r.body);
    let r = b.get(&good.replace("&state=st-123", ";state=st-123")).await;
    assert_eq!(r.status, StatusCode::FOUND, "a ; inside a value: {}", r.body);
    // At the token endpoint: bad escapes in the form are invalid_request, not 500.
    let public = s.register_public(CB).await;
    for body in
        ["grant_type=authorization_code&code=%zz", "grant_type=%ff%fe", "grant_type=refresh_token&refresh_token=a%00b"]
    {
        let body = format!("client_id={public}&{body}");
        let r = s
            .http
            .post(s.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request", "{body}");
    }
}

/// The headers every page carries (UI-04 framing, UI-05 scripts, UI-21 caching), page by page.
#[tokio::test]
async fn every_page_forbids_framing_and_scripts_and_caching_ui_04_ui_05_ui_21() {
    let (s, mut b, client) = signed_in().await;
    let (_, ch) = pkce();
    let mut a = Authz::new(&client, CB, &ch);
    a.scope = Some("customers.read".into());
    let consent = b.get(&a.url()).await.location.unwrap();
    let mut anonymous = s.browser();
    let pages = [
        ("login", anonymous.get("/login").await),
        ("consent", b.get(&consent).await),
        ("connected apps", b.get("/account/apps").await),
        ("activity", b.get("/account/activity").await),
        ("an error page", b.get(&Authz::new("nope", CB, &ch).url()).await),
        ("the revoke confirmation", b.get("/account/apps/revoke?app=nope").await),
    ];
    for (what, r) in pages {
        let h = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let csp = h("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(!csp.contains("script-src") || csp.contains("script-src 'self'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(csp.contains("form-action 'self'"), "{what}: {csp}");
        assert_eq!(h("x-frame-options"), "DENY", "{what}");
        assert_eq!(h("cache-control"), "no-store", "{what}");
        assert!(
            !r.body.contains("<script") && !r.body.contains(" onclick=") && !r.body.contains(" onload="),
            "{what}: no scripts, no inline handlers"
        );
    }
    // Token and registration answers are not cached either.
    let (_, headers, _) = s.token(&[("grant_type", "authorization_code"), ("code", "x")]).await;
    assert_eq!(headers["cache-control"], "no-store");
    let r = s
        .http
        .post(s.url("/register"))
        .json(&json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
}
