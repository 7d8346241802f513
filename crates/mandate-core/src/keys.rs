//! Signing keys: generated with aws-lc-rs, private halves encrypted at rest (AES-256-GCM under a
//! key-encryption key), published in a JWKS, rotated without breaking outstanding tokens.
//!
//! Rotation: a new key is published at once but signs only from `activates_at`, so resource
//! servers that cache the JWKS learn it first. The previous key stays published until every token
//! it signed has expired (`activates_at` of its successor + the access-token lifetime + leeway).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::clock::{Randomness, UnixTime};
use crate::model::StoredSigningKey;
use crate::secret::random_id;

/// Seconds a retired key stays published after the last token it signed could expire.
pub const RETIRED_KEY_LEEWAY: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key-encryption key must be 32 bytes, base64url encoded")]
    BadKek,
    #[error("a stored signing key could not be decrypted: wrong MANDATE_SECRET_KEY or key file?")]
    Decrypt,
    #[error("key generation failed")]
    Generate,
    #[error("unsupported signing algorithm {0} (use ES256 or EdDSA)")]
    UnsupportedAlg(String),
    #[error("stored key {0} is malformed")]
    Malformed(String),
}

/// The algorithms mandate signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigningAlg {
    /// ECDSA P-256: the widest verifier support; the default.
    #[default]
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        match s {
            "ES256" | "es256" => Ok(SigningAlg::Es256),
            "EdDSA" | "eddsa" | "EDDSA" => Ok(SigningAlg::EdDsa),
            other => Err(KeyError::UnsupportedAlg(other.to_owned())),
        }
    }
    pub fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// The key that encrypts secrets at rest (signing keys, upstream tokens, provider-flow secrets).
/// It may carry a fallback: a second key accepted when opening, never used to seal, so that a
/// server reads both the old and the new key's values while the key-encryption key is rotated
/// (`mandate keys rotate-kek`). Sealed values carry no key id: AES-GCM's tag tells a wrong key
/// apart, so opening tries the key, then the fallback. `Debug` is redacted.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32], Option<[u8; 32]>);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(***)")
    }
}

impl KeyEncryptionKey {
    pub fn generate(rng: &dyn Randomness) -> Self {
        let mut k = [0u8; 32];
        rng.fill(&mut k);
        Self(k, None)
    }
    pub fn from_base64url(s: &str) -> Result<Self, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).map_err(|_| KeyError::BadKek)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadKek)?;
        Ok(Self(arr, None))
    }
    /// The key (without any fallback), base64url encoded.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
    /// This key, also opening what `fallback` sealed (its own fallback is dropped).
    pub fn with_fallback(self, fallback: &KeyEncryptionKey) -> Self {
        Self(self.0, Some(fallback.0))
    }
    /// The key alone, without its fallback.
    pub fn without_fallback(&self) -> Self {
        Self(self.0, None)
    }
    /// Whether the fallback is set.
    pub fn has_fallback(&self) -> bool {
        self.1.is_some()
    }
    /// Whether both are the same key (fallbacks aside).
    pub fn same_key(&self, other: &KeyEncryptionKey) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.ct_eq(&other.0))
    }
    fn aead(&self) -> Result<LessSafeKey, KeyError> {
        aead(&self.0)
    }
    /// `nonce || ciphertext || tag`, with `aad` bound in.
    pub fn seal(&self, rng: &dyn Randomness, plaintext: &[u8], aad: &str) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.aead()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Generate)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }
    /// Opens with the key, else with the fallback.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, KeyError> {
        match (open_with(&self.0, sealed, aad), &self.1) {
            (Err(KeyError::Decrypt), Some(fallback)) => open_with(fallback, sealed, aad),
            (other, _) => other,
        }
    }
}

fn aead(key: &[u8; 32]) -> Result<LessSafeKey, KeyError> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| KeyError::BadKek)?))
}

fn open_with(key: &[u8; 32], sealed: &[u8], aad: &str) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_LEN {
        return Err(KeyError::Decrypt);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Decrypt)?;
    let mut buf = ct.to_vec();
    let plain = aead(key)?.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf).map_err(|_| KeyError::Decrypt)?;
    Ok(plain.to_vec())
}

/// What each value sealed under the key-encryption key is bound to (its associated data): the
/// same string must be given to open it. Every sealed value at rest is one of these.
pub mod aad {
    /// A signing key's private half: its key id.
    pub fn signing_key(kid: &str) -> String {
        kid.to_owned()
    }
    /// A connected account's tokens (`upstream_accounts.sealed_tokens`).
    pub fn upstream_account(user_id: &str, provider: &str) -> String {
        format!("upstream-account\u{1f}{user_id}\u{1f}{provider}")
    }
    /// A provider authorization request's secrets (`provider_flows.sealed_secrets`), by the hash
    /// of its state.
    pub fn provider_flow(state_hash: &str) -> String {
        format!("provider-flow\u{1f}{state_hash}")
    }
}

/// Generates a signing key, ready to store. It signs from `activates_at`.
pub fn generate_key(
    alg: SigningAlg,
    kek: &KeyEncryptionKey,
    rng: &dyn Randomness,
    now: UnixTime,
    activates_at: UnixTime,
) -> Result<StoredSigningKey, KeyError> {
    let pkcs8 = match alg {
        SigningAlg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| KeyError::Generate)?,
        SigningAlg::EdDsa => Ed25519KeyPair::generate().and_then(|k| k.to_pkcs8v1()).map_err(|_| KeyError::Generate)?,
    };
    let der = pkcs8.as_ref();
    let kid = random_id(rng);
    let jwk = public_jwk(alg, der, &kid)?;
    let public_jwk = serde_json::to_string(&jwk).map_err(|_| KeyError::Generate)?;
    Ok(StoredSigningKey {
        encrypted_private_key: kek.seal(rng, der, &aad::signing_key(&kid))?,
        kid,
        alg: alg.as_str().to_owned(),
        public_jwk,
        created_at: now,
        activates_at,
    })
}

fn encoding_key(alg: SigningAlg, der: &[u8]) -> EncodingKey {
    match alg {
        SigningAlg::Es256 => EncodingKey::from_ec_der(der),
        SigningAlg::EdDsa => EncodingKey::from_ed_der(der),
    }
}

fn public_jwk(alg: SigningAlg, der: &[u8], kid: &str) -> Result<Jwk, KeyError> {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, der), alg.jwt()).map_err(|_| KeyError::Generate)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match alg {
        SigningAlg::Es256 => KeyAlgorithm::ES256,
        SigningAlg::EdDsa => KeyAlgorithm::EdDSA,
    });
    Ok(jwk)
}

/// A private key parsed once, when the ring is loaded: jsonwebtoken's `encode` re-parses the
/// PKCS#8 document on every signature (about a third of an ES256 signature's cost).
pub enum KeySigner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl KeySigner {
    fn parse(alg: SigningAlg, der: &[u8], kid: &str) -> Result<Self, KeyError> {
        let malformed = |_| KeyError::Malformed(kid.to_owned());
        Ok(match alg {
            SigningAlg::Es256 => {
                KeySigner::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(malformed)?)
            }
            SigningAlg::EdDsa => KeySigner::EdDsa(Ed25519KeyPair::from_pkcs8(der).map_err(malformed)?),
        })
    }

    /// The JWS signature of `message` (ES256: the fixed-length r || s form RFC 7518 §3.4 requires).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            KeySigner::Es256(k) => Ok(k
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec()),
            KeySigner::EdDsa(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// A signing key ready for use.
pub struct LoadedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// The private key as jsonwebtoken takes it (tests forge tokens with it).
    pub encoding: EncodingKey,
    /// The same key, parsed once: what [`crate::tokens::mint`] signs with.
    pub signer: KeySigner,
    pub decoding: DecodingKey,
    pub public_jwk: Jwk,
    pub created_at: UnixTime,
    pub activates_at: UnixTime,
}

/// Where a key is in its life at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    /// Signing new tokens.
    Active,
    /// Superseded, still published for tokens it signed.
    Retired,
    /// No token it signed can still be valid; no longer published.
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
}

/// Every key, decrypted, with the rules for which one signs and which are published.
pub struct KeyRing {
    keys: Vec<LoadedKey>,
    access_token_ttl: i64,
}

impl KeyRing {
    pub fn load(stored: &[StoredSigningKey], kek: &KeyEncryptionKey, access_token_ttl: i64) -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(stored.len());
        for s in stored {
            let alg = SigningAlg::parse(&s.alg)?;
            let der = kek.open(&s.encrypted_private_key, &aad::signing_key(&s.kid))?;
            let public_jwk: Jwk =
                serde_json::from_str(&s.public_jwk).map_err(|_| KeyError::Malformed(s.kid.clone()))?;
            let decoding = DecodingKey::from_jwk(&public_jwk).map_err(|_| KeyError::Malformed(s.kid.clone()))?;
            keys.push(LoadedKey {
                kid: s.kid.clone(),
                alg,
                encoding: encoding_key(alg, &der),
                signer: KeySigner::parse(alg, &der, &s.kid)?,
                decoding,
                public_jwk,
                created_at: s.created_at,
                activates_at: s.activates_at,
            });
        }
        keys.sort_by_key(|k| (k.activates_at, k.created_at));
        Ok(Self { keys, access_token_ttl })
    }

    pub fn keys(&self) -> &[LoadedKey] {
        &self.keys
    }

    /// The state of the key at `index` (keys are ordered by activation).
    pub fn state(&self, index: usize, now: UnixTime) -> KeyState {
        let Some(key) = self.keys.get(index) else {
            return KeyState::Expired;
        };
        if key.activates_at > now {
            return KeyState::Next;
        }
        // The first key after this one that has begun signing supersedes it.
        match self.keys[index + 1..].iter().find(|k| k.activates_at <= now) {
            None => KeyState::Active,
            Some(successor) => {
                if now <= successor.activates_at + self.access_token_ttl + RETIRED_KEY_LEEWAY {
                    KeyState::Retired
                } else {
                    KeyState::Expired
                }
            }
        }
    }

    /// The key that signs at `now`.
    pub fn signing_key(&self, now: UnixTime) -> Option<&LoadedKey> {
        self.keys.iter().rev().find(|k| k.activates_at <= now)
    }

    /// The public keys a verifier must know at `now`.
    pub fn jwks(&self, now: UnixTime) -> JwkSet {
        JwkSet {
            keys: (0..self.keys.len())
                .filter(|i| self.state(*i, now) != KeyState::Expired)
                .filter_map(|i| self.keys.get(i).map(|k| k.public_jwk.clone()))
                .collect(),
        }
    }

    /// A published key by `kid`.
    pub fn verification_key(&self, kid: &str, now: UnixTime) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .enumerate()
            .find(|(i, k)| k.kid == kid && self.state(*i, now) != KeyState::Expired)
            .map(|(_, k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_kid() {
        let kek = KeyEncryptionKey::generate(&OsRandom);
        let sealed = kek.seal(&OsRandom, b"private", "kid1").unwrap();
        assert_eq!(kek.open(&sealed, "kid1").unwrap(), b"private");
        assert!(kek.open(&sealed, "kid2").is_err());
        assert!(KeyEncryptionKey::generate(&OsRandom).open(&sealed, "kid1").is_err());
        let round = KeyEncryptionKey::from_base64url(&kek.to_base64url()).unwrap();
        assert_eq!(round.open(&sealed, "kid1").unwrap(), b"private");
    }

    #[test]
    fn a_fallback_opens_but_never_seals() {
        let old = KeyEncryptionKey::generate(&OsRandom);
        let new = KeyEncryptionKey::generate(&OsRandom);
        let under_old = old.seal(&OsRandom, b"secret", "ctx").unwrap();
        let both = new.clone().with_fallback(&old);
        assert!(both.has_fallback() && both.same_key(&new) && !both.same_key(&old));
        assert_eq!(both.open(&under_old, "ctx").unwrap(), b"secret");
        assert!(both.open(&under_old, "other").is_err(), "the context still binds");
        let sealed = both.seal(&OsRandom, b"fresh", "ctx").unwrap();
        assert_eq!(new.open(&sealed, "ctx").unwrap(), b"fresh", "sealed under the key itself");
        assert!(old.open(&sealed, "ctx").is_err());
        assert!(both.without_fallback().open(&under_old, "ctx").is_err());
    }

    #[test]
    fn rotation_publishes_before_signing_and_retires_after_expiry() {
        let kek = KeyEncryptionKey::generate(&OsRandom);
        let k1 = generate_key(SigningAlg::Es256, &kek, &OsRandom, 0, 0).unwrap();
        let k2 = generate_key(SigningAlg::EdDsa, &kek, &OsRandom, 100, 700).unwrap();
        let ring = KeyRing::load(&[k1.clone(), k2.clone()], &kek, 3600).unwrap();
        // Before activation: k1 signs, both published.
        assert_eq!(ring.signing_key(200).map(|k| k.kid.as_str()), Some(k1.kid.as_str()));
        assert_eq!(ring.jwks(200).keys.len(), 2);
        assert_eq!(ring.state(1, 200), KeyState::Next);
        // After activation: k2 signs, k1 still published for its tokens.
        assert_eq!(ring.signing_key(701).map(|k| k.kid.as_str()), Some(k2.kid.as_str()));
        assert_eq!(ring.state(0, 701), KeyState::Retired);
        assert!(ring.verification_key(&k1.kid, 701).is_some());
        // Once every k1 token has expired, k1 leaves the JWKS.
        let later = 700 + 3600 + RETIRED_KEY_LEEWAY + 1;
        assert_eq!(ring.state(0, later), KeyState::Expired);
        assert_eq!(ring.jwks(later).keys.len(), 1);
        assert!(ring.verification_key(&k1.kid, later).is_none());
    }

    #[test]
    fn jwks_holds_only_public_material_md_04() {
        let kek = KeyEncryptionKey::generate(&OsRandom);
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
            let k = generate_key(alg, &kek, &OsRandom, 0, 0).unwrap();
            let v: serde_json::Value = serde_json::from_str(&k.public_jwk).unwrap();
            assert!(v.get("d").is_none(), "{v}");
            assert_eq!(v["kid"], k.kid.as_str());
            assert_eq!(v["use"], "sig");
            assert_eq!(v["alg"], alg.as_str());
        }
    }
}
