//! Loaded accounts kept in memory, one lock each, so a command costs the same whatever the length
//! of the account's history. The cache is only ever an optimisation: the store's optimistic
//! concurrency check on append proves a cached state is still the latest, and a conflict reloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use tokio::sync::Mutex;

use aggregates::TradingAccount;

use super::known_keys::KnownKeys;
use super::Queued;

/// An account's state as of `version` (the sequence of its last event; 0 before any).
#[derive(Default)]
pub struct LoadedAccount {
    pub state: TradingAccount,
    pub version: usize,
    /// The version of the newest snapshot known to be stored.
    pub snapshot_version: usize,
    /// Hashes of the account's live idempotency keys, as of `version`.
    pub known_keys: KnownKeys,
}

/// One account in memory: its state behind the lock commands take, and the commands waiting for
/// it (decided together by whoever takes the lock next, see `Ledger::execute_numbered`).
#[derive(Default)]
pub struct Slot {
    /// `None` until the account is loaded, and again after an append that did not land as
    /// decided (its outcome unknown, or a conflict: the state it was decided on is stale).
    pub account: Arc<Mutex<Option<LoadedAccount>>>,
    waiting: SyncMutex<Vec<Queued>>,
}

impl Slot {
    pub(super) fn enqueue(&self, command: Queued) {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(command);
    }

    /// Every command waiting, oldest first.
    pub(super) fn take_waiting(&self) -> Vec<Queued> {
        std::mem::take(
            &mut *self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

pub type AccountSlot = Arc<Slot>;

pub struct AccountCache {
    slots: SyncMutex<HashMap<String, AccountSlot>>,
    capacity: usize,
}

impl AccountCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: SyncMutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The slot of one account. Holding its lock is what makes commands on one account run one
    /// at a time in this process.
    pub fn slot(&self, account_id: &str) -> AccountSlot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = slots.get(account_id) {
            return slot.clone();
        }
        if slots.len() >= self.capacity {
            evict_idle(&mut slots, self.capacity - self.capacity / 8);
        }
        let slot = AccountSlot::default();
        slots.insert(account_id.to_owned(), slot.clone());
        slot
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// Drops slots nobody holds until at most `target` remain. A slot in use is never dropped: a second
/// slot for the same account would let two commands on it run at once.
fn evict_idle(slots: &mut HashMap<String, AccountSlot>, target: usize) {
    let excess = slots.len().saturating_sub(target);
    let idle: Vec<String> = slots
        .iter()
        .filter(|(_, slot)| Arc::strong_count(slot) == 1)
        .map(|(id, _)| id.clone())
        .take(excess)
        .collect();
    for id in idle {
        slots.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_evicts_only_idle_accounts() {
        let cache = AccountCache::new(8);
        let held: Vec<AccountSlot> = (0..4).map(|i| cache.slot(&format!("held-{i}"))).collect();
        for i in 0..20 {
            cache.slot(&format!("idle-{i}"));
        }
        assert!(cache.len() <= 8, "cache grew to {}", cache.len());
        for (i, slot) in held.iter().enumerate() {
            assert!(Arc::ptr_eq(slot, &cache.slot(&format!("held-{i}"))));
        }
    }
}
