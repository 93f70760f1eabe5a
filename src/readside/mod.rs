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

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;

use aggregates::{upcasters, TradingAccount};
use projections::{Envelope, Projection, ReadModels};

use crate::catchup::parking::decode_or_park;
use crate::catchup::{CatchUpReader, ReaderError, Retried};
use crate::store::{LogPosition, LoggedEvent, PageOutcome, ProjectionWrite, Store, TableSet};

pub use self::rebuild::{rebuild, RebuildReport, Verdict};

pub const LEASE_NAME: &str = "projections";
/// Events read per page: large pages make one transaction (a handful of multi-row statements)
/// carry thousands of events, which is what makes a rebuild fast; a page is still small enough to
/// hold in memory and to finish quickly at shutdown.
pub const PAGE_SIZE: i64 = 4096;
/// How long the live read models let events gather after a short page (`CatchUpReader::linger`):
/// what a trader's page may lag behind, to save a transaction per ledger commit under load.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ReadSideError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
        if page.is_empty() {
            return Ok(Step::CaughtUp);
        }
        self.apply_read(checkpoints, page, true).await
    }

    /// Applies a page read by someone else (the catch-up runtime) from `after`, which must be
    /// the lowest checkpoint. When the checkpoints stand elsewhere (a commit the runner saw
    /// succeed did not survive a database crash: readers commit without waiting for the flush),
    /// nothing is written and the caller reads again from `position()`.
    pub async fn apply_page(
        &mut self,
        after: LogPosition,
        page: Vec<LoggedEvent>,
    ) -> Result<Step, ReadSideError> {
        let result = match self.checkpoints().await {
            Ok(checkpoints) if checkpoints.values().min().copied().unwrap_or_default() != after => {
                Ok(Step::Contended)
            }
            Ok(checkpoints) => self.apply_read(checkpoints, page, false).await,
            Err(error) => Err(error),
        };
        if !matches!(result, Ok(Step::Applied(_)) | Ok(Step::CaughtUp)) {
            self.checkpoints = None;
            self.prefetched = None;
        }
        result
    }

    /// Decodes the page (parking what cannot be), applies it to every projection behind it and,
    /// with `prefetch`, reads the next page meanwhile.
    async fn apply_read(
        &mut self,
        checkpoints: BTreeMap<Projection, LogPosition>,
        page: Vec<LoggedEvent>,
        prefetch: bool,
    ) -> Result<Step, ReadSideError> {
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
            let position = logged.position;
            let Some(recorded) =
                decode_or_park(&self.store, LEASE_NAME, logged, &self.upcasters).await?
            else {
                continue;
            };
            envelopes.push((
                position,
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
        // The next page is read (and the store's other core used) while this one is written.
        let (read_models, events) = (self.store.read_models(), self.store.events());
        let (applied, next_page) = if prefetch {
            let (applied, next_page) = tokio::join!(
                read_models.write_page(self.tables, &writes),
                events.read_log(last, self.page_size)
            );
            (applied, next_page.ok())
        } else {
            (read_models.write_page(self.tables, &writes).await, None)
        };
        match applied? {
            PageOutcome::Applied => {
                self.prefetched = next_page.map(|next| (last, next));
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

/// The live projections, kept current inside `serve` by the catch-up runtime.
pub struct ReadSide {
    store: Store,
    runner: Runner,
}

impl ReadSide {
    pub fn new(store: Store) -> Self {
        let runner = Runner::new(store.clone(), TableSet::Live, &Projection::ALL);
        Self { store, runner }
    }
}

#[async_trait]
impl CatchUpReader for ReadSide {
    fn name(&self) -> &'static str {
        LEASE_NAME
    }

    fn page_size(&self) -> i64 {
        PAGE_SIZE
    }

    fn linger(&self) -> std::time::Duration {
        LINGER
    }

    async fn resume(&mut self) -> Result<LogPosition, ReaderError> {
        self.runner = Runner::new(self.store.clone(), TableSet::Live, &Projection::ALL);
        self.runner.position().await.map_err(reader_error)
    }

    /// Rows and checkpoints move in one transaction; after contention the checkpoints are re-read.
    async fn apply(
        &mut self,
        after: LogPosition,
        page: Vec<LoggedEvent>,
    ) -> Result<LogPosition, ReaderError> {
        self.runner
            .apply_page(after, page)
            .await
            .map_err(reader_error)?;
        self.runner.position().await.map_err(reader_error)
    }

    /// A released event is applied late, out of the log's order, to the projections it touches;
    /// their checkpoints are compared and kept, in the same transaction.
    async fn retry(&mut self, event: LoggedEvent) -> Result<Retried, ReaderError> {
        if event.event.aggregate_type != TradingAccount::TYPE {
            return Ok(Retried::Applied);
        }
        let upcasters = upcasters();
        let Some(recorded) = decode_or_park(&self.store, LEASE_NAME, event, &upcasters).await?
        else {
            return Ok(Retried::ParkedAgain);
        };
        let envelope = Envelope {
            account_id: recorded.account_id,
            sequence: recorded.sequence,
            recorded_at: recorded.recorded_at,
            event: recorded.event,
        };
        let checkpoints = self.store.read_models().checkpoints(TableSet::Live).await?;
        let mut writes = Vec::new();
        for (projection, checkpoint) in checkpoints
            .iter()
            .filter(|(projection, _)| ReadModels::touches(**projection, &envelope))
        {
            writes.push(ProjectionWrite {
                projection: *projection,
                from: *checkpoint,
                to: *checkpoint,
                rows: self
                    .runner
                    .fold(*projection, &[&envelope])
                    .await
                    .map_err(reader_error)?,
            });
        }
        let outcome = self
            .store
            .read_models()
            .write_page(TableSet::Live, &writes)
            .await?;
        self.runner = Runner::new(self.store.clone(), TableSet::Live, &Projection::ALL);
        Ok(match outcome {
            PageOutcome::Applied => Retried::Applied,
            PageOutcome::CheckpointMoved => Retried::Later,
        })
    }
}

fn reader_error(error: ReadSideError) -> ReaderError {
    match error {
        ReadSideError::Store(error) => ReaderError::Store(error),
        other => ReaderError::Halted(other.to_string()),
    }
}
