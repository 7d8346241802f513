//! `/inspector` on `mandate serve --demo`, driven as its page drives it: the operator signs in,
//! connects to the built-in MCP server, consents to a subset in the same browser, calls a tool,
//! is refused another, steps up, refreshes and revokes; and every refusal of the API. (The same
//! walk in headless Chromium is e2e/inspector.test.mjs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use mandate_testkit::{Browser, submit_consent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DemoServer, query};

const OPERATORS: (&str, &str) = ("MANDATE_INSPECTOR_OPERATORS", "[demo]");

async fn state(b: &mut Browser) -> Value {
    let r = b.get("/inspector/api/state").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    serde_json::from_str(&r.body).unwrap()
}

/// Polls the state until `done` holds for the inspection (as the page does).
async fn until(b: &mut Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state(b).await;
        let v = &s["inspection"];
        if done(v) {
            return v.clone();
        }
        assert!(Instant::now() < deadline, "never {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn idle(v: &Value) -> bool {
    v["busy"].is_null()
}

/// The operator's browser at the authorization page the inspector shows: consents to `scopes`
/// and comes back through /inspector/callback. Returns the code the callback carried.
async fn consent(b: &mut Browser, scopes: &[&str]) -> String {
    let v = until(b, "asks for a sign-in", |v| v["authorize_url"].is_string()).await;
    let auth_url = v["authorize_url"].as_str().unwrap().to_owned();
    assert!(auth_url.contains("code_challenge_method=S256") && auth_url.contains("resource="), "{auth_url}");
    let r = b.get(&auth_url).await;
    let to_consent = r.location.unwrap_or_else(|| panic!("{} {}", r.status, r.body));
    assert!(to_consent.starts_with("/consent"), "signed in already: straight to consent, got {to_consent}");
    let page = b.get(&to_consent).await;
    assert!(page.body.contains("mandate inspector"), "the consent page names the client");
    let r = submit_consent(b, &page, "allow", scopes).await;
    let back = r.location.unwrap();
    assert!(back.contains("/inspector/callback?"), "{back}");
    let code = query(&back, "code").unwrap();
    let r = b.get(&back).await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/inspector")));
    code
}

fn titles(v: &Value) -> Vec<String> {
    v["flow"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap().to_owned()).collect()
}

fn tool<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tools"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_connects_consents_to_a_subset_is_refused_steps_up_refreshes_and_revokes() {
    let s = DemoServer::start_with(&[], &[OPERATORS]).await;
    assert!(
        s.banner.iter().any(|l| l.contains("inspector, for operators") && l.ends_with("/inspector")),
        "{:?}",
        s.banner
    );
    let mut b = s.browser();

    // Not signed in: the page sends to sign-in (and back), the API says 401.
    let r = b.get("/inspector").await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login?return=/inspector")));
    let r = b.get("/inspector/api/state").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "not_signed_in");

    let r = b.login_with("demo", &s.password, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = b.get("/inspector").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let first = state(&mut b).await;
    assert_eq!(first["operator"], "demo");
    assert_eq!(first["suggestions"][0], s.mcp_url());
    assert!(first["inspection"].is_null());

    // Connect asking for customers.read only.
    let r = b.post_json("/inspector/api/connect", &json!({"url": s.mcp_url(), "scope": "customers.read"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // While the sign-in waits for the person, another action is refused: one at a time.
    until(&mut b, "asks for a sign-in", |v| v["authorize_url"].is_string()).await;
    let r = b.post_json("/inspector/api/refresh", &json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "busy");
    let code = consent(&mut b, &["customers.read"]).await;
    let v = until(&mut b, "connected", |v| v["phase"] == "connected" && idle(v)).await;

    // The flow, step by step, as a client meets it.
    let t = titles(&v);
    for expected in [
        "MCP initialize: 401",
        "Protected resource metadata (RFC 9728): 200",
        "Authorization server metadata (RFC 8414): 200",
        "Dynamic client registration (RFC 7591): 201",
        "Authorization request ready",
        "Authorization response received",
        "Code redeemed for tokens (PKCE verifier sent): 200",
        "MCP initialize: 200",
        "MCP tools/list: 200",
        "Connected",
    ] {
        assert!(t.iter().any(|x| x == expected), "no {expected:?} in {t:#?}");
    }
    let unauthorized = v["flow"].as_array().unwrap().iter().find(|e| e["title"] == "MCP initialize: 401").unwrap();
    let challenge = unauthorized["exchange"]["response_headers"].to_string();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    // Secrets are masked: the code, the verifier, the tokens.
    let text = v.to_string();
    assert!(!text.contains(&code), "the authorization code leaked into the view");
    let redeemed = v["flow"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"].as_str().unwrap().starts_with("Code redeemed"))
        .unwrap();
    let body = redeemed["exchange"]["response_body"].as_str().unwrap();
    let token: Value = serde_json::from_str(body).unwrap();
    assert!(token["access_token"].as_str().unwrap().contains("hidden"), "{body}");
    assert!(token["refresh_token"].as_str().unwrap().contains("hidden"), "{body}");
    let sent = redeemed["exchange"]["request_body"].as_str().unwrap();
    // CL-10: the client names the resource at the token endpoint too (RFC 8707 §2.2).
    let resource =
        url::form_urlencoded::parse(sent.as_bytes()).find(|(k, _)| k == "resource").map(|(_, v)| v.into_owned());
    assert_eq!(resource.as_deref(), Some(s.mcp_url().as_str()), "{sent}");
    let verifier = sent.split('&').find_map(|p| p.strip_prefix("code_verifier=")).unwrap();
    assert!(verifier.contains("hidden"), "{sent}");

    // The token, decoded: audience, issuer, scope.
    let claims = &v["token"]["claims"];
    assert_eq!(v["token"]["format"], "JWT");
    assert_eq!(v["token"]["header"]["typ"], "at+jwt");
    assert_eq!(claims["aud"], s.mcp_url());
    assert_eq!(claims["iss"], s.base);
    assert_eq!(claims["scope"], "customers.read");
    assert!(v["token"]["masked"].as_str().unwrap().contains("hidden"));
    // The tools with their scopes, and whether they are granted; a form's schema.
    assert_eq!(tool(&v, "list_customers")["scopes"], json!(["customers.read"]));
    assert_eq!(tool(&v, "list_customers")["granted"], true);
    assert_eq!(tool(&v, "send_invoice")["granted"], false);
    assert_eq!(tool(&v, "send_invoice")["input_schema"]["required"], json!(["invoice_id"]));
    let rpc: Vec<(String, String)> = v["rpc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["direction"].as_str().unwrap().to_owned(), m["summary"].as_str().unwrap().to_owned()))
        .collect();
    for pair in [("sent", "initialize"), ("received", "result"), ("sent", "tools/list")] {
        assert!(rpc.iter().any(|(d, m)| d == pair.0 && m == pair.1), "{pair:?} not in {rpc:?}");
    }

    // A granted tool is called.
    let r = b.post_json("/inspector/api/call", &json!({"tool": "list_customers", "arguments": {}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let v = until(&mut b, "called", |v| v["last_call"]["tool"] == "list_customers" && idle(v)).await;
    assert_eq!(v["last_call"]["outcome"], "ok", "{:#}", v["last_call"]);
    assert!(v["rpc"].to_string().contains("tools/call list_customers"));

    // send_invoice is refused for scope: 403 with the challenge naming invoices.send.
    let r =
        b.post_json("/inspector/api/call", &json!({"tool": "send_invoice", "arguments": {"invoice_id": "none"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = until(&mut b, "refused", |v| v["last_call"]["tool"] == "send_invoice" && idle(v)).await;
    assert_eq!(v["last_call"]["outcome"], "refused", "{:#}", v["last_call"]);
    assert_eq!(v["last_call"]["needs"], "invoices.send");
    let refused = v["flow"].as_array().unwrap().iter().rfind(|e| e["title"] == "MCP tools/call: 403").unwrap();
    let challenge = refused["exchange"]["response_headers"].to_string();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("invoices.send"), "{challenge}");

    // Step up: the person consents again, to both; the same MCP session goes on.
    let before = v["token"]["claims"]["jti"].clone();
    let r = b.post_json("/inspector/api/step-up", &json!({"scopes": "invoices.send"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    consent(&mut b, &["customers.read", "invoices.send"]).await;
    let v = until(&mut b, "stepped up", |v| idle(v) && v["token"]["claims"]["jti"] != before).await;
    assert_eq!(v["token"]["claims"]["scope"], "customers.read invoices.send", "{:#}", v["token"]);
    assert_eq!(tool(&v, "send_invoice")["granted"], true);
    // The grant the step-up replaced is revoked (it would stay live, forgotten by the client).
    let revoked_at_step_up = titles(&v).iter().filter(|t| *t == "Revocation (RFC 7009): 200").count();
    assert_eq!(revoked_at_step_up, 2, "{:#?}", titles(&v));
    let r =
        b.post_json("/inspector/api/call", &json!({"tool": "send_invoice", "arguments": {"invoice_id": "none"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = until(&mut b, "called again", |v| {
        v["last_call"]["tool"] == "send_invoice" && v["last_call"]["outcome"] != "refused" && idle(v)
    })
    .await;
    assert_eq!(v["last_call"]["outcome"], "tool-error", "allowed now; the tool says there is no such invoice");

    // Refresh: a new access token, the refresh token rotated.
    let before = v["token"]["claims"]["jti"].clone();
    let r = b.post_json("/inspector/api/refresh", &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = until(&mut b, "refreshed", |v| idle(v) && v["token"]["claims"]["jti"] != before).await;
    assert!(titles(&v).iter().any(|t| t == "Refresh (the refresh token rotates): 200"), "{:#?}", titles(&v));
    // CL-10: and on refresh.
    let refreshed = v["flow"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["title"] == "Refresh (the refresh token rotates): 200")
        .unwrap();
    let sent = refreshed["exchange"]["request_body"].as_str().unwrap();
    let resource =
        url::form_urlencoded::parse(sent.as_bytes()).find(|(k, _)| k == "resource").map(|(_, v)| v.into_owned());
    assert_eq!(resource.as_deref(), Some(s.mcp_url().as_str()), "{sent}");

    // The doctor's report for the URL.
    let r = b.post_json("/inspector/api/doctor", &json!({"url": s.mcp_url()})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = until(&mut b, "diagnosed", |v| v["doctor"].is_object() && idle(v)).await;
    let checks = v["doctor"]["checks"].as_array().unwrap();
    assert!(checks.len() > 10 && checks.iter().all(|c| c["status"] != "fail"), "{checks:#?}");
    assert_eq!(v["phase"], "connected", "the doctor ran on the same inspection");

    // Revoke: the session ends, the tokens go to the revocation endpoint, the app is gone.
    let r = b.post_json("/inspector/api/revoke", &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = until(&mut b, "revoked", |v| v["phase"] == "revoked" && idle(v)).await;
    assert!(v["token"].is_null());
    // Two at the step-up (the tokens of the grant it replaced), two now.
    let t = titles(&v);
    assert_eq!(t.iter().filter(|t| *t == "Revocation (RFC 7009): 200").count(), 4, "{t:#?}");
    let apps = b.get("/account/apps").await;
    assert!(!apps.body.contains("mandate inspector"), "the inspector's grant is revoked");

    // A poll that has the current revision gets only that back; once anything changes, the
    // whole view again, at a later revision.
    let revision = v["revision"].as_u64().unwrap();
    let r = b.get(&format!("/inspector/api/state?since={revision}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let same: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(same["inspection"], json!({"revision": revision, "unchanged": true}));
    let r = b.post_json("/inspector/api/doctor", &json!({"url": s.mcp_url()})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = b.get(&format!("/inspector/api/state?since={revision}")).await;
    let changed: Value = serde_json::from_str(&r.body).unwrap();
    assert!(changed["inspection"]["revision"].as_u64().unwrap() > revision, "{changed:#}");
    assert_eq!(changed["inspection"]["url"], s.mcp_url().as_str());
    until(&mut b, "diagnosed again", idle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_what_the_page_never_sends() {
    let s = DemoServer::start_with(&[], &[OPERATORS]).await;
    let mut b = s.browser();
    b.login_with("demo", &s.password, None).await;

    // Not from the page: another site, no Origin, not JSON.
    let url = format!("{}/inspector/api/connect", s.base);
    let body = json!({"url": s.mcp_url()}).to_string();
    let cookie = |b: &Browser| b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let send = |origin: Option<&str>, site: Option<&str>, ct: &str| {
        let mut r = reqwest::Client::new().post(&url).header("cookie", cookie(&b)).header("content-type", ct);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(x) = site {
            r = r.header("sec-fetch-site", x);
        }
        r.body(body.clone()).send()
    };
    for (origin, site, ct, status, code) in [
        (Some("https://evil.example"), Some("cross-site"), "application/json", 403, "cross_site"),
        (Some(s.base.as_str()), Some("same-site"), "application/json", 403, "cross_site"),
        (None, None, "application/json", 403, "cross_site"),
        (Some(s.base.as_str()), Some("same-origin"), "text/plain", 415, "invalid_request"),
        (Some(s.base.as_str()), Some("same-origin"), "application/x-www-form-urlencoded", 415, "invalid_request"),
    ] {
        let r = send(origin, site, ct).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{origin:?} {site:?} {ct}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], code);
    }

    // Bad bodies and URLs: the exact refusal.
    for (body, status, code) in [
        (json!({"nope": 1}), 400, "invalid_request"),
        (json!({"url": "ftp://example.com/mcp"}), 400, "invalid_url"),
        (json!({"url": "http://example.com/mcp"}), 400, "invalid_url"),
        (json!({"url": "https://10.0.0.1/mcp"}), 400, "invalid_url"),
        (json!({"url": "https://169.254.169.254/latest"}), 400, "invalid_url"),
        (json!({"url": "https://user:pw@example.com/mcp"}), 400, "invalid_url"),
    ] {
        let r = b.post_json("/inspector/api/connect", &body).await;
        assert_eq!(r.status.as_u16(), status, "{body} {}", r.body);
        assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], code, "{body}");
    }
    // Actions before any connection.
    for action in ["call", "step-up", "refresh", "revoke"] {
        let r = b.post_json(&format!("/inspector/api/{action}"), &json!({"tool": "x", "scopes": "a"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{action}");
        assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "not_connected");
    }
    let r = b.post_json("/inspector/api/connect", &json!({"url": s.mcp_url()})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    until(&mut b, "asks for a sign-in", |v| v["authorize_url"].is_string()).await;
    for scopes in ["", "   ", "a\u{7}b"] {
        let r = b.post_json("/inspector/api/step-up", &json!({"scopes": scopes})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{scopes:?}");
        assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "invalid_scope");
    }
    // An authorization response nobody waits for (wrong state, or none): refused, nothing sent.
    for q in ["code=abc&state=not-the-one", "code=abc", "error=access_denied"] {
        let r = b.get(&format!("/inspector/callback?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.body.contains("does not belong to a sign-in"), "{}", r.body);
    }
    let v = state(&mut b).await;
    assert!(v["inspection"]["authorize_url"].is_string(), "the real sign-in still waits");
    // A body over the limit.
    let big = json!({"tool": "list_customers", "arguments": {"x": "y".repeat(70 * 1024)}});
    let r = b.post_json("/inspector/api/call", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_named_operators_and_only_when_configured() {
    // Someone else is the operator: the demo person is refused, page and API.
    let s = DemoServer::start_with(&[], &[("MANDATE_INSPECTOR_OPERATORS", "[alice]")]).await;
    let mut b = s.browser();
    b.login_with("demo", &s.password, None).await;
    let r = b.get("/inspector").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("for operators"), "{}", r.body);
    let r = b.get("/inspector/api/state").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "not_an_operator");
    let r = b.get("/inspector/callback?code=x&state=y").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Nobody named (the default): not served at all.
    let s = DemoServer::start().await;
    assert!(!s.banner.iter().any(|l| l.contains("inspector")), "{:?}", s.banner);
    let mut b = s.browser();
    b.login_with("demo", &s.password, None).await;
    assert_eq!(b.get("/inspector").await.status, StatusCode::NOT_FOUND);
}
