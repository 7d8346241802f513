//! Turning a [`Config`] into a running [`AuthServer`]: database, key-encryption key, resources.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use mandate_core::clock::{OsRandom, SystemClock};
use mandate_core::keys::{KeyEncryptionKey, SigningAlg};
use mandate_core::scope::ResourceCatalog;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_server::GuardedFetcher;
use mandate_store::SqlStore;

use crate::config::Config;

/// The key-encryption key: `secret_key`, else the key file (created for SQLite on first use).
fn key_encryption_key(config: &Config) -> anyhow::Result<KeyEncryptionKey> {
    if let Some(k) = &config.secret_key {
        return KeyEncryptionKey::from_base64url(k).context("MANDATE_SECRET_KEY");
    }
    let Some(path) = config.key_file() else {
        bail!("a key-encryption key is required for this database: set MANDATE_SECRET_KEY or --secret-key-file");
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return KeyEncryptionKey::from_base64url(&text).with_context(|| format!("key file {}", path.display()));
    }
    if config.secret_key_file.is_some() {
        bail!("key file {} does not exist", path.display());
    }
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).with_context(|| format!("creating key file {}", path.display()))?;
    file.write_all(kek.to_base64url().as_bytes())?;
    tracing::info!(path = %path.display(), "created a new key-encryption key; back it up with the database");
    Ok(kek)
}

/// Opens the database and builds the authorization server.
pub async fn build(config: &Config) -> anyhow::Result<Arc<AuthServer>> {
    Ok(build_with_store(config).await?.0)
}

/// Like [`build`], also returning the store (the demo apps use it directly).
pub async fn build_with_store(config: &Config) -> anyhow::Result<(Arc<AuthServer>, SqlStore)> {
    let store =
        SqlStore::open(&config.database).await.with_context(|| format!("database {}", redact(&config.database)))?;
    let kek = key_encryption_key(config)?;
    let issuer = config.issuer();
    let mut settings = Settings::new(&issuer);
    settings.access_token_ttl = config.access_token_ttl;
    settings.refresh_token_idle_ttl = config.refresh_token_ttl;
    settings.refresh_grace = config.refresh_grace;
    settings.key_activation_delay = config.key_activation_delay;
    settings.signing_alg = SigningAlg::parse(&config.signing_alg)?;
    let resources = match (&config.resources, &config.resource_url) {
        (Some(r), _) => ResourceCatalog::new(r.clone())?,
        (None, Some(url)) => ResourceCatalog::demo_at(url)?,
        (None, None) => ResourceCatalog::demo(&issuer)?,
    };
    let fetcher = GuardedFetcher::new(settings.fetch_policy).context("building the HTTP client")?;
    let deps = Dependencies {
        store: Arc::new(store.clone()),
        clock: Arc::new(SystemClock),
        rng: Arc::new(OsRandom),
        kek,
        documents: Arc::new(fetcher),
    };
    Ok((Arc::new(AuthServer::new(settings, resources, deps).await?), store))
}

/// A database URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
