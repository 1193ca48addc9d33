//! Secrets at rest: the one place that encrypts and decrypts what the store must keep
//! recoverable (webhook secrets, which are sent to and signed for their endpoints).
//!
//! A stored secret is `enc:v1:<base64(nonce || ciphertext)>`: XChaCha20-Poly1305 under a key
//! derived from `secrets.key` (`HISSABACK_SECRETS_KEY`, or the file start-up keeps it in), with
//! a random 192-bit nonce per encryption (large enough that random nonces never repeat in
//! practice) and the AEAD tag detecting any change of the stored value. A value without the
//! prefix is a secret stored in plain text before encryption existed: it still reads, and is
//! encrypted the next time its record is written ([`SecretBox::reseal`]).
//!
//! The rest of the service handles plain secrets only at the edges: the answer that shows a
//! new secret once, and the sender that signs a delivery.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Prefix of an encrypted value (the version names the algorithm and key derivation).
const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;
/// Shortest key material accepted from configuration, a file or the environment.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a stored secret cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the stored secret is not valid base64 or too short")]
    Malformed,
    /// Tampered with, or encrypted under another key.
    #[error("the stored secret does not decrypt under the configured secrets key (changed key or tampered value)")]
    Undecryptable,
}

/// Encrypts and decrypts stored secrets with the configured key. Cheap to clone.
#[derive(Clone)]
pub struct SecretBox(Arc<XChaCha20Poly1305>);

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([REDACTED])")
    }
}

impl SecretBox {
    /// A box keyed by `key` (any text of at least [`MIN_KEY_BYTES`]; configuration checks the
    /// length). The cipher key is SHA-256 of a domain label and the text, so a passphrase of
    /// any length and alphabet gives a full 256-bit key.
    pub fn new(key: &SecretString) -> Self {
        let mut h = Sha256::new();
        h.update(b"hissaback secrets v1\0");
        h.update(key.expose_secret().as_bytes());
        let derived: [u8; 32] = h.finalize().into();
        Self(Arc::new(XChaCha20Poly1305::new(&derived.into())))
    }

    /// The stored form of `plain`: encrypted, with a fresh random nonce.
    pub fn seal(&self, plain: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self.0.encrypt(&nonce, plain.as_bytes()).expect("XChaCha20-Poly1305 encrypts any length we store");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", BASE64.encode(out))
    }

    /// The plain secret of a stored value; a value without the prefix is a legacy plain one.
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = BASE64.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self.0.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }

    /// The encrypted form of a legacy plain value, for a write that touches its record anyway;
    /// `None` when it is encrypted already.
    pub fn reseal(&self, stored: &str) -> Option<String> {
        (!is_sealed(stored)).then(|| self.seal(stored))
    }
}

/// Whether a stored value is encrypted (rather than a legacy plain secret).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretBox {
        SecretBox::new(&SecretString::from(s.to_string()))
    }

    const K1: &str = "0123456789abcdef0123456789abcdef-one";
    const K2: &str = "0123456789abcdef0123456789abcdef-two";

    #[test]
    fn a_sealed_secret_opens_to_itself_and_never_shows_it() {
        let b = key(K1);
        let plain = "TBX9uEM0oGx4vOu1DaNd0L0kNhj4y4pyrPZQ2ZlXR7d9I3dO1HS5kM2cZB7wQ5s6";
        let sealed = b.seal(plain);
        assert!(sealed.starts_with("enc:v1:"));
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains(plain));
        assert_eq!(b.open(&sealed).unwrap(), plain);
        // A fresh nonce each time: the same secret never gives the same stored value.
        assert_ne!(b.seal(plain), sealed);
        assert_eq!(b.open(&b.seal("")).unwrap(), "");
    }

    #[test]
    fn tampering_is_detected() {
        let b = key(K1);
        let sealed = b.seal("a webhook secret");
        let mut bytes = BASE64.decode(&sealed[PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            assert_eq!(b.open(&format!("{PREFIX}{}", BASE64.encode(&bytes))), Err(SecretError::Undecryptable), "byte {i}");
            bytes[i] ^= 1;
        }
        bytes.truncate(NONCE_LEN + 15);
        assert_eq!(b.open(&format!("{PREFIX}{}", BASE64.encode(&bytes))), Err(SecretError::Malformed));
        assert_eq!(b.open("enc:v1:not base64!"), Err(SecretError::Malformed));
    }

    #[test]
    fn another_key_cannot_open_it() {
        let sealed = key(K1).seal("a webhook secret");
        assert_eq!(key(K2).open(&sealed), Err(SecretError::Undecryptable));
        assert_eq!(key(K1).open(&sealed).unwrap(), "a webhook secret");
    }

    #[test]
    fn legacy_plain_values_read_as_they_are_and_are_resealed() {
        let b = key(K1);
        let legacy = "s".repeat(64);
        assert!(!is_sealed(&legacy));
        assert_eq!(b.open(&legacy).unwrap(), legacy);
        let resealed = b.reseal(&legacy).unwrap();
        assert_eq!(b.open(&resealed).unwrap(), legacy);
        assert_eq!(b.reseal(&resealed), None);
    }

    #[test]
    fn debug_never_prints_the_key() {
        assert_eq!(format!("{:?}", key(K1)), "SecretBox([REDACTED])");
    }
}
