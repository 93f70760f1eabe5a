//! The event log: cqrs-es 0.5.0's `events` table, loaded per stream through postgres-es /
//! sqlite-es; batched appends and the global order, which differ per dialect (`postgres.rs`,
//! `sqlite.rs`); and what is kept beside them, written once for both: account snapshots and the
//! catch-up readers' checkpoints.

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};

use aggregates::{
    EmergencyStop, ServiceCredentials, TradingAccount, EMERGENCY_STOP_ID, SERVICE_OWNER_ID,
};

use super::{decode, now_sql, Dialect, Result, SignalKey, Store};

/// A place in the global order of all events: positions become visible in increasing order (see
/// ARCHITECTURE.md, "Global order"), with holes where an append rolled back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub global_seq: i64,
}

/// One event as a catch-up reader sees it. The event is shared, not copied: every reader of a
/// committed batch holds the same one, and a JSON tree is costly to copy.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub position: LogPosition,
    pub event: std::sync::Arc<SerializedEvent>,
}

/// An account's state as of `version`, serialized by the code named by `state_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: usize,
    pub state_version: String,
    pub state: serde_json::Value,
}

/// A row of the global order, the same shape on both stores.
#[derive(sqlx::FromRow)]
struct LogRow {
    position: i64,
    #[sqlx(flatten)]
    event: StreamRow,
}

/// One event of one stream, as `load_account_page` reads it.
#[derive(sqlx::FromRow)]
struct StreamRow {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

impl StreamRow {
    fn into_event(self) -> Result<SerializedEvent> {
        Ok(SerializedEvent {
            aggregate_id: self.aggregate_id,
            sequence: decode::int("an event's sequence", self.sequence)?,
            aggregate_type: self.aggregate_type,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    version: i64,
    state_version: String,
    state: serde_json::Value,
}

/// The cqrs-es repository of the store's dialect, for what those crates already do.
macro_rules! repository {
    ($store:expr, $repository:ident => $body:expr) => {
        match $store {
            Store::Postgres(store) => {
                let $repository = &*store.events;
                $body
            }
            Store::Sqlite(store) => {
                let $repository = &*store.events;
                $body
            }
        }
    };
}

/// The event log and what readers keep of it: `Store::events`.
pub struct Events<'a> {
    pub(super) store: &'a Store,
}

impl Events<'_> {
    /// Every event of one account, in sequence order, as stored (not yet upcast).
    pub async fn load_account(&self, account_id: &str) -> Result<Vec<SerializedEvent>> {
        Ok(repository!(self.store, events => {
            events.get_events::<TradingAccount>(account_id).await?
        }))
    }

    /// The global emergency stop's events, in sequence order.
    pub async fn load_emergency_stop(&self) -> Result<Vec<SerializedEvent>> {
        Ok(repository!(self.store, events => {
            events.get_events::<EmergencyStop>(EMERGENCY_STOP_ID).await?
        }))
    }

    /// The service-wide credentials' access records after `sequence` (see `src/vault`).
    pub async fn load_service_credentials_after(
        &self,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>> {
        Ok(repository!(self.store, events => {
            events
                .get_last_events::<ServiceCredentials>(SERVICE_OWNER_ID, sequence)
                .await?
        }))
    }

    /// The events of one account after `sequence`.
    pub async fn load_account_after(
        &self,
        account_id: &str,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>> {
        Ok(repository!(self.store, events => {
            events.get_last_events::<TradingAccount>(account_id, sequence).await?
        }))
    }

    /// Up to `limit` events of one account after `sequence`, in order: what a step needs of an
    /// account's recent history, without reading (and decoding) all that came since.
    pub async fn load_account_page(
        &self,
        account_id: &str,
        sequence: usize,
        limit: i64,
    ) -> Result<Vec<SerializedEvent>> {
        let sql = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version,
                          payload, metadata
                     FROM events
                    WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
                    ORDER BY sequence LIMIT $4";
        let after = i64::try_from(sequence).unwrap_or(i64::MAX);
        let rows: Vec<StreamRow> = reading!(self.store, pool => sqlx::query_as(sql)
            .bind(<TradingAccount as cqrs_es::Aggregate>::TYPE)
            .bind(account_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(StreamRow::into_event).collect()
    }

    /// Appends events of one or more accounts in one transaction: all or none, and returns the
    /// position each event took, in order. Fails with `StoreError::Conflict` when any (account,
    /// sequence) already exists.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<Vec<LogPosition>> {
        self.append_remembering(events, &[]).await
    }

    /// `append`, writing with the events the idempotency keys they put to use (`signal_keys.rs`):
    /// a key is remembered exactly when its events land.
    pub async fn append_remembering(
        &self,
        events: &[SerializedEvent],
        keys: &[SignalKey],
    ) -> Result<Vec<LogPosition>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let sequences = events
            .iter()
            .map(|event| decode::int("an event's sequence", event.sequence))
            .collect::<Result<Vec<i64>>>()?;
        writing!(self.store, pool => pool.append_events(events, sequences, keys).await)
    }

    /// Up to `limit` events after `after` in the global order. Never returns an event while an
    /// earlier one may still commit, so a reader that resumes from the last position it saw
    /// misses nothing; no other transaction on the server holds it back.
    pub async fn read_log(&self, after: LogPosition, limit: i64) -> Result<Vec<LoggedEvent>> {
        let mut page = self.read_visible(after, limit).await?;
        // SQLite commits in insertion order (one writer): what is visible has no gaps in flight.
        let Store::Postgres(postgres) = self.store else {
            return Ok(page);
        };
        let contiguous = contiguous_from(after, &page);
        if contiguous > 0 || page.is_empty() {
            page.truncate(contiguous);
            return Ok(page);
        }
        // Positions right after `after` are missing: appends still in flight, or rolled back.
        // Once those in flight have ended, whatever is missing below the first visible position is
        // a hole for good (migration 0010).
        let first_visible = page[0].position;
        sqlx::query("SELECT events_wait_for_appends_in_flight()")
            .execute(postgres.pool())
            .await?;
        let mut page = self.read_visible(after, limit).await?;
        let settled = page
            .iter()
            .take_while(|logged| logged.position <= first_visible)
            .count();
        let continued = contiguous_from(first_visible, &page[settled..]);
        page.truncate(settled + continued);
        Ok(page)
    }

    /// The events after `after` that are visible now, in order, gaps and all.
    async fn read_visible(&self, after: LogPosition, limit: i64) -> Result<Vec<LoggedEvent>> {
        let (position, log) = self.log();
        let sql = format!(
            "SELECT {position} AS position, e.aggregate_type, e.aggregate_id, e.sequence,
                    e.event_type, e.event_version, e.payload, e.metadata
               {log} WHERE {position} > $1 ORDER BY {position} LIMIT $2"
        );
        let rows: Vec<LogRow> = reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(after.global_seq)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        rows.into_iter()
            .map(|row| {
                Ok(LoggedEvent {
                    position: LogPosition {
                        global_seq: row.position,
                    },
                    event: std::sync::Arc::new(row.event.into_event()?),
                })
            })
            .collect()
    }

    /// How many events the log holds after `position` (what a reader there has still to read).
    pub async fn count_after(&self, after: LogPosition) -> Result<i64> {
        let (position, log) = self.log();
        let sql = format!("SELECT count(*) {log} WHERE {position} > $1");
        Ok(reading!(self.store, pool => sqlx::query_scalar(&sql)
            .bind(after.global_seq)
            .fetch_one(pool)
            .await?))
    }

    /// The last position in the log now (the default when it is empty): one index probe, however
    /// far behind the caller is. Positions, not events: a rolled-back append's hole counts.
    pub async fn head(&self) -> Result<LogPosition> {
        let sql = match self.store {
            Store::Postgres(_) => "SELECT COALESCE(max(global_seq), 0) FROM events",
            Store::Sqlite(_) => "SELECT COALESCE(max(position), 0) FROM event_log",
        };
        let global_seq: i64 = reading!(self.store, pool => sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await?);
        Ok(LogPosition { global_seq })
    }

    /// The global order's position column and the rows it numbers. PostgreSQL numbers the
    /// `events` rows themselves (migration 0007); SQLite numbers them in `event_log`, filled by
    /// trigger. Read in plain position order: appends take their positions under one lock held
    /// until they commit (PostgreSQL) or under the one writer (SQLite), so nothing below a
    /// visible position can still appear.
    fn log(&self) -> (&'static str, &'static str) {
        match self.store {
            Store::Postgres(_) => ("e.global_seq", "FROM events e"),
            Store::Sqlite(_) => (
                "l.position",
                "FROM event_log l
                   JOIN events e ON e.aggregate_type = l.aggregate_type
                                AND e.aggregate_id = l.aggregate_id
                                AND e.sequence = l.sequence",
            ),
        }
    }

    pub async fn snapshot(&self, account_id: &str) -> Result<Option<Snapshot>> {
        let sql = "SELECT version, state_version, state FROM account_snapshots
                    WHERE account_id = $1";
        let row: Option<SnapshotRow> = reading!(self.store, pool => sqlx::query_as(sql)
            .bind(account_id)
            .fetch_optional(pool)
            .await?);
        row.map(|row| {
            Ok(Snapshot {
                version: decode::int("a snapshot's version", row.version)?,
                state_version: row.state_version,
                state: row.state,
            })
        })
        .transpose()
    }

    /// Stores a snapshot unless a newer one is already stored.
    pub async fn save_snapshot(&self, account_id: &str, snapshot: &Snapshot) -> Result<()> {
        let json = match self.store {
            Store::Postgres(_) => "::json",
            Store::Sqlite(_) => "",
        };
        let sql = format!(
            "INSERT INTO account_snapshots (account_id, version, state_version, state)
             VALUES ($1, $2, $3, $4{json})
             ON CONFLICT (account_id) DO UPDATE
                SET version = excluded.version, state_version = excluded.state_version,
                    state = excluded.state, taken_at = {}
              WHERE account_snapshots.version < excluded.version
                 OR account_snapshots.state_version <> excluded.state_version",
            now_sql(self.store)
        );
        let version: i64 = decode::int("a snapshot's version", snapshot.version)?;
        writing!(self.store, pool => sqlx::query(&sql)
            .bind(account_id)
            .bind(version)
            .bind(&snapshot.state_version)
            .bind(snapshot.state.to_string())
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// A reader's checkpoint: the start of the log when it has none.
    pub async fn checkpoint(&self, name: &str) -> Result<LogPosition> {
        let sql = "SELECT global_seq FROM checkpoints WHERE name = $1";
        let global_seq: Option<i64> = reading!(self.store, pool => sqlx::query_scalar(sql)
            .bind(name)
            .fetch_optional(pool)
            .await?);
        Ok(LogPosition {
            global_seq: global_seq.unwrap_or_default(),
        })
    }

    /// Moves a reader's checkpoint. Committed without waiting for the flush on PostgreSQL (see
    /// `derived_commit_sql`): a checkpoint lost in a crash makes its reader do the page again,
    /// which every reader's steps are safe to do.
    pub async fn save_checkpoint(&self, name: &str, position: LogPosition) -> Result<()> {
        let sql = save_checkpoint_sql(self.store);
        let derived_commit = super::derived_commit_sql(self.store);
        writing_derived!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            if let Some(derived) = derived_commit {
                sqlx::query(derived).execute(&mut *transaction).await?;
            }
            sqlx::query(&sql)
                .bind(name)
                .bind(position.global_seq)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
        });
        Ok(())
    }
}

/// Moves a reader's checkpoint (binds: name, position); also run inside the transaction that
/// writes a reader's rows, so rows and checkpoint commit together.
pub(super) fn save_checkpoint_sql(store: &Store) -> String {
    format!(
        "INSERT INTO checkpoints (name, global_seq) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET global_seq = excluded.global_seq, updated_at = {}",
        now_sql(store)
    )
}

/// How many of `page`'s events continue `after` without a missing position.
fn contiguous_from(after: LogPosition, page: &[LoggedEvent]) -> usize {
    page.iter()
        .zip(after.global_seq + 1..)
        .take_while(|(logged, expected)| logged.position.global_seq == *expected)
        .count()
}
