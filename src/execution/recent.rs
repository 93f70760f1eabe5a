//! The events the saga itself has just recorded, kept until their page comes round. A
//! conclusion's notification names the events recorded with it (the position's change); when they
//! were not in the conclusion's page they used to be read back from the store, a query for most
//! signals under load. What is not kept here (a restart, another instance's or the resting
//! watcher's records, a full table) is still read from the store.

use std::collections::HashMap;
use std::sync::Mutex;

use aggregates::AccountEvent;

use crate::ledger::Committed;

/// Past this many kept commands the table starts again: it is a shortcut, never the truth.
const MAX_KEPT: usize = 16_384;

#[derive(Default)]
pub struct RecentlyRecorded {
    /// A command's events by (account, sequence of its first event).
    kept: Mutex<HashMap<(String, usize), Vec<AccountEvent>>>,
}

impl RecentlyRecorded {
    /// Keeps a command's events when there is more than its first (nothing else to tell beside).
    pub fn keep(&self, account_id: &str, committed: &Committed) {
        if committed.events.len() < 2 {
            return;
        }
        let first = committed.version + 1 - committed.events.len();
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert((account_id.to_owned(), first), committed.events.clone());
    }

    /// The events of the command whose first event is the account's `sequence`, once.
    pub fn take(&self, account_id: &str, sequence: usize) -> Option<Vec<AccountEvent>> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(account_id.to_owned(), sequence))
    }
}
