//! The trader's read endpoints: `GET /api/positions`, `GET /api/trades`, `GET /api/signals/{id}`.
//! They answer from the read models (src/readside), so they lag the ledger by the projections'
//! catch-up (normally well under a second). Every read is scoped to the authenticated user: an id
//! of another account's signal is answered exactly like an unknown one.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::authenticated::Authenticated;
use super::error::{ApiError, ErrorBody, Result};
use super::AppState;
use crate::store::TradePage;

const DEFAULT_TRADES: i64 = 100;
const MAX_TRADES: i64 = 500;
/// Signal ids are derived digests well under this; anything longer is not one.
const LONGEST_SIGNAL_ID: usize = 256;

// The answers' fields are in alphabetical order: the order of the `json!` objects they replaced,
// so the bytes are unchanged. Amounts are exact decimals written as strings, never floats.

#[derive(Debug, Serialize, ToSchema)]
pub struct Positions {
    /// One per market the account ever traded, flat ones included.
    pub positions: Vec<Position>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Position {
    #[schema(example = "65000.5")]
    pub average_entry_price: String,
    #[schema(example = "BTC-USD")]
    pub market: String,
    #[schema(example = "12.5")]
    pub realized_pnl_usd: String,
    /// `long`, `short` or `flat`.
    #[schema(example = "long")]
    pub side: &'static str,
    /// Signed: negative is short.
    #[schema(example = "0.01")]
    pub size: String,
}

#[utoipa::path(
    get,
    path = "/api/positions",
    tag = "trader",
    summary = "The caller's positions",
    responses(
        (status = 200, description = "Every market the account holds or held", body = Positions),
        (status = 401, description = "INVALID_TOKEN", body = ErrorBody),
        (status = 429, description = "LOCKED_OUT: too many failed authentications", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn positions(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
) -> Result<Json<Positions>> {
    let rows = state
        .store
        .read_models()
        .account_positions(&user.user_id)
        .await
        .map_err(ApiError::internal)?;
    let positions = rows
        .into_iter()
        .map(|(market, row)| Position {
            average_entry_price: row.average_entry_price.to_string(),
            market,
            realized_pnl_usd: row.realized_pnl_usd.to_string(),
            side: row.side(),
            size: row.size.to_string(),
        })
        .collect();
    Ok(Json(Positions { positions }))
}

/// Read as text and checked here, so a bad value gets its own code and message.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TradesQuery {
    /// Trades per page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 0)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trades {
    /// Present when older trades remain: pass it as `cursor`.
    #[schema(example = "42")]
    pub next_cursor: Option<String>,
    pub trades: Vec<Trade>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trade {
    #[schema(example = "lh-5f0c0e38-8a4b-5f43-9d6a-4d2b7f5f7b1a")]
    pub client_order_id: String,
    pub exchange_order_id: String,
    #[schema(example = "0.325")]
    pub fee_usd: String,
    #[schema(format = DateTime)]
    pub filled_at: String,
    #[schema(example = "BTC-USD")]
    pub market: String,
    #[schema(example = "65000.5")]
    pub price: String,
    /// `buy` or `sell`.
    #[schema(example = "buy")]
    pub side: String,
    pub signal_id: String,
    #[schema(example = "0.01")]
    pub size: String,
}

/// Newest first; `next_cursor` (when present) fetches the older ones.
#[utoipa::path(
    get,
    path = "/api/trades",
    tag = "trader",
    summary = "The caller's fills, newest first",
    params(TradesQuery),
    responses(
        (status = 200, description = "A page of fills", body = Trades),
        (status = 400, description = "INVALID_QUERY, INVALID_LIMIT, INVALID_CURSOR", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN", body = ErrorBody),
        (status = 429, description = "LOCKED_OUT: too many failed authentications", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn trades(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    query: std::result::Result<Query<TradesQuery>, QueryRejection>,
) -> Result<Json<Trades>> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            "The query string could not be read",
        )
    })?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_TRADES,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_TRADES).contains(limit))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_LIMIT",
                    format!("limit must be a whole number from 1 to {MAX_TRADES}"),
                )
            })?,
    };
    let before = match query.cursor.as_deref() {
        None => None,
        // Positions are stored as 64-bit signed integers: anything past them is no cursor of
        // ours (and used to reach the store, which refused it as a 500).
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .and_then(|cursor| usize::try_from(cursor).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "INVALID_CURSOR",
                        "cursor must be a next_cursor from an earlier answer",
                    )
                })?,
        ),
    };
    let rows = state
        .store
        .read_models()
        .account_trades(&user.user_id, TradePage { before, limit })
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|trade| trade.sequence.to_string()))
        .flatten();
    let trades = rows
        .into_iter()
        .map(|trade| Trade {
            client_order_id: trade.client_order_id,
            exchange_order_id: trade.exchange_order_id,
            fee_usd: trade.fee_usd.to_string(),
            filled_at: trade.filled_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            market: trade.market,
            price: trade.price.to_string(),
            side: trade.side,
            signal_id: trade.signal_id,
            size: trade.size.to_string(),
        })
        .collect();
    Ok(Json(Trades {
        next_cursor,
        trades,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Signal {
    /// Why it was rejected or failed, in the ledger's words.
    pub detail: Option<String>,
    /// Later alerts with the same key, recorded as duplicates of this one.
    pub duplicates: u64,
    /// Every event of the signal, in the account's order.
    pub events: Vec<SignalEvent>,
    #[schema(example = "BTC-USD")]
    pub market: Option<String>,
    /// The decision or execution result: `accepted`, `rejected`, `filled`, ...
    #[schema(example = "filled")]
    pub outcome: String,
    #[schema(format = DateTime)]
    pub received_at: Option<String>,
    pub signal_id: String,
    /// Where it stands: `received`, `accepted`, `submitted`, `filled`, `notified`, ...
    #[schema(example = "notified")]
    pub status: String,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignalEvent {
    #[schema(example = "OrderFilled")]
    pub event_type: String,
    #[schema(format = DateTime)]
    pub recorded_at: Option<String>,
    /// The event's sequence number in the account.
    pub sequence: usize,
}

#[utoipa::path(
    get,
    path = "/api/signals/{signal_id}",
    tag = "trader",
    summary = "One of the caller's signals, with its events",
    params(("signal_id" = String, Path, max_length = 256, description = "As the webhook answered it")),
    responses(
        (status = 200, description = "The signal and where it stands", body = Signal),
        (status = 401, description = "INVALID_TOKEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such signal in the caller's account", body = ErrorBody),
        (status = 429, description = "LOCKED_OUT: too many failed authentications", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn signal(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    signal_id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Signal>> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such signal");
    let Ok(Path(signal_id)) = signal_id else {
        return Err(not_found());
    };
    if signal_id.len() > LONGEST_SIGNAL_ID {
        return Err(not_found());
    }
    let row = state
        .store
        .read_models()
        .account_signal(&user.user_id, &signal_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    };
    let events = row
        .events
        .into_iter()
        .map(|event| SignalEvent {
            event_type: event.event_type,
            recorded_at: time(event.recorded_at),
            sequence: event.sequence,
        })
        .collect();
    Ok(Json(Signal {
        detail: row.detail,
        duplicates: row.duplicates,
        events,
        market: row.market,
        outcome: row.outcome,
        received_at: time(row.received_at),
        signal_id,
        status: row.status,
        updated_at: time(row.updated_at),
    }))
}
