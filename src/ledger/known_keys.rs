//! Which idempotency keys an account may have used: 8-byte hashes of its live keys, kept beside
//! its cached state (not in it: never cloned into a decision, never snapshotted). A key whose hash
//! is not here is new, and the store is not asked about it; one whose hash is here (a resend, or
//! a collision in 2^64) is looked up in the store, which has the last word.
//!
//! Complete for the version it was loaded or last committed at: keys are written only with their
//! account's events, so another instance's key comes with a new version, and the append that
//! follows a stale decision conflicts and reloads the account, these hashes with it.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};

/// A key is dropped (and not loaded) only this long after its expiry, not at it: a signal is
/// decided a moment after it was received, later when its account is busy.
pub const EXPIRY_MARGIN_SECONDS: i64 = 600;
/// Sweeps run when the map has doubled since the last one, and not below this size.
const MIN_SWEEP_LEN: usize = 1_024;

#[derive(Debug, Default)]
pub struct KnownKeys {
    hasher: RandomState,
    /// Hash → expiry in seconds since the epoch, rounded up (a later expiry only costs a lookup).
    expiries: HashMap<u64, i64>,
    /// The size after the last sweep.
    swept_len: usize,
}

impl KnownKeys {
    /// Whether the account may have used `key`: the store must be asked.
    pub fn may_hold(&self, key: &str) -> bool {
        self.expiries.contains_key(&self.hasher.hash_one(key))
    }

    /// Remembers a key the account used (loaded from the store, or just committed). The latest
    /// use's expiry wins.
    pub fn insert(&mut self, key: &str, expires_at: DateTime<Utc>) {
        let rounded_up =
            expires_at.timestamp() + i64::from(expires_at.timestamp_subsec_nanos() > 0);
        let hash = self.hasher.hash_one(key);
        let expiry = self.expiries.entry(hash).or_insert(rounded_up);
        *expiry = (*expiry).max(rounded_up);
    }

    /// Drops what expired well before `now`, once the map has doubled since the last sweep, so
    /// the cost per insert stays constant.
    pub fn sweep(&mut self, now: DateTime<Utc>) {
        if self.expiries.len() < MIN_SWEEP_LEN.max(2 * self.swept_len) {
            return;
        }
        let horizon = now.timestamp() - EXPIRY_MARGIN_SECONDS;
        self.expiries.retain(|_, expiry| *expiry > horizon);
        self.swept_len = self.expiries.len();
    }

    pub fn len(&self) -> usize {
        self.expiries.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn a_used_key_may_be_held_and_a_new_one_is_not() {
        let mut keys = KnownKeys::default();
        keys.insert("alert-1", at(60));
        assert!(keys.may_hold("alert-1"));
        assert!(!keys.may_hold("alert-2"));
    }

    #[test]
    fn a_sweep_keeps_live_keys_and_those_just_expired_and_drops_the_rest() {
        let mut keys = KnownKeys::default();
        for n in 0..MIN_SWEEP_LEN {
            keys.insert(&format!("old-{n}"), at(0));
        }
        keys.insert("just-expired", at(1_000));
        keys.insert("live", at(5_000));
        keys.sweep(at(1_000 + EXPIRY_MARGIN_SECONDS - 1));
        assert_eq!(keys.len(), 2);
        assert!(keys.may_hold("just-expired") && keys.may_hold("live"));
        assert!(!keys.may_hold("old-0"));
    }

    #[test]
    fn a_key_used_again_keeps_its_latest_expiry() {
        let mut keys = KnownKeys::default();
        keys.insert("reused", at(5_000));
        keys.insert("reused", at(10));
        for n in 0..MIN_SWEEP_LEN {
            keys.insert(&format!("old-{n}"), at(0));
        }
        keys.sweep(at(4_000));
        assert!(keys.may_hold("reused"));
    }

    #[test]
    fn a_fraction_of_a_second_rounds_the_expiry_up() {
        let mut keys = KnownKeys::default();
        keys.insert("k", at(100) + Duration::milliseconds(1));
        assert_eq!(
            keys.expiries.values().copied().collect::<Vec<_>>(),
            [1_800_000_101]
        );
    }

    #[test]
    fn small_maps_are_not_swept() {
        let mut keys = KnownKeys::default();
        keys.insert("old", at(0));
        keys.sweep(at(10_000));
        assert!(keys.may_hold("old"));
    }
}
