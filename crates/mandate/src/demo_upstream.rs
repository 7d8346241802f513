//! `serve --demo`'s upstream account: a second mandate in the same process, on its own loopback
//! port and SQLite file, plays a third-party service ("Example Accounts", a real OAuth server
//! with its own demo billing API behind OAuth). The main server gets it as a provider, and as a
//! gateway resource at `<public_url>/mcp/example` whose tools run with the person's own
//! Example Accounts token (docs/UPSTREAM.md).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use mandate_core::demo::{Customer, DemoStore};
use mandate_core::service::ClientRegistration;
use mandate_gateway::{Limits, Target, UpstreamSpec};
use mandate_mcp::McpSettings;
use mandate_upstream::{ClientAuth, Endpoints, ProviderSpec, redirect_uri};

use crate::config::Config;

/// The provider's and the gateway resource's name.
pub const NAME: &str = "example";
const TITLE: &str = "Example Accounts";

/// What the main server adds for the demo upstream.
pub struct DemoUpstream {
    pub provider: ProviderSpec,
    pub resource: UpstreamSpec,
    /// Lines for the start banner.
    pub lines: Vec<String>,
}

/// Starts Example Accounts and registers the main server (at `config`'s public URL) as its
/// confidential client.
pub async fn start(config: &Config) -> anyhow::Result<DemoUpstream> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the demo upstream")?;
    let addr = listener.local_addr().context("reading the demo upstream's address")?;
    // Another host name than the main server's: browsers keep cookies per host, not per port,
    // and both servers name their session cookie alike.
    let main_host = url::Url::parse(config.public_url()).ok().and_then(|u| u.host_str().map(str::to_owned));
    let host = if main_host.as_deref() == Some("localhost") { "127.0.0.1" } else { "localhost" };
    let base = format!("http://{host}:{}", addr.port());
    let file = match config.sqlite_path() {
        Some(main) => {
            let mut p = main.into_os_string();
            p.push(".example-accounts.db");
            std::path::PathBuf::from(p)
        }
        None => std::env::temp_dir().join(format!("mandate-example-accounts-{}.db", std::process::id())),
    };
    let own = Config {
        listen: addr.to_string(),
        public_url: Some(base.clone()),
        database: format!("sqlite://{}?mode=rwc", file.display()),
        secret_key: None,
        secret_key_file: None,
        resources: None,
        providers: None,
        resource_url: None,
        mcp_only: false,
        demo: true,
        ..config.clone()
    };
    let (auth, store) = crate::setup::build_with_store(&own, Vec::new()).await.context("the demo upstream")?;
    let demo: Arc<dyn DemoStore> = Arc::new(store);
    let password = crate::serve::seed_demo(&auth, demo.as_ref()).await?;
    if let Some(user) = auth.store().user_by_name("demo").await?
        && !demo.customers(&user.id).await?.iter().any(|c| c.name.starts_with("Initech"))
    {
        let c = Customer {
            id: auth.new_id(),
            name: "Initech (kept at Example Accounts)".into(),
            email: Some("ap@initech.example".into()),
            created_at: auth.now(),
        };
        demo.insert_customer(&user.id, &c).await?;
    }
    let callback = redirect_uri(config.public_url(), NAME);
    let (client, secret) = auth
        .add_client(ClientRegistration {
            name: "mandate demo (connected accounts)".into(),
            redirect_uris: vec![callback.clone()],
            confidential: true,
            allow_refresh: true,
            scope: None,
            resources: Vec::new(),
        })
        .await?;
    let resource = auth.resources.resolve(None).map_err(|e| anyhow::anyhow!(e.description.to_string()))?.clone();
    let mcp = mandate_mcp::router(McpSettings::in_process(&auth, &resource, Vec::new()), auth.clone(), demo.clone());
    let limits = mandate_server::RateLimits::default();
    let app = mandate_server::router(auth.clone(), Some(demo), limits).merge(mcp);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await {
            tracing::error!(error = %e, "the demo upstream stopped");
        }
    });
    let provider = ProviderSpec {
        name: NAME.into(),
        title: TITLE.into(),
        issuer: Some(base.clone()),
        endpoints: Endpoints::default(),
        client_id: client.id,
        client_secret: secret.map(|s| s.expose().to_owned()),
        client_auth: ClientAuth::ClientSecretBasic,
        scopes: vec!["customers.read".into(), "invoices.read".into()],
        sign_in: false,
        create_people: false,
        resource: Some(resource.uri.clone()),
        subject_claim: "sub".into(),
        extra_params: Vec::new(),
        redirect_uri: callback,
    };
    let read = format!("{NAME}.read");
    let upstream = UpstreamSpec {
        name: NAME.into(),
        title: format!("{TITLE} (with your own account there)"),
        resource: format!("{}/mcp/{NAME}", config.issuer()),
        target: Target::Http { url: resource.uri.clone(), headers: Default::default() },
        tool_scopes: ["list_customers", "get_customer", "list_invoices"]
            .into_iter()
            .map(|t| (t.to_owned(), read.clone()))
            .collect(),
        extra_scopes: Vec::new(),
        default_scopes: vec![read],
        limits: Limits::default(),
        identity: false,
        provider: Some(NAME.into()),
    };
    let lines =
        vec![format!("{TITLE} (a second, local OAuth server): {base} · sign in there as demo / password: {password}")];
    Ok(DemoUpstream { provider, resource: upstream, lines })
}
