//! Staff API keys: 256 random bits like the traders' keys, under a prefix of their own so that
//! neither kind is ever mistaken for the other (each is refused by shape, before any lookup, on
//! the other's endpoints) and secret scanners can tell them apart.

use rand::RngCore;

use crate::users::credentials::{is_well_formed_secret, sha256_hex};

const KEY_BYTES: usize = 32;
pub const STAFF_KEY_PREFIX: &str = "lhs_";

/// A new staff API key, shown once.
pub fn generate_staff_key() -> String {
    let mut bytes = [0_u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{STAFF_KEY_PREFIX}{}", hex::encode(bytes))
}

pub fn is_well_formed_staff_key(value: &str) -> bool {
    value
        .strip_prefix(STAFF_KEY_PREFIX)
        .is_some_and(is_well_formed_secret)
}

/// What the store keeps of a key.
pub fn staff_key_digest(key: &str) -> String {
    sha256_hex(key)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::users::credentials::{is_well_formed_api_key, API_KEY_PREFIX};

    #[test]
    fn keys_are_well_formed_distinct_and_never_trader_keys() {
        assert_ne!(STAFF_KEY_PREFIX, API_KEY_PREFIX);
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let key = generate_staff_key();
            assert!(is_well_formed_staff_key(&key));
            assert!(!is_well_formed_api_key(&key));
            assert!(!is_well_formed_secret(&key));
            assert!(seen.insert(key), "a random key repeated");
        }
        let trader_key = crate::users::credentials::generate_api_key();
        assert!(!is_well_formed_staff_key(&trader_key));
        assert!(!is_well_formed_staff_key(STAFF_KEY_PREFIX));
        assert!(!is_well_formed_staff_key(&"a".repeat(64)));
    }
}
