//! API keys: their plain form, their kinds and how they are hashed.
//!
//! A plain key is `hb_sk_` (secret) or `hb_pk_` (publishable) followed by 40 random
//! alphanumeric characters (about 238 bits). Only an HMAC-SHA256 of the plain key under a
//! server-side pepper is stored, so a leaked database does not leak usable keys and cannot
//! be brute-forced offline without the pepper. The plain key is shown once, at issue.

use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

const SECRET_PREFIX: &str = "hb_sk_";
const PUBLISHABLE_PREFIX: &str = "hb_pk_";
const RANDOM_LEN: usize = 40;
/// Characters of the random part shown in `prefix` so people can tell keys apart.
const DISPLAY_CHARS: usize = 8;

/// Secret keys are for servers; publishable keys may sit in a browser and hold read scopes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Secret,
    Publishable,
}

impl KeyKind {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => SECRET_PREFIX,
            KeyKind::Publishable => PUBLISHABLE_PREFIX,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Publishable => "publishable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "secret" => Some(KeyKind::Secret),
            "publishable" => Some(KeyKind::Publishable),
            _ => None,
        }
    }
}

/// A plain API key that has the right shape. Having one says nothing about whether it exists.
pub struct PlainApiKey(SecretString);

impl PlainApiKey {
    /// A new random key of the given kind.
    pub fn generate(kind: KeyKind) -> Self {
        let random = Alphanumeric.sample_string(&mut rand::rng(), RANDOM_LEN);
        PlainApiKey(format!("{}{random}", kind.prefix()).into())
    }

    /// Accepts only well-formed keys, so garbage never reaches the store.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(SECRET_PREFIX).or_else(|| raw.strip_prefix(PUBLISHABLE_PREFIX))?;
        (rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| PlainApiKey(raw.to_string().into()))
    }

    pub fn kind(&self) -> KeyKind {
        if self.0.expose_secret().starts_with(SECRET_PREFIX) {
            KeyKind::Secret
        } else {
            KeyKind::Publishable
        }
    }

    /// The recognisable, non-secret start of the key, e.g. `hb_sk_Ab3dE9xQ`.
    pub fn display_prefix(&self) -> String {
        self.0.expose_secret()[..SECRET_PREFIX.len() + DISPLAY_CHARS].to_string()
    }

    /// The plain key, for the one answer that shows it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Hashes plain keys with the server's pepper.
#[derive(Clone)]
pub struct KeyHasher {
    /// The HMAC already keyed with the pepper: each hash clones it instead of deriving the
    /// key schedule again (the request path hashes every presented key).
    keyed: Hmac<Sha256>,
}

impl KeyHasher {
    pub fn new(pepper: SecretString) -> Self {
        Self { keyed: Hmac::<Sha256>::new_from_slice(pepper.expose_secret().as_bytes()).expect("HMAC accepts keys of any length") }
    }

    /// The HMAC-SHA256 of the plain key under the pepper, as bytes (what caches key on).
    pub fn digest(&self, key: &PlainApiKey) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(key.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Hex HMAC-SHA256 of the plain key under the pepper: what the store keeps and looks up.
    pub fn hash(&self, key: &PlainApiKey) -> String {
        hex::encode(self.digest(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_keep_their_kind() {
        for kind in [KeyKind::Secret, KeyKind::Publishable] {
            let k = PlainApiKey::generate(kind);
            assert!(k.expose().starts_with(kind.prefix()));
            assert_eq!(k.expose().len(), 6 + RANDOM_LEN);
            let parsed = PlainApiKey::parse(k.expose()).unwrap();
            assert_eq!(parsed.kind(), kind);
            assert_eq!(parsed.display_prefix().len(), 14);
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(PlainApiKey::parse("").is_none());
        assert!(PlainApiKey::parse("hb_sk_short").is_none());
        assert!(PlainApiKey::parse(&format!("xx_sk_{}", "a".repeat(40))).is_none());
        assert!(PlainApiKey::parse(&format!("hb_sk_{}!", "a".repeat(39))).is_none());
        assert!(PlainApiKey::parse(&format!("hb_sk_{}", "a".repeat(41))).is_none());
    }

    #[test]
    fn hashes_depend_on_the_pepper_and_never_contain_the_key() {
        let k = PlainApiKey::generate(KeyKind::Secret);
        let a = KeyHasher::new("pepper-one".to_string().into()).hash(&k);
        let b = KeyHasher::new("pepper-two".to_string().into()).hash(&k);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(!a.contains(&k.expose()[6..]));
        assert_eq!(a, KeyHasher::new("pepper-one".to_string().into()).hash(&k));
    }
}
