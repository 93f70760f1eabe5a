//! The audit tables on PostgreSQL. Every write runs as `ledgerhook_audit_writer` (SET LOCAL ROLE,
//! so only for its transaction): a role with INSERT and SELECT on the audit tables and nothing
//! else, which owns neither and so cannot disable their triggers.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{AuditCheckpoint, AuditRow, ChainHead};
use crate::store::{recorded_at_text, LogPosition, PostgresStore, Result, StoreError};

/// The role of migration 0005 that may only append to (and read) the audit tables.
pub const WRITER_ROLE: &str = "ledgerhook_audit_writer";

const UNIQUE_VIOLATION: &str = "23505";

pub(super) async fn append(
    store: &PostgresStore,
    rows: &[AuditRow],
    name: &str,
    read_to: LogPosition,
) -> Result<()> {
    let mut transaction = store.pool().begin().await?;
    // The reader's checkpoint first, as the service's own role: the writer role has no business
    // with the other readers' checkpoints.
    crate::store::postgres::save_checkpoint_with(&mut *transaction, name, read_to).await?;
    if !rows.is_empty() {
        sqlx::query(&format!("SET LOCAL ROLE {WRITER_ROLE}"))
            .execute(&mut *transaction)
            .await?;
        let text = |f: fn(&AuditRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let inserted = sqlx::query(
            "INSERT INTO audit_log (position, account_id, aggregate_type, sequence, event_type,
                                    event_version, signal_id, recorded_at, payload, metadata,
                                    prev_hash, hash)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                                  $6::text[], $7::text[], $8::text[]::timestamptz[], $9::text[],
                                  $10::text[], $11::text[], $12::text[])",
        )
        .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
        .bind(text(|r| r.account_id.clone()))
        .bind(text(|r| r.aggregate_type.clone()))
        .bind(rows.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(text(|r| r.event_type.clone()))
        .bind(text(|r| r.event_version.clone()))
        .bind(rows.iter().map(|r| r.signal_id.clone()).collect::<Vec<_>>())
        .bind(text(|r| r.recorded_at.clone()))
        .bind(text(|r| r.payload.clone()))
        .bind(text(|r| r.metadata.clone()))
        .bind(text(|r| r.prev_hash.clone()))
        .bind(text(|r| r.hash.clone()))
        .execute(&mut *transaction)
        .await;
        if let Err(error) = inserted {
            return Err(conflict_or(error));
        }
    }
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn head(store: &PostgresStore) -> Result<Option<ChainHead>> {
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

pub(super) async fn read(store: &PostgresStore, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT position, account_id, aggregate_type, sequence, event_type, event_version,
                signal_id, recorded_at, payload, metadata, prev_hash, hash
           FROM audit_log WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(audit_row).collect()
}

pub(super) async fn insert_checkpoint(
    store: &PostgresStore,
    checkpoint: &AuditCheckpoint,
) -> Result<()> {
    let mut transaction = store.pool().begin().await?;
    sqlx::query(&format!("SET LOCAL ROLE {WRITER_ROLE}"))
        .execute(&mut *transaction)
        .await?;
    // No ON CONFLICT: a row already at this position must not be passed over in silence.
    sqlx::query(
        "INSERT INTO audit_checkpoints (position, hash, at, signature)
         VALUES ($1, $2, $3::timestamptz, $4)",
    )
    .bind(checkpoint.position)
    .bind(&checkpoint.hash)
    .bind(&checkpoint.at)
    .bind(&checkpoint.signature)
    .execute(&mut *transaction)
    .await
    .map_err(conflict_or)?;
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn read_checkpoints(
    store: &PostgresStore,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditCheckpoint>> {
    let rows = sqlx::query(
        "SELECT position, hash, at, signature FROM audit_checkpoints
          WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| -> Result<AuditCheckpoint> {
            let at: DateTime<Utc> = row.try_get("at")?;
            Ok(AuditCheckpoint {
                position: row.try_get("position")?,
                hash: row.try_get("hash")?,
                at: recorded_at_text(at),
                signature: row.try_get("signature")?,
            })
        })
        .collect()
}

pub(super) async fn last_checkpoint(store: &PostgresStore) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM audit_checkpoints")
            .fetch_one(store.pool())
            .await?,
    )
}

/// Also the compliance queries' decoder: one spelling of a row for the chain and for readers.
pub(in crate::store) fn audit_row(row: &PgRow) -> Result<AuditRow> {
    let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
    Ok(AuditRow {
        position: row.try_get("position")?,
        account_id: row.try_get("account_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        signal_id: row.try_get("signal_id")?,
        recorded_at: recorded_at_text(recorded_at),
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn conflict_or(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            StoreError::Conflict
        }
        _ => error.into(),
    }
}
