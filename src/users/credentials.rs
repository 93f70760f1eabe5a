//! The random values a user authenticates with, and the digests the store keeps of them.
//!
//! Every secret is 256 random bits from the OS-seeded CSPRNG. A value that cannot be guessed needs
//! no slow hash: one SHA-256 makes a stolen table useless (a preimage costs 2^256 work) while a
//! webhook pays microseconds, not argon2's tens of milliseconds. argon2id is for secrets people
//! choose (staff passwords).

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SECRET_BYTES: usize = 32;
/// Hex characters of a token or secret.
pub const SECRET_HEX_LEN: usize = SECRET_BYTES * 2;
/// Marks an API key for secret scanners and tells it apart from a webhook token at a glance.
pub const API_KEY_PREFIX: &str = "lhk_";

/// Both webhook schemes' credentials, as issued: shown once, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookCredentials {
    /// Scheme 1: `POST /api/webhook?token=...`.
    pub webhook_token: String,
    /// Scheme 2: `POST /webhooks/{webhook_uuid}` with `secret` in the body. An identifier, not
    /// a secret.
    pub webhook_uuid: Uuid,
    pub webhook_secret: String,
}

impl WebhookCredentials {
    pub fn generate() -> Self {
        Self {
            webhook_token: random_hex(),
            webhook_uuid: Uuid::new_v4(),
            webhook_secret: random_hex(),
        }
    }
}

// Secrets must not reach a log line through `{:?}`.
impl std::fmt::Debug for WebhookCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCredentials")
            .field("webhook_token", &"<redacted>")
            .field("webhook_uuid", &self.webhook_uuid)
            .field("webhook_secret", &"<redacted>")
            .finish()
    }
}

/// A new API key for `Authorization: Bearer ...`.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_hex())
}

/// Whether `value` has the shape of an issued token or secret: checked before hashing so that
/// garbage of any length costs nothing.
pub fn is_well_formed_secret(value: &str) -> bool {
    value.len() == SECRET_HEX_LEN && value.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn is_well_formed_api_key(value: &str) -> bool {
    value
        .strip_prefix(API_KEY_PREFIX)
        .is_some_and(is_well_formed_secret)
}

/// What the store keeps of a secret: its SHA-256, hex.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits from the OS-seeded CSPRNG, as hex.
pub fn random_hex() -> String {
    let mut bytes = [0_u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn issued_values_are_well_formed_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let issued = WebhookCredentials::generate();
            let api_key = generate_api_key();
            assert!(is_well_formed_secret(&issued.webhook_token));
            assert!(is_well_formed_secret(&issued.webhook_secret));
            assert!(is_well_formed_api_key(&api_key));
            assert_eq!(issued.webhook_uuid.get_version_num(), 4);
            for value in [issued.webhook_token, issued.webhook_secret, api_key] {
                assert!(seen.insert(value), "a random credential repeated");
            }
        }
    }

    #[test]
    fn malformed_values_are_refused_before_hashing() {
        let good = "a".repeat(SECRET_HEX_LEN);
        assert!(is_well_formed_secret(&good));
        assert!(!is_well_formed_secret(&good[1..]));
        assert!(!is_well_formed_secret(&format!("{good}a")));
        assert!(!is_well_formed_secret(&"g".repeat(SECRET_HEX_LEN)));
        // Multi-byte characters of the right byte length are not hex.
        assert!(!is_well_formed_secret(&"é".repeat(SECRET_BYTES)));
        assert!(!is_well_formed_secret(""));
        assert!(is_well_formed_api_key(&format!("{API_KEY_PREFIX}{good}")));
        assert!(!is_well_formed_api_key(&good));
        assert!(!is_well_formed_api_key(API_KEY_PREFIX));
    }

    #[test]
    fn the_digest_is_sha256_hex() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let issued = WebhookCredentials::generate();
        let shown = format!("{issued:?}");
        assert!(!shown.contains(&issued.webhook_token));
        assert!(!shown.contains(&issued.webhook_secret));
        assert!(shown.contains(&issued.webhook_uuid.to_string()));
    }
}
