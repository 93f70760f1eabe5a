//! The read models' tables (migration 0004): one page of the global order applied to every
//! projection's rows together with its checkpoint, in one transaction, plus the reads of the
//! trader's endpoints and of `projections rebuild`.
//!
//! Exactly once: each projection's checkpoint is compared-and-set FIRST in the page's
//! transaction. A second writer of the same page blocks on the checkpoint row, then finds it moved
//! and rolls back everything it did — so rows and checkpoint only ever move together.

mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;

pub use projections::{
    DailyVolumeKey, DailyVolumeRow, Envelope, PositionKey, PositionRow, Projection, ReadModels,
    SignalEventRef, SignalKey, SignalRow, TradeRow,
};

use super::{LogPosition, Result, Store, StoreError};

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
/// and the events (after its checkpoint) it applies.
pub struct ProjectionStep<'a> {
    pub projection: Projection,
    pub from: LogPosition,
    pub to: LogPosition,
    pub events: Vec<&'a Envelope>,
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

impl Store {
    /// Every projection's checkpoint in `tables` (the start of the log when it has none).
    pub async fn projection_checkpoints(
        &self,
        tables: TableSet,
    ) -> Result<BTreeMap<Projection, LogPosition>> {
        let mut checkpoints = BTreeMap::new();
        for projection in Projection::ALL {
            let position = self.checkpoint(&tables.checkpoint_name(projection)).await?;
            checkpoints.insert(projection, position);
        }
        Ok(checkpoints)
    }

    /// Applies each step's events to its projection's rows and moves its checkpoint, all in one
    /// transaction; nothing at all when any checkpoint is no longer where the step expects.
    pub async fn apply_projection_page(
        &self,
        tables: TableSet,
        steps: &[ProjectionStep<'_>],
    ) -> Result<PageOutcome> {
        match self {
            Store::Postgres(store) => postgres::apply_page(store, tables, steps).await,
            Store::Sqlite(store) => sqlite::apply_page(store, tables, steps).await,
        }
    }

    /// Empties a projection's rows and sets its checkpoint back to the start of the log, in one
    /// transaction. (Only `projections rebuild` calls it, on its own copy.)
    pub async fn reset_projection(&self, tables: TableSet, projection: Projection) -> Result<()> {
        match self {
            Store::Postgres(store) => postgres::reset(store, tables, projection).await,
            Store::Sqlite(store) => sqlite::reset(store, tables, projection).await,
        }
    }

    /// One projection's checkpoint and every row, read from one snapshot so they match.
    pub async fn projection_rows(
        &self,
        tables: TableSet,
        projection: Projection,
    ) -> Result<(LogPosition, ReadModels)> {
        match self {
            Store::Postgres(store) => postgres::rows(store, tables, projection).await,
            Store::Sqlite(store) => sqlite::rows(store, tables, projection).await,
        }
    }

    /// How many events the log holds after `position` (what a reader there has still to read).
    pub async fn count_log_after(&self, position: LogPosition) -> Result<i64> {
        match self {
            Store::Postgres(store) => postgres::count_after(store, position).await,
            Store::Sqlite(store) => sqlite::count_after(store, position).await,
        }
    }

    /// The trader's positions, by market.
    pub async fn account_positions(&self, account_id: &str) -> Result<Vec<(String, PositionRow)>> {
        match self {
            Store::Postgres(store) => postgres::account_positions(store, account_id).await,
            Store::Sqlite(store) => sqlite::account_positions(store, account_id).await,
        }
    }

    pub async fn account_trades(&self, account_id: &str, page: TradePage) -> Result<Vec<TradeRow>> {
        match self {
            Store::Postgres(store) => postgres::account_trades(store, account_id, page).await,
            Store::Sqlite(store) => sqlite::account_trades(store, account_id, page).await,
        }
    }

    pub async fn account_signal(
        &self,
        account_id: &str,
        signal_id: &str,
    ) -> Result<Option<SignalRow>> {
        match self {
            Store::Postgres(store) => postgres::account_signal(store, account_id, signal_id).await,
            Store::Sqlite(store) => sqlite::account_signal(store, account_id, signal_id).await,
        }
    }
}

/// What a page does to the rows, the same on both stores: the backend only loads and saves.
#[allow(async_fn_in_trait)]
trait PageWriter {
    /// Moves `name` from `from` to `to`; false when it is no longer at `from`.
    async fn compare_and_set(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool>;
    async fn load_positions(
        &mut self,
        table: &str,
        keys: &[PositionKey],
    ) -> Result<BTreeMap<PositionKey, PositionRow>>;
    async fn save_positions(
        &mut self,
        table: &str,
        rows: &BTreeMap<PositionKey, PositionRow>,
    ) -> Result<()>;
    async fn insert_trades(&mut self, table: &str, rows: &[TradeRow]) -> Result<()>;
    async fn load_daily_volume(
        &mut self,
        table: &str,
        keys: &[DailyVolumeKey],
    ) -> Result<BTreeMap<DailyVolumeKey, DailyVolumeRow>>;
    async fn save_daily_volume(
        &mut self,
        table: &str,
        rows: &BTreeMap<DailyVolumeKey, DailyVolumeRow>,
    ) -> Result<()>;
    async fn load_signals(
        &mut self,
        table: &str,
        keys: &[SignalKey],
    ) -> Result<BTreeMap<SignalKey, SignalRow>>;
    async fn save_signals(
        &mut self,
        table: &str,
        rows: &BTreeMap<SignalKey, SignalRow>,
    ) -> Result<()>;
}

/// The page inside an open transaction: checkpoints first (so a concurrent writer of the same
/// page waits here and then backs off), then for each projection: load the rows the page reads,
/// fold, save them.
async fn write_page<W: PageWriter>(
    writer: &mut W,
    tables: TableSet,
    steps: &[ProjectionStep<'_>],
) -> Result<PageOutcome> {
    for step in steps {
        let name = tables.checkpoint_name(step.projection);
        if !writer.compare_and_set(&name, step.from, step.to).await? {
            return Ok(PageOutcome::CheckpointMoved);
        }
    }
    for step in steps.iter().filter(|step| !step.events.is_empty()) {
        let projection = step.projection;
        let table = tables.table(projection);
        let keys = ReadModels::keys_read(projection, step.events.iter().copied());
        let mut models = ReadModels::default();
        match projection {
            Projection::Positions => {
                models.positions = writer.load_positions(&table, &keys.positions).await?;
            }
            Projection::DailyVolume => {
                models.daily_volume = writer.load_daily_volume(&table, &keys.daily_volume).await?;
            }
            Projection::Signals => {
                models.signals = writer.load_signals(&table, &keys.signals).await?;
            }
            Projection::Trades => {}
        }
        for envelope in &step.events {
            models.apply(projection, envelope);
        }
        match projection {
            Projection::Positions => writer.save_positions(&table, &models.positions).await?,
            Projection::DailyVolume => {
                writer
                    .save_daily_volume(&table, &models.daily_volume)
                    .await?;
            }
            Projection::Signals => writer.save_signals(&table, &models.signals).await?,
            Projection::Trades => {
                let rows: Vec<TradeRow> = models.trades.into_values().collect();
                writer.insert_trades(&table, &rows).await?;
            }
        }
    }
    Ok(PageOutcome::Applied)
}

// Text forms shared by both stores, so a row reads back exactly as written.

fn decimal_text(value: Decimal) -> String {
    value.normalize().to_string()
}

fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn decode_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(error)))
}

fn parse_decimal(text: &str) -> Result<Decimal> {
    Decimal::from_str(text).map_err(decode_error)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(decode_error)
}

fn parse_day(text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(decode_error)
}

fn parse_sequence(value: i64) -> usize {
    usize::try_from(value).unwrap_or_default()
}

fn sequence_value(sequence: usize) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

fn events_text(events: &[SignalEventRef]) -> Result<String> {
    serde_json::to_string(events).map_err(decode_error)
}

fn parse_events(text: &str) -> Result<Vec<SignalEventRef>> {
    serde_json::from_str(text).map_err(decode_error)
}

/// A signal row's columns as text, in the tables' column order after the key.
struct SignalColumns {
    status: String,
    outcome: String,
    market: Option<String>,
    received_at: Option<String>,
    updated_at: Option<String>,
    detail: Option<String>,
    duplicates: i64,
    events: String,
}

impl SignalColumns {
    fn of(row: &SignalRow) -> Result<Self> {
        Ok(Self {
            status: row.status.clone(),
            outcome: row.outcome.clone(),
            market: row.market.clone(),
            received_at: row.received_at.map(time_text),
            updated_at: row.updated_at.map(time_text),
            detail: row.detail.clone(),
            duplicates: i64::try_from(row.duplicates).unwrap_or(i64::MAX),
            events: events_text(&row.events)?,
        })
    }

    fn into_row(self) -> Result<SignalRow> {
        Ok(SignalRow {
            status: self.status,
            outcome: self.outcome,
            market: self.market,
            received_at: self.received_at.as_deref().map(parse_time).transpose()?,
            updated_at: self.updated_at.as_deref().map(parse_time).transpose()?,
            detail: self.detail,
            duplicates: u64::try_from(self.duplicates).unwrap_or_default(),
            events: parse_events(&self.events)?,
        })
    }
}

const POSITION_COLUMNS: &str =
    "account_id, market, size, side, average_entry_price, realized_pnl_usd, last_sequence";
const TRADE_COLUMNS: &str = "account_id, sequence, signal_id, client_order_id, exchange_order_id, \
     market, side, size, price, fee_usd, filled_at";
const DAILY_VOLUME_COLUMNS: &str = "account_id, day, traded_usd, fills";
const SIGNAL_COLUMNS: &str = "account_id, signal_id, status, outcome, market, received_at, \
     updated_at, detail, duplicates, events";

/// The three column types the read-model tables use, read the same way from either store's rows.
trait TextRow {
    fn text(&self, column: &str) -> Result<String>;
    fn optional_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
}

macro_rules! text_row {
    ($row:ty) => {
        impl TextRow for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn optional_text(&self, column: &str) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}
text_row!(sqlx::postgres::PgRow);
text_row!(sqlx::sqlite::SqliteRow);

fn position_row(row: &impl TextRow) -> Result<(PositionKey, PositionRow)> {
    Ok((
        (row.text("account_id")?, row.text("market")?),
        PositionRow {
            size: parse_decimal(&row.text("size")?)?,
            average_entry_price: parse_decimal(&row.text("average_entry_price")?)?,
            realized_pnl_usd: parse_decimal(&row.text("realized_pnl_usd")?)?,
            last_sequence: parse_sequence(row.int("last_sequence")?),
        },
    ))
}

fn trade_row(row: &impl TextRow) -> Result<TradeRow> {
    Ok(TradeRow {
        account_id: row.text("account_id")?,
        sequence: parse_sequence(row.int("sequence")?),
        signal_id: row.text("signal_id")?,
        client_order_id: row.text("client_order_id")?,
        exchange_order_id: row.text("exchange_order_id")?,
        market: row.text("market")?,
        side: row.text("side")?,
        size: parse_decimal(&row.text("size")?)?,
        price: parse_decimal(&row.text("price")?)?,
        fee_usd: parse_decimal(&row.text("fee_usd")?)?,
        filled_at: parse_time(&row.text("filled_at")?)?,
    })
}

fn daily_volume_row(row: &impl TextRow) -> Result<(DailyVolumeKey, DailyVolumeRow)> {
    Ok((
        (row.text("account_id")?, parse_day(&row.text("day")?)?),
        DailyVolumeRow {
            traded_usd: parse_decimal(&row.text("traded_usd")?)?,
            fills: u64::try_from(row.int("fills")?).unwrap_or_default(),
        },
    ))
}

fn signal_row(row: &impl TextRow) -> Result<(SignalKey, SignalRow)> {
    let key = (row.text("account_id")?, row.text("signal_id")?);
    let columns = SignalColumns {
        status: row.text("status")?,
        outcome: row.text("outcome")?,
        market: row.optional_text("market")?,
        received_at: row.optional_text("received_at")?,
        updated_at: row.optional_text("updated_at")?,
        detail: row.optional_text("detail")?,
        duplicates: row.int("duplicates")?,
        events: row.text("events")?,
    };
    Ok((key, columns.into_row()?))
}

/// Puts rows read in full into the `ReadModels` slot of their projection.
fn collect_rows<R: TextRow>(projection: Projection, rows: &[R]) -> Result<ReadModels> {
    let mut models = ReadModels::default();
    match projection {
        Projection::Positions => {
            models.positions = rows.iter().map(position_row).collect::<Result<_>>()?;
        }
        Projection::Trades => {
            models.trades = rows
                .iter()
                .map(|row| trade_row(row).map(|trade| (trade.key(), trade)))
                .collect::<Result<_>>()?;
        }
        Projection::DailyVolume => {
            models.daily_volume = rows.iter().map(daily_volume_row).collect::<Result<_>>()?;
        }
        Projection::Signals => {
            models.signals = rows.iter().map(signal_row).collect::<Result<_>>()?;
        }
    }
    Ok(models)
}

fn columns_of(projection: Projection) -> &'static str {
    match projection {
        Projection::Positions => POSITION_COLUMNS,
        Projection::Trades => TRADE_COLUMNS,
        Projection::DailyVolume => DAILY_VOLUME_COLUMNS,
        Projection::Signals => SIGNAL_COLUMNS,
    }
}
