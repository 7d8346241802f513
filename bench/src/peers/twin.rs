//! `mandate-peers --serve-twin`: mandate's MCP endpoint with its auth-off twin, in a process of
//! its own (the driver starts it pinned, as every server). The router is built as
//! `mandate serve` builds it (`mandate_server::router` + `mandate_mcp::router` with
//! `McpSettings::in_process`, SQLite file, TCP_NODELAY), plus `/mcp-open`: the same rmcp service
//! with a fixed caller (the one person here, scope `customers.read`) injected and no guard, as
//! `mandate-load --scenario mcp` serves it. The person owns the two customers `serve --demo`
//! seeds. Prints one JSON line when ready: its base URL, the person and the password.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use mandate_core::clock::{OsRandom, SystemClock};
use mandate_core::demo::{Customer, DemoStore};
use mandate_core::keys::KeyEncryptionKey;
use mandate_core::scope::{ResourceCatalog, ScopeSet};
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_guard::Principal;
use mandate_server::{GuardedFetcher, RateLimits, router};
use mandate_store::SqlStore;
use serde_json::json;

pub const USER: &str = "bench";

pub async fn serve() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqlStore::open(&format!("sqlite://{}", dir.path().join("twin.db").display())).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let settings = Settings::new(&base);
    let demo: Arc<dyn DemoStore> = Arc::new(store.clone());
    let deps = Dependencies {
        store: Arc::new(store),
        clock: Arc::new(SystemClock),
        rng: Arc::new(OsRandom),
        kek: KeyEncryptionKey::generate(&OsRandom),
        documents: Arc::new(GuardedFetcher::new(settings.fetch_policy)?),
    };
    let auth = Arc::new(AuthServer::new(settings, ResourceCatalog::demo(&base)?, deps).await?);
    let password = auth.new_secret();
    let user = auth.set_or_create_user(USER, password.clone()).await?;
    let now = auth.now();
    for (name, email) in [("Acme Corp", "billing@acme.example"), ("Globex", "ap@globex.example")] {
        let c = Customer { id: auth.new_id(), name: name.into(), email: Some(email.into()), created_at: now };
        demo.insert_customer(&user.id, &c).await?;
    }
    let def = auth.resources.resolve(None).map_err(|e| anyhow::anyhow!(e.description.to_string()))?.clone();
    let guarded =
        mandate_mcp::router(mandate_mcp::McpSettings::in_process(&auth, &def, Vec::new()), auth.clone(), demo.clone());
    let caller = Principal {
        issuer: String::new(),
        subject: user.id.clone(),
        client_id: "bench-open".to_owned(),
        scopes: ScopeSet::from_names(["customers.read"]),
        grant_id: None,
        token_id: None,
        expires_at: i64::MAX,
    };
    let host = base.trim_start_matches("http://").to_owned();
    let open = Router::new()
        .nest_service("/mcp-open", mandate_mcp::service(auth.clone(), demo.clone(), vec![host]))
        .layer(from_fn(move |mut req: Request, next: Next| {
            let caller = caller.clone();
            async move {
                req.extensions_mut().insert(caller);
                next.run(req).await
            }
        }));
    let app = router(auth.clone(), Some(demo), RateLimits::default()).merge(guarded).merge(open);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("{}", json!({"ready": true, "pid": std::process::id(), "base": base, "user": USER, "password": password}));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.context("serving")?;
    drop(dir);
    Ok(())
}
