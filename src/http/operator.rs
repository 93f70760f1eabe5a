//! Operator endpoints: `POST /api/operator/halt` and `POST /api/operator/resume`, for one account
//! (`user_id`) or, without one, the global emergency stop. Operators only; recorded with
//! `by = staff:<staff_id>` (the account's `TradingHalted`/`TradingResumed`, or the emergency
//! stop's own stream), the trader told as of any operator's halt.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use aggregates::{AccountCommand, AccountError};

use super::error::{ApiError, Result};
use super::staff_authenticated::StaffAuthenticated;
use super::AppState;
use crate::ledger::{EventContext, LedgerError};
use crate::staff::StaffRole;

const LONGEST_REASON: usize = 500;
/// User ids are UUIDs; anything longer names no account.
const LONGEST_USER_ID: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    user_id: Option<String>,
    reason: String,
}

#[derive(Debug, Clone, Copy)]
enum Switch {
    Halt,
    Resume,
}

pub async fn halt(
    State(state): State<AppState>,
    staff: StaffAuthenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<SwitchRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    switch(state, staff, headers, request, Switch::Halt).await
}

pub async fn resume(
    State(state): State<AppState>,
    staff: StaffAuthenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<SwitchRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    switch(state, staff, headers, request, Switch::Resume).await
}

async fn switch(
    state: AppState,
    staff: StaffAuthenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<SwitchRequest>, JsonRejection>,
    switch: Switch,
) -> Result<Json<Value>> {
    let member = staff.require(StaffRole::Operator)?;
    let Json(request) = request.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            format!(
                "The request body could not be read: {}",
                rejection.body_text()
            ),
        )
    })?;
    let invalid =
        |message: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST", message);
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > LONGEST_REASON {
        return Err(invalid(
            "reason must be 1 to 500 characters: it is recorded",
        ));
    }
    let by = format!("staff:{}", member.staff_id);
    let now = Utc::now();
    let Some(user_id) = request.user_id else {
        let changed = match switch {
            Switch::Halt => state.emergency.engage(&by, reason, now).await,
            Switch::Resume => state.emergency.release(&by, reason, now).await,
        }
        .map_err(ApiError::internal)?;
        return Ok(Json(json!({
            "scope": "global",
            "emergency_stop": state.emergency.engaged().is_some(),
            "changed": changed,
            "by": by,
        })));
    };
    let no_account = || ApiError::new(StatusCode::NOT_FOUND, "NO_ACCOUNT", "No such account");
    if user_id.is_empty() || user_id.len() > LONGEST_USER_ID {
        return Err(no_account());
    }
    let command = match switch {
        Switch::Halt => AccountCommand::HaltTrading {
            by: by.clone(),
            reason: reason.to_owned(),
            at: now,
        },
        Switch::Resume => AccountCommand::ResumeTrading {
            by: by.clone(),
            reason: reason.to_owned(),
            at: now,
        },
    };
    let request_id = super::request_id::of(&headers).map(str::to_owned);
    let context = EventContext::new(&by, now).with_request_id(request_id);
    let committed = match state.ledger.execute(&user_id, command, &context).await {
        Ok(committed) => committed,
        Err(LedgerError::Rejected(AccountError::NotOpened)) => return Err(no_account()),
        Err(error) => return Err(ApiError::internal(error)),
    };
    Ok(Json(json!({
        "scope": "account",
        "user_id": user_id,
        "halted": matches!(switch, Switch::Halt),
        "changed": !committed.events.is_empty(),
        "by": by,
    })))
}
