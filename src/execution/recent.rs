//! The events the saga itself has just recorded, kept until their page comes round. A
//! conclusion's notification names the events recorded with it (the position's change); when they
//! were not in the conclusion's page they used to be read back from the store, a query for most
//! signals under load. What is not kept here (a restart, another instance's or the resting
//! watcher's records, a full table) is still read from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use aggregates::AccountEvent;

use crate::ledger::Committed;

/// At most this many kept commands: it is a shortcut, never the truth.
const MAX_KEPT: usize = 16_384;

#[derive(Default)]
pub struct RecentlyRecorded {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// A command's events by account, then by the sequence of its first event.
    by_account: HashMap<String, BTreeMap<usize, Vec<AccountEvent>>>,
    len: usize,
}

impl RecentlyRecorded {
    /// Keeps a command's events when there is more than its first (nothing else to tell beside).
    /// A full table refuses new entries rather than dropping old ones: a saga that is behind
    /// reaches the oldest first, and dropping them would send it to the store for each.
    pub fn keep(&self, account_id: &str, committed: &Committed) {
        if committed.events.len() < 2 {
            return;
        }
        let first = committed.version + 1 - committed.events.len();
        let mut kept = self.lock();
        if kept.len >= MAX_KEPT {
            return;
        }
        let account = kept.by_account.entry(account_id.to_owned()).or_default();
        if account.insert(first, committed.events.clone()).is_none() {
            kept.len += 1;
        }
    }

    /// The events of the command whose first event is the account's `sequence`, once. The saga
    /// reads an account's events in order, so whatever it kept for that account before `sequence`
    /// and never asked for (a command that needed no telling) is dropped here too.
    pub fn take(&self, account_id: &str, sequence: usize) -> Option<Vec<AccountEvent>> {
        let mut kept = self.lock();
        let account = kept.by_account.get_mut(account_id)?;
        let later = account.split_off(&(sequence + 1));
        let mut passed = std::mem::replace(account, later);
        let empty = account.is_empty();
        let found = passed.remove(&sequence);
        let dropped = passed.len() + usize::from(found.is_some());
        if empty {
            kept.by_account.remove(account_id);
        }
        kept.len -= dropped;
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(version: usize, events: usize) -> Committed {
        let event = AccountEvent::WebhookRotated {
            by: "owner".to_owned(),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        Committed {
            version,
            events: vec![event; events],
        }
    }

    #[test]
    fn a_full_table_keeps_its_oldest_and_refuses_the_newest() {
        let recent = RecentlyRecorded::default();
        for version in 0..MAX_KEPT {
            recent.keep("a", &command(2 * version + 2, 2));
        }
        recent.keep("b", &command(2, 2));
        assert_eq!(recent.len(), MAX_KEPT);
        assert!(recent.take("b", 1).is_none());
        assert_eq!(recent.take("a", 1).map(|events| events.len()), Some(2));
    }

    #[test]
    fn taking_a_command_drops_what_the_account_kept_before_it() {
        let recent = RecentlyRecorded::default();
        recent.keep("a", &command(2, 2)); // events 1-2
        recent.keep("a", &command(4, 2)); // events 3-4
        recent.keep("a", &command(6, 2)); // events 5-6
        recent.keep("b", &command(2, 2));
        assert!(recent.take("a", 3).is_some());
        assert_eq!(recent.len(), 2);
        assert!(recent.take("a", 1).is_none());
        assert!(recent.take("a", 5).is_some());
        assert!(recent.take("b", 1).is_some());
        assert_eq!(recent.len(), 0);
    }

    #[test]
    fn a_command_of_one_event_is_not_kept() {
        let recent = RecentlyRecorded::default();
        recent.keep("a", &command(1, 1));
        assert_eq!(recent.len(), 0);
    }
}
