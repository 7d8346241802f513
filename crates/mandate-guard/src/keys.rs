//! Where verification keys come from: an issuer's JWKS over HTTPS (cached; an unknown `kid`
//! triggers at most one refetch per cooldown), or mandate's own key ring in-process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

/// A key a token may be verified with, and the one algorithm it is used with (RFC 8725 §3.1).
#[derive(Clone)]
pub struct VerificationKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Resolves a `kid` to its verification key.
#[async_trait]
pub trait KeySource: Send + Sync {
    async fn key(&self, kid: &str) -> Option<VerificationKey>;
}

/// Asymmetric signature algorithms accepted from a JWKS; never `none` or HMAC. A key that
/// declares another algorithm, or a use other than `sig`, is not used at all (RFC 8725 §3.1).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
        return None;
    }
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(_) => return None,
    };
    let inferred = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }?;
    match declared {
        // A declared algorithm must fit the key type.
        Some(d) if jsonwebtoken::jwk::Jwk::is_supported(jwk) && compatible(d, inferred) => Some(d),
        Some(_) => None,
        None => Some(inferred),
    }
}

fn compatible(declared: Algorithm, inferred: Algorithm) -> bool {
    declared == inferred || (inferred == Algorithm::RS256 && declared == Algorithm::PS256)
}

/// Keys of a JWKS by `kid` (keys without a `kid`, or of unsupported types, are skipped).
pub fn keys_from_jwks(set: &JwkSet) -> HashMap<String, VerificationKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let alg = algorithm_of(jwk)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, VerificationKey { alg, key }))
        })
        .collect()
}

/// The keys last fetched, replaced whole on each successful fetch.
struct Snapshot {
    keys: HashMap<String, VerificationKey>,
    fetched_at: Option<Instant>,
}

/// An issuer's JWKS fetched over HTTP(S), never following redirects.
///
/// Lookups read an immutable snapshot of the keys (the lock around it is held only to clone an
/// `Arc`), so a token signed with a known key is never held up by a refetch in flight. A refetch
/// (an unknown `kid`, or keys older than the maximum age) is single-flight: one request fetches,
/// others looking for an unknown `kid` wait for its result, and at most one fetch starts per
/// cooldown.
pub struct JwksKeySource {
    url: String,
    http: reqwest::Client,
    current: RwLock<Arc<Snapshot>>,
    /// Held while fetching; holds when the last fetch started.
    refetch: Mutex<Option<Instant>>,
    /// Minimum time between two fetches triggered by unknown `kid`s (RL-11, JW-14).
    cooldown: Duration,
    /// Keys are refetched when older than this.
    max_age: Duration,
}

impl JwksKeySource {
    pub fn new(url: impl Into<String>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            url: url.into(),
            http,
            current: RwLock::new(Arc::new(Snapshot { keys: HashMap::new(), fetched_at: None })),
            refetch: Mutex::new(None),
            cooldown: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
        })
    }

    /// Sets the minimum time between refetches triggered by unknown `kid`s.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn fresh(&self, snapshot: &Snapshot) -> bool {
        snapshot.fetched_at.is_some_and(|t| t.elapsed() <= self.max_age)
    }

    async fn fetch(&self) -> Option<HashMap<String, VerificationKey>> {
        let resp = self.http.get(&self.url).send().await.ok()?;
        if !resp.status().is_success() {
            tracing::warn!(url = %self.url, status = %resp.status(), "JWKS fetch failed");
            return None;
        }
        let bytes = resp.bytes().await.ok()?;
        if bytes.len() > 256 * 1024 {
            return None;
        }
        let set: JwkSet = serde_json::from_slice(&bytes).ok()?;
        Some(keys_from_jwks(&set))
    }
}

#[async_trait]
impl KeySource for JwksKeySource {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        let snapshot = self.snapshot();
        let known = snapshot.keys.get(kid).cloned();
        if known.is_some() && self.fresh(&snapshot) {
            return known;
        }
        let mut last_fetch = match known {
            // A known key whose set is due for a refresh: served at once when another request is
            // already refreshing (or the issuer's JWKS is slow or down).
            Some(key) => match self.refetch.try_lock() {
                Ok(gate) => gate,
                Err(_) => return Some(key),
            },
            // An unknown kid waits for the fetch in flight, if any (single flight), then looks again.
            None => self.refetch.lock().await,
        };
        let snapshot = self.snapshot();
        if let Some(key) = snapshot.keys.get(kid)
            && self.fresh(&snapshot)
        {
            return Some(key.clone());
        }
        // Whatever triggered it (an unknown kid, or keys past their age), at most one fetch per
        // cooldown: a JWKS endpoint that is down is not hammered, and cached keys stay in use.
        if last_fetch.is_none_or(|t| t.elapsed() >= self.cooldown) {
            *last_fetch = Some(Instant::now());
            if let Some(keys) = self.fetch().await {
                let next = Arc::new(Snapshot { keys, fetched_at: Some(Instant::now()) });
                match self.current.write() {
                    Ok(mut s) => *s = next,
                    Err(poisoned) => *poisoned.into_inner() = next,
                }
            }
        }
        self.snapshot().keys.get(kid).cloned()
    }
}

/// mandate's own key ring, for a resource server in the same process as the authorization server.
pub struct LocalKeys(pub Arc<mandate_core::AuthServer>);

#[async_trait]
impl KeySource for LocalKeys {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        let now = self.0.now();
        let ring = self.0.keys().ring(now).await.ok()?;
        let k = ring.verification_key(kid, now)?;
        Some(VerificationKey { alg: k.alg.jwt(), key: k.decoding.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_with_allowed_algorithms_are_used_jw_12() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "sig", "use": "sig", "alg": "EdDSA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "hs", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "plain"}
        ]}))
        .unwrap();
        let keys = keys_from_jwks(&set);
        assert!(keys.contains_key("sig"));
        assert!(keys.contains_key("plain"), "no declared alg: inferred from the key type");
        assert!(!keys.contains_key("enc"));
        assert!(!keys.contains_key("hs"));
    }
}
