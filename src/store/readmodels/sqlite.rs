//! The read models on SQLite: one prepared statement per row inside the page's transaction
//! (cheap in-process; SQLite has no array parameters to batch with).

use std::collections::BTreeMap;

use sqlx::{Sqlite, Transaction};

use super::{
    collect_rows, columns_of, daily_volume_row, day_text, decimal_text, position_row,
    sequence_value, signal_row, time_text, trade_row, write_page, DailyVolumeKey, DailyVolumeRow,
    PageOutcome, PageWriter, PositionKey, PositionRow, Projection, ProjectionStep, ReadModels,
    SignalColumns, SignalKey, SignalRow, TableSet, TradePage, TradeRow, DAILY_VOLUME_COLUMNS,
    POSITION_COLUMNS, SIGNAL_COLUMNS, TRADE_COLUMNS,
};
use crate::store::sqlite::SqliteStore;
use crate::store::{LogPosition, Result};

struct SqliteWriter(Transaction<'static, Sqlite>);

pub(super) async fn apply_page(
    store: &SqliteStore,
    tables: TableSet,
    steps: &[ProjectionStep<'_>],
) -> Result<PageOutcome> {
    let _writing = store.lock_writer().await;
    let mut writer = SqliteWriter(store.pool().begin().await?);
    let outcome = write_page(&mut writer, tables, steps).await?;
    match outcome {
        PageOutcome::Applied => writer.0.commit().await?,
        PageOutcome::CheckpointMoved => writer.0.rollback().await?,
    }
    Ok(outcome)
}

impl PageWriter for SqliteWriter {
    async fn compare_and_set(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool> {
        // The first statement writes, so the transaction holds SQLite's write lock from here on:
        // another process's page waits (busy timeout), then finds the checkpoint moved.
        let moved = sqlx::query(
            "UPDATE checkpoints SET global_seq = ?,
                    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
              WHERE name = ? AND global_seq = ?",
        )
        .bind(to.global_seq)
        .bind(name)
        .bind(from.global_seq)
        .execute(&mut *self.0)
        .await?;
        if moved.rows_affected() == 1 {
            return Ok(true);
        }
        if from != LogPosition::default() {
            return Ok(false);
        }
        let created = sqlx::query(
            "INSERT INTO checkpoints (name, global_seq) VALUES (?, ?)
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
        let sql =
            format!("SELECT {POSITION_COLUMNS} FROM {table} WHERE account_id = ? AND market = ?");
        let mut rows = BTreeMap::new();
        for (account, market) in keys {
            if let Some(row) = sqlx::query(&sql)
                .bind(account)
                .bind(market)
                .fetch_optional(&mut *self.0)
                .await?
            {
                let (key, position) = position_row(&row)?;
                rows.insert(key, position);
            }
        }
        Ok(rows)
    }

    async fn save_positions(
        &mut self,
        table: &str,
        rows: &BTreeMap<PositionKey, PositionRow>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {table} ({POSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, market) DO UPDATE
                SET size = excluded.size, side = excluded.side,
                    average_entry_price = excluded.average_entry_price,
                    realized_pnl_usd = excluded.realized_pnl_usd,
                    last_sequence = excluded.last_sequence"
        );
        for ((account, market), row) in rows {
            sqlx::query(&sql)
                .bind(account)
                .bind(market)
                .bind(decimal_text(row.size))
                .bind(row.side())
                .bind(decimal_text(row.average_entry_price))
                .bind(decimal_text(row.realized_pnl_usd))
                .bind(sequence_value(row.last_sequence))
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    async fn insert_trades(&mut self, table: &str, rows: &[TradeRow]) -> Result<()> {
        // No ON CONFLICT: a trade applied twice would be a broken invariant, and fails loudly.
        let sql = format!(
            "INSERT INTO {table} ({TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        for trade in rows {
            sqlx::query(&sql)
                .bind(&trade.account_id)
                .bind(sequence_value(trade.sequence))
                .bind(&trade.signal_id)
                .bind(&trade.client_order_id)
                .bind(&trade.exchange_order_id)
                .bind(&trade.market)
                .bind(&trade.side)
                .bind(decimal_text(trade.size))
                .bind(decimal_text(trade.price))
                .bind(decimal_text(trade.fee_usd))
                .bind(time_text(trade.filled_at))
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    async fn load_daily_volume(
        &mut self,
        table: &str,
        keys: &[DailyVolumeKey],
    ) -> Result<BTreeMap<DailyVolumeKey, DailyVolumeRow>> {
        let sql =
            format!("SELECT {DAILY_VOLUME_COLUMNS} FROM {table} WHERE account_id = ? AND day = ?");
        let mut rows = BTreeMap::new();
        for (account, day) in keys {
            if let Some(row) = sqlx::query(&sql)
                .bind(account)
                .bind(day_text(*day))
                .fetch_optional(&mut *self.0)
                .await?
            {
                let (key, volume) = daily_volume_row(&row)?;
                rows.insert(key, volume);
            }
        }
        Ok(rows)
    }

    async fn save_daily_volume(
        &mut self,
        table: &str,
        rows: &BTreeMap<DailyVolumeKey, DailyVolumeRow>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {table} ({DAILY_VOLUME_COLUMNS}) VALUES (?, ?, ?, ?)
             ON CONFLICT (account_id, day) DO UPDATE
                SET traded_usd = excluded.traded_usd, fills = excluded.fills"
        );
        for ((account, day), row) in rows {
            sqlx::query(&sql)
                .bind(account)
                .bind(day_text(*day))
                .bind(decimal_text(row.traded_usd))
                .bind(i64::try_from(row.fills).unwrap_or(i64::MAX))
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    async fn load_signals(
        &mut self,
        table: &str,
        keys: &[SignalKey],
    ) -> Result<BTreeMap<SignalKey, SignalRow>> {
        let sql =
            format!("SELECT {SIGNAL_COLUMNS} FROM {table} WHERE account_id = ? AND signal_id = ?");
        let mut rows = BTreeMap::new();
        for (account, signal) in keys {
            if let Some(row) = sqlx::query(&sql)
                .bind(account)
                .bind(signal)
                .fetch_optional(&mut *self.0)
                .await?
            {
                let (key, signal) = signal_row(&row)?;
                rows.insert(key, signal);
            }
        }
        Ok(rows)
    }

    async fn save_signals(
        &mut self,
        table: &str,
        rows: &BTreeMap<SignalKey, SignalRow>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {table} ({SIGNAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, signal_id) DO UPDATE
                SET status = excluded.status, outcome = excluded.outcome,
                    market = excluded.market, received_at = excluded.received_at,
                    updated_at = excluded.updated_at, detail = excluded.detail,
                    duplicates = excluded.duplicates, events = excluded.events"
        );
        for ((account, signal), row) in rows {
            let columns = SignalColumns::of(row)?;
            sqlx::query(&sql)
                .bind(account)
                .bind(signal)
                .bind(columns.status)
                .bind(columns.outcome)
                .bind(columns.market)
                .bind(columns.received_at)
                .bind(columns.updated_at)
                .bind(columns.detail)
                .bind(columns.duplicates)
                .bind(columns.events)
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }
}

pub(super) async fn reset(
    store: &SqliteStore,
    tables: TableSet,
    projection: Projection,
) -> Result<()> {
    let _writing = store.lock_writer().await;
    let mut transaction = store.pool().begin().await?;
    sqlx::query(&format!("DELETE FROM {}", tables.table(projection)))
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO checkpoints (name, global_seq) VALUES (?, 0)
         ON CONFLICT (name) DO UPDATE SET global_seq = 0,
                updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .bind(tables.checkpoint_name(projection))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn rows(
    store: &SqliteStore,
    tables: TableSet,
    projection: Projection,
) -> Result<(LogPosition, ReadModels)> {
    // Under WAL a read transaction sees one snapshot from its first read on.
    let mut transaction = store.pool().begin().await?;
    let checkpoint = LogPosition {
        global_seq: sqlx::query_scalar("SELECT global_seq FROM checkpoints WHERE name = ?")
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

pub(super) async fn count_after(store: &SqliteStore, position: LogPosition) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM event_log WHERE position > ?")
            .bind(position.global_seq)
            .fetch_one(store.pool())
            .await?,
    )
}

pub(super) async fn account_positions(
    store: &SqliteStore,
    account_id: &str,
) -> Result<Vec<(String, PositionRow)>> {
    let rows = sqlx::query(&format!(
        "SELECT {POSITION_COLUMNS} FROM positions WHERE account_id = ? ORDER BY market"
    ))
    .bind(account_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| position_row(row).map(|((_, market), position)| (market, position)))
        .collect()
}

pub(super) async fn account_trades(
    store: &SqliteStore,
    account_id: &str,
    page: TradePage,
) -> Result<Vec<TradeRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {TRADE_COLUMNS} FROM trades
          WHERE account_id = ? AND (? IS NULL OR sequence < ?)
          ORDER BY sequence DESC LIMIT ?"
    ))
    .bind(account_id)
    .bind(page.before.map(sequence_value))
    .bind(page.before.map(sequence_value))
    .bind(page.limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(trade_row).collect()
}

pub(super) async fn account_signal(
    store: &SqliteStore,
    account_id: &str,
    signal_id: &str,
) -> Result<Option<SignalRow>> {
    let row = sqlx::query(&format!(
        "SELECT {SIGNAL_COLUMNS} FROM signals WHERE account_id = ? AND signal_id = ?"
    ))
    .bind(account_id)
    .bind(signal_id)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref()
        .map(|row| signal_row(row).map(|(_, signal)| signal))
        .transpose()
}
