//! Shared by the vault tests: another mandate as the provider (its own database, the same
//! manual clock) with a confidential client registered for "ours", and alice connecting her
//! account there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use mandate_core::clock::OsRandom;
use mandate_core::model::FlowPurpose;
use mandate_core::scope::ResourceCatalog;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_testkit::{McpClient, Options, TestServer, hidden, query_param};
use mandate_upstream::{Callback, ClientAuth, Endpoints, ProviderSpec, UpstreamHandle, Upstreams};
use reqwest::StatusCode;

pub struct Pair {
    pub provider: TestServer,
    pub ours: TestServer,
    pub upstreams: Arc<Upstreams>,
    pub spec: ProviderSpec,
    pub client_id: String,
}

pub async fn pair() -> Pair {
    let provider = TestServer::start().await;
    let ours = TestServer::start_with(Options { clock: Some(provider.clock.clone()), ..Options::default() }).await;
    let redirect = ours.url("/upstream/up/callback");
    let (client_id, secret) = provider.preregister(&redirect, true).await;
    let spec = ProviderSpec {
        name: "up".into(),
        title: "Upstream Billing".into(),
        issuer: Some(provider.base.clone()),
        endpoints: Endpoints::default(),
        client_id: client_id.clone(),
        client_secret: secret,
        client_auth: ClientAuth::ClientSecretBasic,
        scopes: vec!["customers.read".into()],
        sign_in: false,
        create_people: false,
        resource: Some(provider.resource()),
        subject_claim: "sub".into(),
        extra_params: Vec::new(),
        redirect_uri: redirect,
    };
    let upstreams = Arc::new(Upstreams::new(ours.auth.clone(), vec![spec.clone()], Upstreams::http_client().unwrap()));
    Pair { provider, ours, upstreams, spec, client_id }
}

/// A second mandate instance on `ours`'s database (same key-encryption key, its own vault).
pub async fn second_instance(p: &Pair) -> Arc<Upstreams> {
    instance_with_kek(p, p.ours.kek.clone()).await.unwrap()
}

/// Another mandate instance on `ours`'s database, with the key-encryption key `kek`; the error
/// when it cannot start (its signing keys do not open).
pub async fn instance_with_kek(
    p: &Pair,
    kek: mandate_core::keys::KeyEncryptionKey,
) -> Result<Arc<Upstreams>, mandate_core::service::SetupError> {
    let deps = Dependencies {
        store: Arc::new(p.ours.store.clone()),
        clock: Arc::new(p.ours.clock.clone()),
        rng: Arc::new(OsRandom),
        kek,
        documents: Arc::new(mandate_server::GuardedFetcher::new(Default::default()).unwrap()),
    };
    let auth = AuthServer::new(Settings::new(&p.ours.base), ResourceCatalog::demo(&p.ours.base).unwrap(), deps).await?;
    Ok(Arc::new(Upstreams::new(Arc::new(auth), vec![p.spec.clone()], Upstreams::http_client().unwrap())))
}

pub async fn user_id(s: &TestServer, name: &str) -> String {
    s.auth.store().user_by_name(name).await.unwrap().unwrap().id
}

/// alice (of `ours`) connects her account at the provider (where she is alice too).
pub async fn connect(p: &Pair) {
    let alice = p.ours.auth.store().user_by_name("alice").await.unwrap().unwrap();
    let started = p.upstreams.start("up", FlowPurpose::Connect, Some(&alice.id), None, None).await.unwrap();
    let path = started.url.strip_prefix(&p.provider.base).unwrap().to_owned();
    assert_eq!(query_param(&started.url, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query_param(&started.url, "resource"), Some(p.provider.resource()));
    let mut b = p.provider.browser();
    let r = b.get(&path).await;
    let request = r.location.unwrap().trim_start_matches("/login?request=").to_owned();
    let next = b.login("alice", Some(&request)).await.location.unwrap();
    // Connected before: the provider remembers the consent and answers at once.
    let back = if next.starts_with("/consent") {
        let page = b.get(&next).await;
        let csrf = hidden(&page.body, "csrf").unwrap();
        let req = hidden(&page.body, "request").unwrap();
        let form =
            [("csrf", csrf.as_str()), ("request", req.as_str()), ("action", "allow"), ("scope", "customers.read")];
        b.post("/consent", &form).await.location.unwrap()
    } else {
        next
    };
    assert!(back.starts_with(&p.spec.redirect_uri), "{back}");
    let (state, code, iss) = (query_param(&back, "state"), query_param(&back, "code"), query_param(&back, "iss"));
    let answer = Callback { state: state.as_deref(), code: code.as_deref(), error: None, iss: iss.as_deref() };
    let done = p.upstreams.finish("up", &answer, Some(&started.browser), Some(&alice.id)).await.unwrap();
    p.upstreams.complete_connect(done, &alice).await.unwrap();
}

/// Refresh grants the provider answered (its own trail).
pub async fn refreshes_at_provider(p: &Pair) -> i64 {
    p.provider.db_count("SELECT COUNT(*) FROM audit_events WHERE kind = 'token.refreshed'").await
}

/// The provider's protected MCP endpoint accepts the token.
pub async fn works_upstream(p: &Pair, token: &str) -> bool {
    let mut c = McpClient::new(&p.provider.resource(), Some(token));
    c.initialize().await.status == StatusCode::OK
}

pub fn handle(u: &Arc<Upstreams>) -> UpstreamHandle {
    u.handle("up").unwrap()
}
