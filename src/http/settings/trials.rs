//! Trying the set-up end to end: a test notification through the trader's channel, and a test
//! signal through the real path (ingest → ledger → saga → paper exchange), refused unless the
//! account trades on paper: a test never trades real money.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use aggregates::{AccountCommand, AccountError, Venue};

use super::{body, context, current, ledger_error, trader_by};
use crate::guard::RateLimit;
use crate::http::authenticated::Authenticated;
use crate::http::error::{ApiError, Result};
use crate::http::AppState;
use crate::ingest::{IngestError, ReceiptStatus};
use crate::ledger::LedgerError;

const TEST_MESSAGE: &str = "ledgerhook: this is a test notification. If you can read it, your \
     trade notifications will reach you here.";

/// `POST /api/settings/test-notification`: sent through the channel trade notifications use,
/// recorded (`TestNotificationSent`), answered with whether it arrived.
pub async fn test_notification(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let channel = state.notifier.channel();
    let sent = state.notifier.notify(&user.user_id, TEST_MESSAGE).await;
    let reason = sent.as_ref().err().map(ToString::to_string);
    let by = trader_by(&user);
    let command = AccountCommand::RecordTestNotification {
        channel: channel.to_owned(),
        delivered: sent.is_ok(),
        reason: reason.clone(),
        by: by.clone(),
        at: Utc::now(),
    };
    state
        .ledger
        .execute(&user.user_id, command, &context(&by, &headers))
        .await
        .map_err(ledger_error)?;
    Ok(Json(json!({
        "channel": channel,
        "delivered": sent.is_ok(),
        "reason": reason,
    })))
}

fn not_on_paper(venue: Venue) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "VENUE_NOT_PAPER",
        format!(
            "Test signals trade on paper only, and this account trades on {venue}: switch the \
             venue to paper first"
        ),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSignal {
    /// Absent: `BTC-USD`, the market every venue lists.
    #[serde(default = "default_test_symbol")]
    symbol: String,
    /// `buy`, `sell` or `close`, as an alert's `side`; absent: `buy`.
    #[serde(default = "default_test_action")]
    action: String,
    /// Base units, as text; absent: the account's default order size.
    size: Option<String>,
}

fn default_test_symbol() -> String {
    "BTC-USD".to_owned()
}

fn default_test_action() -> String {
    "buy".to_owned()
}

/// `POST /api/settings/test-signal`: recorded and executed as an alert would be, under an id of
/// its own (so it is never a duplicate of anything), answered as the webhook answers.
pub async fn test_signal(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<TestSignal>, JsonRejection>,
) -> Result<Json<Value>> {
    let received_at = Utc::now();
    let request = body(request)?;
    let (_, venue) = current(&state, &user.user_id).await?;
    // Checked here for an account whose venue is its user row's; the account checks it again
    // under its lock for one chosen in its ledger.
    if venue != Venue::Paper {
        return Err(not_on_paper(venue));
    }
    let own_limit = user.rate_limit.and_then(|limit| {
        RateLimit::new(
            limit.requests,
            Duration::from_secs(u64::from(limit.window_seconds)),
        )
        .ok()
    });
    state.guard.admit(&user.user_id, own_limit)?;
    let mut alert = json!({
        "symbol": request.symbol,
        "side": request.action,
        "id": format!("test-signal-{}", uuid::Uuid::new_v4()),
    });
    if let Some(size) = request.size {
        alert["size"] = size.into();
    }
    let alert = serde_json::to_vec(&alert).map_err(ApiError::internal)?;
    let request_id = crate::http::request_id::of(&headers).map(str::to_owned);
    let receipt = match state
        .ingest
        .receive_paper_only(&user.user_id, &alert, received_at, request_id)
        .await
    {
        Ok(receipt) => receipt,
        // The venue changed since it was checked above: the account refused, nothing recorded.
        Err(IngestError::Ledger(LedgerError::Rejected(AccountError::NotOnPaper(venue)))) => {
            return Err(not_on_paper(venue))
        }
        Err(error) => return Err(error.into()),
    };
    let mut answer = json!({ "signal_id": receipt.signal_id.0, "test": true });
    match receipt.status {
        ReceiptStatus::Accepted => answer["status"] = "accepted".into(),
        ReceiptStatus::Duplicate => answer["status"] = "duplicate".into(),
        ReceiptStatus::Rejected { reason, rule } => {
            answer["status"] = "rejected".into();
            answer["reason"] = reason.into();
            if let Some(rule) = rule {
                answer["rule"] = rule.into();
            }
        }
    }
    Ok(Json(answer))
}
