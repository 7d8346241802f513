//! A gateway resource whose upstream is another mandate's OAuth-protected `/mcp`: the person
//! connects their account there once (during consent), then the agent's tool calls reach the
//! upstream with the person's own upstream token. The upstream's access tokens live 60 s: calls
//! keep working past expiry (the vault refreshes), and 50 concurrent calls at expiry cause one
//! refresh at the upstream, on one instance and across two sharing the database. A refresh token
//! revoked at the provider, or a disconnection, turns the next call into the URL to connect
//! (a URL-mode elicitation, -32042).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mandate_core::clock::{ManualClock, OsRandom};
use mandate_core::keys::KeyEncryptionKey;
use mandate_core::scope::ResourceCatalog;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_gateway::{Limits, Target, UpstreamSpec};
use mandate_mcp::McpSettings;
use mandate_server::{Federation, GuardedFetcher, RateLimits};
use mandate_store::SqlStore;
use mandate_testkit::{Authz, Browser, McpClient, Options, TestDatabase, TestServer, hidden, pkce, query_param};
use mandate_upstream::{ClientAuth, Endpoints, ProviderSpec, Upstreams};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One instance of "our" mandate: the authorization server with the provider configured and the
/// gateway resource `billing` in front of the provider's `/mcp`.
struct Ours {
    base: String,
    auth: Arc<AuthServer>,
}

struct World {
    provider: TestServer,
    ours: Ours,
    db: TestDatabase,
    kek: KeyEncryptionKey,
    spec: ProviderSpec,
    client_id: String,
}

impl World {
    fn clock(&self) -> &ManualClock {
        &self.provider.clock
    }
    fn resource(&self, o: &Ours) -> String {
        format!("{}/mcp/billing", o.base)
    }
}

async fn instance(
    db: &TestDatabase,
    kek: &KeyEncryptionKey,
    clock: &ManualClock,
    provider: &TestServer,
    spec: Option<ProviderSpec>,
) -> (Ours, ProviderSpec) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let store = SqlStore::open(db.url()).await.unwrap();
    let http = mandate_gateway::http_client().unwrap();
    let upstream = UpstreamSpec {
        name: "billing".into(),
        title: "Upstream Billing".into(),
        resource: format!("{base}/mcp/billing"),
        target: Target::Http { url: provider.resource(), headers: BTreeMap::new() },
        tool_scopes: [("list_customers".to_owned(), "billing.read".to_owned())].into_iter().collect(),
        extra_scopes: Vec::new(),
        default_scopes: Vec::new(),
        limits: Limits::default(),
        identity: false,
        provider: Some("up".into()),
    };
    let found = mandate_gateway::discover(&upstream, &http).await.unwrap();
    let catalog = ResourceCatalog::new(vec![found.mapping.resource.clone()]).unwrap();
    let deps = Dependencies {
        store: Arc::new(store),
        clock: Arc::new(clock.clone()),
        rng: Arc::new(OsRandom),
        kek: kek.clone(),
        documents: Arc::new(GuardedFetcher::new(Default::default()).unwrap()),
    };
    let mut settings = Settings::new(&base);
    settings.access_token_ttl = 24 * 3600;
    let auth = Arc::new(AuthServer::new(settings, catalog, deps).await.unwrap());
    // The provider knows one redirect URI per instance (each has its own origin here).
    let spec = match spec {
        Some(mut s) => {
            s.redirect_uri = format!("{base}/upstream/up/callback");
            s
        }
        None => {
            let redirect = format!("{base}/upstream/up/callback");
            let (client_id, secret) = provider.preregister(&redirect, true).await;
            ProviderSpec {
                name: "up".into(),
                title: "Upstream Billing".into(),
                issuer: Some(provider.base.clone()),
                endpoints: Endpoints::default(),
                client_id,
                client_secret: secret,
                client_auth: ClientAuth::ClientSecretBasic,
                scopes: vec!["customers.read".into()],
                sign_in: false,
                create_people: false,
                resource: Some(provider.resource()),
                subject_claim: "sub".into(),
                extra_params: Vec::new(),
                redirect_uri: redirect,
            }
        }
    };
    let upstreams = Arc::new(Upstreams::new(auth.clone(), vec![spec.clone()], Upstreams::http_client().unwrap()));
    let federation = Federation {
        upstreams: upstreams.clone(),
        password_login: true,
        resource_providers: [(upstream.resource.clone(), "up".to_owned())].into_iter().collect(),
    };
    let def = auth.resources.resolve(Some(&upstream.resource)).unwrap().clone();
    let settings = McpSettings::in_process(&auth, &def, Vec::new());
    let handle = upstreams.handle("up").unwrap();
    let (_upstream, gateway) = mandate_gateway::serve(upstream, found, auth.clone(), http, settings, Some(handle));
    let limits = RateLimits { login_burst: 1000, register_burst: 1000, ..RateLimits::default() };
    let app = mandate_server::router_with(auth.clone(), None, limits, Some(federation))
        .merge(gateway)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Ours { base, auth }, spec)
}

async fn world() -> World {
    let provider = TestServer::start_with(Options { access_token_ttl: Some(60), ..Options::default() }).await;
    let db = TestDatabase::create().await;
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let (ours, spec) = instance(&db, &kek, &provider.clock, &provider, None).await;
    ours.auth.add_user("alice", mandate_testkit::PASSWORD.into()).await.unwrap();
    let client_id = spec.client_id.clone();
    World { provider, ours, db, kek, spec, client_id }
}

/// The agent's authorization at `o`: consent asks to connect the upstream account first; the
/// person does, comes back, allows; returns the agent's access token.
async fn agent_token(w: &World, o: &Ours, expect_connect_step: bool) -> String {
    let mut b = Browser::for_base(&o.base);
    let redirect = "http://127.0.0.1:9/cb";
    let body = json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none", "client_name": "Agent"});
    let reg: Value = reqwest::Client::new()
        .post(format!("{}/register", o.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = reg["client_id"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(&agent, redirect, &challenge);
    authz.scope = Some("billing.read".into());
    authz.resource = Some(w.resource(o));
    let r = b.get(&authz.url()).await;
    let request = r.location.unwrap().trim_start_matches("/login?request=").to_owned();
    let consent = b.login("alice", Some(&request)).await.location.unwrap();
    let mut page = b.get(&consent).await;
    if expect_connect_step {
        assert!(page.body.contains("First: connect your Upstream Billing account"), "{}", page.body);
        // Allowing first is refused: the account is needed.
        let csrf = hidden(&page.body, "csrf").unwrap();
        let r = b
            .post("/consent", &[("csrf", &csrf), ("request", &request), ("action", "allow"), ("scope", "billing.read")])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.body.contains("Connect your Upstream Billing account first"), "{}", r.body);
        connect_at_provider(w, &mut b, Some(&request)).await;
        page = b.get(&consent).await;
    }
    assert!(!page.body.contains("First: connect"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b
        .post("/consent", &[("csrf", &csrf), ("request", &request), ("action", "allow"), ("scope", "billing.read")])
        .await;
    let back = r.location.unwrap_or_else(|| panic!("{} {}", r.status, r.body));
    let code = query_param(&back, "code").unwrap();
    let token: Value = reqwest::Client::new()
        .post(format!("{}/token", o.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &agent),
            ("redirect_uri", redirect),
            ("resource", &w.resource(o)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap_or_else(|| panic!("{token}")).to_owned()
}

/// Connects alice's account: our connect page, the provider's sign-in and consent, our callback.
async fn connect_at_provider(w: &World, b: &mut Browser, request: Option<&str>) {
    let path = match request {
        Some(r) => format!("/account/connections/up?return=%2Fconsent%3Frequest%3D{r}"),
        None => "/account/connections/up".to_owned(),
    };
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Connect your Upstream Billing account"));
    let csrf = hidden(&page.body, "csrf").unwrap();
    let mut form = vec![("csrf", csrf.clone())];
    if let Some(r) = hidden(&page.body, "return") {
        form.push(("return", r));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post("/account/connections/up/connect", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let at_provider = r.location.unwrap();
    assert!(at_provider.starts_with(&w.provider.base), "{at_provider}");
    let mut p = w.provider.browser();
    let r = p.get(at_provider.strip_prefix(&w.provider.base).unwrap()).await;
    let preq = r.location.unwrap().trim_start_matches("/login?request=").to_owned();
    let next = p.login("alice", Some(&preq)).await.location.unwrap();
    // A second connection: the provider remembers the consent and answers at once.
    let callback = if next.starts_with("/consent") {
        let page = p.get(&next).await;
        let csrf = hidden(&page.body, "csrf").unwrap();
        let r = p
            .post("/consent", &[("csrf", &csrf), ("request", &preq), ("action", "allow"), ("scope", "customers.read")])
            .await;
        r.location.unwrap()
    } else {
        next
    };
    let ours = callback.split("/upstream/").next().unwrap().to_owned();
    let r = b.get(callback.strip_prefix(&ours).unwrap()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let expected = match request {
        Some(req) => format!("/consent?request={req}"),
        None => "/account/connections?connected=1".to_owned(),
    };
    assert_eq!(r.location.as_deref(), Some(expected.as_str()));
}

async fn refreshes_at_provider(w: &World) -> i64 {
    w.provider.db_count("SELECT COUNT(*) FROM audit_events WHERE kind = 'token.refreshed'").await
}

async fn session(w: &World, o: &Ours, token: &str) -> McpClient {
    let mut c = McpClient::new(&w.resource(o), Some(token));
    let r = c.initialize().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.message);
    assert!(r.message["result"].is_object(), "{}", r.message);
    c
}

/// 50 tool calls at once, spread over `clients`; every one must succeed.
async fn fifty_calls(clients: Vec<McpClient>) {
    let n = clients.len();
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let calls = 50 / n + usize::from(i < 50 % n);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut running = Vec::new();
            for k in 0..calls {
                let mut fresh = McpClient::new(&c.url, c.token.as_deref());
                fresh.session.clone_from(&c.session);
                fresh.protocol.clone_from(&c.protocol);
                running.push(tokio::spawn(async move {
                    // Each request of a session has its own JSON-RPC id.
                    let call = json!({"jsonrpc": "2.0", "id": 1000 + k, "method": "tools/call", "params": {"name": "list_customers", "arguments": {}}});
                    let r = fresh.post(call).await;
                    json!({"status": r.status.as_u16(), "message": r.message})
                }));
            }
            for r in running {
                out.push(r.await.unwrap());
            }
            out
        }));
    }
    for t in tasks {
        for m in t.await.unwrap() {
            let m = &m["message"];
            assert!(m["result"]["isError"] != json!(true) && m["result"].is_object(), "{m}");
        }
    }
}

#[tokio::test]
async fn tool_calls_reach_the_upstream_with_the_persons_own_token_refreshed_once_per_expiry() {
    let w = world().await;
    let token = agent_token(&w, &w.ours, true).await;
    let mut c = session(&w, &w.ours, &token).await;
    let r = c.call("list_customers", json!({})).await;
    assert!(r.message["result"].is_object(), "{}", r.message);
    // The upstream saw alice's own token (its trail names the call as our client's, for alice).
    let calls = w.provider.db_strings("SELECT client_id FROM audit_events WHERE kind = 'tool.call'").await;
    assert_eq!(calls, vec![w.client_id.clone()], "the upstream recorded the call as ours");
    assert_eq!(refreshes_at_provider(&w).await, 0);

    // The upstream's tokens live 60 s: past that, 50 concurrent calls cause one refresh.
    w.clock().advance(61);
    let clients = vec![session(&w, &w.ours, &token).await, c];
    fifty_calls(clients).await;
    assert_eq!(refreshes_at_provider(&w).await, 1, "one upstream refresh for 50 calls");
    // And again at the next expiry.
    w.clock().advance(61);
    fifty_calls(vec![session(&w, &w.ours, &token).await]).await;
    assert_eq!(refreshes_at_provider(&w).await, 2);
}

#[tokio::test]
async fn two_instances_refresh_once_between_them() {
    let w = world().await;
    let (second, _) = instance(&w.db, &w.kek, w.clock(), &w.provider, Some(w.spec.clone())).await;
    let token = agent_token(&w, &w.ours, true).await;
    // The agent's token works at either instance's gateway only for its own resource: a second
    // authorization at the second instance (the person's upstream account is already there).
    let token2 = agent_token(&w, &second, false).await;
    session(&w, &w.ours, &token).await.call("list_customers", json!({})).await;
    w.clock().advance(61);
    let clients = vec![session(&w, &w.ours, &token).await, session(&w, &second, &token2).await];
    fifty_calls(clients).await;
    assert_eq!(refreshes_at_provider(&w).await, 1, "one upstream refresh across both instances");
}

/// The error a call gets when the account must be connected: -32042 with the URL.
fn assert_connect_required(m: &Value, base: &str) {
    assert_eq!(m["error"]["code"], json!(-32042), "{m}");
    let e = &m["error"]["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url", "{m}");
    assert_eq!(e["url"], format!("{base}/account/connections/up"), "{m}");
    assert!(e["elicitationId"].as_str().is_some_and(|s| !s.is_empty()), "{m}");
    assert!(m["error"]["message"].as_str().unwrap().contains("/account/connections/up"), "{m}");
}

#[tokio::test]
async fn a_refresh_token_revoked_at_the_provider_turns_the_next_call_into_the_connect_url() {
    let w = world().await;
    let token = agent_token(&w, &w.ours, true).await;
    let mut c = session(&w, &w.ours, &token).await;
    assert!(c.call("list_customers", json!({})).await.message["result"].is_object());
    let alice = w.provider.auth.store().user_by_name("alice").await.unwrap().unwrap().id;
    assert_eq!(
        w.provider.auth.store().revoke_user_client(&alice, &w.client_id, w.provider.auth.now()).await.unwrap(),
        1
    );
    w.clock().advance(61);
    let r = c.call("list_customers", json!({})).await;
    assert_connect_required(&r.message, &w.ours.base);
    assert!(r.message["error"]["message"].as_str().unwrap().contains("Connect it again"), "{}", r.message);
    // A new session is refused the same way (initialize needs the account too).
    let mut fresh = McpClient::new(&w.resource(&w.ours), Some(&token));
    let params =
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
    let r = fresh.request("initialize", params).await;
    assert_connect_required(&r.message, &w.ours.base);
    // The trail says why.
    let failures = w
        .ours
        .auth
        .store()
        .events(&mandate_core::model::AuditFilter { limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert!(failures.iter().any(|e| e.kind == "upstream.refresh" && e.outcome == "failure"), "{failures:?}");
}

#[tokio::test]
async fn disconnecting_from_the_account_page_revokes_at_the_provider() {
    let w = world().await;
    let token = agent_token(&w, &w.ours, true).await;
    let mut c = session(&w, &w.ours, &token).await;
    assert!(c.call("list_customers", json!({})).await.message["result"].is_object());
    let mut b = Browser::for_base(&w.ours.base);
    b.login("alice", None).await;
    let page = b.get("/account/connections").await;
    assert!(page.body.contains("Disconnect Upstream Billing"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b.post("/account/connections/up/disconnect", &[("csrf", &csrf)]).await;
    assert_eq!(r.location.as_deref(), Some("/account/connections?disconnected=up"));
    // Observed at the provider: our grant there is revoked.
    assert_eq!(
        w.provider.db_count("SELECT COUNT(*) FROM grants WHERE revoked_at IS NULL AND activated_at IS NOT NULL").await,
        0
    );
    let r = c.call("list_customers", json!({})).await;
    assert_connect_required(&r.message, &w.ours.base);
    assert!(r.message["error"]["message"].as_str().unwrap().contains("not connected"), "{}", r.message);
    // Revoking the agent does not disconnect the account (connected again first).
    connect_at_provider(&w, &mut b, None).await;
    assert!(c.call("list_customers", json!({})).await.message["result"].is_object());
    let apps = w
        .ours
        .auth
        .connected_apps(&w.ours.auth.store().user_by_name("alice").await.unwrap().unwrap().id)
        .await
        .unwrap();
    for a in apps {
        let page = b.get("/account/connections").await;
        let csrf = hidden(&page.body, "csrf").unwrap();
        b.post("/account/apps/revoke", &[("csrf", &csrf), ("client_id", &a.client_id)]).await;
    }
    let still: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM upstream_accounts WHERE connected = 1")
        .fetch_one(SqlStore::open(w.db.url()).await.unwrap().pool())
        .await
        .unwrap();
    assert_eq!(still, 1, "revoking an agent leaves the upstream account connected");
}

#[tokio::test]
async fn bad_requests_around_providers_get_clear_pages() {
    let w = world().await;
    let mut b = Browser::for_base(&w.ours.base);
    // An answer for no request this browser started.
    let r = b.get("/upstream/up/callback?state=bogus&code=x&iss=whatever").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("not for a request this browser started"), "{}", r.body);
    let r = b.get("/upstream/up/callback").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b.get("/upstream/nope/callback?state=x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // `up` is not a sign-in provider.
    let r = b.get("/login/with/up").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Not signed in: the connect URL sends the person to sign in, and back.
    let r = b.get("/account/connections/up").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login?return=%2Faccount%2Fconnections%2Fup"));
    let page = b.get("/login?return=%2Faccount%2Fconnections%2Fup").await;
    assert_eq!(hidden(&page.body, "return").as_deref(), Some("/account/connections/up"));
    // A return elsewhere is dropped.
    let page = b.get("/login?return=https%3A%2F%2Fevil.example%2F").await;
    assert_eq!(hidden(&page.body, "return"), None);
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", mandate_testkit::PASSWORD),
                ("return", "/account/connections/up"),
            ],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/account/connections/up"));
    // Signed in: an unknown provider, a form without the CSRF token, an unknown action.
    let r = b.get("/account/connections/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b.post("/account/connections/up/connect", &[("csrf", "wrong")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = b.get("/account/connections").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b.post("/account/connections/up/frobnicate", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b.post("/account/link", &[("csrf", &csrf), ("offer", "bogus")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The connect page's form may lead to the provider (CSP form-action names its origin).
    let r = b.get("/account/connections/up").await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.headers.get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("form-action 'self' {}", w.provider.base)), "{csp}");
}

#[tokio::test]
async fn ending_the_session_ends_the_upstream_session_with_the_persons_token() {
    let w = world().await;
    let token = agent_token(&w, &w.ours, true).await;
    let mut c = session(&w, &w.ours, &token).await;
    assert!(c.call("list_customers", json!({})).await.message["result"].is_object());
    let before = w.provider.db_count("SELECT COUNT(*) FROM mcp_sessions").await;
    assert!(before >= 1, "the upstream holds the session");
    let r = reqwest::Client::new()
        .delete(w.resource(&w.ours))
        .bearer_auth(&token)
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The upstream's DELETE carried alice's token: the upstream ended its session.
    assert_eq!(w.provider.db_count("SELECT COUNT(*) FROM mcp_sessions").await, before - 1);
}
