//! Password hashing with argon2id (crate defaults: m=19456 KiB, t=2, p=1, the OWASP minimum).
//! Hashing costs ~50 ms, so it runs on the blocking pool behind a semaphore sized to the cores:
//! login floods queue there instead of stalling the async runtime.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

use crate::clock::Randomness;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hash,
    #[error("password must be between 8 and 1024 characters")]
    Policy,
}

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    rng: Arc<dyn Randomness>,
    /// A hash of a random password, verified against when the user does not exist, so that
    /// unknown and known usernames take the same time (UI-15).
    dummy: Arc<String>,
}

impl PasswordHasher {
    pub fn new(rng: Arc<dyn Randomness>) -> Result<Self, PasswordError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let dummy_pw = crate::secret::random_token(rng.as_ref());
        let dummy = hash_blocking(rng.as_ref(), &dummy_pw)?;
        Ok(Self { permits: Arc::new(Semaphore::new(cores)), rng, dummy: Arc::new(dummy) })
    }

    pub fn check_policy(password: &str) -> Result<(), PasswordError> {
        let n = password.chars().count();
        if (8..=1024).contains(&n) { Ok(()) } else { Err(PasswordError::Policy) }
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        Self::check_policy(&password)?;
        let _permit = self.permits.acquire().await.map_err(|_| PasswordError::Hash)?;
        let rng = self.rng.clone();
        tokio::task::spawn_blocking(move || hash_blocking(rng.as_ref(), &password))
            .await
            .map_err(|_| PasswordError::Hash)?
    }

    /// True when `password` matches `hash`; with no hash, burns the same time and says false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let ok = tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

fn hash_blocking(rng: &dyn Randomness, password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify_ui_16() {
        let h = PasswordHasher::new(Arc::new(OsRandom)).unwrap();
        let phc = h.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify("correct horse".into(), Some(phc.clone())).await);
        assert!(!h.verify("wrong horse".into(), Some(phc)).await);
        assert!(!h.verify("correct horse".into(), None).await);
        assert!(h.hash("short".into()).await.is_err());
    }

    /// UI-15 without a stopwatch: an unknown username (or a person without a password, or a
    /// disabled one: `login` passes no hash for them) is verified against a dummy hash of the same
    /// algorithm, version and cost as every real one, so it takes the same argon2id work; the
    /// answer is false even when the password happens to match the dummy's.
    #[tokio::test]
    async fn an_unknown_person_costs_the_same_argon2_work_ui_15() {
        let h = PasswordHasher::new(Arc::new(OsRandom)).unwrap();
        let real = h.hash("correct horse".into()).await.unwrap();
        let params = |phc: &str| phc.rsplitn(3, '$').nth(2).map(str::to_owned);
        assert_eq!(params(&h.dummy), params(&real), "dummy {} vs real {real}", h.dummy);
        assert_eq!(params(&real).as_deref(), Some("$argon2id$v=19$m=19456,t=2,p=1"));
        let dummy = h.dummy.as_ref().clone();
        assert!(Argon2::default().verify_password(b"x", dummy.as_str()).is_err(), "the dummy is a real hash");
        assert!(!h.verify("anything".into(), None).await);
    }
}
