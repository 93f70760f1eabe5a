//! Where a catch-up reader gets its next page: straight from this process's committer when the
//! events it committed continue exactly where the reader stands, else from the store.
//!
//! The store is the truth and the in-process feed only a shortcut: a position the feed does not
//! hold (another process's append, a rolled-back one's hole, a feed that lagged) sends the reader
//! to the store, which returns everything in order. So the feed can lose batches without losing
//! events, and a signal approved here reaches the saga without a poll or a query. A reader that
//! has caught up asks the store again only once per poll (other processes' appends), not after
//! every batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::ledger::CommittedBatch;
use crate::store::{LogPosition, LoggedEvent, Store, StoreError};

/// Events held for a reader that is behind; past this it reads the store instead.
const MAX_HELD_EVENTS: usize = 16_384;

pub struct Feed {
    committed: Option<broadcast::Receiver<CommittedBatch>>,
    held: BTreeMap<i64, LoggedEvent>,
    /// Whether the store may hold what the feed does not: at the start, after a lagged feed, a
    /// reader that moved back, or while the store's last page was not empty. Otherwise, between
    /// polls, a reader with nothing handed over reads nothing.
    store_may_hold_more: bool,
    /// The position after the last page served: a reader asking for anything else moved back.
    next_expected: Option<i64>,
    /// When the store was last read, and how often it must be (the reader's poll): a feed that
    /// is never quiet still sees other processes' appends.
    store_read_at: Option<Instant>,
    poll: Duration,
    /// Pages served without a query, and pages read from the store (for the reader's metrics).
    pub handed_over: u64,
    pub read_from_store: u64,
}

impl Feed {
    /// A feed of `committed` (the ledger's `committed()`), or of the store alone with `None`.
    pub fn new(committed: Option<broadcast::Receiver<CommittedBatch>>) -> Self {
        Self {
            store_may_hold_more: true,
            next_expected: None,
            store_read_at: None,
            poll: Duration::ZERO,
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
        let first = after.global_seq + 1;
        if self.next_expected != Some(first) {
            self.store_may_hold_more = true;
        }
        self.held = self.held.split_off(&first);
        let mut page = Vec::new();
        let mut expected = first;
        while i64::try_from(page.len()).is_ok_and(|taken| taken < limit) {
            match self.held.remove(&expected) {
                Some(event) => page.push(event),
                None => break,
            }
            expected += 1;
        }
        if !page.is_empty() {
            self.handed_over += 1;
            self.next_expected = Some(expected);
            return Ok(page);
        }
        // Nothing continues the reader here: the store is asked only if it may know more (what
        // is held but does not continue is a gap the store explains).
        let poll_due = self
            .store_read_at
            .is_none_or(|at| at.elapsed() >= self.poll);
        if self.held.is_empty()
            && !self.store_may_hold_more
            && !poll_due
            && self.committed.is_some()
        {
            return Ok(page);
        }
        self.read_from_store += 1;
        self.store_read_at = Some(Instant::now());
        let page = store.events().read_log(after, limit).await?;
        self.store_may_hold_more = !page.is_empty();
        self.next_expected = Some(
            page.last()
                .map_or(first, |last| last.position.global_seq + 1),
        );
        Ok(page)
    }

    /// Waits until this process commits something, `poll` passes (other processes' appends are
    /// only seen by reading), or `stop` resolves.
    pub async fn wait(&mut self, poll: Duration, stop: impl std::future::Future<Output = ()>) {
        self.poll = poll;
        let Some(committed) = self.committed.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop => {}
            }
            return;
        };
        let received = tokio::select! {
            received = committed.recv() => received,
            _ = tokio::time::sleep(poll) => return,
            _ = stop => return,
        };
        match received {
            Ok(batch) => self.hold(&batch),
            // Missed batches are in the store; what is held stays valid.
            Err(RecvError::Lagged(_)) => self.store_may_hold_more = true,
            Err(RecvError::Closed) => self.committed = None,
        }
    }

    fn take_published(&mut self) {
        loop {
            let Some(committed) = self.committed.as_mut() else {
                return;
            };
            match committed.try_recv() {
                Ok(batch) => self.hold(&batch),
                Err(TryRecvError::Lagged(_)) => {
                    self.store_may_hold_more = true;
                    continue;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Closed) => {
                    self.committed = None;
                    return;
                }
            }
        }
    }

    fn hold(&mut self, batch: &CommittedBatch) {
        if self.held.len() + batch.len() > MAX_HELD_EVENTS {
            // The reader is far behind: it reads the store until it catches up.
            self.held.clear();
            self.store_may_hold_more = true;
            return;
        }
        // A clone shares the event: readers of one batch hold the same events.
        for event in batch.iter() {
            self.held.insert(event.position.global_seq, event.clone());
        }
    }
}
