//! Parked events (events a catch-up reader could not apply, kept for an operator's decision) and
//! what the instance running each reader last reported of it. Migration 0009.
//!
//! Each statement is written once for both stores.

use chrono::{SecondsFormat, Utc};

use super::{LogPosition, Result, Store};

/// The printed form of a log position, as stored in `parked_events` and typed by an operator.
pub fn position_label(position: LogPosition) -> String {
    position.global_seq.to_string()
}

/// The inverse of `position_label`.
pub fn parse_position_label(label: &str) -> Option<LogPosition> {
    let global_seq = label.trim().parse().ok()?;
    Some(LogPosition { global_seq })
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

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parked events and the readers' reported runs.
pub struct Parked<'a> {
    pub(super) store: &'a Store,
}

impl Parked<'_> {
    /// Parks an event for `reader` unless it is already parked; an event a retry failed on again
    /// (decision `released`) is open again, with the new reason.
    pub async fn park_event(&self, event: &NewParkedEvent) -> Result<()> {
        let text = "INSERT INTO parked_events (reader, position, account_id, sequence, event_type, \
                    event_version, reason, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                    ON CONFLICT (reader, position) DO UPDATE \
                    SET decision = 'open', reason = excluded.reason, parked_at = excluded.parked_at \
                    WHERE parked_events.decision = 'released'";
        writing!(self.store, pool => {
            sqlx::query(text)
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
        let rows: Vec<ParkedRow> = reading!(self.store, pool => {
            sqlx::query_as(&text).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(parked).collect())
    }

    /// The events an operator released for `reader` to retry.
    pub async fn released_events(&self, reader: &str) -> Result<Vec<ParkedEvent>> {
        let text = format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events WHERE reader = $1 AND decision = 'released' \
             ORDER BY parked_at"
        );
        let rows: Vec<ParkedRow> = reading!(self.store, pool => {
            sqlx::query_as(&text).bind(reader).fetch_all(pool).await?
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
            "UPDATE parked_events SET decision = $1, decided_by = $2, decision_reason = $3, \
             decided_at = $4 WHERE reader = $5 AND position = $6 AND decision IN {from}"
        );
        let done = writing!(self.store, pool => {
            sqlx::query(&text)
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
                    WHERE reader = $1 AND position = $2 AND decision = 'released'";
        writing!(self.store, pool => {
            sqlx::query(text)
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
        let rows: Vec<(String, i64)> = reading!(self.store, pool => {
            sqlx::query_as(text).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Records what the instance running `run.reader` reports of it.
    pub async fn report_reader_run(&self, run: &ReaderRun) -> Result<()> {
        let text = "INSERT INTO reader_runs (reader, state, restarts, last_error, updated_at) \
                    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reader) DO UPDATE \
                    SET state = excluded.state, restarts = excluded.restarts, \
                        last_error = excluded.last_error, updated_at = excluded.updated_at";
        writing!(self.store, pool => {
            sqlx::query(text)
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
        let rows: Vec<(String, String, i64, Option<String>, String)> = reading!(self.store, pool => {
            sqlx::query_as(text).fetch_all(pool).await?
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
            .store
            .events()
            .load_account_page(account_id, sequence.saturating_sub(1), 1)
            .await?;
        Ok(after.into_iter().find(|event| event.sequence == sequence))
    }
}

/// When a row was reported, in the form stored.
pub fn reported_now() -> String {
    now()
}
