//! `mandate serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Args;
use serde::Serialize;

use std::sync::Arc;

use mandate_core::AuthServer;
use mandate_core::demo::{Customer, DemoStore, Invoice, InvoiceStatus, Todo};
use mandate_guard::{JwksKeySource, TokenCheck, Validator};
use mandate_mcp::McpSettings;

use crate::CommonFlags;
use crate::config::Config;

#[derive(Args, Serialize, Default)]
pub struct ServeFlags {
    /// Address to listen on [env: MANDATE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Allow an http public URL on a non-loopback host (testing only) [env: MANDATE_INSECURE_HTTP]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_http: bool,
    /// PEM certificate chain for TLS [env: MANDATE_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS [env: MANDATE_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Seed a demo user (its password is printed) and demo data [env: MANDATE_DEMO]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    demo: bool,
    /// Serve only the MCP endpoint, trusting the authorization server at --issuer [env: MANDATE_MCP_ONLY]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mcp_only: bool,
    /// The authorization server to trust with --mcp-only [env: MANDATE_ISSUER]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    /// Where the demo MCP endpoint lives when it runs separately [env: MANDATE_RESOURCE_URL]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_url: Option<String>,
}

/// The flags of `serve`, merged over the file and environment.
#[derive(Serialize)]
pub struct Overrides<'a> {
    #[serde(flatten)]
    pub common: &'a CommonFlags,
    #[serde(flatten)]
    pub serve: &'a ServeFlags,
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (auth, store) = crate::setup::build_with_store(&config).await?;
    // Revocations made by other processes on this database (PostgreSQL LISTEN/NOTIFY).
    let listening = auth.clone();
    store.listen_for_revocations(move |_event| listening.note_revocation_elsewhere());
    let demo: Arc<dyn DemoStore> = Arc::new(store);
    spawn_janitor(auth.clone());
    let app = if config.mcp_only {
        mcp_only_router(&config, auth.clone(), demo).await?
    } else {
        if config.demo {
            seed_demo(&auth, demo.as_ref()).await?;
        }
        let limits =
            mandate_server::RateLimits { trust_forwarded_for: config.trust_forwarded_for, ..Default::default() };
        let resource = auth.resources.resolve(None).map_err(|e| anyhow::anyhow!(e.description.to_string()))?;
        let local_mcp = format!("{}/mcp", auth.settings.issuer);
        if resource.uri == local_mcp {
            let mcp = mandate_mcp::router(
                McpSettings::in_process(&auth, resource, config.mcp_allowed_origins.clone()),
                auth.clone(),
                demo.clone(),
            );
            mandate_server::router(auth.clone(), Some(demo), limits).merge(mcp)
        } else {
            // The MCP server runs elsewhere: serving /mcp here would accept its tokens.
            tracing::info!(resource = %resource.uri, "no MCP endpoint here: the resource is served by another process");
            mandate_server::router(auth.clone(), None, limits)
        }
    };
    let app =
        app.merge(mandate_server::health_routes(auth.clone())).into_make_service_with_connect_info::<SocketAddr>();
    let addr: SocketAddr =
        config.listen.parse().with_context(|| format!("--listen {:?} is not an address", config.listen))?;
    tracing::info!(public_url = %auth.settings.issuer, %addr, database = %crate::setup::redact(&config.database), mcp_only = config.mcp_only, "mandate is serving");
    println!("mandate is serving {}", auth.settings.issuer);
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            axum_server::bind_rustls(addr, tls).serve(app).await.context("serving")
        }
        _ => {
            // No Nagle: streamed (SSE) MCP responses are several small writes, and delayed ACKs
            // would add ~40 ms to every one of them.
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.context("serving")
        }
    }
}

fn spawn_janitor(auth: Arc<AuthServer>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            match auth.purge_expired().await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired sessions, codes and tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired state failed"),
            }
        }
    });
}

/// `--mcp-only`: the MCP endpoint alone, validating tokens against the issuer's published keys.
async fn mcp_only_router(
    config: &Config,
    auth: Arc<AuthServer>,
    demo: Arc<dyn DemoStore>,
) -> anyhow::Result<axum::Router> {
    let issuer = config.issuer.clone().context("--mcp-only needs --issuer")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    // RFC 8414 §3: the well-known segment goes between the origin and the issuer's path; then
    // the OpenID Connect form, appended.
    let parsed = url::Url::parse(&issuer).context("--issuer")?;
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
        format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
    ];
    let mut metadata: Option<(String, serde_json::Value)> = None;
    for url in &candidates {
        let got = async { http.get(url).send().await?.error_for_status()?.json::<serde_json::Value>().await }.await;
        if let Ok(v) = got {
            metadata = Some((url.clone(), v));
            break;
        }
    }
    let (metadata_url, metadata) = metadata.with_context(|| {
        format!("no authorization server metadata found for {issuer} (tried {})", candidates.join(", "))
    })?;
    if metadata["issuer"].as_str() != Some(issuer.as_str()) {
        anyhow::bail!("the metadata at {metadata_url} names issuer {:?}, not {issuer:?}", metadata["issuer"]);
    }
    let jwks_uri = metadata["jwks_uri"].as_str().context("the issuer publishes no jwks_uri")?;
    let resource = format!("{}/mcp", auth.settings.issuer);
    let (scopes_supported, challenge_scopes) =
        auth.resources.resolve(None).map(mandate_mcp::published_scopes).unwrap_or_default();
    Ok(mandate_mcp::router(
        McpSettings {
            resource: resource.clone(),
            issuer: issuer.clone(),
            scopes_supported,
            challenge_scopes,
            check: TokenCheck::Jwt(Validator::new(
                issuer,
                resource,
                Arc::new(JwksKeySource::new(jwks_uri)?),
                auth.clock(),
            )),
            extra_origins: config.mcp_allowed_origins.clone(),
            revocation: None,
            shared_sessions: true,
        },
        auth,
        demo,
    ))
}

/// `--demo`: a demo user with a fresh password (printed), and some billing and todo data.
async fn seed_demo(auth: &AuthServer, demo: &dyn DemoStore) -> anyhow::Result<()> {
    let password = auth.new_secret();
    let user = auth.set_or_create_user("demo", password.clone()).await?;
    if demo.customers(&user.id).await?.is_empty() {
        let now = auth.now();
        for (name, email) in [("Acme Corp", "billing@acme.example"), ("Globex", "ap@globex.example")] {
            let c = Customer { id: auth.new_id(), name: name.into(), email: Some(email.into()), created_at: now };
            demo.insert_customer(&user.id, &c).await?;
            let i = Invoice {
                id: auth.new_id(),
                customer_id: c.id.clone(),
                amount_cents: 125_000,
                currency: "EUR".into(),
                status: InvoiceStatus::Draft,
                created_at: now,
                sent_at: None,
            };
            demo.insert_invoice(&user.id, &i).await?;
        }
        for title in ["Chase the Globex payment", "Prepare the quarterly report"] {
            demo.insert_todo(&user.id, &Todo { id: auth.new_id(), title: title.into(), done: false, created_at: now })
                .await?;
        }
    }
    println!("demo user: demo / password: {password}");
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
