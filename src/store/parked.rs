//! Parked events (events a catch-up reader could not apply, kept for an operator's decision) and
//! what the instance running each reader last reported of it. Migration 0009.
//!
//! The statements are the same on both stores: written with `?` and numbered for PostgreSQL.

use chrono::{SecondsFormat, Utc};

use super::{LogPosition, Result, Store};

/// The printed form of a log position, as stored in `parked_events` and typed by an operator.
pub fn position_label(position: LogPosition) -> String {
    if position.tx_id == 0 {
        position.global_seq.to_string()
    } else {
        format!("{}/{}", position.tx_id, position.global_seq)
    }
}

/// The inverse of `position_label`.
pub fn parse_position_label(label: &str) -> Option<LogPosition> {
    let (tx_id, global_seq) = match label.split_once('/') {
        Some((tx_id, global_seq)) => (tx_id.trim().parse().ok()?, global_seq.trim().parse().ok()?),
        None => (0, label.trim().parse().ok()?),
    };
    Some(LogPosition { tx_id, global_seq })
}

/// An event a reader parks: where it is in the log, whose it is, and why it could not be applied.
#[derive(Debug, Clone)]
pub struct NewParkedEvent {
    pub reader: String,
    pub position: LogPosition,
    pub account_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedEvent {
    pub reader: String,
    pub position: String,
    pub account_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub reason: String,
    pub parked_at: String,
    /// `open` (awaiting a decision), `released` (to be retried), `applied`, `skipped`.
    pub decision: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<String>,
}

/// An operator's decision on an open (or released) parked event.
#[derive(Debug, Clone)]
pub enum ParkedDecision {
    Release,
    Skip { by: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReaderRun {
    pub reader: String,
    pub state: String,
    pub restarts: i64,
    pub last_error: Option<String>,
    pub updated_at: String,
}

type ParkedRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

const PARKED_COLUMNS: &str = "reader, position, account_id, sequence, event_type, event_version, \
                              reason, parked_at, decision, decided_by, decision_reason, decided_at";

fn parked(row: ParkedRow) -> ParkedEvent {
    let (reader, position, account_id, sequence, event_type, event_version, reason, parked_at) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    ParkedEvent {
        reader,
        position,
        account_id,
        sequence,
        event_type,
        event_version,
        reason,
        parked_at,
        decision: row.8,
        decided_by: row.9,
        decision_reason: row.10,
        decided_at: row.11,
    }
}

/// `?` placeholders as PostgreSQL's `$1, $2, ...`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Runs `$body` with `$pool` and `$sql` for either store; SQLite writes queue on the writer lock.
macro_rules! on_store {
    ($store:expr, write: $write:expr, sql: $text:expr, |$pool:ident, $sql:ident| $body:block) => {
        match $store {
            Store::Postgres(store) => {
                let $pool = store.pool();
                let $sql = numbered($text);
                $body
            }
            Store::Sqlite(store) => {
                let _writing = if $write {
                    Some(store.lock_writer().await)
                } else {
                    None
                };
                let $pool = store.pool();
                let $sql: String = $text.to_owned();
                $body
            }
        }
    };
}

impl Store {
    /// Parks an event for `reader` unless it is already parked; an event a retry failed on again
    /// (decision `released`) is open again, with the new reason.
    pub async fn park_event(&self, event: &NewParkedEvent) -> Result<()> {
        let text = "INSERT INTO parked_events (reader, position, account_id, sequence, event_type, \
                    event_version, reason, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                    ON CONFLICT (reader, position) DO UPDATE \
                    SET decision = 'open', reason = excluded.reason, parked_at = excluded.parked_at \
                    WHERE parked_events.decision = 'released'";
        on_store!(self, write: true, sql: text, |pool, sql| {
            sqlx::query(&sql)
                .bind(&event.reader)
                .bind(position_label(event.position))
                .bind(&event.account_id)
                .bind(event.sequence)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(&event.reason)
                .bind(now())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Parked events, oldest first: every one, or only those awaiting a decision or a retry.
    pub async fn parked_events(&self, open_only: bool) -> Result<Vec<ParkedEvent>> {
        let filter = if open_only {
            "WHERE decision IN ('open', 'released')"
        } else {
            ""
        };
        let text = format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events {filter} ORDER BY parked_at, reader"
        );
        let rows: Vec<ParkedRow> = on_store!(self, write: false, sql: &text, |pool, sql| {
            sqlx::query_as(&sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(parked).collect())
    }

    /// The events an operator released for `reader` to retry.
    pub async fn released_events(&self, reader: &str) -> Result<Vec<ParkedEvent>> {
        let text = format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events WHERE reader = ? AND decision = 'released' \
             ORDER BY parked_at"
        );
        let rows: Vec<ParkedRow> = on_store!(self, write: false, sql: &text, |pool, sql| {
            sqlx::query_as(&sql).bind(reader).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(parked).collect())
    }

    /// Records an operator's decision; `false` when no such event awaits one.
    pub async fn decide_parked(
        &self,
        reader: &str,
        position: &str,
        decision: &ParkedDecision,
    ) -> Result<bool> {
        let (decision, by, reason, from) = match decision {
            ParkedDecision::Release => ("released", None, None, "('open')"),
            ParkedDecision::Skip { by, reason } => {
                ("skipped", Some(by), Some(reason), "('open', 'released')")
            }
        };
        let text = format!(
            "UPDATE parked_events SET decision = ?, decided_by = ?, decision_reason = ?, \
             decided_at = ? WHERE reader = ? AND position = ? AND decision IN {from}"
        );
        let done = on_store!(self, write: true, sql: &text, |pool, sql| {
            sqlx::query(&sql)
                .bind(decision)
                .bind(by)
                .bind(reason)
                .bind(now())
                .bind(reader)
                .bind(position)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// A released event the reader has now applied.
    pub async fn settle_parked(&self, reader: &str, position: &str) -> Result<()> {
        let text = "UPDATE parked_events SET decision = 'applied' \
                    WHERE reader = ? AND position = ? AND decision = 'released'";
        on_store!(self, write: true, sql: text, |pool, sql| {
            sqlx::query(&sql)
                .bind(reader)
                .bind(position)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// How many events each reader has parked that await a decision or a retry.
    pub async fn open_parked_counts(&self) -> Result<Vec<(String, i64)>> {
        let text = "SELECT reader, count(*) FROM parked_events \
                    WHERE decision IN ('open', 'released') GROUP BY reader";
        let rows: Vec<(String, i64)> = on_store!(self, write: false, sql: text, |pool, sql| {
            sqlx::query_as(&sql).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Records what the instance running `run.reader` reports of it.
    pub async fn report_reader_run(&self, run: &ReaderRun) -> Result<()> {
        let text = "INSERT INTO reader_runs (reader, state, restarts, last_error, updated_at) \
                    VALUES (?, ?, ?, ?, ?) ON CONFLICT (reader) DO UPDATE \
                    SET state = excluded.state, restarts = excluded.restarts, \
                        last_error = excluded.last_error, updated_at = excluded.updated_at";
        on_store!(self, write: true, sql: text, |pool, sql| {
            sqlx::query(&sql)
                .bind(&run.reader)
                .bind(&run.state)
                .bind(run.restarts)
                .bind(&run.last_error)
                .bind(&run.updated_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn reader_runs(&self) -> Result<Vec<ReaderRun>> {
        let text = "SELECT reader, state, restarts, last_error, updated_at FROM reader_runs";
        let rows: Vec<(String, String, i64, Option<String>, String)> = on_store!(self, write: false, sql: text, |pool, sql| {
            sqlx::query_as(&sql).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(reader, state, restarts, last_error, updated_at)| ReaderRun {
                    reader,
                    state,
                    restarts,
                    last_error,
                    updated_at,
                },
            )
            .collect())
    }

    /// The stored event of an account at `sequence`, for a reader retrying a released event.
    pub async fn account_event(
        &self,
        account_id: &str,
        sequence: i64,
    ) -> Result<Option<cqrs_es::persist::SerializedEvent>> {
        let Ok(sequence) = usize::try_from(sequence) else {
            return Ok(None);
        };
        let after = self
            .load_account_after(account_id, sequence.saturating_sub(1))
            .await?;
        Ok(after.into_iter().find(|event| event.sequence == sequence))
    }
}

/// When a row was reported, in the form stored.
pub fn reported_now() -> String {
    now()
}
