//! The read side's catch-up runner: reads the ledger's global order from each projection's
//! checkpoint, page by page, and has the store apply each page to the projections' rows and move
//! their checkpoints in one transaction (compare-and-set), so every event is applied exactly once
//! whatever crashes, restarts or concurrent runners happen. A projection with no checkpoint builds
//! itself from the start of the log. No cqrs-es query dispatch is involved.
//!
//! In `serve`, one instance at a time runs it (a PostgreSQL lease, like the execution saga's);
//! `projections rebuild` (rebuild.rs) replays the same code into a fresh copy of the tables.

mod rebuild;

use std::collections::BTreeMap;
use std::time::Duration;

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use tokio::sync::watch;

use aggregates::{upcasters, TradingAccount};
use projections::{Envelope, Projection, ReadModels};

use crate::catchup::{acquire_lease, wait_or_shutdown, ERROR_BACKOFF};
use crate::ledger::{decode, Ledger};
use crate::store::{LogPosition, LoggedEvent, PageOutcome, ProjectionWrite, Store, TableSet};

pub use self::rebuild::{rebuild, status, ProjectionStatus, RebuildReport, Verdict};

pub const LEASE_NAME: &str = "projections";
/// Events read per page: large pages make one transaction (a handful of multi-row statements)
/// carry thousands of events, which is what makes a rebuild fast; a page is still small enough to
/// hold in memory and to finish quickly at shutdown.
pub const PAGE_SIZE: i64 = 4096;
const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ReadSideError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An event the projections cannot read: they stop there rather than skip it.
    #[error(transparent)]
    Decode(#[from] crate::ledger::DecodeError),
    #[error("the live {projection} projection did not reach the rebuild's position in time: is the service running and healthy?")]
    LiveBehind { projection: &'static str },
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A page of this many log events was applied.
    Applied(usize),
    /// Another runner moved a checkpoint first; nothing was written (the next step re-reads).
    Contended,
    /// Nothing to read (up to the bound, if any).
    CaughtUp,
}

/// Catch-up over a set of projections in one copy of the tables. Projections at the same
/// checkpoint share each page's read and transaction.
pub struct Runner {
    store: Store,
    tables: TableSet,
    projections: Vec<Projection>,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    page_size: i64,
    /// The checkpoints as this runner last wrote or read them; re-read after contention or error.
    checkpoints: Option<BTreeMap<Projection, LogPosition>>,
    /// The page after a position, read while the previous page was being applied, so the store
    /// reads the next page while it writes this one.
    prefetched: Option<(LogPosition, Vec<LoggedEvent>)>,
}

impl Runner {
    pub fn new(store: Store, tables: TableSet, projections: &[Projection]) -> Self {
        Self {
            store,
            tables,
            projections: projections.to_vec(),
            upcasters: upcasters(),
            page_size: PAGE_SIZE,
            checkpoints: None,
            prefetched: None,
        }
    }

    pub fn with_page_size(mut self, page_size: i64) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The lowest checkpoint among this runner's projections.
    pub async fn position(&mut self) -> Result<LogPosition, ReadSideError> {
        let checkpoints = self.checkpoints().await?;
        Ok(checkpoints.values().min().copied().unwrap_or_default())
    }

    async fn checkpoints(&mut self) -> Result<BTreeMap<Projection, LogPosition>, ReadSideError> {
        if let Some(checkpoints) = &self.checkpoints {
            return Ok(checkpoints.clone());
        }
        let all = self.store.read_models().checkpoints(self.tables).await?;
        let mine: BTreeMap<_, _> = all
            .into_iter()
            .filter(|(projection, _)| self.projections.contains(projection))
            .collect();
        self.checkpoints = Some(mine.clone());
        Ok(mine)
    }

    /// Applies the next page, not past `until` when given.
    pub async fn step(&mut self, until: Option<LogPosition>) -> Result<Step, ReadSideError> {
        let result = self.try_step(until).await;
        if !matches!(result, Ok(Step::Applied(_)) | Ok(Step::CaughtUp)) {
            self.checkpoints = None;
            self.prefetched = None;
        }
        result
    }

    async fn try_step(&mut self, until: Option<LogPosition>) -> Result<Step, ReadSideError> {
        let checkpoints = self.checkpoints().await?;
        let Some(from) = checkpoints.values().min().copied() else {
            return Ok(Step::CaughtUp);
        };
        if until.is_some_and(|until| from >= until) {
            return Ok(Step::CaughtUp);
        }
        let mut page = match self.prefetched.take() {
            Some((after, page)) if after == from => page,
            _ => self.store.events().read_log(from, self.page_size).await?,
        };
        if let Some(until) = until {
            page.retain(|logged| logged.position <= until);
        }
        let Some(last) = page.last().map(|logged| logged.position) else {
            return Ok(Step::CaughtUp);
        };
        let read = page.len();
        let mut envelopes = Vec::with_capacity(read);
        for logged in page {
            // The log also carries the emergency stop's stream: no read model is about it.
            if logged.event.aggregate_type != TradingAccount::TYPE {
                continue;
            }
            let recorded = decode(logged.event, &self.upcasters)?;
            envelopes.push((
                logged.position,
                Envelope {
                    account_id: recorded.account_id,
                    sequence: recorded.sequence,
                    recorded_at: recorded.recorded_at,
                    event: recorded.event,
                },
            ));
        }
        let mut writes = Vec::new();
        for (projection, checkpoint) in checkpoints.iter().filter(|(_, at)| **at < last) {
            let events: Vec<&Envelope> = envelopes
                .iter()
                .filter(|(position, envelope)| {
                    position > checkpoint && ReadModels::touches(*projection, envelope)
                })
                .map(|(_, envelope)| envelope)
                .collect();
            writes.push(ProjectionWrite {
                projection: *projection,
                from: *checkpoint,
                to: last,
                rows: self.fold(*projection, &events).await?,
            });
        }
        // The next page is read (and the store's other core used) while this one is written. A
        // read below the snapshot horizon may return less while this transaction is open; it
        // never skips anything, and what it misses is read next time.
        let (read_models, events) = (self.store.read_models(), self.store.events());
        let (applied, next_page) = tokio::join!(
            read_models.write_page(self.tables, &writes),
            events.read_log(last, self.page_size)
        );
        match applied? {
            PageOutcome::Applied => {
                self.prefetched = next_page.ok().map(|next| (last, next));
                let moved: Vec<Projection> = writes.iter().map(|write| write.projection).collect();
                if let Some(checkpoints) = &mut self.checkpoints {
                    for projection in moved {
                        checkpoints.insert(projection, last);
                    }
                }
                Ok(Step::Applied(read))
            }
            PageOutcome::CheckpointMoved => Ok(Step::Contended),
        }
    }

    /// The rows of `projection` that `events` change, loaded and then folded: a later
    /// compare-and-set of the checkpoint (`write_page`) proves they were loaded where it stood.
    async fn fold(
        &self,
        projection: Projection,
        events: &[&Envelope],
    ) -> Result<ReadModels, ReadSideError> {
        if events.is_empty() {
            return Ok(ReadModels::default());
        }
        let keys = ReadModels::keys_read(projection, events.iter().copied());
        let mut models = self
            .store
            .read_models()
            .load(self.tables, projection, &keys)
            .await?;
        for envelope in events {
            models.apply(projection, envelope);
        }
        Ok(models)
    }

    /// Steps until caught up (to `until`, or to the log's head); `progress` hears of every page.
    pub async fn catch_up(
        &mut self,
        until: Option<LogPosition>,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<(), ReadSideError> {
        loop {
            match self.step(until).await? {
                Step::Applied(read) => progress(read),
                Step::Contended => {}
                Step::CaughtUp => return Ok(()),
            }
        }
    }
}

/// The live projections, kept current inside `serve`.
pub struct ReadSide {
    ledger: Ledger,
}

impl ReadSide {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// Runs until `shutdown` turns true; the page in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let store = self.ledger.store().clone();
        let Some(mut lease) =
            acquire_lease(&store, LEASE_NAME, "the projections", &mut shutdown).await
        else {
            return;
        };
        let mut runner = Runner::new(store.clone(), TableSet::Live, &Projection::ALL);
        while !*shutdown.borrow() {
            if !lease.is_held().await {
                tracing::warn!("projections lost their lease; waiting to take it again");
                let Some(renewed) =
                    acquire_lease(&store, LEASE_NAME, "the projections", &mut shutdown).await
                else {
                    return;
                };
                lease = renewed;
                runner = Runner::new(store.clone(), TableSet::Live, &Projection::ALL);
            }
            let appended = self.ledger.appended().notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            match runner.step(None).await {
                Ok(Step::Applied(_) | Step::Contended) => {}
                Ok(Step::CaughtUp) => {
                    tokio::select! {
                        _ = appended => {}
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "projections will retry their page");
                    if wait_or_shutdown(&mut shutdown, ERROR_BACKOFF).await {
                        return;
                    }
                }
            }
        }
    }
}
