//! Trying the set-up end to end: a test notification through the trader's channel, and a test
//! signal through the real path (ingest → ledger → saga → paper exchange), refused unless the
//! account trades on paper: a test never trades real money.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use aggregates::{AccountCommand, AccountError, Venue};

use super::{body, context, current, ledger_error, trader_by};
use crate::http::authenticated::Authenticated;
use crate::http::error::{ApiError, ErrorBody, Result};
use crate::http::webhook::ReceiptState;
use crate::http::AppState;
use crate::ingest::{Admission, IngestError, ReceiptStatus};
use crate::ledger::LedgerError;

const TEST_MESSAGE: &str = "ledgerhook: this is a test notification. If you can read it, your \
     trade notifications will reach you here.";

/// Fields in alphabetical order, as the `json!` objects these replaced: the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestNotification {
    /// `telegram` or `log`.
    pub channel: &'static str,
    pub delivered: bool,
    /// Why it was not delivered.
    pub reason: Option<String>,
}

/// `POST /api/settings/test-notification`: sent through the channel trade notifications use,
/// recorded (`TestNotificationSent`), answered with whether it arrived.
#[utoipa::path(
    post,
    path = "/api/settings/test-notification",
    tag = "settings",
    summary = "Send a test notification through the caller's channel",
    responses(
        (status = 200, description = "Sent, or why not", body = TestNotification),
        (status = 404, description = "NO_ACCOUNT", body = ErrorBody),
        (status = 422, description = "INVALID_SETTING", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "CONTENDED: the account is busy, retry", body = ErrorBody),
    )
)]
pub async fn test_notification(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
) -> Result<Json<TestNotification>> {
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
    Ok(Json(TestNotification {
        channel,
        delivered: sent.is_ok(),
        reason,
    }))
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSignal {
    /// As an alert's `symbol`, e.g. `BTC-USD` or `BTCUSDT.P`; absent: `BTC-USD`, the market
    /// every venue lists.
    #[serde(default = "default_test_symbol")]
    #[schema(example = "BTC-USD")]
    symbol: String,
    /// `buy`, `sell` or `close`, as an alert's `side`; absent: `buy`.
    #[serde(default = "default_test_action")]
    #[schema(example = "buy")]
    action: String,
    /// Base units, as text; absent: the account's default order size.
    #[schema(example = "0.001")]
    size: Option<String>,
}

fn default_test_symbol() -> String {
    "BTC-USD".to_owned()
}

fn default_test_action() -> String {
    "buy".to_owned()
}

/// The webhook's answer, marked as a test. Fields in alphabetical order, as the `json!` object
/// it replaced: the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestSignalReceipt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub signal_id: String,
    pub status: ReceiptState,
    /// Always true.
    pub test: bool,
}

/// `POST /api/settings/test-signal`: recorded and executed as an alert would be, under an id of
/// its own (so it is never a duplicate of anything), answered as the webhook answers.
#[utoipa::path(
    post,
    path = "/api/settings/test-signal",
    tag = "settings",
    summary = "Send a test signal through the real path, on the paper venue only",
    request_body = TestSignal,
    responses(
        (status = 200, description = "Recorded: accepted, duplicate or rejected", body = TestSignalReceipt),
        (status = 400, description = "INVALID_BODY, INVALID_PAYLOAD", body = ErrorBody),
        (status = 404, description = "NO_ACCOUNT", body = ErrorBody),
        (status = 409, description = "VENUE_NOT_PAPER: a test never trades real money", body = ErrorBody),
        (status = 422, description = "INVALID_MARKET, INVALID_SIZE, NO_REFERENCE_PRICE", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: the account's alert rate", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "EXCHANGE_UNAVAILABLE, CONTENDED: nothing was recorded, retry", body = ErrorBody),
    )
)]
pub async fn test_signal(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<TestSignal>, JsonRejection>,
) -> Result<Json<TestSignalReceipt>> {
    let received_at = Utc::now();
    let request = body(request)?;
    let (_, venue) = current(&state, &user.user_id).await?;
    // Checked here for an account whose venue is its user row's; the account checks it again
    // under its lock for one chosen in its ledger.
    if venue != Venue::Paper {
        return Err(not_on_paper(venue));
    }
    let quota = crate::http::webhook::admit_alert(&state, &user)?;
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
        .receive_admitted(
            &user.user_id,
            &alert,
            received_at,
            request_id,
            Admission {
                quota: Some(quota),
                paper_only: true,
            },
        )
        .await
    {
        Ok(receipt) => receipt,
        // The venue changed since it was checked above: the account refused, nothing recorded.
        Err(IngestError::Ledger(LedgerError::Rejected(AccountError::NotOnPaper(venue)))) => {
            return Err(not_on_paper(venue))
        }
        Err(error) => return Err(error.into()),
    };
    let (status, reason, rule) = match receipt.status {
        ReceiptStatus::Accepted => (ReceiptState::Accepted, None, None),
        ReceiptStatus::Duplicate => (ReceiptState::Duplicate, None, None),
        ReceiptStatus::Rejected { reason, rule } => (ReceiptState::Rejected, Some(reason), rule),
    };
    Ok(Json(TestSignalReceipt {
        reason,
        rule,
        signal_id: receipt.signal_id.0,
        status,
        test: true,
    }))
}
