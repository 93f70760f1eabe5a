//! The key audit checkpoints are signed with (`--audit-key` / `LEDGERHOOK_AUDIT_KEY`). It is never
//! logged, printed or stored: `Debug` shows only that one is set.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Shorter keys are refused: HMAC-SHA256's strength is capped by the key's entropy.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

#[derive(Debug, thiserror::Error)]
#[error("the audit key must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)")]
pub struct WeakKey;

impl AuditKey {
    pub fn new(text: &str) -> Result<Self, WeakKey> {
        if text.len() < MIN_KEY_BYTES {
            return Err(WeakKey);
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// Lowercase hex HMAC-SHA256 of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.mac(message).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is this key's signature of `message`, compared in constant time.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let expected = self.sign(message);
        expected.len() == signature.len()
            && bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(message);
        mac
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused() {
        assert!(AuditKey::new("short").is_err());
    }

    #[test]
    fn a_signature_verifies_only_under_its_key_and_message() {
        let key = AuditKey::new(&"k".repeat(32)).unwrap();
        let other = AuditKey::new(&"j".repeat(32)).unwrap();
        let signature = key.sign(b"message");
        assert!(key.verifies(b"message", &signature));
        assert!(!key.verifies(b"messagf", &signature));
        assert!(!other.verifies(b"message", &signature));
        assert!(!format!("{key:?}").contains("kkkk"));
    }
}
