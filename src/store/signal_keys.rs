//! The idempotency keys each account has used (migrations `0020_signal_keys` on PostgreSQL,
//! `0019_signal_keys` on SQLite). A key is written by the append that records the events using it
//! (one statement on PostgreSQL, one transaction on SQLite), read back under the account's lock
//! just before a signal is decided, and forgotten by the upkeep once it is long expired. They
//! used to live in the account's cached state, where a day of keys was most of a busy account's
//! memory and of every snapshot.

use std::collections::HashMap;

use aggregates::{SeenKey, SignalId};
use chrono::{DateTime, Utc};

use super::{Result, Store, StoreError};

/// One key put to use by an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalKey {
    pub account_id: String,
    pub key: String,
    pub signal_id: String,
    pub expires_at: DateTime<Utc>,
}

impl SignalKey {
    pub(super) fn expires_at_ns(&self) -> i64 {
        to_ns(self.expires_at)
    }
}

/// Nanoseconds since the epoch: exact, and compared the same way on both stores. A time past
/// 2262 (which no window reaches) is kept as the largest there is: never forgotten.
fn to_ns(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_ns(nanoseconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanoseconds)
}

/// Keys forgotten in one statement: bounds how long one pass holds the writer.
pub const FORGET_BATCH: i64 = 5_000;

/// A key stays this long past its expiry: a signal received just before the expiry may still be
/// deciding, and must find it.
pub const FORGET_AFTER: chrono::Duration = chrono::Duration::hours(1);

pub struct SignalKeys<'a> {
    pub(super) store: &'a Store,
}

impl SignalKeys<'_> {
    /// What the store remembers of each of `keys` for the account, expired or not (the account
    /// decides what its expiry means for the signal at hand).
    pub async fn recall(
        &self,
        account_id: &str,
        keys: &[String],
    ) -> Result<HashMap<String, SeenKey>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        // One statement text for any number of keys: an array on PostgreSQL, JSON on SQLite.
        let rows: Vec<(String, String, i64)> = match self.store {
            Store::Postgres(postgres) => {
                sqlx::query_as(
                    "SELECT idempotency_key, signal_id, expires_at_ns FROM signal_keys
                      WHERE account_id = $1 AND idempotency_key = ANY($2)",
                )
                .bind(account_id)
                .bind(keys)
                .fetch_all(postgres.pool())
                .await?
            }
            Store::Sqlite(sqlite) => {
                sqlx::query_as(
                    "SELECT idempotency_key, signal_id, expires_at_ns FROM signal_keys
                      WHERE account_id = $1
                        AND idempotency_key IN (SELECT value FROM json_each($2))",
                )
                .bind(account_id)
                .bind(
                    serde_json::to_string(keys).map_err(|error| StoreError::Decode {
                        what: "idempotency keys",
                        value: error.to_string(),
                    })?,
                )
                .fetch_all(sqlite.pool())
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(key, signal_id, expires_at_ns)| {
                let seen = SeenKey {
                    signal_id: SignalId(signal_id),
                    expires_at: from_ns(expires_at_ns),
                };
                (key, seen)
            })
            .collect())
    }

    /// The account's keys that expire after `after`, with their expiry (an account's load).
    pub async fn live(
        &self,
        account_id: &str,
        after: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows: Vec<(String, i64)> = reading!(self.store, pool => sqlx::query_as(
            "SELECT idempotency_key, expires_at_ns FROM signal_keys
              WHERE account_id = $1 AND expires_at_ns > $2",
        )
        .bind(account_id)
        .bind(to_ns(after))
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(key, expires_at_ns)| (key, from_ns(expires_at_ns)))
            .collect())
    }

    /// Forgets up to `FORGET_BATCH` keys that expired before `before`, oldest first; how many.
    pub async fn forget_expired(&self, before: DateTime<Utc>) -> Result<u64> {
        let forgotten = writing!(self.store, pool => sqlx::query(
            "DELETE FROM signal_keys
              WHERE (account_id, idempotency_key) IN
                    (SELECT account_id, idempotency_key FROM signal_keys
                      WHERE expires_at_ns < $1 ORDER BY expires_at_ns LIMIT $2)",
        )
        .bind(to_ns(before))
        .bind(FORGET_BATCH)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(forgotten)
    }

    /// How many keys the store holds, live or not (for tests and the metrics).
    pub async fn count(&self) -> Result<i64> {
        Ok(
            reading!(self.store, pool => sqlx::query_scalar("SELECT count(*) FROM signal_keys")
            .fetch_one(pool)
            .await?),
        )
    }
}
