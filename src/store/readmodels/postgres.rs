//! The read models on PostgreSQL: one statement per table per page (UNNEST arrays), so a page of
//! thousands of events costs a handful of round trips.

use std::collections::BTreeMap;

use sqlx::{Postgres, Transaction};

use super::{
    collect_rows, columns_of, daily_volume_row, day_text, decimal_text, position_row,
    sequence_value, signal_row, time_text, trade_row, write_page, DailyVolumeKey, DailyVolumeRow,
    PageOutcome, PageWriter, PositionKey, PositionRow, Projection, ProjectionStep, ReadModels,
    SignalColumns, SignalKey, SignalRow, TableSet, TradePage, TradeRow, DAILY_VOLUME_COLUMNS,
    POSITION_COLUMNS, SIGNAL_COLUMNS, TRADE_COLUMNS,
};
use crate::store::postgres::PostgresStore;
use crate::store::{LogPosition, Result};

struct PgWriter(Transaction<'static, Postgres>);

pub(super) async fn apply_page(
    store: &PostgresStore,
    tables: TableSet,
    steps: &[ProjectionStep<'_>],
) -> Result<PageOutcome> {
    let mut writer = PgWriter(store.pool().begin().await?);
    let outcome = write_page(&mut writer, tables, steps).await?;
    match outcome {
        PageOutcome::Applied => writer.0.commit().await?,
        PageOutcome::CheckpointMoved => writer.0.rollback().await?,
    }
    Ok(outcome)
}

impl PageWriter for PgWriter {
    async fn compare_and_set(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool> {
        // A concurrent writer's UPDATE of the same row waits for this transaction, then
        // re-checks the WHERE against what it committed: it matches no more.
        let moved = sqlx::query(
            "UPDATE checkpoints SET global_seq = $3, updated_at = now()
              WHERE name = $1 AND global_seq = $2",
        )
        .bind(name)
        .bind(from.global_seq)
        .bind(to.global_seq)
        .execute(&mut *self.0)
        .await?;
        if moved.rows_affected() == 1 {
            return Ok(true);
        }
        if from != LogPosition::default() {
            return Ok(false);
        }
        // A first page: the row does not exist yet (or another writer is creating it).
        let created = sqlx::query(
            "INSERT INTO checkpoints (name, global_seq) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(to.global_seq)
        .execute(&mut *self.0)
        .await?;
        Ok(created.rows_affected() == 1)
    }

    async fn load_positions(
        &mut self,
        table: &str,
        keys: &[PositionKey],
    ) -> Result<BTreeMap<PositionKey, PositionRow>> {
        let (accounts, markets): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
        let rows = sqlx::query(&format!(
            "SELECT {POSITION_COLUMNS} FROM {table}
              WHERE (account_id, market) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        ))
        .bind(accounts)
        .bind(markets)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter().map(position_row).collect()
    }

    async fn save_positions(
        &mut self,
        table: &str,
        rows: &BTreeMap<PositionKey, PositionRow>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let text = |f: fn(&PositionKey, &PositionRow) -> String| -> Vec<String> {
            rows.iter().map(|(key, row)| f(key, row)).collect()
        };
        sqlx::query(&format!(
            "INSERT INTO {table} ({POSITION_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bigint[])
             ON CONFLICT (account_id, market) DO UPDATE
                SET size = EXCLUDED.size, side = EXCLUDED.side,
                    average_entry_price = EXCLUDED.average_entry_price,
                    realized_pnl_usd = EXCLUDED.realized_pnl_usd,
                    last_sequence = EXCLUDED.last_sequence"
        ))
        .bind(text(|key, _| key.0.clone()))
        .bind(text(|key, _| key.1.clone()))
        .bind(text(|_, row| decimal_text(row.size)))
        .bind(text(|_, row| row.side().to_owned()))
        .bind(text(|_, row| decimal_text(row.average_entry_price)))
        .bind(text(|_, row| decimal_text(row.realized_pnl_usd)))
        .bind(
            rows.values()
                .map(|row| sequence_value(row.last_sequence))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_trades(&mut self, table: &str, rows: &[TradeRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let text = |f: fn(&TradeRow) -> String| -> Vec<String> { rows.iter().map(f).collect() };
        // No ON CONFLICT: a trade applied twice would be a broken invariant, and fails loudly.
        sqlx::query(&format!(
            "INSERT INTO {table} ({TRADE_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::text[])"
        ))
        .bind(text(|t| t.account_id.clone()))
        .bind(
            rows.iter()
                .map(|t| sequence_value(t.sequence))
                .collect::<Vec<_>>(),
        )
        .bind(text(|t| t.signal_id.clone()))
        .bind(text(|t| t.client_order_id.clone()))
        .bind(text(|t| t.exchange_order_id.clone()))
        .bind(text(|t| t.market.clone()))
        .bind(text(|t| t.side.clone()))
        .bind(text(|t| decimal_text(t.size)))
        .bind(text(|t| decimal_text(t.price)))
        .bind(text(|t| decimal_text(t.fee_usd)))
        .bind(text(|t| time_text(t.filled_at)))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn load_daily_volume(
        &mut self,
        table: &str,
        keys: &[DailyVolumeKey],
    ) -> Result<BTreeMap<DailyVolumeKey, DailyVolumeRow>> {
        let accounts: Vec<String> = keys.iter().map(|key| key.0.clone()).collect();
        let days: Vec<String> = keys.iter().map(|key| day_text(key.1)).collect();
        let rows = sqlx::query(&format!(
            "SELECT {DAILY_VOLUME_COLUMNS} FROM {table}
              WHERE (account_id, day) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        ))
        .bind(accounts)
        .bind(days)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter().map(daily_volume_row).collect()
    }

    async fn save_daily_volume(
        &mut self,
        table: &str,
        rows: &BTreeMap<DailyVolumeKey, DailyVolumeRow>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO {table} ({DAILY_VOLUME_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (account_id, day) DO UPDATE
                SET traded_usd = EXCLUDED.traded_usd, fills = EXCLUDED.fills"
        ))
        .bind(rows.keys().map(|key| key.0.clone()).collect::<Vec<_>>())
        .bind(rows.keys().map(|key| day_text(key.1)).collect::<Vec<_>>())
        .bind(
            rows.values()
                .map(|row| decimal_text(row.traded_usd))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.values()
                .map(|row| i64::try_from(row.fills).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn load_signals(
        &mut self,
        table: &str,
        keys: &[SignalKey],
    ) -> Result<BTreeMap<SignalKey, SignalRow>> {
        let (accounts, signals): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
        let rows = sqlx::query(&format!(
            "SELECT {SIGNAL_COLUMNS} FROM {table}
              WHERE (account_id, signal_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        ))
        .bind(accounts)
        .bind(signals)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter().map(signal_row).collect()
    }

    async fn save_signals(
        &mut self,
        table: &str,
        rows: &BTreeMap<SignalKey, SignalRow>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let columns: Vec<SignalColumns> = rows
            .values()
            .map(SignalColumns::of)
            .collect::<Result<_>>()?;
        let text =
            |f: fn(&SignalColumns) -> String| -> Vec<String> { columns.iter().map(f).collect() };
        let optional = |f: fn(&SignalColumns) -> Option<String>| -> Vec<Option<String>> {
            columns.iter().map(f).collect()
        };
        sqlx::query(&format!(
            "INSERT INTO {table} ({SIGNAL_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[])
             ON CONFLICT (account_id, signal_id) DO UPDATE
                SET status = EXCLUDED.status, outcome = EXCLUDED.outcome,
                    market = EXCLUDED.market, received_at = EXCLUDED.received_at,
                    updated_at = EXCLUDED.updated_at, detail = EXCLUDED.detail,
                    duplicates = EXCLUDED.duplicates, events = EXCLUDED.events"
        ))
        .bind(rows.keys().map(|key| key.0.clone()).collect::<Vec<_>>())
        .bind(rows.keys().map(|key| key.1.clone()).collect::<Vec<_>>())
        .bind(text(|c| c.status.clone()))
        .bind(text(|c| c.outcome.clone()))
        .bind(optional(|c| c.market.clone()))
        .bind(optional(|c| c.received_at.clone()))
        .bind(optional(|c| c.updated_at.clone()))
        .bind(optional(|c| c.detail.clone()))
        .bind(columns.iter().map(|c| c.duplicates).collect::<Vec<_>>())
        .bind(text(|c| c.events.clone()))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }
}

pub(super) async fn reset(
    store: &PostgresStore,
    tables: TableSet,
    projection: Projection,
) -> Result<()> {
    let mut transaction = store.pool().begin().await?;
    sqlx::query(&format!("TRUNCATE {}", tables.table(projection)))
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO checkpoints (name, global_seq) VALUES ($1, 0)
         ON CONFLICT (name) DO UPDATE SET global_seq = 0, updated_at = now()",
    )
    .bind(tables.checkpoint_name(projection))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn rows(
    store: &PostgresStore,
    tables: TableSet,
    projection: Projection,
) -> Result<(LogPosition, ReadModels)> {
    let mut transaction = store.pool().begin().await?;
    // One snapshot for the checkpoint and the rows, whatever commits meanwhile.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let checkpoint = LogPosition {
        global_seq: sqlx::query_scalar("SELECT global_seq FROM checkpoints WHERE name = $1")
            .bind(tables.checkpoint_name(projection))
            .fetch_optional(&mut *transaction)
            .await?
            .unwrap_or_default(),
    };
    let rows = sqlx::query(&format!(
        "SELECT {} FROM {}",
        columns_of(projection),
        tables.table(projection)
    ))
    .fetch_all(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok((checkpoint, collect_rows(projection, &rows)?))
}

pub(super) async fn count_after(store: &PostgresStore, position: LogPosition) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE global_seq > $1")
            .bind(position.global_seq)
            .fetch_one(store.pool())
            .await?,
    )
}

pub(super) async fn account_positions(
    store: &PostgresStore,
    account_id: &str,
) -> Result<Vec<(String, PositionRow)>> {
    let rows = sqlx::query(&format!(
        "SELECT {POSITION_COLUMNS} FROM positions WHERE account_id = $1 ORDER BY market"
    ))
    .bind(account_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| position_row(row).map(|((_, market), position)| (market, position)))
        .collect()
}

pub(super) async fn account_trades(
    store: &PostgresStore,
    account_id: &str,
    page: TradePage,
) -> Result<Vec<TradeRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {TRADE_COLUMNS} FROM trades
          WHERE account_id = $1 AND ($2::bigint IS NULL OR sequence < $2)
          ORDER BY sequence DESC LIMIT $3"
    ))
    .bind(account_id)
    .bind(page.before.map(sequence_value))
    .bind(page.limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(trade_row).collect()
}

pub(super) async fn account_signal(
    store: &PostgresStore,
    account_id: &str,
    signal_id: &str,
) -> Result<Option<SignalRow>> {
    let row = sqlx::query(&format!(
        "SELECT {SIGNAL_COLUMNS} FROM signals WHERE account_id = $1 AND signal_id = $2"
    ))
    .bind(account_id)
    .bind(signal_id)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref()
        .map(|row| signal_row(row).map(|(_, signal)| signal))
        .transpose()
}
