//! Keeps the decrypted key ring in memory, reloading it from storage so that a rotation made by
//! any process (the CLI, another instance) is picked up within [`RELOAD_INTERVAL`] seconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::clock::{Randomness, UnixTime};
use crate::keys::{KeyEncryptionKey, KeyError, KeyRing, SigningAlg, generate_key};
use crate::model::StoredSigningKey;
use crate::store::Store;

/// Seconds between reloads of the key ring from storage.
pub const RELOAD_INTERVAL: i64 = 5;

pub struct KeyManager {
    store: Arc<dyn Store>,
    kek: KeyEncryptionKey,
    rng: Arc<dyn Randomness>,
    access_token_ttl: i64,
    ring: RwLock<Option<Arc<KeyRing>>>,
    loaded_at: AtomicI64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyManagerError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

impl From<KeyManagerError> for crate::error::OAuthError {
    fn from(e: KeyManagerError) -> Self {
        match e {
            KeyManagerError::Store(s) => s.into(),
            KeyManagerError::Key(k) => {
                tracing::error!(error = %k, "signing keys unusable");
                crate::error::OAuthError::server_error()
            }
        }
    }
}

impl From<KeyManagerError> for super::SetupError {
    fn from(e: KeyManagerError) -> Self {
        match e {
            KeyManagerError::Key(k) => super::SetupError::Key(k),
            KeyManagerError::Store(s) => super::SetupError::Store(s),
        }
    }
}

impl KeyManager {
    pub(crate) fn kek(&self) -> &KeyEncryptionKey {
        &self.kek
    }
}

impl KeyManager {
    pub fn new(store: Arc<dyn Store>, kek: KeyEncryptionKey, rng: Arc<dyn Randomness>, access_token_ttl: i64) -> Self {
        Self { store, kek, rng, access_token_ttl, ring: RwLock::new(None), loaded_at: AtomicI64::new(i64::MIN) }
    }

    /// Creates the first signing key if there is none; checks every stored key decrypts.
    pub async fn ensure_signing_key(&self, alg: SigningAlg, now: UnixTime) -> Result<(), KeyManagerError> {
        if self.store.list_keys().await?.is_empty() {
            let key = generate_key(alg, &self.kek, self.rng.as_ref(), now, now)?;
            self.store.insert_key(&key).await?;
        }
        self.reload(now).await?;
        Ok(())
    }

    /// Publishes a new key that starts signing `activation_delay` seconds from now.
    pub async fn rotate(
        &self,
        alg: SigningAlg,
        now: UnixTime,
        activation_delay: i64,
    ) -> Result<StoredSigningKey, KeyManagerError> {
        let key = generate_key(alg, &self.kek, self.rng.as_ref(), now, now + activation_delay)?;
        self.store.insert_key(&key).await?;
        self.reload(now).await?;
        Ok(key)
    }

    async fn reload(&self, now: UnixTime) -> Result<Arc<KeyRing>, KeyManagerError> {
        let stored = self.store.list_keys().await?;
        let ring = Arc::new(KeyRing::load(&stored, &self.kek, self.access_token_ttl)?);
        if let Ok(mut slot) = self.ring.write() {
            *slot = Some(ring.clone());
        }
        self.loaded_at.store(now, Ordering::SeqCst);
        Ok(ring)
    }

    /// The current key ring, reloaded when older than [`RELOAD_INTERVAL`]. When a reload fails
    /// (the database is away) the last good ring is kept: tokens it verified stay valid and
    /// signing goes on, instead of every token looking "unknown key" during an outage.
    pub async fn ring(&self, now: UnixTime) -> Result<Arc<KeyRing>, KeyManagerError> {
        let cached = self.ring.read().ok().and_then(|r| r.clone());
        let fresh = self.loaded_at.load(Ordering::SeqCst).saturating_add(RELOAD_INTERVAL) > now;
        if fresh && let Some(ring) = cached {
            return Ok(ring);
        }
        match self.reload(now).await {
            Ok(ring) => Ok(ring),
            Err(KeyManagerError::Store(e)) if cached.is_some() => {
                tracing::warn!(error = %e, "reloading the signing keys failed; keeping the last good key ring");
                cached.ok_or(KeyManagerError::Store(e))
            }
            // The keys were re-sealed under a key-encryption key this process was not given
            // (`mandate keys rotate-kek`): the keys already loaded still sign and verify until
            // the restart with the new key; readiness reports the failure meanwhile.
            Err(KeyManagerError::Key(e)) if cached.is_some() => {
                tracing::error!(error = %e, "the signing keys no longer open with this key-encryption key; keeping the loaded ones until a restart with the new key");
                cached.ok_or(KeyManagerError::Key(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the last reload succeeded recently (readiness).
    pub async fn ring_is_current(&self, now: UnixTime) -> Result<(), KeyManagerError> {
        self.reload(now).await.map(|_| ())
    }
}
