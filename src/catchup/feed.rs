//! Where a catch-up reader gets its next page: straight from this process's committer when the
//! events it committed continue exactly where the reader stands, else from the store.
//!
//! The store is the truth and the in-process feed only a shortcut: a position the feed does not
//! hold (another process's append, a rolled-back one's hole, a feed that lagged) sends the reader
//! to the store, which returns everything in order. So the feed can lose batches without losing
//! events, and a signal approved here reaches the saga without a poll or a query.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::ledger::CommittedBatch;
use crate::store::{LogPosition, LoggedEvent, Store, StoreError};

/// Events held for a reader that is behind; past this it reads the store instead.
const MAX_HELD_EVENTS: usize = 16_384;

pub struct Feed {
    committed: Option<broadcast::Receiver<CommittedBatch>>,
    held: BTreeMap<i64, LoggedEvent>,
    /// Pages served without a query, and pages read from the store (for the reader's metrics).
    pub handed_over: u64,
    pub read_from_store: u64,
}

impl Feed {
    /// A feed of `committed` (the ledger's `committed()`), or of the store alone with `None`.
    pub fn new(committed: Option<broadcast::Receiver<CommittedBatch>>) -> Self {
        Self {
            committed,
            held: BTreeMap::new(),
            handed_over: 0,
            read_from_store: 0,
        }
    }

    /// Up to `limit` events after `after`, in order: the same page the store would return.
    pub async fn next_page(
        &mut self,
        store: &Store,
        after: LogPosition,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        self.take_published();
        self.held = self.held.split_off(&(after.global_seq + 1));
        let mut page = Vec::new();
        let mut expected = after.global_seq + 1;
        while i64::try_from(page.len()).is_ok_and(|taken| taken < limit) {
            match self.held.remove(&expected) {
                Some(event) => page.push(event),
                None => break,
            }
            expected += 1;
        }
        if !page.is_empty() {
            self.handed_over += 1;
            return Ok(page);
        }
        self.read_from_store += 1;
        store.events().read_log(after, limit).await
    }

    /// Waits until this process commits something, `poll` passes (other processes' appends are
    /// only seen by reading), or `stop` resolves.
    pub async fn wait(&mut self, poll: Duration, stop: impl std::future::Future<Output = ()>) {
        let Some(committed) = self.committed.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop => {}
            }
            return;
        };
        tokio::select! {
            received = committed.recv() => match received {
                Ok(batch) => hold(&mut self.held, &batch),
                // Missed batches are in the store; what is held stays valid.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => self.committed = None,
            },
            _ = tokio::time::sleep(poll) => {}
            _ = stop => {}
        }
    }

    fn take_published(&mut self) {
        let Some(committed) = self.committed.as_mut() else {
            return;
        };
        loop {
            match committed.try_recv() {
                Ok(batch) => hold(&mut self.held, &batch),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Closed) => {
                    self.committed = None;
                    return;
                }
            }
        }
    }
}

fn hold(held: &mut BTreeMap<i64, LoggedEvent>, batch: &CommittedBatch) {
    if held.len() + batch.len() > MAX_HELD_EVENTS {
        // The reader is far behind: it reads the store until it catches up.
        held.clear();
        return;
    }
    for event in batch.iter() {
        held.insert(event.position.global_seq, event.clone());
    }
}
