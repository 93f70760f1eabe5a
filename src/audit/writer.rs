//! The audit writer: a catch-up reader of the ledger's global order that chains every event, of
//! every stream, into `audit_log`.
//!
//! Each page of events becomes rows that are inserted together with the reader's checkpoint in one
//! transaction, so an event is chained exactly once whatever crashes: a page either committed
//! (and the checkpoint moved past it) or did not (and is read again). The database backs this up:
//! a second chaining of an event, or a second row at a position, violates a unique key and fails
//! the whole page. On PostgreSQL one instance writes at a time (an advisory-lock lease, like the
//! saga); the others stand by.
//!
//! The writer remembers the head it wrote and compares it with the stored head before every page:
//! a row it did not write (even one chained correctly, by a login that may insert) would otherwise
//! be chained after and signed. On a foreign head it raises an alert and stops writing, keeping its
//! lease so that no standby instance chains after that row either.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;

use aggregates::TradingAccount;

use crate::catchup::{CatchUpReader, ReaderError, Retried};
use crate::ledger::decode;
use crate::store::{
    AuditCheckpoint, AuditRow, ChainHead, LogPosition, LoggedEvent, Store, StoreError,
};

use super::chain::{canonical_time, checkpoint_signature, row_hash, GENESIS_HASH};
use super::key::AuditKey;

pub const CHECKPOINT_NAME: &str = "audit";
/// The target of the writer's alerts (a foreign head, a conflicting checkpoint): route it to a pager.
pub const ALERT_TARGET: &str = "ledgerhook::audit::alert";
/// Events per page and transaction.
const PAGE_SIZE: i64 = 512;
/// How long events gather after a short page before the next is chained.
const LINGER: Duration = Duration::from_millis(20);

/// How the trail is written: from configuration (`serve --audit-key`, `--audit-checkpoint-every`,
/// `--audit-checkpoint-interval-seconds`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Signs the checkpoints; without one they are recorded and published unsigned.
    pub key: Option<AuditKey>,
    /// A checkpoint of the chain head is recorded every this many rows (and at shutdown).
    pub checkpoint_every: i64,
    /// ... and this long after the previous one when rows were added since, so that few rows stay
    /// unprotected for long whatever the traffic.
    pub checkpoint_interval: Duration,
    /// How often `serve` verifies the trail in the background (`audit::monitor`).
    pub verify_interval: Duration,
}

impl AuditConfig {
    /// What the background verification checks: with the key, a row may wait for its signed
    /// checkpoint a few intervals (the default or three, whichever is longer).
    pub fn verify_options(&self) -> super::VerifyOptions {
        let interval = chrono::Duration::from_std(self.checkpoint_interval * 3)
            .unwrap_or(chrono::Duration::MAX);
        super::VerifyOptions {
            key: self.key.clone(),
            published: Vec::new(),
            max_unprotected: interval.max(super::verify::DEFAULT_MAX_UNPROTECTED),
            pace: super::monitor::PACE,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            key: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            verify_interval: Duration::from_secs(300),
        }
    }
}

pub struct AuditWriter {
    store: Store,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    config: AuditConfig,
    /// Where it stands; `None` until loaded (at start, after a restart or a lease change).
    progress: Option<Progress>,
    /// The foreign head it found, told as an alert when the runtime halts it.
    foreign: Option<((i64, String), Option<ChainHead>)>,
    /// The head it last chained, kept across restarts (see `resume`).
    written: Option<Written>,
    /// A page whose append reported an error: it may have committed anyway.
    attempted: Option<Written>,
}

/// Where the writer stands: what it has read, and the chain it has written.
struct Progress {
    read_to: LogPosition,
    head_position: i64,
    head_hash: String,
    last_checkpoint: i64,
    /// When this writer last tried to record a checkpoint; `None`: not yet (one is due at once).
    checkpointed_at: Option<Instant>,
}

/// A chain head this writer wrote, and the log position its checkpoint moved to with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    head: (i64, String),
    read_to: LogPosition,
}

/// Why a page was not chained.
enum PageError {
    Store(ReaderError),
    /// The page's append failed; `attempted` is what it would have made.
    Append {
        error: ReaderError,
        attempted: Written,
    },
    /// The stored head is not the one this writer wrote or loaded.
    ForeignHead {
        expected: (i64, String),
        found: Option<ChainHead>,
    },
}

impl AuditWriter {
    pub fn new(store: Store, config: AuditConfig) -> Self {
        Self {
            store,
            upcasters: aggregates::upcasters(),
            config,
            progress: None,
            foreign: None,
            written: None,
            attempted: None,
        }
    }

    fn store(&self) -> &Store {
        &self.store
    }

    /// Says once, at start, when checkpoints will go unsigned.
    pub fn warn_if_unsigned(&self) {
        if self.config.key.is_none() {
            tracing::warn!(
                "no audit key configured (--audit-key / LEDGERHOOK_AUDIT_KEY): audit checkpoints \
                 are recorded and published unsigned"
            );
        }
    }

    /// Records a checkpoint when rows were added since the last one and either enough of them or
    /// enough time passed.
    async fn checkpoint_if_due(&self, progress: &mut Progress) {
        let unprotected = progress.head_position - progress.last_checkpoint;
        if unprotected <= 0 {
            return;
        }
        let by_count = unprotected >= self.config.checkpoint_every.max(1);
        let by_time = progress
            .checkpointed_at
            .is_none_or(|at| at.elapsed() >= self.config.checkpoint_interval);
        if by_count || by_time {
            // The rows are committed whatever happens here; a missed checkpoint is made later.
            if let Err(error) = self.record_checkpoint(progress).await {
                tracing::error!(%error, "audit writer could not record a checkpoint");
            }
        }
    }

    async fn load_progress(&self) -> Result<Progress, StoreError> {
        let store = self.store();
        let read_to = store.events().checkpoint(CHECKPOINT_NAME).await?;
        let head = store.audit().head().await?;
        let last_checkpoint = store.audit().last_checkpoint().await?;
        let (head_position, head_hash) = head
            .map(|head| (head.position, head.hash))
            .unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        Ok(Progress {
            read_to,
            head_position,
            head_hash,
            last_checkpoint,
            checkpointed_at: None,
        })
    }

    /// Chains `page`, the events after `progress`; the new progress.
    async fn chain_page(
        &self,
        progress: Progress,
        page: Vec<LoggedEvent>,
    ) -> Result<Progress, PageError> {
        let store = self.store();
        let failed = |e: StoreError| PageError::Store(e.into());
        let Some(read_to) = page.last().map(|logged| logged.position) else {
            return Ok(progress);
        };
        let mut rows = Vec::with_capacity(page.len());
        let mut prev_hash = progress.head_hash.clone();
        let mut position = progress.head_position;
        for logged in page {
            position += 1;
            let row = self.row(position, prev_hash, logged);
            prev_hash = row.hash.clone();
            rows.push(row);
        }
        // A row inserted after this check takes the position the page needs: the append then
        // fails, and the reload finds the foreign head.
        let head = store.audit().head().await.map_err(failed)?;
        let stored = head
            .as_ref()
            .map_or((0, GENESIS_HASH), |h| (h.position, &h.hash));
        if stored != (progress.head_position, progress.head_hash.as_str()) {
            return Err(PageError::ForeignHead {
                expected: (progress.head_position, progress.head_hash),
                found: head,
            });
        }
        if let Err(error) = store.audit().append(&rows, CHECKPOINT_NAME, read_to).await {
            // The commit may have happened all the same: remembered, to recognise it on reload.
            return Err(PageError::Append {
                error: error.into(),
                attempted: Written {
                    head: (position, prev_hash),
                    read_to,
                },
            });
        }
        let next = Progress {
            read_to,
            head_position: position,
            head_hash: prev_hash,
            last_checkpoint: progress.last_checkpoint,
            checkpointed_at: progress.checkpointed_at,
        };
        Ok(next)
    }

    /// One event as its audit row, chained after `prev_hash`. Every event is chained as stored,
    /// readable by this release or not: the trail must hold the k-th event at row k.
    fn row(&self, position: i64, prev_hash: String, logged: LoggedEvent) -> AuditRow {
        let event = logged.event;
        let recorded_at = event
            .metadata
            .get("recorded_at")
            .and_then(|at| at.as_str())
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc))
            // Every event the service writes has one; anything else is chained at chaining time.
            .unwrap_or_else(Utc::now);
        let mut row = AuditRow {
            position,
            account_id: event.aggregate_id.clone(),
            aggregate_type: event.aggregate_type.clone(),
            sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            signal_id: None,
            recorded_at: canonical_time(recorded_at),
            payload: event.payload.to_string(),
            metadata: event.metadata.to_string(),
            prev_hash,
            hash: String::new(),
        };
        if event.aggregate_type == TradingAccount::TYPE {
            match decode(&event, &self.upcasters) {
                Ok(recorded) => {
                    row.signal_id = recorded
                        .event
                        .signal_id()
                        .map(|id| id.0.clone())
                        .filter(|id| !id.is_empty());
                }
                // Only the signal id is lost; the other readers park the event.
                Err(error) => tracing::warn!(%error, "audit row chained without its signal id"),
            }
        }
        row.hash = row_hash(&row);
        row
    }

    /// Records the chain head in `audit_checkpoints` and publishes it as a log line.
    async fn record_checkpoint(&self, progress: &mut Progress) -> Result<(), StoreError> {
        progress.checkpointed_at = Some(Instant::now());
        let at = canonical_time(Utc::now());
        let signature =
            self.config.key.as_ref().map(|key| {
                checkpoint_signature(key, progress.head_position, &progress.head_hash, &at)
            });
        let checkpoint = AuditCheckpoint {
            position: progress.head_position,
            hash: progress.head_hash.clone(),
            at,
            signature,
        };
        if let Err(error) = self.store().audit().insert_checkpoint(&checkpoint).await {
            if let StoreError::AuditCheckpointConflict(position) = error {
                tracing::error!(
                    target: ALERT_TARGET,
                    position,
                    hash = %checkpoint.hash,
                    "ALERT: a different audit checkpoint is already recorded at this position: \
                     someone else wrote into audit_checkpoints"
                );
            }
            return Err(error);
        }
        progress.last_checkpoint = checkpoint.position;
        // The published copy: a log shipper keeps it outside the database's reach.
        tracing::info!(
            target: "ledgerhook::audit::checkpoint",
            position = checkpoint.position,
            hash = %checkpoint.hash,
            at = %checkpoint.at,
            signature = checkpoint.signature.as_deref().unwrap_or("unsigned"),
            "audit checkpoint"
        );
        Ok(())
    }
}

fn foreign_head_halt() -> ReaderError {
    ReaderError::Halted(
        "the audit trail's head is not the one the audit writer wrote (see the ALERT)".to_owned(),
    )
}

fn alert_foreign_head(expected: &(i64, String), found: Option<&ChainHead>) {
    let (found_position, found_hash) = found.map_or((0, GENESIS_HASH), |h| (h.position, &h.hash));
    tracing::error!(
        target: ALERT_TARGET,
        expected_position = expected.0,
        expected_hash = %expected.1,
        found_position,
        found_hash = %found_hash,
        "ALERT: the audit trail's head is not the one the audit writer wrote: someone else \
         appended to audit_log; the audit writer stops (run `ledgerhook audit verify`)"
    );
}

#[async_trait]
impl CatchUpReader for AuditWriter {
    fn name(&self) -> &'static str {
        CHECKPOINT_NAME
    }

    fn page_size(&self) -> i64 {
        PAGE_SIZE
    }

    /// Rows may wait this long to be chained: a page per ledger commit would cost a transaction
    /// each, now flushed on PostgreSQL.
    fn linger(&self) -> std::time::Duration {
        LINGER
    }

    /// Loads the stored head and checks it against the one it last wrote: another head with the
    /// reader checkpoint where this writer left it is a row someone else inserted (an instance that
    /// took over in between would have moved the checkpoint in the same transaction).
    async fn resume(&mut self) -> Result<LogPosition, ReaderError> {
        let progress = self.load_progress().await?;
        let stored = Written {
            head: (progress.head_position, progress.head_hash.clone()),
            read_to: progress.read_to,
        };
        if self.attempted.take().is_some_and(|page| page == stored) {
            self.written = Some(stored.clone());
        }
        if let Some(written) = self.written.take() {
            if written.head != stored.head && written.read_to == stored.read_to {
                let found = ChainHead {
                    position: stored.head.0,
                    hash: stored.head.1,
                };
                self.foreign = Some((written.head.clone(), Some(found)));
                self.written = Some(written);
                return Err(foreign_head_halt());
            }
        }
        self.written = Some(stored);
        let read_to = progress.read_to;
        self.progress = Some(progress);
        Ok(read_to)
    }

    /// Rows and checkpoint in one transaction; a head it did not write halts it (keeping the lease).
    async fn apply(
        &mut self,
        _after: LogPosition,
        page: Vec<LoggedEvent>,
    ) -> Result<LogPosition, ReaderError> {
        let current = match self.progress.take() {
            Some(current) => current,
            None => self.load_progress().await?,
        };
        match self.chain_page(current, page).await {
            Ok(mut next) => {
                self.written = Some(Written {
                    head: (next.head_position, next.head_hash.clone()),
                    read_to: next.read_to,
                });
                self.checkpoint_if_due(&mut next).await;
                let read_to = next.read_to;
                self.progress = Some(next);
                Ok(read_to)
            }
            Err(PageError::Store(error)) => Err(error),
            Err(PageError::Append { error, attempted }) => {
                self.attempted = Some(attempted);
                Err(error)
            }
            Err(PageError::ForeignHead { expected, found }) => {
                self.foreign = Some((expected, found));
                Err(foreign_head_halt())
            }
        }
    }

    /// Rows added since the last checkpoint get one when its interval has passed, traffic or not.
    async fn idle(&mut self) {
        if let Some(mut progress) = self.progress.take() {
            self.checkpoint_if_due(&mut progress).await;
            self.progress = Some(progress);
        }
    }

    /// The audit writer applies every event as stored: it never parks one.
    async fn retry(&mut self, _event: LoggedEvent) -> Result<Retried, ReaderError> {
        Ok(Retried::Applied)
    }

    fn on_halt(&self) {
        if let Some((expected, found)) = &self.foreign {
            alert_foreign_head(expected, found.as_ref());
        }
    }

    /// The head is checkpointed at shutdown.
    async fn finish(&mut self) {
        if let Some(mut done) = self.progress.take() {
            if done.head_position > done.last_checkpoint {
                if let Err(error) = self.record_checkpoint(&mut done).await {
                    tracing::error!(%error, "audit writer could not checkpoint at shutdown");
                }
            }
            self.progress = Some(done);
        }
    }
}
