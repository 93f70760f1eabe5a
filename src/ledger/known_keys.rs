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
/// Hashes kept for one account (~28 bytes each with the map's slack, heaptrack: about 460 KB).
/// A window of keys is a day's: an account sending more than this many signals a day has its
/// later keys looked up in the store instead (one indexed read a signal) until the ones not kept
/// expire. Without a bound, the soak's 400 signals a second to 200 accounts would hold about a
/// gigabyte of hashes by the end of its first day; with it, at most 92 MB.
pub const MAX_KEPT: usize = 16_384;

#[derive(Debug)]
pub struct KnownKeys {
    /// At most this many hashes (`MAX_KEPT` but in tests).
    room: usize,
    hasher: RandomState,
    /// Hash → expiry in seconds since the epoch, rounded up (a later expiry only costs a lookup).
    expiries: HashMap<u64, i64>,
    /// The size after the last sweep.
    swept_len: usize,
    /// No expiry in `expiries` is earlier than this (0: not known), so a full map is swept only
    /// once something in it can have expired.
    earliest: i64,
    /// The latest expiry of a key not kept for want of room: until it has passed, these hashes
    /// are incomplete and every key may have been used.
    unkept_until: Option<i64>,
}

impl Default for KnownKeys {
    fn default() -> Self {
        Self::with_room(MAX_KEPT)
    }
}

impl KnownKeys {
    pub fn with_room(room: usize) -> Self {
        Self {
            room,
            hasher: RandomState::new(),
            expiries: HashMap::new(),
            swept_len: 0,
            earliest: 0,
            unkept_until: None,
        }
    }

    /// Whether the account may have used `key`: the store must be asked.
    pub fn may_hold(&self, key: &str) -> bool {
        self.unkept_until.is_some() || self.expiries.contains_key(&self.hasher.hash_one(key))
    }

    /// Remembers a key the account used (loaded from the store, or just committed). The latest
    /// use's expiry wins.
    pub fn insert(&mut self, key: &str, expires_at: DateTime<Utc>) {
        let rounded_up =
            expires_at.timestamp() + i64::from(expires_at.timestamp_subsec_nanos() > 0);
        let hash = self.hasher.hash_one(key);
        if let Some(expiry) = self.expiries.get_mut(&hash) {
            *expiry = (*expiry).max(rounded_up);
            return;
        }
        if self.expiries.len() >= self.room {
            let horizon = horizon(Utc::now());
            if self.earliest <= horizon {
                self.drop_expired(horizon);
            }
            if self.expiries.len() >= self.room {
                self.unkept_until = self.unkept_until.max(Some(rounded_up));
                return;
            }
        }
        self.earliest = self.earliest.min(rounded_up);
        self.expiries.insert(hash, rounded_up);
    }

    /// Drops what expired well before `now` once the map has doubled since the last sweep (so
    /// the cost per insert stays constant), or once every key not kept has expired.
    pub fn sweep(&mut self, now: DateTime<Utc>) {
        let horizon = horizon(now);
        let grown = self.expiries.len() >= MIN_SWEEP_LEN.max(2 * self.swept_len);
        let unkept_expired = self.unkept_until.is_some_and(|until| until <= horizon);
        if grown || unkept_expired {
            self.drop_expired(horizon);
        }
    }

    fn drop_expired(&mut self, horizon: i64) {
        self.expiries.retain(|_, expiry| *expiry > horizon);
        self.swept_len = self.expiries.len();
        self.earliest = self.expiries.values().copied().min().unwrap_or(i64::MAX);
        if self.unkept_until.is_some_and(|until| until <= horizon) {
            self.unkept_until = None;
        }
    }

    pub fn len(&self) -> usize {
        self.expiries.len()
    }
}

/// Expiries at or before this have passed, with the margin.
fn horizon(now: DateTime<Utc>) -> i64 {
    now.timestamp() - EXPIRY_MARGIN_SECONDS
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
    fn past_its_room_every_key_may_be_held_until_the_unkept_ones_expire() {
        let mut keys = KnownKeys::with_room(4);
        // A day from now, to the second: nothing has expired when the room runs out.
        let expiry =
            DateTime::from_timestamp(Utc::now().timestamp() + 86_400, 0).unwrap_or_default();
        for n in 0..4 {
            keys.insert(&format!("kept-{n}"), expiry);
        }
        assert!(!keys.may_hold("never-used"));
        keys.insert("unkept", expiry + Duration::hours(1));
        assert_eq!(keys.len(), 4);
        assert!(keys.may_hold("unkept") && keys.may_hold("never-used"));
        // A key kept before is still updated in place, whatever the room.
        keys.insert("kept-0", expiry + Duration::hours(2));
        assert_eq!(keys.len(), 4);
        // Not complete until the unkept key has expired, with the margin.
        let unkept_gone = expiry + Duration::hours(1) + Duration::seconds(EXPIRY_MARGIN_SECONDS);
        keys.sweep(unkept_gone - Duration::seconds(1));
        assert!(keys.may_hold("never-used"));
        keys.sweep(unkept_gone);
        assert!(!keys.may_hold("never-used"));
        assert!(keys.may_hold("kept-0"), "its later use is still live");
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn a_full_map_makes_room_from_expired_keys_first() {
        let mut keys = KnownKeys::with_room(4);
        let expired = Utc::now() - Duration::seconds(EXPIRY_MARGIN_SECONDS + 60);
        for n in 0..4 {
            keys.insert(&format!("old-{n}"), expired);
        }
        keys.insert("fresh", Utc::now() + Duration::hours(24));
        assert!(keys.may_hold("fresh"));
        assert!(!keys.may_hold("never-used"), "nothing went unkept");
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn small_maps_are_not_swept() {
        let mut keys = KnownKeys::default();
        keys.insert("old", at(0));
        keys.sweep(at(10_000));
        assert!(keys.may_hold("old"));
    }
}
