//! The audit trail's tables (migration 0005): `audit_log`, the hash chain of every event, and
//! `audit_checkpoints`, signed snapshots of its head. Both are append-only in the database; this
//! module only ever inserts and reads them. The chain itself is computed in `crate::audit`.

pub(super) mod postgres;
pub(super) mod sqlite;

pub use self::postgres::WRITER_ROLE as AUDIT_WRITER_ROLE;

use super::{LogPosition, Result, Store, StoreError};

/// One row of `audit_log`, exactly as stored. `recorded_at` is kept as its canonical text (RFC 3339
/// UTC with microseconds) so that verification hashes what the database holds, even a value an
/// attacker made unparseable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub position: i64,
    pub account_id: String,
    pub aggregate_type: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub signal_id: Option<String>,
    pub recorded_at: String,
    pub payload: String,
    pub metadata: String,
    pub prev_hash: String,
    pub hash: String,
}

/// One row of `audit_checkpoints`: the chain head at `at` (canonical text like `recorded_at`),
/// with its HMAC when a key was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub position: i64,
    pub hash: String,
    pub at: String,
    pub signature: Option<String>,
}

/// The last row of the chain: its position and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub position: i64,
    pub hash: String,
}

impl Store {
    /// Appends `rows` to the chain and moves the reader checkpoint `name` to `read_to`, in one
    /// transaction: either every row is chained and the reader moves past them, or nothing
    /// happens. A row whose position or event is already chained fails the whole transaction.
    pub async fn append_audit(
        &self,
        rows: &[AuditRow],
        name: &str,
        read_to: LogPosition,
    ) -> Result<()> {
        match self {
            Store::Postgres(store) => postgres::append(store, rows, name, read_to).await,
            Store::Sqlite(store) => sqlite::append(store, rows, name, read_to).await,
        }
    }

    /// The chain's last row, `None` while it is empty.
    pub async fn audit_head(&self) -> Result<Option<ChainHead>> {
        match self {
            Store::Postgres(store) => postgres::head(store).await,
            Store::Sqlite(store) => sqlite::head(store).await,
        }
    }

    /// Up to `limit` rows after `position`, in chain order.
    pub async fn read_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        match self {
            Store::Postgres(store) => postgres::read(store, after, limit).await,
            Store::Sqlite(store) => sqlite::read(store, after, limit).await,
        }
    }

    /// Records a checkpoint of the chain head. Recording the very same checkpoint again is a
    /// no-op; a different one already at that position stays, and this fails with
    /// `StoreError::AuditCheckpointConflict` (someone else wrote into the table).
    pub async fn insert_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> Result<()> {
        let inserted = match self {
            Store::Postgres(store) => postgres::insert_checkpoint(store, checkpoint).await,
            Store::Sqlite(store) => sqlite::insert_checkpoint(store, checkpoint).await,
        };
        match inserted {
            Err(StoreError::Conflict) => {
                let existing = self
                    .read_audit_checkpoints(checkpoint.position - 1, 1)
                    .await?
                    .into_iter()
                    .next();
                if existing.as_ref() == Some(checkpoint) {
                    Ok(())
                } else {
                    Err(StoreError::AuditCheckpointConflict(checkpoint.position))
                }
            }
            other => other,
        }
    }

    /// Up to `limit` checkpoints after `position`, in position order.
    pub async fn read_audit_checkpoints(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditCheckpoint>> {
        match self {
            Store::Postgres(store) => postgres::read_checkpoints(store, after, limit).await,
            Store::Sqlite(store) => sqlite::read_checkpoints(store, after, limit).await,
        }
    }

    /// The position of the latest checkpoint, 0 when there is none.
    pub async fn last_audit_checkpoint(&self) -> Result<i64> {
        match self {
            Store::Postgres(store) => postgres::last_checkpoint(store).await,
            Store::Sqlite(store) => sqlite::last_checkpoint(store).await,
        }
    }
}
