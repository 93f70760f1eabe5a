//! Operator endpoints: `POST /api/operator/halt` and `POST /api/operator/resume`, for one account
//! (`user_id`) or, without one, the global emergency stop. Operators only; recorded with
//! `by = staff:<staff_id>` (the account's `TradingHalted`/`TradingResumed`, or the emergency
//! stop's own stream), the trader told as of any operator's halt.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use aggregates::{AccountCommand, AccountError};

use super::error::{ApiError, ErrorBody, Result};
use super::staff_authenticated::StaffAuthenticated;
use super::AppState;
use crate::ledger::{EventContext, LedgerError};
use crate::staff::StaffRole;

const LONGEST_REASON: usize = 500;
/// User ids are UUIDs; anything longer names no account.
const LONGEST_USER_ID: usize = 64;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    /// The account; absent: every account (the global emergency stop).
    #[schema(min_length = 1, max_length = 64)]
    user_id: Option<String>,
    /// Recorded with the change and told to the trader: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    reason: String,
}

/// What the switch did. Fields in alphabetical order: the order of the `json!` objects they
/// replaced, so the bytes are unchanged.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Switched {
    Global(GlobalSwitch),
    Account(AccountSwitch),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GlobalSwitch {
    /// `staff:<staff_id>`.
    pub by: String,
    /// Whether this request changed anything (false: it was already so).
    pub changed: bool,
    /// Whether the emergency stop is engaged now.
    pub emergency_stop: bool,
    #[schema(example = "global")]
    pub scope: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSwitch {
    pub by: String,
    pub changed: bool,
    /// Whether the account is halted now.
    pub halted: bool,
    #[schema(example = "account")]
    pub scope: &'static str,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy)]
enum Switch {
    Halt,
    Resume,
}

#[utoipa::path(
    post,
    path = "/api/operator/halt",
    tag = "operator",
    summary = "Halt one account's trading, or every account's (the emergency stop)",
    request_body = SwitchRequest,
    responses(
        (status = 200, description = "Halted (or already halted)", body = Switched),
        (status = 400, description = "INVALID_BODY", body = ErrorBody),
        (status = 404, description = "NO_ACCOUNT: no such account", body = ErrorBody),
        (status = 422, description = "INVALID_REQUEST: reason empty or too long", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn halt(
    State(state): State<AppState>,
    staff: StaffAuthenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<SwitchRequest>, JsonRejection>,
) -> Result<Json<Switched>> {
    switch(state, staff, headers, request, Switch::Halt).await
}

#[utoipa::path(
    post,
    path = "/api/operator/resume",
    tag = "operator",
    summary = "Resume one account's trading, or release the emergency stop",
    request_body = SwitchRequest,
    responses(
        (status = 200, description = "Resumed (or already trading)", body = Switched),
        (status = 400, description = "INVALID_BODY", body = ErrorBody),
        (status = 404, description = "NO_ACCOUNT: no such account", body = ErrorBody),
        (status = 422, description = "INVALID_REQUEST: reason empty or too long", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    staff: StaffAuthenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<SwitchRequest>, JsonRejection>,
) -> Result<Json<Switched>> {
    switch(state, staff, headers, request, Switch::Resume).await
}

async fn switch(
    state: AppState,
    staff: StaffAuthenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<SwitchRequest>, JsonRejection>,
    switch: Switch,
) -> Result<Json<Switched>> {
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
        return Ok(Json(Switched::Global(GlobalSwitch {
            by,
            changed,
            emergency_stop: state.emergency.engaged().is_some(),
            scope: "global",
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
    Ok(Json(Switched::Account(AccountSwitch {
        by,
        changed: !committed.events.is_empty(),
        halted: matches!(switch, Switch::Halt),
        scope: "account",
        user_id,
    })))
}
