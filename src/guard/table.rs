//! A per-key state table with a hard cap on keys, for state that outsiders decide the keys of.
//!
//! Keys are 128 bits of SHA-256 over what was presented: every key costs the same few bytes however
//! long the presented value was, and the table never holds a credential itself.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Independent locks, so requests of different users rarely wait on each other.
const SHARDS: usize = 16;

/// Fixed-size name of whatever was presented (a user id, a token, a webhook uuid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 16]);

impl Key {
    /// `domain` keeps two kinds of value that happen to be equal from sharing a key.
    pub fn digest(domain: &str, value: &[u8]) -> Self {
        Self::of(domain, &[value])
    }

    /// Several values under one key, each length-prefixed so no two lists share a key.
    pub fn of(domain: &str, values: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(domain.as_bytes());
        hasher.update([0]);
        for value in values {
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value);
        }
        let digest = hasher.finalize();
        let mut key = [0_u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// 32 lowercase hex digits: how a key travels to other instances (`Guard::peer_failure`).
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(digits: &str) -> Option<Self> {
        let mut key = [0_u8; 16];
        hex::decode_to_slice(digits, &mut key).ok()?;
        Some(Self(key))
    }

    fn shard(&self) -> usize {
        usize::from(self.0[0]) % SHARDS
    }
}

/// Time as nanoseconds since the table was made: 8 bytes per timestamp instead of an `Instant`'s 16.
pub type Nanos = u64;

pub trait Entry {
    /// True when forgetting the entry would change no future answer.
    fn is_idle(&self, now: Nanos) -> bool;
    /// Entries with the lowest rank are forgotten first when the table is full of live ones.
    fn eviction_rank(&self) -> Nanos;
}

pub struct BoundedTable<V> {
    origin: Instant,
    shards: Box<[Mutex<HashMap<Key, V>>]>,
    shard_capacity: usize,
}

impl<V: Entry> BoundedTable<V> {
    /// Holds at most `max_keys` (rounded up to a multiple of the shard count).
    pub fn new(max_keys: usize, origin: Instant) -> Self {
        let shard_capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self {
            origin,
            shards,
            shard_capacity,
        }
    }

    pub fn max_keys(&self) -> usize {
        self.shard_capacity * SHARDS
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// `now` on the table's clock; an instant before the origin counts as the origin.
    pub fn nanos(&self, now: Instant) -> Nanos {
        duration_nanos(now.saturating_duration_since(self.origin))
    }

    pub fn get<R>(&self, key: &Key, read: impl FnOnce(&V) -> R) -> Option<R> {
        lock(&self.shards[key.shard()]).get(key).map(read)
    }

    /// Updates the key's entry, making it with `new` first if absent (and room for it if full).
    pub fn upsert<R>(
        &self,
        key: Key,
        now: Nanos,
        new: impl FnOnce() -> V,
        update: impl FnOnce(&mut V) -> R,
    ) -> R {
        let mut shard = lock(&self.shards[key.shard()]);
        if let Some(entry) = shard.get_mut(&key) {
            return update(entry);
        }
        if shard.len() >= self.shard_capacity {
            make_room(&mut shard, self.shard_capacity, now);
        }
        update(shard.entry(key).or_insert_with(new))
    }

    pub fn remove(&self, key: &Key) {
        lock(&self.shards[key.shard()]).remove(key);
    }
}

/// Drops idle entries; if the shard is still full of live ones, drops the lowest-ranked eighth at
/// once, so a flood of new keys pays for one scan per `capacity / 8` inserts, not one each.
fn make_room<V: Entry>(shard: &mut HashMap<Key, V>, capacity: usize, now: Nanos) {
    shard.retain(|_, entry| !entry.is_idle(now));
    if shard.len() < capacity {
        return;
    }
    let mut ranks: Vec<Nanos> = shard.values().map(Entry::eviction_rank).collect();
    let evicted = (capacity / 8).clamp(1, ranks.len());
    let (lower, threshold, _) = ranks.select_nth_unstable(evicted - 1);
    let threshold = *threshold;
    // Ties at the threshold: drop only as many as make up the eighth, not every equal one.
    let mut ties_to_drop = evicted - lower.iter().filter(|rank| **rank < threshold).count();
    shard.retain(|_, entry| match entry.eviction_rank().cmp(&threshold) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal if ties_to_drop > 0 => {
            ties_to_drop -= 1;
            false
        }
        std::cmp::Ordering::Equal => true,
    });
    tracing::warn!(
        capacity,
        "guard table full of live keys: forgot the least recent ones"
    );
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave an entry half-written in a way that matters
    // more than refusing every later request would.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn duration_nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The table's worst case per key: a `(Key, V)` slot plus hashbrown's control byte, with the
/// table at its emptiest after a resize (7/8 load halved) — about 2.3 slots per key.
pub fn bytes_per_key_max<V>() -> usize {
    (std::mem::size_of::<(Key, V)>() + 1) * 16 / 7
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Expires(Nanos);

    impl Entry for Expires {
        fn is_idle(&self, now: Nanos) -> bool {
            self.0 <= now
        }
        fn eviction_rank(&self) -> Nanos {
            self.0
        }
    }

    fn key(n: u32) -> Key {
        Key::digest("test", &n.to_be_bytes())
    }

    #[test]
    fn a_flood_of_distinct_keys_never_exceeds_the_cap() {
        let table = BoundedTable::new(1_000, Instant::now());
        for n in 0..50_000 {
            table.upsert(key(n), 0, || Expires(u64::MAX), |_| ());
            assert!(table.len() <= table.max_keys());
        }
        assert!(table.len() > table.max_keys() / 2, "eviction is partial");
    }

    #[test]
    fn idle_entries_go_before_live_ones() {
        let table = BoundedTable::new(16, Instant::now());
        // Shard capacity is 1: fill key 0's shard with an idle entry, then insert a colliding key.
        let first = key(0);
        let other = (1..)
            .map(key)
            .find(|candidate| candidate.shard() == first.shard())
            .expect("some key shares the shard");
        table.upsert(first, 0, || Expires(5), |_| ());
        table.upsert(other, 10, || Expires(100), |_| ());
        assert!(table.get(&first, |_| ()).is_none());
        assert!(table.get(&other, |_| ()).is_some());
    }

    #[test]
    fn the_same_value_in_two_domains_is_two_keys() {
        assert_ne!(Key::digest("token", b"x"), Key::digest("webhook", b"x"));
        assert_eq!(Key::digest("token", b"x"), Key::digest("token", b"x"));
    }
}
