//! Reads of the audit trail (`audit_log`, written by the audit writer) for the compliance API and
//! a trader's own trail: filtered, in chain order, one bounded page at a time.
//!
//! Pages are keyset-paginated on `position` (the chain's dense order), so a page costs the same
//! at row 10 and at row 10 million, and a cursor stays valid however many rows are appended.
//!
//! SQLite keeps `recorded_at` as text, compared as text: that is chronological only because every
//! row is written in one fixed-width form, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (`recorded_at_text`),
//! which is also the precision of PostgreSQL's timestamptz.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Audit, AuditRow, Result};

/// The most rows one query returns.
pub const MAX_AUDIT_PAGE: i64 = 10_000;

/// The one text form of an audit time: `audit_log.recorded_at` on SQLite (compared as text by
/// the compliance filters), and what the chain's hash covers on both stores. Microseconds, as
/// PostgreSQL's timestamptz keeps them, so a value read back gives the text that was written.
pub fn recorded_at_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Which audit rows: every field set narrows it (`None`/empty: no condition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub account_id: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Any of these.
    pub event_types: Vec<String>,
    pub signal_id: Option<String>,
}

impl Audit<'_> {
    /// Up to `limit` rows matching `filter` with `after < position <= up_to` (`up_to`: `None`
    /// for no upper bound), in position order.
    pub async fn rows(
        &self,
        filter: &AuditFilter,
        after: i64,
        up_to: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let limit = limit.clamp(0, MAX_AUDIT_PAGE);
        let (columns, time) = (self.row_columns(), self.time_cast());
        Ok(reading!(self.store, pool, Db => {
            let mut query = sqlx::QueryBuilder::<Db>::new(format!(
                "SELECT {columns} FROM audit_log WHERE position > "
            ));
            query.push_bind(after);
            if let Some(up_to) = up_to {
                query.push(" AND position <= ").push_bind(up_to);
            }
            if let Some(account_id) = &filter.account_id {
                query.push(" AND account_id = ").push_bind(account_id);
            }
            if let Some(from) = filter.from {
                query.push(" AND recorded_at >= ").push_bind(recorded_at_text(from)).push(time);
            }
            if let Some(to) = filter.to {
                query.push(" AND recorded_at < ").push_bind(recorded_at_text(to)).push(time);
            }
            if !filter.event_types.is_empty() {
                query.push(" AND event_type IN (");
                let mut types = query.separated(", ");
                for event_type in &filter.event_types {
                    types.push_bind(event_type);
                }
                query.push(")");
            }
            if let Some(signal_id) = &filter.signal_id {
                query.push(" AND signal_id = ").push_bind(signal_id);
            }
            query.push(" ORDER BY position LIMIT ").push_bind(limit);
            query.build_query_as().fetch_all(pool).await?
        }))
    }
}
