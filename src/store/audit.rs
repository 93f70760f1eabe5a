//! The audit trail's tables (migration 0005): `audit_log`, the hash chain of every event, and
//! `audit_checkpoints`, signed snapshots of its head. Both are append-only in the database; this
//! module only ever inserts and reads them. The chain itself is computed in `crate::audit`.
//!
//! On PostgreSQL every write runs as `ledgerhook_audit_writer` (SET LOCAL ROLE, so only for its
//! transaction): a role with INSERT and SELECT on the audit tables and nothing else, which owns
//! neither and so cannot disable their triggers. SQLite has no roles: the triggers are the whole
//! enforcement, and anyone who can write the file can drop them (which `audit verify` catches).

use super::bulk::{BulkConnection, BulkInsert, Cell};
use super::{LogPosition, Result, Store, StoreError};

/// The role of migration 0005 that may only append to (and read) the audit tables.
pub const AUDIT_WRITER_ROLE: &str = "ledgerhook_audit_writer";
const SET_WRITER_ROLE: &str = "SET LOCAL ROLE ledgerhook_audit_writer";

const APPEND: BulkInsert<'static> = BulkInsert {
    head: "INSERT INTO audit_log (position, account_id, aggregate_type, sequence, event_type, \
           event_version, signal_id, recorded_at, payload, metadata, prev_hash, hash)",
    pg_arrays: &[
        "bigint[]",
        "text[]",
        "text[]",
        "bigint[]",
        "text[]",
        "text[]",
        "text[]",
        // Kept as its canonical text in the row (see `AuditRow`), stored as a time.
        "text[]::timestamptz[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
    ],
    tail: "",
};

fn cells(row: &AuditRow) -> Vec<Cell> {
    vec![
        Cell::Int(row.position),
        Cell::Text(row.account_id.clone()),
        Cell::Text(row.aggregate_type.clone()),
        Cell::Int(row.sequence),
        Cell::Text(row.event_type.clone()),
        Cell::Text(row.event_version.clone()),
        Cell::MaybeText(row.signal_id.clone()),
        Cell::Text(row.recorded_at.clone()),
        Cell::Text(row.payload.clone()),
        Cell::Text(row.metadata.clone()),
        Cell::Text(row.prev_hash.clone()),
        Cell::Text(row.hash.clone()),
    ]
}

/// One row of `audit_log`, exactly as stored. `recorded_at` is kept as its canonical text (RFC 3339
/// UTC with microseconds) so that verification hashes what the database holds, even a value an
/// attacker made unparseable.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditCheckpoint {
    pub position: i64,
    pub hash: String,
    pub at: String,
    pub signature: Option<String>,
}

/// The last row of the chain: its position and hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChainHead {
    pub position: i64,
    pub hash: String,
}

/// The audit trail's tables: `Store::audit`.
pub struct Audit<'a> {
    pub(super) store: &'a Store,
}

impl Audit<'_> {
    /// Appends `rows` to the chain and moves the reader checkpoint `name` to `read_to`, in one
    /// transaction: either every row is chained and the reader moves past them, or nothing
    /// happens. A row whose position or event is already chained fails the whole transaction.
    pub async fn append(&self, rows: &[AuditRow], name: &str, read_to: LogPosition) -> Result<()> {
        let save_checkpoint = super::events::save_checkpoint_sql(self.store);
        let set_role = self.set_writer_role();
        // On PostgreSQL committed with the flush, unlike the other readers' writes: the writer
        // chains its next page onto the head it remembers, and refuses (as foreign) a stored head
        // that went back, as one lost in the server's crash would.
        writing_derived!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            // The reader's checkpoint first, as the service's own role: the writer role has no
            // business with the other readers' checkpoints.
            sqlx::query(&save_checkpoint)
                .bind(name)
                .bind(read_to.global_seq)
                .execute(&mut *transaction)
                .await?;
            if let (Some(set_role), false) = (set_role, rows.is_empty()) {
                sqlx::query(set_role).execute(&mut *transaction).await?;
            }
            let cells: Vec<Vec<Cell>> = rows.iter().map(cells).collect();
            BulkConnection::insert_rows(&mut *transaction, &APPEND, &cells)
                .await
                .map_err(conflict_or)?;
            transaction.commit().await?;
        });
        Ok(())
    }

    /// The chain's last row, `None` while it is empty.
    pub async fn head(&self) -> Result<Option<ChainHead>> {
        let sql = "SELECT position, hash FROM audit_log ORDER BY position DESC LIMIT 1";
        Ok(reading!(self.store, pool => sqlx::query_as(sql).fetch_optional(pool).await?))
    }

    /// Up to `limit` rows after `position`, in chain order.
    pub async fn read(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let sql = format!(
            "SELECT {} FROM audit_log WHERE position > $1 ORDER BY position LIMIT $2",
            self.row_columns()
        );
        Ok(reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// Records a checkpoint of the chain head. Recording the very same checkpoint again is a
    /// no-op; a different one already at that position stays, and this fails with
    /// `StoreError::AuditCheckpointConflict` (someone else wrote into the table).
    pub async fn insert_checkpoint(&self, checkpoint: &AuditCheckpoint) -> Result<()> {
        let (set_role, time) = (self.set_writer_role(), self.time_cast());
        // No ON CONFLICT: a row already at this position must not be passed over in silence.
        let sql = format!(
            "INSERT INTO audit_checkpoints (position, hash, at, signature)
             VALUES ($1, $2, $3{time}, $4)"
        );
        let inserted = writing_derived_flushed!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            if let Some(set_role) = set_role {
                sqlx::query(set_role).execute(&mut *transaction).await?;
            }
            let inserted = sqlx::query(&sql)
                .bind(checkpoint.position)
                .bind(&checkpoint.hash)
                .bind(&checkpoint.at)
                .bind(&checkpoint.signature)
                .execute(&mut *transaction)
                .await;
            match inserted {
                Ok(_) => Ok(transaction.commit().await?),
                Err(error) => Err(conflict_or(error)),
            }
        });
        match inserted {
            Err(StoreError::Conflict) => {
                let existing = self.read_checkpoints(checkpoint.position - 1, 1).await?;
                if existing.first() == Some(checkpoint) {
                    Ok(())
                } else {
                    Err(StoreError::AuditCheckpointConflict(checkpoint.position))
                }
            }
            other => other,
        }
    }

    /// Up to `limit` checkpoints after `position`, in position order.
    pub async fn read_checkpoints(&self, after: i64, limit: i64) -> Result<Vec<AuditCheckpoint>> {
        let sql = format!(
            "SELECT position, hash, {} AS at, signature FROM audit_checkpoints
              WHERE position > $1 ORDER BY position LIMIT $2",
            self.time_text("at")
        );
        Ok(reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// The position of the latest checkpoint, 0 when there is none.
    pub async fn last_checkpoint(&self) -> Result<i64> {
        let sql = "SELECT COALESCE(max(position), 0) FROM audit_checkpoints";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql).fetch_one(pool).await?))
    }

    /// `audit_log`'s columns in `AuditRow`'s shape: one decoder for the chain and its readers.
    pub(super) fn row_columns(&self) -> String {
        format!(
            "position, account_id, aggregate_type, sequence, event_type, event_version, \
             signal_id, {} AS recorded_at, payload, metadata, prev_hash, hash",
            self.time_text("recorded_at")
        )
    }

    /// An audit time column as its canonical text (`recorded_at_text`): SQLite keeps that text;
    /// PostgreSQL keeps a timestamptz, formatted here exactly so.
    fn time_text(&self, column: &str) -> String {
        match self.store {
            Store::Postgres(_) => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
            Store::Sqlite(_) => column.to_owned(),
        }
    }

    /// What turns a bound canonical time text into the column's type.
    pub(super) fn time_cast(&self) -> &'static str {
        match self.store {
            Store::Postgres(_) => "::timestamptz",
            Store::Sqlite(_) => "",
        }
    }

    fn set_writer_role(&self) -> Option<&'static str> {
        match self.store {
            Store::Postgres(_) => Some(SET_WRITER_ROLE),
            Store::Sqlite(_) => None,
        }
    }
}

fn conflict_or(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict,
        _ => error.into(),
    }
}
