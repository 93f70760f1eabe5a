//! `POST /api/webhook?token=...`: seed 003's alert, answered 200 only once it is in the ledger.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::error::{ApiError, Result};
use super::AppState;
use crate::guard::Presented;
use crate::ingest::ReceiptStatus;

pub async fn receive(
    State(state): State<AppState>,
    query: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let received_at = Utc::now();
    let token = query
        .ok()
        .and_then(|Query(mut params)| params.remove("token"))
        .unwrap_or_default();
    // guard: lockout before the store lookup; count the outcome; then the user's rate limit.
    state.guard.check_lockout(Presented::Token(&token))?;
    let account_id = state
        .authenticator
        .authenticate(&token)
        .await
        .map_err(ApiError::internal)?;
    state
        .guard
        .record_authentication(Presented::Token(&token), account_id.is_some());
    let account_id = account_id.ok_or_else(ApiError::invalid_token)?;
    state.guard.admit(&account_id, None)?;
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "INVALID_BODY",
            "The request body could not be read (too large or cut short)",
        )
    })?;
    let request_id = headers
        .get(super::REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let receipt = state
        .ingest
        .receive(&account_id, &body, received_at, request_id)
        .await?;
    let mut answer = json!({ "signal_id": receipt.signal_id.0 });
    match receipt.status {
        ReceiptStatus::Accepted => answer["status"] = "accepted".into(),
        ReceiptStatus::Duplicate => answer["status"] = "duplicate".into(),
        ReceiptStatus::Rejected { reason } => {
            answer["status"] = "rejected".into();
            answer["reason"] = reason.into();
        }
    }
    tracing::info!(account_id, signal_id = %receipt.signal_id, status = %answer["status"], "signal recorded");
    Ok(Json(answer))
}
