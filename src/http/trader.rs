//! The trader's read endpoints: `GET /api/positions`, `GET /api/trades`, `GET /api/signals/{id}`.
//! They answer from the read models (src/readside), so they lag the ledger by the projections'
//! catch-up (normally well under a second). Every read is scoped to the authenticated user: an id
//! of another account's signal is answered exactly like an unknown one.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{json, Value};

use super::authenticated::Authenticated;
use super::error::{ApiError, Result};
use super::AppState;
use crate::store::TradePage;

const DEFAULT_TRADES: i64 = 100;
const MAX_TRADES: i64 = 500;
/// Signal ids are derived digests well under this; anything longer is not one.
const LONGEST_SIGNAL_ID: usize = 256;

pub async fn positions(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
) -> Result<Json<Value>> {
    let rows = state
        .store
        .read_models()
        .account_positions(&user.user_id)
        .await
        .map_err(ApiError::internal)?;
    let positions: Vec<Value> = rows
        .iter()
        .map(|(market, row)| {
            json!({
                "market": market,
                "side": row.side(),
                "size": row.size.to_string(),
                "average_entry_price": row.average_entry_price.to_string(),
                "realized_pnl_usd": row.realized_pnl_usd.to_string(),
            })
        })
        .collect();
    Ok(Json(json!({ "positions": positions })))
}

#[derive(Debug, Deserialize)]
pub struct TradesQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// Newest first; `next_cursor` (when present) fetches the older ones.
pub async fn trades(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    query: std::result::Result<Query<TradesQuery>, QueryRejection>,
) -> Result<Json<Value>> {
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
        Some(text) => Some(text.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_CURSOR",
                "cursor must be a next_cursor from an earlier answer",
            )
        })?),
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
    let trades: Vec<Value> = rows
        .iter()
        .map(|trade| {
            json!({
                "signal_id": trade.signal_id,
                "client_order_id": trade.client_order_id,
                "exchange_order_id": trade.exchange_order_id,
                "market": trade.market,
                "side": trade.side,
                "size": trade.size.to_string(),
                "price": trade.price.to_string(),
                "fee_usd": trade.fee_usd.to_string(),
                "filled_at": trade.filled_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            })
        })
        .collect();
    Ok(Json(
        json!({ "trades": trades, "next_cursor": next_cursor }),
    ))
}

pub async fn signal(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    signal_id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
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
    let events: Vec<Value> = row
        .events
        .iter()
        .map(|event| {
            json!({
                "sequence": event.sequence,
                "event_type": event.event_type,
                "recorded_at": time(event.recorded_at),
            })
        })
        .collect();
    Ok(Json(json!({
        "signal_id": signal_id,
        "status": row.status,
        "outcome": row.outcome,
        "market": row.market,
        "received_at": time(row.received_at),
        "updated_at": time(row.updated_at),
        "detail": row.detail,
        "duplicates": row.duplicates,
        "events": events,
    })))
}
