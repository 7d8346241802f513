//! `/metrics` (issue 12): absent unless asked for, behind its bearer token on the public
//! listener, and the figures exact after a known sequence of requests.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";
const TOKEN: &str = "scrape-me-0123456789abcdef";

fn with_metrics() -> Options {
    Options { metrics_token: Some(TOKEN.into()), ..Options::default() }
}

/// One scrape: every sample by its series (`name{labels}`), and the whole text.
async fn scrape(s: &TestServer) -> (HashMap<String, f64>, String) {
    let r = s.http.get(s.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let text = r.text().await.unwrap();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(samples.insert(series.to_owned(), value).is_none(), "{series} twice");
    }
    (samples, text)
}

/// Scrapes until `series` has `want` (a response's latency is recorded once its body has been
/// sent, which the client may see an instant before the server does).
async fn until(s: &TestServer, series: &str, want: f64) -> HashMap<String, f64> {
    for _ in 0..100 {
        let (m, _) = scrape(s).await;
        if m.get(series) == Some(&want) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (m, text) = scrape(s).await;
    panic!("{series} is {:?}, not {want}:\n{text}", m.get(series));
}

#[tokio::test]
async fn metrics_are_absent_from_the_public_router_by_default() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.http.get(s.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_on_the_public_listener_need_the_bearer_token() {
    let s = TestServer::start_with(with_metrics()).await;
    let url = s.url("/metrics");
    for req in [
        s.http.get(&url),
        s.http.get(&url).bearer_auth("scrape-me-0123456789abcdeX"),
        s.http.get(&url).bearer_auth(&TOKEN[..TOKEN.len() - 1]),
        s.http.get(&url).bearer_auth(format!("{TOKEN}{TOKEN}")),
        s.http.get(&url).basic_auth("prometheus", Some(TOKEN)),
        s.http.get(&url).header("authorization", TOKEN),
        s.http.get(format!("{url}?token={TOKEN}")),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"metrics\"");
        assert_eq!(r.text().await.unwrap(), "unauthorized\n", "nothing more is said");
    }
    let r = s.http.get(&url).header("authorization", format!("bearer {TOKEN}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the scheme is case-insensitive");
    let (m, text) = scrape(&s).await;
    assert!(!text.contains(TOKEN));
    // The refused scrapes count as requests like any other, by their route.
    assert_eq!(m[r#"mandate_http_requests_total{route="/metrics",method="GET",status="4xx"}"#], 7.0);
    assert_eq!(m[r#"mandate_http_requests_total{route="/metrics",method="GET",status="2xx"}"#], 1.0);
}

#[tokio::test]
async fn metrics_count_grants_refresh_rotations_reuse_and_mcp_sessions() {
    let s = TestServer::start_with(with_metrics()).await;
    let (m, text) = scrape(&s).await;
    // Before anything: the counters are there at zero; no token answer yet.
    for zero in [
        "mandate_refresh_rotations_total",
        "mandate_refresh_grace_retries_total",
        "mandate_refresh_races_lost_total",
        "mandate_refresh_reuse_detections_total",
        "mandate_pkce_challenge_reuses_total",
        r#"mandate_code_replays_total{grant_revoked="false"}"#,
        r#"mandate_code_replays_total{grant_revoked="true"}"#,
        "mandate_db_write_queue_depth",
    ] {
        assert_eq!(m.get(zero), Some(&0.0), "{zero}:\n{text}");
    }
    let resource = s.resource();
    assert_eq!(m[&format!(r#"mandate_mcp_sessions{{resource="{resource}"}}"#)], 0.0);
    assert!(text.contains("# TYPE mandate_token_requests_total counter\n"), "{text}");
    assert!(!text.contains("mandate_token_requests_total{"), "{text}");
    assert!(text.contains("# TYPE mandate_mcp_sessions gauge\n"));
    let max = if engine_is_postgres() { 16.0 } else { 8.0 };
    assert_eq!(m["mandate_db_pool_max_connections"], max);
    assert!(m["mandate_db_pool_idle_connections"] <= m["mandate_db_pool_connections"]);
    assert!(m["mandate_db_pool_connections"] >= 1.0 && m["mandate_db_pool_connections"] <= max);

    // Grant A: a code, then refreshes: rotated, a retry inside the grace window, rotated again,
    // then the first token once more (its successor was used): reuse, the family revoked.
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let (st, tok) = refresh(&s, &client, &rt1).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let rt2 = tok["refresh_token"].as_str().unwrap().to_owned();
    let (st, tok) = refresh(&s, &client, &rt1).await;
    assert_eq!((st, tok["refresh_token"].as_str()), (StatusCode::OK, Some(rt2.as_str())), "the same successor");
    let (st, tok) = refresh(&s, &client, &rt2).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let rt3 = tok["refresh_token"].as_str().unwrap().to_owned();
    let (st, tok) = refresh(&s, &client, &rt1).await;
    assert_eq!((st, tok["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "reuse");
    let (st, tok) = refresh(&s, &client, &rt3).await;
    assert_eq!((st, tok["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "revoked");
    // A grant type the server does not know: counted as `other`, never by its name.
    let (st, _, tok) = s.token(&[("grant_type", "password"), ("client_id", &client)]).await;
    assert_eq!((st, tok["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));

    // Grant B: an MCP session and a call, the session ended; then its code replayed with its
    // proof, which revokes the grant.
    let client = s.register_public(CB).await;
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let mut mcp = McpClient::new(&resource, tok["access_token"].as_str());
    assert_eq!(mcp.initialize().await.status, StatusCode::OK);
    assert_eq!(mcp.call("list_customers", json!({})).await.status, StatusCode::OK);
    let sessions = format!(r#"mandate_mcp_sessions{{resource="{resource}"}}"#);
    let (m, _) = scrape(&s).await;
    assert_eq!(m[&sessions], 1.0);
    let anonymous = McpClient::new(&resource, None).initialize().await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let ended = s
        .http
        .delete(&resource)
        .bearer_auth(mcp.token.as_deref().unwrap())
        .header("mcp-session-id", mcp.session.as_deref().unwrap())
        .header("mcp-protocol-version", mcp.protocol.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success(), "{}", ended.status());
    let (st, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!((st, tok["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "replay");
    let r = s.http.get(s.url("/no/such/page")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let m = until(&s, r#"mandate_http_request_duration_seconds_count{route="/token",method="POST"}"#, 9.0).await;
    let expected = [
        // Token answers by grant type and outcome.
        (r#"mandate_token_requests_total{grant_type="authorization_code",outcome="issued"}"#, 2.0),
        (r#"mandate_token_requests_total{grant_type="authorization_code",outcome="invalid_grant"}"#, 1.0),
        (r#"mandate_token_requests_total{grant_type="refresh_token",outcome="issued"}"#, 3.0),
        (r#"mandate_token_requests_total{grant_type="refresh_token",outcome="invalid_grant"}"#, 2.0),
        (r#"mandate_token_requests_total{grant_type="other",outcome="unsupported_grant_type"}"#, 1.0),
        // Refresh outcomes.
        ("mandate_refresh_rotations_total", 2.0),
        ("mandate_refresh_grace_retries_total", 1.0),
        ("mandate_refresh_races_lost_total", 0.0),
        ("mandate_refresh_reuse_detections_total", 1.0),
        (r#"mandate_code_replays_total{grant_revoked="false"}"#, 0.0),
        (r#"mandate_code_replays_total{grant_revoked="true"}"#, 1.0),
        // The session ended.
        (sessions.as_str(), 0.0),
        // Requests by route template, method and status class.
        (r#"mandate_http_requests_total{route="/token",method="POST",status="2xx"}"#, 5.0),
        (r#"mandate_http_requests_total{route="/token",method="POST",status="4xx"}"#, 4.0),
        (r#"mandate_http_requests_total{route="/register",method="POST",status="2xx"}"#, 2.0),
        // initialize, notifications/initialized, tools/call; then the anonymous initialize.
        (r#"mandate_http_requests_total{route="/mcp",method="POST",status="2xx"}"#, 3.0),
        (r#"mandate_http_requests_total{route="/mcp",method="POST",status="4xx"}"#, 1.0),
        (r#"mandate_http_requests_total{route="/mcp",method="DELETE",status="2xx"}"#, 1.0),
        (r#"mandate_http_requests_total{route="other",method="GET",status="4xx"}"#, 1.0),
        (r#"mandate_http_request_duration_seconds_count{route="/token",method="POST"}"#, 9.0),
        (r#"mandate_http_request_duration_seconds_bucket{route="/token",method="POST",le="+Inf"}"#, 9.0),
    ];
    let mut wrong = Vec::new();
    for (series, want) in expected {
        if m.get(series) != Some(&want) {
            wrong.push(format!("{series}: {:?}, expected {want}", m.get(series)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Exactly those token answers, and no path ever becomes a label.
    assert_eq!(m.keys().filter(|k| k.starts_with("mandate_token_requests_total{")).count(), 5);
    assert!(!m.keys().any(|k| k.contains("/no/such/page")));
    assert!(m[r#"mandate_http_request_duration_seconds_sum{route="/token",method="POST"}"#] > 0.0);
    let (_, text) = scrape(&s).await;
    assert!(text.contains("# TYPE mandate_http_request_duration_seconds histogram\n"), "{text}");
}
