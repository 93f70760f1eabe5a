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

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use tokio::sync::watch;

use aggregates::TradingAccount;

use crate::catchup::{acquire_lease, wait_or_shutdown, ERROR_BACKOFF};
use crate::ledger::{decode, Ledger};
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
const POLL_INTERVAL: Duration = Duration::from_millis(250);

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
    /// How often `serve` verifies the whole trail in the background (`audit::monitor`).
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
    ledger: Ledger,
    config: AuditConfig,
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

/// Why a page was not chained.
enum PageError {
    /// `attempted`: the head the page would have made, when its append failed (the commit may
    /// have happened all the same).
    Store {
        error: String,
        attempted: Option<(i64, String)>,
    },
    /// The stored head is not the one this writer wrote or loaded.
    ForeignHead {
        expected: (i64, String),
        found: Option<ChainHead>,
    },
}

impl AuditWriter {
    pub fn new(ledger: Ledger, config: AuditConfig) -> Self {
        Self { ledger, config }
    }

    fn store(&self) -> &Store {
        self.ledger.store()
    }

    /// Runs until `shutdown` turns true; the page in hand is finished and the head checkpointed.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.config.key.is_none() {
            tracing::warn!(
                "no audit key configured (--audit-key / LEDGERHOOK_AUDIT_KEY): audit checkpoints \
                 are recorded and published unsigned"
            );
        }
        let Some(mut lease) = acquire_lease(
            self.store(),
            CHECKPOINT_NAME,
            "the audit writer",
            &mut shutdown,
        )
        .await
        else {
            return;
        };
        let mut progress: Option<Progress> = None;
        // The head this writer last chained, while it holds the lease.
        let mut written: Option<(i64, String)> = None;
        // The head of a page whose append reported an error: it may have committed anyway.
        let mut attempted: Option<(i64, String)> = None;
        while !*shutdown.borrow() {
            if !lease.is_held().await {
                tracing::warn!("audit writer lost its lease; waiting to take it again");
                let Some(renewed) = acquire_lease(
                    self.store(),
                    CHECKPOINT_NAME,
                    "the audit writer",
                    &mut shutdown,
                )
                .await
                else {
                    return;
                };
                lease = renewed;
                // Another instance may have chained more meanwhile.
                progress = None;
                written = None;
            }
            let current = match progress.take() {
                Some(current) => current,
                None => match self.load_progress().await {
                    Ok(loaded) => loaded,
                    Err(error) => {
                        tracing::error!(%error, "audit writer cannot read where it stands");
                        if wait_or_shutdown(&mut shutdown, ERROR_BACKOFF).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let stored = (current.head_position, current.head_hash.clone());
            if attempted.take().is_some_and(|page| page == stored) {
                written = Some(stored);
            }
            if let Some(expected) = &written {
                if (current.head_position, &current.head_hash) != (expected.0, &expected.1) {
                    if !lease.is_held().await {
                        // Another instance took over and chained: reload after the lease.
                        continue;
                    }
                    let found = Some(ChainHead {
                        position: current.head_position,
                        hash: current.head_hash.clone(),
                    });
                    alert_foreign_head(expected, found.as_ref());
                    return stand_still(lease, shutdown).await;
                }
            }
            let appended = self.ledger.appended().notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            match self.chain_next_page(current).await {
                Ok((mut next, read_any)) => {
                    written = Some((next.head_position, next.head_hash.clone()));
                    self.checkpoint_if_due(&mut next).await;
                    progress = Some(next);
                    if !read_any {
                        tokio::select! {
                            _ = appended => {}
                            _ = tokio::time::sleep(POLL_INTERVAL) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                Err(PageError::ForeignHead { .. }) if !lease.is_held().await => {
                    // Another instance took over and chained: reload after the lease.
                    progress = None;
                }
                Err(PageError::ForeignHead { expected, found }) => {
                    alert_foreign_head(&expected, found.as_ref());
                    return stand_still(lease, shutdown).await;
                }
                Err(PageError::Store {
                    error,
                    attempted: page,
                }) => {
                    // Progress is reloaded from the store: the page may have clashed with
                    // another writer's (or a row someone else inserted, which the reload finds).
                    tracing::error!(%error, "audit writer will retry its page");
                    attempted = page;
                    if wait_or_shutdown(&mut shutdown, ERROR_BACKOFF).await {
                        return;
                    }
                }
            }
        }
        if let Some(mut done) = progress {
            if done.head_position > done.last_checkpoint {
                if let Err(error) = self.record_checkpoint(&mut done).await {
                    tracing::error!(%error, "audit writer could not checkpoint at shutdown");
                }
            }
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

    async fn load_progress(&self) -> Result<Progress, String> {
        let store = self.store();
        let read_to = store
            .events()
            .checkpoint(CHECKPOINT_NAME)
            .await
            .map_err(|e| e.to_string())?;
        let head = store.audit().head().await.map_err(|e| e.to_string())?;
        let last_checkpoint = store
            .audit()
            .last_checkpoint()
            .await
            .map_err(|e| e.to_string())?;
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

    /// Chains the page after `progress`; the new progress, and whether there was anything to read.
    async fn chain_next_page(&self, progress: Progress) -> Result<(Progress, bool), PageError> {
        let store = self.store();
        let failed = |e: StoreError| PageError::Store {
            error: e.to_string(),
            attempted: None,
        };
        let page = store
            .events()
            .read_log(progress.read_to, PAGE_SIZE)
            .await
            .map_err(failed)?;
        let Some(read_to) = page.last().map(|logged| logged.position) else {
            return Ok((progress, false));
        };
        let mut rows = Vec::with_capacity(page.len());
        let mut prev_hash = progress.head_hash.clone();
        let mut position = progress.head_position;
        for logged in page {
            position += 1;
            let row = self
                .row(position, prev_hash, logged)
                .map_err(|error| PageError::Store {
                    error,
                    attempted: None,
                })?;
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
            return Err(PageError::Store {
                error: error.to_string(),
                attempted: Some((position, prev_hash)),
            });
        }
        let next = Progress {
            read_to,
            head_position: position,
            head_hash: prev_hash,
            last_checkpoint: progress.last_checkpoint,
            checkpointed_at: progress.checkpointed_at,
        };
        Ok((next, true))
    }

    /// One event as its audit row, chained after `prev_hash`.
    fn row(
        &self,
        position: i64,
        prev_hash: String,
        logged: LoggedEvent,
    ) -> Result<AuditRow, String> {
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
            let recorded = decode(event, self.ledger.upcasters()).map_err(|e| e.to_string())?;
            row.signal_id = recorded
                .event
                .signal_id()
                .map(|id| id.0.clone())
                .filter(|id| !id.is_empty());
        }
        row.hash = row_hash(&row);
        Ok(row)
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

/// A stopped writer keeps its lease until shutdown, so that no standby chains after a foreign row.
async fn stand_still(lease: crate::store::Lease, mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
    drop(lease);
}
