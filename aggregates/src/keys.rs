//! The idempotency keys an account has used. They are not part of the account's state: a day of
//! keys is most of what a busy account would carry, so the ledger keeps them in the store, in the
//! transaction that appends the events using them, and tells a signal what the store remembers
//! of its key (`SignalIntent::earlier_use`). `KeyMemory` is the same memory folded from events,
//! for whoever replays a ledger without the store: the replay trace, and the domain's tests.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::{AccountEvent, RejectionReason, SeenKey, SignalId};

/// A key an event put to use: remembered for the signal until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedKey {
    pub key: String,
    pub signal_id: SignalId,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl AccountEvent {
    /// The key this event puts to use: a signal taken up or refused for anything but being a
    /// duplicate. A duplicate's key stays the original's.
    pub fn remembered_key(&self) -> Option<RememberedKey> {
        match self {
            AccountEvent::SignalReceived {
                signal_id,
                idempotency_key,
                key_expires_at,
                received_at,
                ..
            }
            | AccountEvent::SignalRejected {
                signal_id,
                idempotency_key,
                key_expires_at,
                received_at,
                ..
            } if !self.is_duplicate() => Some(RememberedKey {
                key: idempotency_key.clone(),
                signal_id: signal_id.clone(),
                received_at: *received_at,
                expires_at: *key_expires_at,
            }),
            _ => None,
        }
    }

    fn is_duplicate(&self) -> bool {
        matches!(
            self,
            AccountEvent::SignalRejected {
                reason: RejectionReason::Duplicate { .. },
                ..
            }
        )
    }
}

/// Keys inside their window, with the signal each produced; expired keys are forgotten as newer
/// signals arrive, so the memory is bounded by the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyMemory {
    seen: BTreeMap<String, SeenKey>,
    /// The same keys ordered by when they expire, so expired keys are forgotten cheaply.
    expiry: BTreeSet<(DateTime<Utc>, String)>,
}

impl KeyMemory {
    /// Folds one event in: remembers the key it used, if any.
    pub fn fold(&mut self, event: &AccountEvent) {
        if let Some(remembered) = event.remembered_key() {
            self.remember(remembered);
        }
    }

    pub fn remember(&mut self, remembered: RememberedKey) {
        while let Some((expires_at, _)) = self.expiry.first() {
            if *expires_at > remembered.received_at {
                break;
            }
            if let Some((_, expired)) = self.expiry.pop_first() {
                self.seen.remove(&expired);
            }
        }
        let previous = self.seen.insert(
            remembered.key.clone(),
            SeenKey {
                signal_id: remembered.signal_id,
                expires_at: remembered.expires_at,
            },
        );
        if let Some(previous) = previous {
            self.expiry
                .remove(&(previous.expires_at, remembered.key.clone()));
        }
        self.expiry.insert((remembered.expires_at, remembered.key));
    }

    /// The key's last use, expired or not (`SignalIntent::earlier_use`).
    pub fn recall(&self, key: &str) -> Option<&SeenKey> {
        self.seen.get(key)
    }

    pub fn entries(&self) -> &BTreeMap<String, SeenKey> {
        &self.seen
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
