//! The trader's signals: `GET /api/signals` (newest first, from the read models) and
//! `GET /api/signals/{id}/story` (every event of one signal in order with what it changed in the
//! account, from the replay timeline, `projections::Timeline`, as `ledgerhook replay --signal`
//! shows it). Scoped to the authenticated user: another account's signal id is answered exactly
//! like an unknown one.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use aggregates::{SignalId, TradingAccount};
use projections::{Selection, Timeline};

use super::authenticated::Authenticated;
use super::error::{ApiError, Result};
use super::AppState;
use crate::ledger::RecordedEvent;

const DEFAULT_SIGNALS: i64 = 50;
const MAX_SIGNALS: i64 = 200;
/// Signal ids are UUIDs; anything longer is not one.
const LONGEST_SIGNAL_ID: usize = 64;
/// Events read from the ledger at a time while a story is folded.
const PAGE_SIZE: i64 = 1_000;

fn time(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[derive(Debug, Deserialize)]
pub struct SignalsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// Newest first; `next_cursor` (when present) fetches the older ones.
pub async fn list(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    query: std::result::Result<Query<SignalsQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            "The query string could not be read",
        )
    })?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_SIGNALS,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_SIGNALS).contains(limit))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_LIMIT",
                    format!("limit must be a whole number from 1 to {MAX_SIGNALS}"),
                )
            })?,
    };
    let before = match query.cursor.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<u32>().map(i64::from).map_err(|_| {
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
        .account_signals(&user.user_id, before, limit)
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().and_then(|(_, row)| row.events.first()))
        .flatten()
        .map(|first| first.sequence.to_string());
    let signals: Vec<Value> = rows
        .iter()
        .map(|(signal_id, row)| {
            json!({
                "signal_id": signal_id,
                "status": row.status,
                "outcome": row.outcome,
                "market": row.market,
                "received_at": time(row.received_at),
                "updated_at": time(row.updated_at),
                "detail": row.detail,
                "duplicates": row.duplicates,
            })
        })
        .collect();
    Ok(Json(
        json!({ "signals": signals, "next_cursor": next_cursor }),
    ))
}

/// Every event of the signal, in order, each with what it changed in the account.
pub async fn story(
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
    let ledger = &state.ledger;
    let account = user.user_id.as_str();
    let selection = Selection {
        as_of: None,
        signal: Some(SignalId(signal_id.clone())),
    };
    // One pass over the account's history, a page at a time: every event is folded, only the
    // signal's become steps. A signal of another account has none here: the same 404.
    let mut folded = TradingAccount::default();
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<RecordedEvent> = ledger
            .history_page(account, after, PAGE_SIZE)
            .await
            .map_err(ApiError::internal)?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        let mut steps = Timeline::new(page.iter().map(|r| (r.sequence, r, &r.event)))
            .from_state(std::mem::take(&mut folded))
            .showing(&selection);
        for step in steps.by_ref() {
            let step = step.map_err(ApiError::internal)?;
            events.push(json!({
                "sequence": step.sequence,
                "event_type": step.meta.event_type,
                "recorded_at": time(step.meta.recorded_at),
                "payload": step.event,
                "changes": step.changes,
            }));
        }
        folded = steps.into_state();
    }
    if events.is_empty() {
        return Err(not_found());
    }
    Ok(Json(json!({ "signal_id": signal_id, "events": events })))
}
