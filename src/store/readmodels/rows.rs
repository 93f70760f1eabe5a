//! The read-model tables' rows as the columns hold them, written and read the same way on both
//! stores: decimals, times and days as text (so a row reads back exactly as written), sequences
//! and counts as bigint. A value that does not read back is a decode error.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;

use projections::{
    DailyVolumeKey, DailyVolumeRow, PositionKey, PositionRow, Projection, ReadModels, SignalKey,
    SignalRow, TradeRow,
};

pub(super) use crate::store::bulk::Cell;
use crate::store::{decode, Result};

/// A projection's table: its columns (the key's first), and what an upsert changes on a key
/// already there (`None`: insert only; a trade applied twice is a broken invariant and fails).
pub(super) struct Columns {
    pub names: &'static str,
    pub key: &'static str,
    pub on_conflict: Option<&'static str>,
    /// Each column's array type for PostgreSQL's bulk insert (`crate::store::bulk`).
    pub pg_arrays: &'static [&'static str],
}

pub(super) fn columns(projection: Projection) -> Columns {
    match projection {
        Projection::Positions => Columns {
            names: "account_id, market, size, side, average_entry_price, realized_pnl_usd, \
                    last_sequence",
            key: "(account_id, market)",
            pg_arrays: &[
                "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "bigint[]",
            ],
            on_conflict: Some(
                "size = excluded.size, side = excluded.side, \
                 average_entry_price = excluded.average_entry_price, \
                 realized_pnl_usd = excluded.realized_pnl_usd, \
                 last_sequence = excluded.last_sequence",
            ),
        },
        Projection::Trades => Columns {
            names: "account_id, sequence, signal_id, client_order_id, exchange_order_id, market, \
                    side, size, price, fee_usd, filled_at",
            key: "(account_id, sequence)",
            pg_arrays: &[
                "text[]", "bigint[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]",
                "text[]", "text[]", "text[]",
            ],
            on_conflict: None,
        },
        Projection::DailyVolume => Columns {
            names: "account_id, day, traded_usd, fills",
            key: "(account_id, day)",
            pg_arrays: &["text[]", "text[]", "text[]", "bigint[]"],
            on_conflict: Some("traded_usd = excluded.traded_usd, fills = excluded.fills"),
        },
        Projection::Signals => Columns {
            names: "account_id, signal_id, status, outcome, market, received_at, updated_at, \
                    detail, duplicates, events",
            key: "(account_id, signal_id)",
            pg_arrays: &[
                "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]",
                "bigint[]", "text[]",
            ],
            on_conflict: Some(
                "status = excluded.status, outcome = excluded.outcome, market = excluded.market, \
                 received_at = excluded.received_at, updated_at = excluded.updated_at, \
                 detail = excluded.detail, duplicates = excluded.duplicates, \
                 events = excluded.events",
            ),
        },
    }
}

/// A projection's rows in `models`, as cells in `columns(projection).names` order.
pub(super) fn cells(projection: Projection, models: &ReadModels) -> Result<Vec<Vec<Cell>>> {
    use Cell::{Int, MaybeText, Text};
    match projection {
        Projection::Positions => models
            .positions
            .iter()
            .map(|((account, market), row)| {
                Ok(vec![
                    Text(account.clone()),
                    Text(market.clone()),
                    Text(decimal_text(row.size)),
                    Text(row.side().to_owned()),
                    Text(decimal_text(row.average_entry_price)),
                    Text(decimal_text(row.realized_pnl_usd)),
                    Int(decode::int("a position's sequence", row.last_sequence)?),
                ])
            })
            .collect(),
        Projection::Trades => models
            .trades
            .values()
            .map(|trade| {
                Ok(vec![
                    Text(trade.account_id.clone()),
                    Int(decode::int("a trade's sequence", trade.sequence)?),
                    Text(trade.signal_id.clone()),
                    Text(trade.client_order_id.clone()),
                    Text(trade.exchange_order_id.clone()),
                    Text(trade.market.clone()),
                    Text(trade.side.clone()),
                    Text(decimal_text(trade.size)),
                    Text(decimal_text(trade.price)),
                    Text(decimal_text(trade.fee_usd)),
                    Text(time_text(trade.filled_at)),
                ])
            })
            .collect(),
        Projection::DailyVolume => models
            .daily_volume
            .iter()
            .map(|((account, day), row)| {
                Ok(vec![
                    Text(account.clone()),
                    Text(day_text(*day)),
                    Text(decimal_text(row.traded_usd)),
                    Int(decode::int("a day's fill count", row.fills)?),
                ])
            })
            .collect(),
        Projection::Signals => models
            .signals
            .iter()
            .map(|((account, signal), row)| {
                let events = serde_json::to_string(&row.events)
                    .map_err(|error| decode::error("a signal's events", error))?;
                Ok(vec![
                    Text(account.clone()),
                    Text(signal.clone()),
                    Text(row.status.clone()),
                    Text(row.outcome.clone()),
                    MaybeText(row.market.clone()),
                    MaybeText(row.received_at.map(time_text)),
                    MaybeText(row.updated_at.map(time_text)),
                    MaybeText(row.detail.clone()),
                    Int(decode::int("a signal's duplicate count", row.duplicates)?),
                    Text(events),
                ])
            })
            .collect(),
    }
}

/// The keys `keys` names of `projection`'s rows, both key columns as text.
pub(super) fn key_cells(
    projection: Projection,
    keys: &projections::TouchedKeys,
) -> Vec<[String; 2]> {
    match projection {
        Projection::Positions => keys
            .positions
            .iter()
            .map(|(a, m)| [a.clone(), m.clone()])
            .collect(),
        Projection::DailyVolume => keys
            .daily_volume
            .iter()
            .map(|(account, day)| [account.clone(), day_text(*day)])
            .collect(),
        Projection::Signals => keys
            .signals
            .iter()
            .map(|(a, s)| [a.clone(), s.clone()])
            .collect(),
        Projection::Trades => Vec::new(),
    }
}

/// The three column types the read-model tables use, read the same way from either store's rows.
pub(super) trait TextRow {
    fn text(&self, column: &str) -> Result<String>;
    fn optional_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
}

impl<R: sqlx::Row> TextRow for R
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn optional_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
}

/// Puts one row of `projection`'s table into its slot of `models`.
pub(super) fn insert(
    models: &mut ReadModels,
    projection: Projection,
    row: &impl TextRow,
) -> Result<()> {
    match projection {
        Projection::Positions => {
            let (key, position) = position_row(row)?;
            models.positions.insert(key, position);
        }
        Projection::Trades => {
            let trade = trade_row(row)?;
            models.trades.insert(trade.key(), trade);
        }
        Projection::DailyVolume => {
            let (key, volume) = daily_volume_row(row)?;
            models.daily_volume.insert(key, volume);
        }
        Projection::Signals => {
            let (key, signal) = signal_row(row)?;
            models.signals.insert(key, signal);
        }
    }
    Ok(())
}

pub(super) fn position_row(row: &impl TextRow) -> Result<(PositionKey, PositionRow)> {
    Ok((
        (row.text("account_id")?, row.text("market")?),
        PositionRow {
            size: decimal(row, "size")?,
            average_entry_price: decimal(row, "average_entry_price")?,
            realized_pnl_usd: decimal(row, "realized_pnl_usd")?,
            last_sequence: decode::int("a position's sequence", row.int("last_sequence")?)?,
        },
    ))
}

pub(super) fn trade_row(row: &impl TextRow) -> Result<TradeRow> {
    Ok(TradeRow {
        account_id: row.text("account_id")?,
        sequence: decode::int("a trade's sequence", row.int("sequence")?)?,
        signal_id: row.text("signal_id")?,
        client_order_id: row.text("client_order_id")?,
        exchange_order_id: row.text("exchange_order_id")?,
        market: row.text("market")?,
        side: row.text("side")?,
        size: decimal(row, "size")?,
        price: decimal(row, "price")?,
        fee_usd: decimal(row, "fee_usd")?,
        filled_at: decode::time("a trade's time", &row.text("filled_at")?)?,
    })
}

fn daily_volume_row(row: &impl TextRow) -> Result<(DailyVolumeKey, DailyVolumeRow)> {
    Ok((
        (
            row.text("account_id")?,
            decode::day("a day", &row.text("day")?)?,
        ),
        DailyVolumeRow {
            traded_usd: decimal(row, "traded_usd")?,
            fills: decode::int("a day's fill count", row.int("fills")?)?,
        },
    ))
}

pub(super) fn signal_row(row: &impl TextRow) -> Result<(SignalKey, SignalRow)> {
    let time = |column| {
        row.optional_text(column)?
            .map(|text| decode::time("a signal's time", &text))
            .transpose()
    };
    let events = row.text("events")?;
    Ok((
        (row.text("account_id")?, row.text("signal_id")?),
        SignalRow {
            status: row.text("status")?,
            outcome: row.text("outcome")?,
            market: row.optional_text("market")?,
            received_at: time("received_at")?,
            updated_at: time("updated_at")?,
            detail: row.optional_text("detail")?,
            duplicates: decode::int("a signal's duplicate count", row.int("duplicates")?)?,
            events: serde_json::from_str(&events)
                .map_err(|_| decode::error("a signal's events", &events))?,
        },
    ))
}

fn decimal(row: &impl TextRow, column: &'static str) -> Result<Decimal> {
    decode::decimal(column, &row.text(column)?)
}

fn decimal_text(value: Decimal) -> String {
    value.normalize().to_string()
}

fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}
