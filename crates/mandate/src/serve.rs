//! `mandate serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

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
    let auth = crate::setup::build(&config).await?;
    let janitor = auth.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            match janitor.purge_expired().await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired sessions, codes and tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired state failed"),
            }
        }
    });
    let app = mandate_server::router(auth.clone(), mandate_server::RateLimits::default())
        .into_make_service_with_connect_info::<SocketAddr>();
    let addr: SocketAddr =
        config.listen.parse().with_context(|| format!("--listen {:?} is not an address", config.listen))?;
    tracing::info!(issuer = %auth.settings.issuer, %addr, database = %crate::setup::redact(&config.database), "mandate is serving");
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            axum_server::bind_rustls(addr, tls).serve(app).await.context("serving")
        }
        _ => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.context("serving")
        }
    }
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
