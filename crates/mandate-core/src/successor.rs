//! The successor of a rotated refresh token, sealed under a key only the holder of that token
//! can derive. mandate stores refresh tokens as SHA-256 hashes, yet every presentation of one
//! token inside the grace window must receive the *same* successor; so the successor is stored
//! encrypted under HKDF-SHA256(ikm = presented token, info = [`INFO`]) with AES-256-GCM
//! (aws-lc-rs, as in [`crate::keys`]). The database alone can never open it (it holds only the
//! SHA-256 lookup hash of the presented token, a different function of it), and the
//! key-encryption key is not involved.
//!
//! Format: base64url (no padding) of `nonce || ciphertext || tag`; the presented token's lookup
//! hash is bound in as associated data, so a sealed value moved to another row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::Randomness;
use crate::secret::{Secret, SecretHash};

/// HKDF `info`: domain separation from every other use of a refresh token's bytes.
pub const INFO: &[u8] = b"mandate refresh successor v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the successor could not be sealed")]
    Seal,
    /// Wrong token, tampered or truncated value, or a value sealed for another row.
    #[error("the sealed successor does not open with the presented token")]
    Open,
}

fn key(presented: &str) -> Result<LessSafeKey, SealError> {
    let prk = Salt::new(HKDF_SHA256, &[]).extract(presented.as_bytes());
    let info = [INFO];
    let okm = prk.expand(&info, &AES_256_GCM).map_err(|_| SealError::Seal)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Seals `successor` for whoever holds `presented`. The nonce comes from the injected randomness
/// (each key seals exactly one value: a token is rotated once).
pub fn seal(rng: &dyn Randomness, presented: &str, successor: &Secret) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce);
    let mut buf = successor.expose().as_bytes().to_vec();
    let aad = SecretHash::of(presented);
    key(presented)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_str().as_bytes()), &mut buf)
        .map_err(|_| SealError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Opens what [`seal`] produced for `presented`.
pub fn open(presented: &str, sealed: &str) -> Result<Secret, SealError> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| SealError::Open)?;
    if bytes.len() < NONCE_LEN {
        return Err(SealError::Open);
    }
    let (nonce, ct) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
    let mut buf = ct.to_vec();
    let aad = SecretHash::of(presented);
    let plain = key(presented)?
        .open_in_place(nonce, Aad::from(aad.as_str().as_bytes()), &mut buf)
        .map_err(|_| SealError::Open)?;
    let text = std::str::from_utf8(plain).map_err(|_| SealError::Open)?;
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;
    use crate::secret::{SecretKind, generate};

    #[test]
    fn only_the_presented_token_opens_its_successor() {
        let t = generate(&OsRandom, SecretKind::RefreshToken);
        let s = generate(&OsRandom, SecretKind::RefreshToken);
        let sealed = seal(&OsRandom, t.expose(), &s).unwrap();
        assert_eq!(open(t.expose(), &sealed).unwrap(), s);
        let other = generate(&OsRandom, SecretKind::RefreshToken);
        assert_eq!(open(other.expose(), &sealed), Err(SealError::Open));
        // Neither the successor nor the presented token appears in what is stored.
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        assert!(!raw.windows(8).any(|w| s.expose().as_bytes().windows(8).any(|x| x == w)));
        assert!(!sealed.contains(&s.expose()[4..]));
    }

    #[test]
    fn tampered_or_truncated_values_do_not_open() {
        let t = generate(&OsRandom, SecretKind::RefreshToken);
        let s = generate(&OsRandom, SecretKind::RefreshToken);
        let sealed = seal(&OsRandom, t.expose(), &s).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(open(t.expose(), &URL_SAFE_NO_PAD.encode(&raw)), Err(SealError::Open));
        assert_eq!(open(t.expose(), &sealed[..10]), Err(SealError::Open));
        assert_eq!(open(t.expose(), "not base64!"), Err(SealError::Open));
        assert_eq!(open(t.expose(), ""), Err(SealError::Open));
    }

    #[test]
    fn the_sealing_key_is_not_the_stored_lookup_hash() {
        // The database holds SHA-256(T); the key must not be derivable from it.
        let t = "mrt_example";
        let lookup = SecretHash::of(t);
        let hex_key = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut derived = [0u8; 32];
        let prk = Salt::new(HKDF_SHA256, &[]).extract(t.as_bytes());
        let info = [INFO];
        prk.expand(&info, &AES_256_GCM).unwrap().fill(&mut derived).unwrap();
        assert_ne!(hex_key(&derived), lookup.0);
        // And a value sealed under a key equal to the lookup hash does not open.
        let s = Secret::new("mrt_successor");
        let mut nonce = [0u8; NONCE_LEN];
        OsRandom.fill(&mut nonce);
        let raw_hash: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&lookup.0[2 * i..2 * i + 2], 16).unwrap()).collect();
        let forged_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw_hash).unwrap());
        let mut buf = s.expose().as_bytes().to_vec();
        forged_key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(lookup.0.as_bytes()), &mut buf)
            .unwrap();
        let mut forged = nonce.to_vec();
        forged.extend_from_slice(&buf);
        assert_eq!(open(t, &URL_SAFE_NO_PAD.encode(forged)), Err(SealError::Open));
    }
}
