//! Opaque secrets (authorization codes, refresh tokens, client secrets, session ids): generated
//! from [`Randomness`], shown once, stored only as SHA-256 hashes and compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Randomness;

/// A secret value that must never reach a log line. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The plain value, to hand to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The hash under which this secret is stored.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Hex SHA-256 of a secret: what the database holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretHash(pub String);

impl SecretHash {
    pub fn of(value: &str) -> Self {
        let digest = Sha256::digest(value.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(hex)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Constant-time comparison of two stored hashes.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// What kind of secret a value is; the prefix makes leaked values recognisable to scanners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    AuthorizationCode,
    RefreshToken,
    ClientSecret,
    Session,
    CsrfToken,
    Opaque,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::AuthorizationCode => "mac_",
            SecretKind::RefreshToken => "mrt_",
            SecretKind::ClientSecret => "mcs_",
            SecretKind::Session => "mss_",
            SecretKind::CsrfToken => "",
            SecretKind::Opaque => "",
        }
    }
}

/// 32 random bytes (256 bits), base64url without padding.
pub fn random_token(rng: &dyn Randomness) -> String {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh secret of the given kind.
pub fn generate(rng: &dyn Randomness, kind: SecretKind) -> Secret {
    Secret(format!("{}{}", kind.prefix(), random_token(rng)))
}

/// A random identifier (not a secret): 16 bytes, base64url, never starting with `-` or `_`.
///
/// Operators type these ids as arguments (`mandate users enable <id>`, `mandate clients remove
/// <id>`): one starting with `-` is read as a flag (1 id in 64 did: `-…h…` even printed the help
/// and exited 0, doing nothing). The first character comes from the first byte's top six bits;
/// when those are 62 or 63 (`-`, `_`), the top bit is cleared (`e`, `f`), which leaves 127.94 bits.
pub fn random_id(rng: &dyn Randomness) -> String {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    if bytes[0] >= 0xF8 {
        bytes[0] &= 0x7F;
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time string equality for secrets that are compared in the clear (CSRF tokens).
pub fn ct_str_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_carry_128_bits_or_more_ac_08() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let code = generate(&OsRandom, SecretKind::AuthorizationCode);
            assert!(code.expose().starts_with("mac_"));
            assert_eq!(code.expose().len(), 4 + 43, "32 bytes of randomness, base64url");
            assert!(seen.insert(code.expose().to_owned()));
        }
    }

    /// Fills every byte with one value.
    struct Fixed(u8);

    impl Randomness for Fixed {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(self.0);
        }
    }

    #[test]
    fn an_id_never_starts_with_a_hyphen_or_an_underscore() {
        for first in 0..=u8::MAX {
            let id = random_id(&Fixed(first));
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with(['-', '_']), "first byte {first:#04x}: {id}");
        }
        // Only the two values that would start with `-` or `_` change: the rest are base64url.
        for (first, shown) in [(0xF8u8, 'e'), (0xFC, 'f'), (0xFF, 'f')] {
            let (id, plain) = (random_id(&Fixed(first)), URL_SAFE_NO_PAD.encode([first; 16]));
            assert!(id.starts_with(shown) && plain.starts_with(['-', '_']), "{id} {plain}");
            assert_eq!(id[1..], plain[1..], "only the first character changes");
        }
        assert_eq!(random_id(&Fixed(0xF7)), URL_SAFE_NO_PAD.encode([0xF7u8; 16]));
        let seen: HashSet<String> = (0..1_000).map(|_| random_id(&OsRandom)).collect();
        assert_eq!(seen.len(), 1_000);
        assert!(seen.iter().all(|id| !id.starts_with(['-', '_'])));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("mrt_topsecret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(SecretHash::of("abc").0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(SecretHash::of("a").ct_eq(&SecretHash::of("a")));
        assert!(!SecretHash::of("a").ct_eq(&SecretHash::of("b")));
    }
}
