#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: failing loudly is the point
//! `mandate doctor` against mandate itself (every check passes) and against a fixture server that
//! is correct until broken in exactly one way, each breakage named by the check it trips.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mandate_doctor::{Options, Status, diagnose};
use serde_json::json;
use url::Url;

#[tokio::test]
async fn mandate_itself_passes_every_check() {
    let s = mandate_testkit::TestServer::start().await;
    let url = Url::parse(&s.url("/mcp")).unwrap();
    // The browser origin checked is the server's own: the test server allows no other.
    let report = diagnose(&url, &Options { browser_origin: Some(s.base.clone()), ..Options::default() }).await;
    let not_passed: Vec<_> = report.checks.iter().filter(|c| c.status != Status::Pass).collect();
    assert!(not_passed.is_empty(), "{}", mandate_doctor::render_text(&report));
    for id in [
        "mcp.unauthorized",
        "mcp.challenge",
        "challenge.resource_metadata",
        "challenge.scope",
        "prm.locations",
        "prm.resource",
        "prm.authorization_servers",
        "cors",
        "as.discovery",
        "as.issuer",
        "as.endpoints",
        "as.pkce",
        "as.iss",
        "as.registration",
        "as.token_auth",
        "as.scopes",
        "jwks",
    ] {
        assert!(report.check(id).is_some(), "{id} was not checked:\n{}", mandate_doctor::render_text(&report));
    }
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test]
async fn the_inspectors_origin_is_a_warning_on_a_server_that_does_not_allow_it() {
    let s = mandate_testkit::TestServer::start().await;
    let report = diagnose(&Url::parse(&s.url("/mcp")).unwrap(), &Options::default()).await;
    let cors = report.check("cors").unwrap();
    assert_eq!(cors.status, Status::Warn, "{}", mandate_doctor::render_text(&report));
    assert!(cors.fix.as_deref().unwrap().contains("mcp_allowed_origins"));
    assert_eq!(report.exit_code(), 1);
}

/// One way the fixture is broken.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Broken {
    Nothing,
    WrongIssuer,
    NoPathInsertedMetadata,
    ResourceMismatch,
    NoS256,
    NoScopeInChallenge,
    JwksUnreachable,
    NotProtected,
}

#[derive(Clone)]
struct Fixture {
    base: String,
    broken: Broken,
}

async fn serve(broken: Broken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let f = Fixture { base: base.clone(), broken };
    let app = Router::new()
        .route("/mcp", axum::routing::post(mcp).options(preflight))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm_inserted))
        .route("/.well-known/oauth-protected-resource", get(prm_root))
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/jwks", get(jwks))
        .with_state(f);
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });
    base
}

async fn mcp(State(f): State<Fixture>) -> Response {
    if f.broken == Broken::NotProtected {
        return axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}})).into_response();
    }
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", f.base);
    let challenge = match f.broken {
        Broken::NoPathInsertedMetadata => "Bearer scope=\"notes.read\"".to_owned(),
        Broken::NoScopeInChallenge => format!("Bearer resource_metadata=\"{metadata}\""),
        _ => format!("Bearer resource_metadata=\"{metadata}\", scope=\"notes.read\""),
    };
    let mut r = (StatusCode::UNAUTHORIZED, "").into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).unwrap());
    r
}

async fn preflight(headers: HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).cloned().unwrap_or(HeaderValue::from_static("*"));
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, DELETE"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, mcp-protocol-version, mcp-session-id"),
    );
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("www-authenticate, mcp-session-id"));
    r
}

fn open_json(v: serde_json::Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn prm_document(f: &Fixture) -> serde_json::Value {
    let resource =
        if f.broken == Broken::ResourceMismatch { format!("{}/mcp/", f.base) } else { format!("{}/mcp", f.base) };
    json!({"resource": resource, "authorization_servers": [f.base], "scopes_supported": ["notes.read", "notes.write"],
           "bearer_methods_supported": ["header"]})
}

async fn prm_inserted(State(f): State<Fixture>) -> Response {
    if f.broken == Broken::NoPathInsertedMetadata {
        return StatusCode::NOT_FOUND.into_response();
    }
    open_json(prm_document(&f))
}

async fn prm_root(State(f): State<Fixture>) -> Response {
    if f.broken == Broken::NoPathInsertedMetadata {
        return open_json(prm_document(&f));
    }
    StatusCode::NOT_FOUND.into_response()
}

async fn as_metadata(State(f): State<Fixture>) -> Response {
    let issuer = if f.broken == Broken::WrongIssuer { format!("{}/", f.base) } else { f.base.clone() };
    let methods = if f.broken == Broken::NoS256 { json!(["plain"]) } else { json!(["S256"]) };
    let jwks = if f.broken == Broken::JwksUnreachable {
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        format!("http://{closed}/jwks")
    } else {
        format!("{}/jwks", f.base)
    };
    open_json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}/authorize", f.base),
        "token_endpoint": format!("{}/token", f.base),
        "registration_endpoint": format!("{}/register", f.base),
        "jwks_uri": jwks,
        "scopes_supported": ["notes.read", "notes.write"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": methods,
        "token_endpoint_auth_methods_supported": ["none"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    }))
}

async fn jwks() -> Response {
    // A P-256 public key: the curve's generator point (the key whose private half is 1; only
    // its form matters here).
    open_json(json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
                               "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
                               "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}))
}

/// The checks that did not pass, as (id, status).
async fn diagnosis(broken: Broken) -> (Vec<(&'static str, Status)>, i32) {
    let base = serve(broken).await;
    let report = diagnose(&Url::parse(&format!("{base}/mcp")).unwrap(), &Options::default()).await;
    let text = mandate_doctor::render_text(&report);
    // Every check not passed says what it saw and how to fix it.
    for c in report.checks.iter().filter(|c| c.status != Status::Pass) {
        assert!(!c.saw.is_empty() && c.fix.as_deref().is_some_and(|f| !f.is_empty()), "{text}");
    }
    (report.checks.iter().filter(|c| c.status != Status::Pass).map(|c| (c.id, c.status)).collect(), report.exit_code())
}

#[tokio::test]
async fn the_fixture_passes_until_broken() {
    assert_eq!(diagnosis(Broken::Nothing).await, (vec![], 0));
}

#[tokio::test]
async fn each_breakage_is_named_by_its_check() {
    for (broken, expected, code) in [
        (Broken::WrongIssuer, vec![("as.issuer", Status::Fail)], 2),
        (
            Broken::NoPathInsertedMetadata,
            vec![("challenge.resource_metadata", Status::Warn), ("prm.locations", Status::Warn)],
            1,
        ),
        (Broken::ResourceMismatch, vec![("prm.resource", Status::Fail)], 2),
        (Broken::NoS256, vec![("as.pkce", Status::Fail)], 2),
        (Broken::NoScopeInChallenge, vec![("challenge.scope", Status::Warn)], 1),
        (Broken::JwksUnreachable, vec![("jwks", Status::Fail)], 2),
        (Broken::NotProtected, vec![("mcp.unauthorized", Status::Fail)], 2),
    ] {
        assert_eq!(diagnosis(broken).await, (expected, code), "{broken:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_the_first_check_and_stops() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let report = diagnose(&Url::parse(&format!("http://{closed}/mcp")).unwrap(), &Options::default()).await;
    assert_eq!(report.checks.len(), 1);
    assert_eq!((report.checks[0].id, report.checks[0].status), ("mcp.unauthorized", Status::Fail));
    assert!(report.checks[0].saw.contains("could not connect"), "{}", report.checks[0].saw);
}

#[tokio::test]
async fn plain_http_outside_loopback_is_refused_before_any_request() {
    let report = diagnose(&Url::parse("http://mcp.example.com/mcp").unwrap(), &Options::default()).await;
    assert_eq!((report.checks[0].id, report.checks[0].status), ("url", Status::Fail));
    assert_eq!(report.exit_code(), 2);
}
