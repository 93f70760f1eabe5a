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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use aggregates::SignalId;
use projections::{Selection, Timeline};

use super::authenticated::Authenticated;
use super::error::{ApiError, ErrorBody, Result};
use super::paging;
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

/// Read as text and checked here, so a bad value gets its own code and message.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignalsQuery {
    /// Signals per page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    cursor: Option<String>,
}

// The answers' fields are in alphabetical order: the order of the `json!` objects they replaced,
// so the bytes are unchanged.

#[derive(Debug, Serialize, ToSchema)]
pub struct Signals {
    /// Present when older signals remain: pass it as `cursor`.
    pub next_cursor: Option<String>,
    pub signals: Vec<SignalSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignalSummary {
    /// Why it was rejected or failed, in the ledger's words.
    pub detail: Option<String>,
    pub duplicates: u64,
    #[schema(example = "BTC-USD")]
    pub market: Option<String>,
    #[schema(example = "filled")]
    pub outcome: String,
    #[schema(format = DateTime)]
    pub received_at: Option<String>,
    pub signal_id: String,
    #[schema(example = "notified")]
    pub status: String,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// Newest first; `next_cursor` (when present) fetches the older ones.
#[utoipa::path(
    get,
    path = "/api/signals",
    tag = "trader",
    summary = "The caller's signals, newest first",
    params(SignalsQuery),
    responses(
        (status = 200, description = "A page of signals", body = Signals),
        (status = 400, description = "INVALID_QUERY, INVALID_LIMIT, INVALID_CURSOR", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    query: std::result::Result<Query<SignalsQuery>, QueryRejection>,
) -> Result<Json<Signals>> {
    let query = paging::query(query)?;
    let limit = paging::limit(query.limit.as_deref(), DEFAULT_SIGNALS, MAX_SIGNALS)?;
    let before = paging::cursor::<u32>(query.cursor.as_deref())?.map(i64::from);
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
    let signals = rows
        .into_iter()
        .map(|(signal_id, row)| SignalSummary {
            detail: row.detail,
            duplicates: row.duplicates,
            market: row.market,
            outcome: row.outcome,
            received_at: time(row.received_at),
            signal_id,
            status: row.status,
            updated_at: time(row.updated_at),
        })
        .collect();
    Ok(Json(Signals {
        next_cursor,
        signals,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Story {
    /// The signal's events in order, each with what it changed.
    pub events: Vec<StoryStep>,
    pub signal_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoryStep {
    /// What the event changed in the account's state (as `ledgerhook replay` shows it): one
    /// object per changed path.
    #[schema(value_type = Vec<Object>)]
    pub changes: Value,
    #[schema(example = "OrderFilled")]
    pub event_type: String,
    /// The event as recorded (its variant's name, with its fields when it has any).
    pub payload: Value,
    #[schema(format = DateTime)]
    pub recorded_at: Option<String>,
    /// The event's sequence number in the account.
    pub sequence: usize,
}

/// Every event of the signal, in order, each with what it changed in the account.
#[utoipa::path(
    get,
    path = "/api/signals/{signal_id}/story",
    tag = "trader",
    summary = "One of the caller's signals told event by event, with what each changed",
    params(("signal_id" = String, Path, max_length = 64, description = "As the webhook answered it")),
    responses(
        (status = 200, description = "The signal's story", body = Story),
        (status = 404, description = "NOT_FOUND: no such signal in the caller's account", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn story(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    signal_id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Story>> {
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
    let mut folded = projections::Folded::default();
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
            events.push(StoryStep {
                changes: serde_json::to_value(&step.changes).map_err(ApiError::internal)?,
                event_type: step.meta.event_type.to_string(),
                payload: serde_json::to_value(step.event).map_err(ApiError::internal)?,
                recorded_at: time(step.meta.recorded_at),
                sequence: step.sequence,
            });
        }
        folded = steps.into_state();
    }
    if events.is_empty() {
        return Err(not_found());
    }
    Ok(Json(Story { events, signal_id }))
}
