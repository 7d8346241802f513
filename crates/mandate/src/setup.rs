//! Turning a [`Config`] into a running [`AuthServer`]: database, key-encryption key, resources.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use mandate_core::clock::{OsRandom, SystemClock};
use mandate_core::keys::{KeyEncryptionKey, SigningAlg};
use mandate_core::scope::{ResourceCatalog, ResourceDef};
use mandate_core::store::KeyStore;
use mandate_core::{AuthServer, Dependencies, Settings};
use mandate_server::GuardedFetcher;
use mandate_store::SqlStore;

use crate::config::Config;

/// Reads a key-encryption key file, refusing one that others can read.
fn read_key_file(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "key file {} is readable by others (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    KeyEncryptionKey::from_base64url(&text).with_context(|| format!("key file {}", path.display()))
}

/// Writes a new random key-encryption key to `path`, which must not exist (mode 0600).
fn create_key_file(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let kek = KeyEncryptionKey::generate(&OsRandom);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating key file {}", path.display()))?;
    file.write_all(kek.to_base64url().as_bytes())?;
    file.sync_all()?;
    Ok(kek)
}

/// The new key for `mandate keys rotate-kek --new-key-file`: read from `path`, or created there
/// when it does not exist; true when created.
pub fn new_key_file(path: &Path) -> anyhow::Result<(KeyEncryptionKey, bool)> {
    if path.exists() {
        return Ok((read_key_file(path)?, false));
    }
    Ok((create_key_file(path)?, true))
}

/// The fallback key-encryption key (opens, never seals), when configured.
fn fallback_key(config: &Config) -> anyhow::Result<Option<KeyEncryptionKey>> {
    if let Some(k) = &config.fallback_secret_key {
        return KeyEncryptionKey::from_base64url(k)
            .context("fallback_secret_key (MANDATE_FALLBACK_SECRET_KEY)")
            .map(Some);
    }
    match &config.fallback_secret_key_file {
        Some(path) if !path.exists() => bail!("fallback key file {} does not exist", path.display()),
        Some(path) => read_key_file(path).map(Some),
        None => Ok(None),
    }
}

/// The key-encryption key: `secret_key`, else the key file (created for a fresh SQLite
/// database); with the fallback key, when configured, accepted for opening.
async fn key_encryption_key(config: &Config, store: &SqlStore) -> anyhow::Result<KeyEncryptionKey> {
    let kek = primary_key(config, store).await?;
    Ok(match fallback_key(config)? {
        Some(fallback) => kek.with_fallback(&fallback),
        None => kek,
    })
}

async fn primary_key(config: &Config, store: &SqlStore) -> anyhow::Result<KeyEncryptionKey> {
    if let Some(k) = &config.secret_key {
        return KeyEncryptionKey::from_base64url(k).context("secret_key (MANDATE_SECRET_KEY)");
    }
    let Some(path) = config.key_file() else {
        bail!("a key-encryption key is required for this database: set MANDATE_SECRET_KEY or --secret-key-file");
    };
    if path.exists() {
        return read_key_file(&path);
    }
    if config.secret_key_file.is_some() {
        bail!("key file {} does not exist", path.display());
    }
    // A new key only for a database that holds no signing keys yet: otherwise the key was lost,
    // and a new one would only hide that.
    if !store.list_keys().await?.is_empty() {
        bail!(
            "the database holds signing keys but their key file {} is missing: restore it from backup (or set MANDATE_SECRET_KEY)",
            path.display()
        );
    }
    let kek = create_key_file(&path)?;
    tracing::info!(path = %path.display(), "created a new key-encryption key; back it up with the database");
    Ok(kek)
}

/// `mandate migrate`: applies pending migrations, refusing a schema newer than this build.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store =
        SqlStore::connect(&config.database).await.with_context(|| format!("database {}", redact(&config.database)))?;
    let before = store.migrate().await?;
    let after = store.schema_status().await?;
    let applied = before.pending();
    if applied.is_empty() {
        println!("schema is up to date at version {}", after.current());
    } else {
        println!("applied {} migration(s); schema now at version {}", applied.len(), after.current());
    }
    Ok(())
}

/// Opens the database and builds the authorization server.
pub async fn build(config: &Config) -> anyhow::Result<Arc<AuthServer>> {
    // The admin commands do not start upstreams: a gateway resource offers every derived class.
    let mut gateways = Vec::new();
    for spec in crate::gateway::upstreams(config)? {
        gateways.push(mandate_gateway::derive(&spec, None)?.resource);
    }
    Ok(build_with_store(config, gateways).await?.0)
}

/// Like [`build`], also returning the store (the demo apps use it directly); `gateways` are the
/// gateway resources' catalogue entries (from their upstreams' tools).
pub async fn build_with_store(
    config: &Config,
    gateways: Vec<ResourceDef>,
) -> anyhow::Result<(Arc<AuthServer>, SqlStore)> {
    let store =
        SqlStore::open(&config.database).await.with_context(|| format!("database {}", redact(&config.database)))?;
    let kek = key_encryption_key(config, &store).await?;
    let issuer = config.issuer();
    let mut settings = Settings::new(&issuer);
    settings.access_token_ttl = config.access_token_ttl;
    settings.refresh_token_idle_ttl = config.refresh_token_ttl;
    settings.refresh_grace = config.refresh_grace;
    settings.refresh_family_ttl = config.refresh_family_ttl;
    settings.registrations_per_minute = config.registrations_per_minute;
    settings.max_unused_clients = config.max_unused_clients;
    settings.unused_client_ttl = config.unused_client_ttl;
    settings.audit_retention = config.audit_retention;
    settings.key_activation_delay = config.key_activation_delay;
    settings.signing_alg = SigningAlg::parse(&config.signing_alg)?;
    let mut resources = match (crate::gateway::plain_resources(config)?, &config.resource_url) {
        (Some(r), _) => r,
        (None, Some(url)) => ResourceCatalog::demo_at(url)?.resources().to_vec(),
        (None, None) => ResourceCatalog::demo(&issuer)?.resources().to_vec(),
    };
    resources.extend(gateways);
    let resources = ResourceCatalog::new(resources)?;
    let fetcher = GuardedFetcher::new(settings.fetch_policy).context("building the HTTP client")?;
    let deps = Dependencies {
        store: Arc::new(store.clone()),
        clock: Arc::new(SystemClock),
        rng: Arc::new(OsRandom),
        kek,
        documents: Arc::new(fetcher),
    };
    let auth = Arc::new(AuthServer::new(settings, resources, deps).await?);
    if let Some(active) = auth.list_keys().await?.iter().find(|k| k.state == mandate_core::keys::KeyState::Active)
        && active.alg != auth.settings.signing_alg.as_str()
    {
        tracing::warn!(
            active = %active.alg,
            configured = %auth.settings.signing_alg.as_str(),
            "tokens are signed with the active key's algorithm; run `mandate keys rotate` to switch"
        );
    }
    Ok((auth, store))
}

/// A database URL with its credentials removed, for messages and logs.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<unparseable database URL>".to_owned();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let secret = matches!(k.as_ref(), "password" | "sslpassword" | "passfile");
            (k.into_owned(), if secret { "***".to_owned() } else { v.into_owned() })
        })
        .collect();
    if !pairs.is_empty() {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_lose_their_secrets() {
        assert_eq!(super::redact("postgres://app:s3cret@db/m"), "postgres://app:***@db/m");
        assert_eq!(
            super::redact("postgres://app@db/m?password=s3cret&sslmode=require"),
            "postgres://app@db/m?password=***&sslmode=require"
        );
        assert_eq!(super::redact("postgres://app:se/cret@db/m"), "<unparseable database URL>");
        assert_eq!(super::redact("sqlite://mandate.db"), "sqlite://mandate.db");
    }
}
