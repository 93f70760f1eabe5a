//! The read models' tables (migration 0004): rows loaded by key, and a page's rows written with
//! their projections' checkpoints in one transaction; plus the reads of the trader's endpoints
//! and of `projections rebuild`. The fold itself is the read side's (`crate::readside`).
//!
//! Exactly once: each projection's checkpoint is compared-and-set FIRST in the page's
//! transaction, from where the runner read it. Rows never change without their checkpoint moving
//! forward, so rows loaded while the checkpoint stood there are the rows it stands for; a second
//! writer of the same page blocks on the checkpoint row, then finds it moved and rolls back
//! everything it did — so rows and checkpoint only ever move together.

mod rows;

use std::collections::BTreeMap;

use projections::TouchedKeys;
pub use projections::{PositionRow, Projection, ReadModels, SignalRow, TradeRow};

use self::rows::columns;
use super::bulk::{BulkConnection, BulkInsert};
use super::{LogPosition, Result, Store};

/// Keys per SQLite statement: two parameters each, far under its 32,766.
const SQLITE_KEYS_PER_STATEMENT: usize = 1000;

/// Which copy of the read models: the live one the service keeps current, or the fresh one a
/// rebuild replays into. Both have the same tables (`rebuild_` prefixed) and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSet {
    Live,
    Rebuild,
}

impl TableSet {
    /// Table-name prefix. Table names are only ever built from this and `Projection::name`, both
    /// fixed in code, never from input.
    fn prefix(self) -> &'static str {
        match self {
            TableSet::Live => "",
            TableSet::Rebuild => "rebuild_",
        }
    }

    pub fn checkpoint_name(self, projection: Projection) -> String {
        match self {
            TableSet::Live => format!("projection:{}", projection.name()),
            TableSet::Rebuild => format!("rebuild:{}", projection.name()),
        }
    }

    fn table(self, projection: Projection) -> String {
        format!("{}{}", self.prefix(), projection.name())
    }
}

/// One projection's share of a page: the checkpoint it must still be at, where the page takes it,
/// and its rows as the page leaves them (every row the page changed).
pub struct ProjectionWrite {
    pub projection: Projection,
    pub from: LogPosition,
    pub to: LogPosition,
    pub rows: ReadModels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOutcome {
    Applied,
    /// Another writer moved a checkpoint first: nothing was written.
    CheckpointMoved,
}

/// A trader's trade list, newest first; `before` is the cursor (a trade's sequence).
#[derive(Debug, Clone, Copy)]
pub struct TradePage {
    pub before: Option<usize>,
    pub limit: i64,
}

/// The read models' tables: `Store::read_models`.
pub struct ReadModelTables<'a> {
    pub(super) store: &'a Store,
}

impl ReadModelTables<'_> {
    /// Every projection's checkpoint in `tables` (the start of the log when it has none).
    pub async fn checkpoints(&self, tables: TableSet) -> Result<BTreeMap<Projection, LogPosition>> {
        let mut checkpoints = BTreeMap::new();
        for projection in Projection::ALL {
            let position = self
                .store
                .events()
                .checkpoint(&tables.checkpoint_name(projection))
                .await?;
            checkpoints.insert(projection, position);
        }
        Ok(checkpoints)
    }

    /// The rows of `projection` that `keys` names and that exist.
    pub async fn load(
        &self,
        tables: TableSet,
        projection: Projection,
        keys: &TouchedKeys,
    ) -> Result<ReadModels> {
        let mut keys = rows::key_cells(projection, keys);
        // A page's events often share a key: ask for each once.
        keys.sort_unstable();
        keys.dedup();
        let columns = columns(projection);
        let table = tables.table(projection);
        let mut models = ReadModels::default();
        if keys.is_empty() {
            return Ok(models);
        }
        let select = format!(
            "SELECT {} FROM {table} WHERE {} IN ",
            columns.names, columns.key
        );
        match self.store {
            // One statement text for any number of keys: parsed and planned once per connection
            // (see `crate::store::bulk`).
            Store::Postgres(store) => {
                let (first, second): (Vec<&str>, Vec<&str>) = keys
                    .iter()
                    .map(|[first, second]| (first.as_str(), second.as_str()))
                    .unzip();
                let sql = format!("{select} (SELECT * FROM UNNEST($1::text[], $2::text[]))");
                let found = sqlx::query(&sql)
                    .bind(first)
                    .bind(second)
                    .fetch_all(store.pool())
                    .await?;
                for row in found {
                    rows::insert(&mut models, projection, &row)?;
                }
            }
            Store::Sqlite(store) => {
                for chunk in keys.chunks(SQLITE_KEYS_PER_STATEMENT) {
                    let mut query =
                        sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("{select} (VALUES "));
                    let mut values = query.separated(", ");
                    for [first, second] in chunk {
                        values.push("(");
                        values.push_bind_unseparated(first);
                        values.push_unseparated(", ");
                        values.push_bind_unseparated(second);
                        values.push_unseparated(")");
                    }
                    query.push(")");
                    for row in query.build().fetch_all(store.pool()).await? {
                        rows::insert(&mut models, projection, &row)?;
                    }
                }
            }
        }
        Ok(models)
    }

    /// Moves each write's checkpoint and saves its rows, all in one transaction; nothing at all
    /// when any checkpoint is no longer where its write expects.
    pub async fn write_page(
        &self,
        tables: TableSet,
        writes: &[ProjectionWrite],
    ) -> Result<PageOutcome> {
        let now = super::now_sql(self.store);
        // A concurrent writer's UPDATE of the same row waits for this transaction, then re-checks
        // the WHERE against what it committed: it matches no more.
        let move_checkpoint = format!(
            "UPDATE checkpoints SET global_seq = $3, updated_at = {now}
              WHERE name = $1 AND global_seq = $2"
        );
        // A first page: the row does not exist yet (or another writer is creating it).
        let create_checkpoint = "INSERT INTO checkpoints (name, global_seq) VALUES ($1, $2)
                                 ON CONFLICT (name) DO NOTHING";
        let mut statements = Vec::new();
        for write in writes {
            let columns = columns(write.projection);
            let tail = match columns.on_conflict {
                Some(set) => format!("ON CONFLICT {} DO UPDATE SET {set}", columns.key),
                None => String::new(),
            };
            let head = format!(
                "INSERT INTO {} ({})",
                tables.table(write.projection),
                columns.names
            );
            let cells = rows::cells(write.projection, &write.rows)?;
            statements.push((head, columns.pg_arrays, tail, cells));
        }
        let derived_commit = super::derived_commit_sql(self.store);
        Ok(writing_derived!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            if let Some(derived) = derived_commit {
                sqlx::query(derived).execute(&mut *transaction).await?;
            }
            let mut moved = true;
            for write in writes {
                let name = tables.checkpoint_name(write.projection);
                let updated = sqlx::query(&move_checkpoint)
                    .bind(&name)
                    .bind(write.from.global_seq)
                    .bind(write.to.global_seq)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                moved = updated == 1
                    || (write.from == LogPosition::default()
                        && sqlx::query(create_checkpoint)
                            .bind(&name)
                            .bind(write.to.global_seq)
                            .execute(&mut *transaction)
                            .await?
                            .rows_affected()
                            == 1);
                if !moved {
                    break;
                }
            }
            if moved {
                for (head, pg_arrays, tail, cells) in &statements {
                    let insert = BulkInsert { head, pg_arrays, tail };
                    BulkConnection::insert_rows(&mut *transaction, &insert, cells).await?;
                }
                transaction.commit().await?;
                PageOutcome::Applied
            } else {
                transaction.rollback().await?;
                PageOutcome::CheckpointMoved
            }
        }))
    }

    /// Empties a projection's rows and sets its checkpoint back to the start of the log, in one
    /// transaction. (Only `projections rebuild` calls it, on its own copy.)
    pub async fn reset(&self, tables: TableSet, projection: Projection) -> Result<()> {
        let empty = match self.store {
            Store::Postgres(_) => "TRUNCATE",
            Store::Sqlite(_) => "DELETE FROM",
        };
        let empty = format!("{empty} {}", tables.table(projection));
        let restart = format!(
            "INSERT INTO checkpoints (name, global_seq) VALUES ($1, 0)
             ON CONFLICT (name) DO UPDATE SET global_seq = 0, updated_at = {}",
            super::now_sql(self.store)
        );
        writing_derived!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query(&empty).execute(&mut *transaction).await?;
            sqlx::query(&restart)
                .bind(tables.checkpoint_name(projection))
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
        });
        Ok(())
    }

    /// One projection's checkpoint and every row, read from one snapshot so they match.
    pub async fn rows(
        &self,
        tables: TableSet,
        projection: Projection,
    ) -> Result<(LogPosition, ReadModels)> {
        // Under WAL a SQLite read transaction sees one snapshot from its first read on; a
        // PostgreSQL one must ask for it.
        let snapshot = match self.store {
            Store::Postgres(_) => Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            Store::Sqlite(_) => None,
        };
        let select = format!(
            "SELECT {} FROM {}",
            columns(projection).names,
            tables.table(projection)
        );
        let checkpoint_sql = "SELECT global_seq FROM checkpoints WHERE name = $1";
        let mut models = ReadModels::default();
        let checkpoint: Option<i64> = reading!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            if let Some(snapshot) = snapshot {
                sqlx::query(snapshot).execute(&mut *transaction).await?;
            }
            let checkpoint = sqlx::query_scalar(checkpoint_sql)
                .bind(tables.checkpoint_name(projection))
                .fetch_optional(&mut *transaction)
                .await?;
            for row in sqlx::query(&select).fetch_all(&mut *transaction).await? {
                rows::insert(&mut models, projection, &row)?;
            }
            transaction.commit().await?;
            checkpoint
        });
        let checkpoint = LogPosition {
            global_seq: checkpoint.unwrap_or_default(),
        };
        Ok((checkpoint, models))
    }

    /// The trader's positions, by market.
    pub async fn account_positions(&self, account_id: &str) -> Result<Vec<(String, PositionRow)>> {
        let sql = format!(
            "SELECT {} FROM positions WHERE account_id = $1 ORDER BY market",
            columns(Projection::Positions).names
        );
        reading!(self.store, pool => sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| rows::position_row(row).map(|((_, market), position)| (market, position)))
            .collect())
    }

    pub async fn account_trades(&self, account_id: &str, page: TradePage) -> Result<Vec<TradeRow>> {
        let before: Option<i64> = page
            .before
            .map(|before| super::decode::int("a trade cursor", before))
            .transpose()?;
        let sql = format!(
            "SELECT {} FROM trades WHERE account_id = $1 AND ($2 IS NULL OR sequence < $2)
              ORDER BY sequence DESC LIMIT $3",
            columns(Projection::Trades).names
        );
        reading!(self.store, pool => sqlx::query(&sql)
            .bind(account_id)
            .bind(before)
            .bind(page.limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(rows::trade_row)
            .collect())
    }

    /// The account's signals, newest first (by the sequence of each one's first event), up to
    /// `limit` of them placed before `before` (a signal's first sequence: the cursor).
    pub async fn account_signals(
        &self,
        account_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(String, SignalRow)>> {
        // The expression of the `signals_newest_first` index, in each dialect.
        let first_sequence = match self.store {
            Store::Postgres(_) => "((events::jsonb -> 0 ->> 'sequence')::bigint)",
            Store::Sqlite(_) => "json_extract(events, '$[0].sequence')",
        };
        let sql = format!(
            "SELECT {columns} FROM signals WHERE account_id = $1
                AND ($2 IS NULL OR {first_sequence} < $2)
              ORDER BY {first_sequence} DESC LIMIT $3",
            columns = columns(Projection::Signals).names
        );
        reading!(self.store, pool => sqlx::query(&sql)
            .bind(account_id)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| rows::signal_row(row).map(|((_, signal_id), signal)| (signal_id, signal)))
            .collect())
    }

    /// Accounts the signal-status model shows with a limit order resting on a venue's book
    /// (`signals_resting` index): where the resting-order watcher looks first.
    pub async fn accounts_with_resting_orders(&self) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT account_id FROM signals WHERE status = 'resting' \
                   ORDER BY account_id";
        Ok(
            reading!(self.store, pool => sqlx::query_scalar::<_, String>(sql)
            .fetch_all(pool)
            .await?),
        )
    }

    pub async fn account_signal(
        &self,
        account_id: &str,
        signal_id: &str,
    ) -> Result<Option<SignalRow>> {
        let sql = format!(
            "SELECT {} FROM signals WHERE account_id = $1 AND signal_id = $2",
            columns(Projection::Signals).names
        );
        reading!(self.store, pool => sqlx::query(&sql)
            .bind(account_id)
            .bind(signal_id)
            .fetch_optional(pool)
            .await?
            .map(|row| rows::signal_row(&row).map(|(_, signal)| signal))
            .transpose())
    }
}
