//! The audit tables on SQLite. There are no roles: the triggers of migration 0005 are the whole
//! enforcement, and anyone who can write the file can drop them (which `audit verify` catches).

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{AuditCheckpoint, AuditRow, ChainHead};
use crate::store::{LogPosition, Result, SqliteStore, StoreError};

pub(super) async fn append(
    store: &SqliteStore,
    rows: &[AuditRow],
    name: &str,
    read_to: LogPosition,
) -> Result<()> {
    let _writing = store.lock_writer().await;
    let mut transaction = store.pool().begin().await?;
    for row in rows {
        let inserted = sqlx::query(
            "INSERT INTO audit_log (position, account_id, aggregate_type, sequence, event_type,
                                    event_version, signal_id, recorded_at, payload, metadata,
                                    prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.position)
        .bind(&row.account_id)
        .bind(&row.aggregate_type)
        .bind(row.sequence)
        .bind(&row.event_type)
        .bind(&row.event_version)
        .bind(&row.signal_id)
        .bind(&row.recorded_at)
        .bind(&row.payload)
        .bind(&row.metadata)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut *transaction)
        .await;
        if let Err(error) = inserted {
            return Err(conflict_or(error));
        }
    }
    crate::store::sqlite::save_checkpoint_with(&mut *transaction, name, read_to).await?;
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn head(store: &SqliteStore) -> Result<Option<ChainHead>> {
    let row = sqlx::query("SELECT position, hash FROM audit_log ORDER BY position DESC LIMIT 1")
        .fetch_optional(store.pool())
        .await?;
    row.map(|row| -> Result<ChainHead> {
        Ok(ChainHead {
            position: row.try_get("position")?,
            hash: row.try_get("hash")?,
        })
    })
    .transpose()
}

pub(super) async fn read(store: &SqliteStore, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT position, account_id, aggregate_type, sequence, event_type, event_version,
                signal_id, recorded_at, payload, metadata, prev_hash, hash
           FROM audit_log WHERE position > ? ORDER BY position LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(audit_row).collect()
}

pub(super) async fn insert_checkpoint(
    store: &SqliteStore,
    checkpoint: &AuditCheckpoint,
) -> Result<()> {
    let _writing = store.lock_writer().await;
    // No ON CONFLICT: a row already at this position must not be passed over in silence.
    sqlx::query(
        "INSERT INTO audit_checkpoints (position, hash, at, signature) VALUES (?, ?, ?, ?)",
    )
    .bind(checkpoint.position)
    .bind(&checkpoint.hash)
    .bind(&checkpoint.at)
    .bind(&checkpoint.signature)
    .execute(store.pool())
    .await
    .map_err(conflict_or)?;
    Ok(())
}

pub(super) async fn read_checkpoints(
    store: &SqliteStore,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditCheckpoint>> {
    let rows = sqlx::query(
        "SELECT position, hash, at, signature FROM audit_checkpoints
          WHERE position > ? ORDER BY position LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| -> Result<AuditCheckpoint> {
            Ok(AuditCheckpoint {
                position: row.try_get("position")?,
                hash: row.try_get("hash")?,
                at: row.try_get("at")?,
                signature: row.try_get("signature")?,
            })
        })
        .collect()
}

pub(super) async fn last_checkpoint(store: &SqliteStore) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM audit_checkpoints")
            .fetch_one(store.pool())
            .await?,
    )
}

/// Also the compliance queries' decoder: one spelling of a row for the chain and for readers.
pub(in crate::store) fn audit_row(row: &SqliteRow) -> Result<AuditRow> {
    Ok(AuditRow {
        position: row.try_get("position")?,
        account_id: row.try_get("account_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        signal_id: row.try_get("signal_id")?,
        recorded_at: row.try_get("recorded_at")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn conflict_or(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database)
            if matches!(database.kind(), sqlx::error::ErrorKind::UniqueViolation) =>
        {
            StoreError::Conflict
        }
        _ => error.into(),
    }
}
