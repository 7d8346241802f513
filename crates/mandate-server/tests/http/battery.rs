//! Battery cases no other suite sends (security-tests.md): credentials in the query, a grant the
//! client did not register, revocation without client authentication, body caps, page headers
//! on the account pages, a missing redirect URI with several registered, a PKCE downgrade.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";
/// What `Authz::new` asks for: allowing both means a later request asks for nothing new.
const BOTH: &[&str] = &["customers.read", "customers.write"];

fn err(status: StatusCode, v: &Value) -> (StatusCode, &str) {
    (status, v["error"].as_str().unwrap_or("<none>"))
}

/// Redeems `code` as a confidential client authenticating with HTTP Basic.
async fn redeem_confidential(
    s: &TestServer,
    (id, secret): (&str, &str),
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("code_verifier", verifier), ("redirect_uri", CB)];
    let r = s.http.post(s.url("/token")).basic_auth(id, Some(secret)).form(&form).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn credentials_in_the_token_query_string_are_not_read_tk_03() {
    let s = TestServer::start().await;
    let (client, secret) = s.register_confidential(CB).await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let loc = consent_flow(&mut b, &Authz::new(&client, CB, &challenge), "alice", &["customers.read"]).await;
    let code = query_param(&loc, "code").unwrap();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("code_verifier", &verifier)
        .append_pair("redirect_uri", CB)
        .append_pair("client_id", &client)
        .append_pair("client_secret", &secret)
        .finish();
    let r = s
        .http
        .post(s.url(&format!("/token?{query}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(err(status, &v), (StatusCode::BAD_REQUEST, "invalid_request"), "{v}");
    assert!(v.get("access_token").is_none());
    // The code was not spent by the refused request: the same values in the body work.
    assert_eq!(redeem_confidential(&s, (&client, &secret), &code, &verifier).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_grant_type_the_client_did_not_register_is_unauthorized_client_tk_09() {
    let s = TestServer::start().await;
    let (client, _) = s
        .auth
        .add_client(mandate_core::service::ClientRegistration {
            name: "No refresh".into(),
            redirect_uris: vec![CB.into()],
            confidential: false,
            allow_refresh: false,
            scope: None,
            resources: Vec::new(),
        })
        .await
        .unwrap();
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client.id, CB, &["customers.read"]).await;
    let (status, tok) = redeem(&s, &client.id, CB, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    assert!(tok.get("refresh_token").is_none(), "no refresh token for a client without the grant: {tok}");
    let (st, v) = refresh(&s, &client.id, "made-up-refresh-token").await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "unauthorized_client"));
    // A grant type nobody may use here.
    let (st, _, v) = s.token(&[("grant_type", "client_credentials"), ("client_id", &client.id)]).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "unsupported_grant_type"));
}

#[tokio::test]
async fn revoking_a_confidential_clients_token_needs_its_credentials_rv_06() {
    let s = TestServer::start().await;
    let (client, secret) = s.register_confidential(CB).await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let loc = consent_flow(&mut b, &Authz::new(&client, CB, &challenge), "alice", &["customers.read"]).await;
    let code = query_param(&loc, "code").unwrap();
    let (status, tok) = redeem_confidential(&s, (&client, &secret), &code, &verifier).await;
    assert_eq!(status, StatusCode::OK);
    let rt = tok["refresh_token"].as_str().unwrap();
    // No authentication at all, and the client id alone (as a public client would send it).
    for form in [vec![("token", rt)], vec![("token", rt), ("client_id", client.as_str())]] {
        let r = s.http.post(s.url("/revoke")).form(&form).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(err(status, &v), (StatusCode::UNAUTHORIZED, "invalid_client"), "{form:?}");
    }
    let r =
        s.http.post(s.url("/revoke")).basic_auth(&client, Some("wrong")).form(&[("token", rt)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The token survived every refused attempt.
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(&client, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Sends the request head announcing `length` bytes and only the first KiB of the body, then
/// reads the answer: a 413 here was decided without reading the body.
async fn head_only_post(s: &TestServer, path: &str, content_type: &str, length: usize) -> String {
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b'a'; 1024]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn two_megabyte_bodies_are_refused_before_they_are_read_fz_02() {
    let s = TestServer::start().await;
    for (path, ct) in [
        ("/token", "application/x-www-form-urlencoded"),
        ("/revoke", "application/x-www-form-urlencoded"),
        ("/introspect", "application/x-www-form-urlencoded"),
        ("/register", "application/json"),
        ("/login", "application/x-www-form-urlencoded"),
    ] {
        let answer = head_only_post(&s, path, ct, 2 * 1024 * 1024).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }
    // Still serving.
    let r = s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn assert_hardened(what: &str, h: &reqwest::header::HeaderMap) {
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["cache-control"], "no-store", "{what}");
    // same-origin, by design: the browser's own Origin/Referer is how form posts are checked,
    // and nothing leaves for another site (docs/SECURITY.md).
    assert_eq!(h["referrer-policy"], "same-origin", "{what}");
}

#[tokio::test]
async fn account_pages_are_hardened_and_escape_client_names_ca_06_ui_06() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/register"))
        .json(&json!({
            "redirect_uris": [CB],
            "token_endpoint_auth_method": "none",
            "client_name": "<script>alert(1)</script>\"><img src=x onerror=alert(2)>",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let client = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    assert_eq!(redeem(&s, &client, CB, &code, &verifier).await.0, StatusCode::OK);

    let login = s.browser().get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert_hardened("/login", &login.headers);
    for path in ["/account/apps", "/account/activity"] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_hardened(path, &page.headers);
        assert!(!page.body.contains("<script>alert"), "{path} must escape the client's name");
        assert!(!page.body.contains("<img src=x"), "{path} must escape the client's name");
        assert!(
            page.body.contains("&#60;script&#62;alert(1)") || page.body.contains("&lt;script&gt;alert(1)"),
            "{path} shows the name, escaped: {}",
            page.body
        );
        // No third-party resources: every src/href is same-origin or a fragment.
        for attr in ["src=\"http", "href=\"http"] {
            for (i, _) in page.body.match_indices(attr) {
                let rest = &page.body[i + attr.len() - 4..];
                assert!(
                    rest.starts_with(&s.base),
                    "{path}: a resource off this origin: {}",
                    &rest[..rest.len().min(80)]
                );
            }
        }
    }
}

#[tokio::test]
async fn several_redirect_uris_and_none_in_the_request_is_an_error_page_az_07() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/register"))
        .json(&json!({
            "redirect_uris": [CB, "https://agent.test/other"],
            "token_endpoint_auth_method": "none",
            "client_name": "Two callbacks",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let two = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let one = s.register_public(CB).await;
    let (_, challenge) = pkce();
    let url = |client: &str| {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", "customers.read")
            .append_pair("state", "st")
            .finish();
        format!("/authorize?{q}")
    };
    let mut b = s.browser();
    let page = b.get(&url(&two)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.location.is_none(), "never redirected to a guessed URI");
    assert!(page.body.contains("redirect"), "the page says what is wrong: {}", page.body);
    // With a single registered URI the parameter may be left out (OAuth 2.1 §4.1.1).
    let page = b.get(&url(&one)).await;
    assert!(page.status == StatusCode::OK || page.status == StatusCode::SEE_OTHER, "{}: {}", page.status, page.body);
    assert!(page.location.as_deref().is_none_or(|l| !l.starts_with(CB)), "no error redirect");
}

#[tokio::test]
async fn a_code_issued_without_a_challenge_is_never_redeemed_pk_10() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    // White-box: the stored request had no challenge (the black-box path is closed by PK-01/02).
    assert_eq!(s.db_execute("UPDATE authorization_codes SET code_challenge = ''").await, 1);
    let (st, v) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "any verifier");
    let (st, _, v) = s
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", &client), ("redirect_uri", CB)])
        .await;
    assert_eq!(err(st, &v), (StatusCode::BAD_REQUEST, "invalid_grant"), "no verifier either");
}

#[tokio::test]
async fn two_pending_requests_in_one_browser_stay_apart_ac_11() {
    let s = TestServer::start().await;
    let other_cb = "https://other-agent.test/cb";
    let a = s.register_public(CB).await;
    let b_client = s.register_public(other_cb).await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let (va, ca) = pkce();
    let (_, cb_) = pkce();
    let mut ra = Authz::new(&a, CB, &ca);
    ra.scope = Some("customers.read".into());
    let mut rb = Authz::new(&b_client, other_cb, &cb_);
    rb.scope = Some("customers.read invoices.read".into());
    let to_a = b.get(&ra.url()).await.location.unwrap();
    let to_b = b.get(&rb.url()).await.location.unwrap();
    let page_a = b.get(&to_a).await;
    let page_b = b.get(&to_b).await;
    assert_eq!((page_a.status, page_b.status), (StatusCode::OK, StatusCode::OK));
    assert_ne!(hidden(&page_a.body, "request"), hidden(&page_b.body, "request"));
    // A's form, with a scope only B asked for ticked as well.
    let r = submit_consent(&mut b, &page_a, "allow", &["customers.read", "invoices.read"]).await;
    let loc = r.location.unwrap_or_default();
    if r.status == StatusCode::SEE_OTHER && loc.starts_with(CB) {
        let code = query_param(&loc, "code").unwrap();
        assert_eq!(redeem(&s, &b_client, other_cb, &code, &va).await.0, StatusCode::BAD_REQUEST, "not B's code");
        let (st, tok) = redeem(&s, &a, CB, &code, &va).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(tok["scope"], "customers.read", "only what A asked for");
    } else {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "refused outright: {}", r.body);
    }
    // B's own form still leads to B, with B's request.
    let r = submit_consent(&mut b, &page_b, "allow", &["customers.read"]).await;
    assert!(r.location.unwrap().starts_with(other_cb));
}

#[tokio::test]
async fn client_and_logo_uris_are_never_fetched_dc_13() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Counts every connection made to it, whatever protocol follows.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/register"))
        .json(&json!({
            "redirect_uris": [CB],
            "token_endpoint_auth_method": "none",
            "client_name": "Pictures",
            "client_uri": format!("{base}/home"),
            "logo_uri": format!("{base}/logo.png"),
            "tos_uri": format!("{base}/tos"),
            "policy_uri": format!("{base}/policy"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let client = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    assert_eq!(redeem(&s, &client, CB, &code, &verifier).await.0, StatusCode::OK);
    for path in ["/account/apps", "/account/activity"] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains(&format!("src=\"{base}")), "{path} embeds the client's URI");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the server contacted a client-supplied URI");
}

#[tokio::test]
async fn a_changed_metadata_document_is_enforced_after_its_cache_expires_ss_13() {
    use std::sync::{Arc, Mutex};
    let s = TestServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let redirect = Arc::new(Mutex::new(CB.to_owned()));
    let (r2, u2) = (redirect.clone(), url.clone());
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let doc =
                json!({"client_id": u2, "client_name": "Changing", "redirect_uris": [r2.lock().unwrap().clone()]});
            async move { ([("cache-control", "max-age=600")], axum::Json(doc)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &url, CB, BOTH).await;
    assert_eq!(redeem(&s, &url, CB, &code, &verifier).await.0, StatusCode::OK);
    // The document now lists only another redirect URI.
    let moved = "https://agent.test/moved";
    *redirect.lock().unwrap() = moved.to_owned();
    s.clock.advance(601);
    let (_, ch) = pkce();
    let r = b.get(&Authz::new(&url, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the old redirect URI is refused: {:?}", r.location);
    assert!(r.location.is_none(), "never redirected to an unregistered URI");
    let loc = consent_flow(&mut b, &Authz::new(&url, moved, &ch), "alice", BOTH).await;
    assert!(loc.starts_with(moved), "the new one is used: {loc}");
}
