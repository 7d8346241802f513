//! More of the battery, black-box: nothing secret in the database (AC-10), a code redeemed by
//! fifty at once (AC-04, RL-02), metadata-document URLs on loopback in every spelling (SS-09) and
//! in other schemes (SS-12), and payloads in every reflected parameter (UI-17).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

use mandate_core::ssrf::FetchPolicy;
use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

/// Every text value stored in every table (SQLite; PostgreSQL runs the same flows elsewhere).
async fn every_stored_text(s: &TestServer) -> Vec<String> {
    let pool = s.store.pool();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\""))).fetch_all(pool).await.unwrap();
        for row in rows {
            for i in 0..row.len() {
                if let Ok(Some(v)) = row.try_get::<Option<String>, _>(i) {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn nothing_secret_is_stored_as_it_was_sent_ac_10() {
    if engine_is_postgres() {
        return; // the dump reads SQLite's catalogue
    }
    let s = TestServer::start().await;
    let (client, secret) = s.preregister(CB, true).await;
    let secret = secret.unwrap();
    let public = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &public, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &public, CB, &code, &verifier).await;
    let rt = tok["refresh_token"].as_str().unwrap().to_owned();
    let at = tok["access_token"].as_str().unwrap().to_owned();
    let (_, rotated) = refresh(&s, &public, &rt).await;
    let rt2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    // A code of the confidential client, not redeemed (it sits in the database as it is).
    let (code2, _) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let session = b.cookies.values().next().cloned().unwrap();
    let stored = every_stored_text(&s).await;
    assert!(stored.len() > 20, "the dump read the tables: {}", stored.len());
    for (what, secret) in [
        ("an authorization code", code.as_str()),
        ("an unredeemed code", code2.as_str()),
        ("the PKCE verifier", verifier.as_str()),
        ("a refresh token", rt.as_str()),
        ("the rotated refresh token", rt2.as_str()),
        ("a client secret", secret.as_str()),
        ("a browser session", session.as_str()),
        ("the signature of an access token", at.rsplit('.').next().unwrap()),
    ] {
        assert!(!stored.iter().any(|v| v.contains(secret)), "{what} is stored as it was sent");
    }
}

#[tokio::test]
async fn fifty_redemptions_of_one_code_at_once_have_one_winner_ac_04_rl_02() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    for round in 0..3 {
        let (verifier, challenge) = pkce();
        let mut a = Authz::new(&client, CB, &challenge);
        a.scope = Some("customers.read".into());
        let loc = consent_flow(&mut b, &a, "alice", &["customers.read"]).await;
        let code = query_param(&loc, "code").unwrap_or_else(|| panic!("{loc}"));
        let tries = (0..50).map(|_| redeem(&s, &client, CB, &code, &verifier));
        let answers = futures_util::future::join_all(tries).await;
        let won: Vec<&(StatusCode, Value)> = answers.iter().filter(|(st, _)| *st == StatusCode::OK).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one redemption wins");
        for (st, body) in answers.iter().filter(|(st, _)| *st != StatusCode::OK) {
            assert_eq!(
                (*st, body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_grant")),
                "round {round}"
            );
        }
        // A replay proving possession revokes what the code gave (RFC 9700 §4.5.3).
        let rt = won[0].1["refresh_token"].as_str().unwrap();
        assert_eq!(refresh(&s, &client, rt).await.0, StatusCode::BAD_REQUEST, "round {round}: the grant is revoked");
    }
}

/// A listener that counts connections, on loopback.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_c, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn metadata_documents_on_loopback_in_any_spelling_are_not_fetched_ss_09() {
    let s = TestServer::start_with(Options { fetch_policy: FetchPolicy::default(), ..Options::default() }).await;
    let (addr, hits) = counting_listener().await;
    let port = addr.port();
    let (_, ch) = pkce();
    for host in [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "[::1]",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "app.localhost",
    ] {
        let client_id = format!("https://{host}:{port}/client.json");
        let r = s.browser().get(&Authz::new(&client_id, CB, &ch).url()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}");
        assert!(r.location.is_none(), "{host}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no connection was made");
}

#[tokio::test]
async fn metadata_documents_in_other_schemes_are_not_fetched_ss_12() {
    let s = TestServer::start().await;
    let (_, ch) = pkce();
    for client_id in [
        "file:///etc/passwd",
        "ftp://example.com/client.json",
        "gopher://example.com/1",
        "data:application/json,{}",
        "http://example.com/client.json",
        "https:/client.json",
    ] {
        let r = s.browser().get(&Authz::new(client_id, CB, &ch).url()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{client_id}");
        assert!(r.location.is_none(), "{client_id}");
        assert!(!r.body.contains("root:"), "{client_id}");
    }
}

#[tokio::test]
async fn payloads_in_reflected_parameters_are_escaped_ui_17() {
    let s = TestServer::start().await;
    // An unverified client: its errors are pages, where reflection would happen.
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let (_, ch) = pkce();
    let payloads = ["<script>alert(1)</script>", "\"onmouseover=\"alert(1)", "'><img src=x onerror=alert(1)>"];
    for p in payloads {
        let mut a = Authz::new(&client, CB, &ch);
        a.scope = Some(p.to_owned());
        a.state = p.to_owned();
        a.extra.push(("login_hint".into(), p.into()));
        a.extra.push(("ui_locales".into(), p.into()));
        let r = b.get(&a.url()).await;
        assert!(!r.body.contains(p), "{p} reflected unescaped: {}", r.body);
        // Escaped text may spell "onerror=alert"; what must never appear is markup from it.
        assert!(!r.body.contains("<script>alert") && !r.body.contains("<img src=x"), "{p}");
        assert!(!r.body.contains("\"onmouseover=\""), "{p}");
        // The same payload as an unknown resource and as a redirect URI.
        let mut a = Authz::new(&client, CB, &ch);
        a.resource = Some(format!("https://x.test/{p}"));
        let r = b.get(&a.url()).await;
        assert!(!r.body.contains(p), "{p} in resource reflected unescaped");
        let r = b.get(&Authz::new(&client, &format!("https://agent.test/{p}"), &ch).url()).await;
        assert!(!r.body.contains(p), "{p} in redirect_uri reflected unescaped");
        // And stored: a registered name shown on the consent page.
        let r = s
            .http
            .post(s.url("/register"))
            .json(&serde_json::json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": format!("App {p}")}))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::CREATED {
            let id = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
            let mut a = Authz::new(&id, CB, &ch);
            a.scope = Some("customers.read".into());
            let consent = b.get(&a.url()).await.location.unwrap();
            let page = b.get(&consent).await;
            assert!(!page.body.contains(p), "{p} as a client name shown unescaped");
        }
    }
}

#[tokio::test]
async fn a_failed_metadata_document_fetch_is_not_cached_ss_08() {
    use axum::routing::get;
    let s = TestServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let (h, doc_url) = (hits.clone(), url.clone());
    let app = axum::Router::new().route(
        "/client.json",
        get(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            let doc = serde_json::json!({"client_id": doc_url, "client_name": "Claude", "redirect_uris": [CB]});
            async move {
                // The first answer is a failure, cacheable by its headers; the next one is good.
                if n == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, [("cache-control", "max-age=3600")], "down".to_owned())
                } else {
                    (StatusCode::OK, [("cache-control", "max-age=600")], doc.to_string())
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_, ch) = pkce();
    let mut b = s.browser();
    b.login("alice", None).await;
    let r = b.get(&Authz::new(&url, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the document could not be fetched");
    let r = b.get(&Authz::new(&url, CB, &ch).url()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "fetched again, not the cached failure: {}", r.body);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_logo_or_terms_on_another_host_are_never_shown_dc_12() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/register"))
        .json(&serde_json::json!({
            "redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": "GitHub",
            "logo_uri": "https://evil.test/github-logo.png", "tos_uri": "https://evil.test/tos",
            "policy_uri": "https://evil.test/policy", "client_uri": "https://evil.test/",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (_, ch) = pkce();
    let mut a = Authz::new(&id, CB, &ch);
    a.scope = Some("customers.read".into());
    let page = open_consent(&mut b, &a.url(), "alice").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("badge unverified"), "the name is marked as unchecked");
    assert!(page.body.contains("<strong class=\"host\">agent.test</strong>"), "the redirect host, prominently");
    assert!(!page.body.contains("evil.test"), "nothing of the logo, terms, policy or home page is shown");
    assert!(!page.body.contains("<img"), "no image at all");
}

/// RL-10: keys rotate (twice, each new key published before it signs) while four agents keep
/// refreshing and calling /mcp with each new token: not one 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_under_load_without_a_single_refusal_rl_10() {
    let s = Arc::new(TestServer::start().await);
    let mut agents = Vec::new();
    for i in 0..4 {
        let cb = format!("https://agent{i}.test/cb");
        let client = s.register_public(&cb).await;
        let mut b = s.browser();
        let (code, verifier) = authorize_code(&s, &mut b, &client, &cb, &["customers.read"]).await;
        let (_, tok) = redeem(&s, &client, &cb, &code, &verifier).await;
        agents.push((client, tok["refresh_token"].as_str().unwrap().to_owned()));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (client, mut rt) in agents {
        let (s, stop, calls) = (s.clone(), stop.clone(), calls.clone());
        workers.push(tokio::spawn(async move {
            let mut kids = std::collections::BTreeSet::new();
            // One MCP session per agent; each new token is sent on it.
            let mut c = McpClient::new(&s.resource(), None);
            while !stop.load(Ordering::SeqCst) {
                let (status, tok) = refresh(&s, &client, &rt).await;
                assert_eq!(status, StatusCode::OK, "{tok}");
                rt = tok["refresh_token"].as_str().unwrap().to_owned();
                let at = tok["access_token"].as_str().unwrap();
                kids.insert(jsonwebtoken::decode_header(at).unwrap().kid.unwrap());
                c.token = Some(at.to_owned());
                if c.session.is_none() {
                    let r = c.initialize().await;
                    assert_eq!(r.status, StatusCode::OK, "a token refused during rotation: {}", r.www_authenticate());
                }
                let r = c.request("tools/list", serde_json::json!({})).await;
                assert_eq!(r.status, StatusCode::OK, "a token refused during rotation: {}", r.www_authenticate());
                calls.fetch_add(1, Ordering::SeqCst);
            }
            kids
        }));
    }
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        s.auth.rotate_key().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        s.clock.advance(601); // past the activation delay: the new key signs
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut kids = std::collections::BTreeSet::new();
    for w in workers {
        kids.extend(w.await.unwrap());
    }
    assert_eq!(kids.len(), 3, "tokens were signed by all three keys: {kids:?}");
    assert!(calls.load(Ordering::SeqCst) >= 20, "under load: {} calls", calls.load(Ordering::SeqCst));
}
