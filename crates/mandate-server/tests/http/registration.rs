//! Dynamic client registration (RFC 7591) and Client ID Metadata Documents.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::get;
use mandate_core::ssrf::FetchPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

async fn register(s: &TestServer, body: Value) -> (StatusCode, Value) {
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn registration_happy_path_dc_01_dc_07_dc_08() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/register"))
        .json(&json!({
            "redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": "Claude",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "client_id": "chosen-by-attacker", "application_type": "native", "scope": "claudeai", "foo": "bar"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["client_id"], "chosen-by-attacker");
    assert!(!v["client_id"].as_str().unwrap().starts_with("https://"));
    assert_eq!(v["redirect_uris"], json!([CB]));
    assert_eq!(v["token_endpoint_auth_method"], "none");
    assert_eq!(v["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert!(v.get("client_secret").is_none());
    assert!(v.get("foo").is_none());
    assert!(v.get("scope").is_none(), "unknown vendor scopes are dropped, not stored");
}

#[tokio::test]
async fn confidential_registration_returns_a_secret_once_dc_15() {
    let s = TestServer::start().await;
    let (a, sa) = s.register_confidential(CB).await;
    let (b, sb) = s.register_confidential(CB).await;
    assert_ne!(a, b);
    assert_ne!(sa, sb);
    assert!(sa.starts_with("mcs_"));
    let stored = s.auth.store().client_by_id(&a).await.unwrap().unwrap();
    assert_ne!(stored.secret_hash.unwrap().0, sa, "AC-10: only the hash is stored");
}

#[tokio::test]
async fn dangerous_redirect_uris_are_refused_dc_02_dc_03_dc_04() {
    let s = TestServer::start().await;
    for bad in [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "http://app.test/cb",
        "https://app.test/cb#f",
        "https://u:p@app.test/cb",
        "/cb",
    ] {
        let (st, v) = register(&s, json!({"redirect_uris": [bad], "token_endpoint_auth_method": "none"})).await;
        assert_eq!((st, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")), "{bad}");
    }
    let (st, v) = register(&s, json!({"token_endpoint_auth_method": "none"})).await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")), "DC-05");
}

#[tokio::test]
async fn bad_metadata_is_refused_dc_06_dc_09_dc_11_dc_14() {
    let s = TestServer::start().await;
    for body in [
        json!({"redirect_uris": [CB], "grant_types": ["password"]}),
        json!({"redirect_uris": [CB], "grant_types": ["client_credentials"]}),
        json!({"redirect_uris": [CB], "response_types": ["token"]}),
        json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"redirect_uris": [CB], "jwks": {"keys": []}, "jwks_uri": "https://a.test/jwks"}),
        json!({"redirect_uris": [CB], "logo_uri": "javascript:alert(1)"}),
        json!({"redirect_uris": [CB], "client_name": "x".repeat(300)}),
        json!([1, 2, 3]),
    ] {
        let (st, v) = register(&s, body.clone()).await;
        assert_eq!((st, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_client_metadata")), "{body}");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = s.http.post(s.url("/register")).header("content-type", "application/json").body(deep).send().await.unwrap();
    assert!(r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::PAYLOAD_TOO_LARGE, "{}", r.status());
    let r = s.http.post(s.url("/register")).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A loopback server for metadata documents that counts its hits.
async fn doc_server(doc: impl Fn(&str) -> Value + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/client.json");
    let body = doc(&url);
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/client.json",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move { ([("cache-control", "max-age=600")], axum::Json(body)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn metadata_document_client_authorizes_ss_01() {
    let s = TestServer::start().await;
    let (url, hits) = doc_server(|u| json!({"client_id": u, "client_name": "Claude", "redirect_uris": [CB], "grant_types": ["authorization_code", "refresh_token"]})).await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let authz = Authz::new(&url, CB, &challenge);
    let page = open_consent(&mut b, &authz.url(), "alice").await;
    assert!(page.body.contains("Claude"));
    assert!(page.body.contains("The application is described by <strong>127.0.0.1</strong>"));
    let r = submit_consent(&mut b, &page, "allow", &["customers.read"]).await;
    let code = query_param(&r.location.unwrap(), "code").unwrap();
    let (st, tok) = redeem(&s, &url, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert!(tok["refresh_token"].is_string());
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached per Cache-Control");
}

#[tokio::test]
async fn metadata_document_with_another_client_id_is_refused_ss_03() {
    let s = TestServer::start().await;
    let (url, _) =
        doc_server(|u| json!({"client_id": format!("{u}/"), "client_name": "Claude", "redirect_uris": [CB]})).await;
    let (_, ch) = pkce();
    let r = s.browser().get(&Authz::new(&url, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    assert!(r.body.contains("does not equal the URL"), "{}", r.body);
}

#[tokio::test]
async fn metadata_document_on_loopback_is_not_fetched_by_default_ss_09() {
    let s = TestServer::start_with(Options { fetch_policy: FetchPolicy::default(), ..Options::default() }).await;
    let (url, hits) = doc_server(|u| json!({"client_id": u, "client_name": "x", "redirect_uris": [CB]})).await;
    let https = url.replace("http://", "https://");
    let (_, ch) = pkce();
    let r = s.browser().get(&Authz::new(&https, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("may not be fetched"), "{}", r.body);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let r = s.browser().get(&Authz::new(&url, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "http is refused");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// Resolves every name to the same addresses, counting the lookups.
struct FixedResolver(Vec<SocketAddr>, Arc<AtomicUsize>);

impl reqwest::dns::Resolve for FixedResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        self.1.fetch_add(1, Ordering::SeqCst);
        let addrs = self.0.clone();
        Box::pin(async move { Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs) })
    }
}

#[tokio::test]
async fn metadata_document_resolving_to_a_private_address_is_refused_ss_10() {
    let lookups = Arc::new(AtomicUsize::new(0));
    // A name that resolves to 10.0.0.1: refused in the resolver, before any connection.
    let resolver = Arc::new(FixedResolver(vec!["10.0.0.1:443".parse().unwrap()], lookups.clone()));
    let s = TestServer::start_with(Options {
        fetch_policy: FetchPolicy::default(),
        resolver: Some(resolver),
        ..Options::default()
    })
    .await;
    let (_, ch) = pkce();
    let r = s.browser().get(&Authz::new("https://cimd.test/client.json", CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    assert!(r.body.contains("may not be fetched"), "{}", r.body);
    assert_eq!(lookups.load(Ordering::SeqCst), 1, "the guard ran on the resolved address");
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "client.metadata_document" && e.outcome == "failure"));
}

/// A metadata document naming `client_id` twice (the last one right) is refused: a parser that
/// reads the first would see another client (DC-09, SS-03).
#[tokio::test]
async fn metadata_document_with_a_member_twice_is_refused_dc_09() {
    let s = TestServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let body = format!(
        r#"{{"client_id":"https://evil.test/client.json","client_id":"{url}","client_name":"Claude","redirect_uris":["{CB}"]}}"#
    );
    let app = axum::Router::new()
        .route("/client.json", get(move || std::future::ready(([("content-type", "application/json")], body.clone()))));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_, ch) = pkce();
    let r = s.browser().get(&Authz::new(&url, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    assert!(r.body.contains("each member may appear once"), "{}", r.body);
}

/// SS-11: a rebinding answer that mixes a public address with a private one (the attacker's DNS
/// hoping the client checks one and dials the other) is refused whole, inside the resolver the
/// connection is made with: there is no separate check for an answer to change after.
#[tokio::test]
async fn a_dns_answer_mixing_public_and_private_addresses_is_refused_whole_ss_11() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let (listener_addr, hits) = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        let h = Arc::new(AtomicUsize::new(0));
        let c = h.clone();
        tokio::spawn(async move {
            while let Ok(_conn) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        (a, h)
    };
    let resolver = Arc::new(FixedResolver(vec!["93.184.216.34:443".parse().unwrap(), listener_addr], lookups.clone()));
    let s = TestServer::start_with(Options {
        fetch_policy: FetchPolicy::default(),
        resolver: Some(resolver),
        ..Options::default()
    })
    .await;
    let (_, ch) = pkce();
    let r = s.browser().get(&Authz::new("https://rebind.test/client.json", CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("may not be fetched"), "{}", r.body);
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the private address was never dialed");
}
