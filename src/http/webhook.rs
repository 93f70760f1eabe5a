//! The two webhook schemes, answered 200 only once the signal is in the ledger:
//! - `POST /api/webhook?token=...` (seed 003);
//! - `POST /webhooks/{webhook_uuid}` with `"secret"` in the JSON body (seed 000).
//!
//! Every credential failure is the same 401 (`ApiError::invalid_token`); neither the token, the
//! secret nor the body is ever logged.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use aggregates::SignalQuota;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Result};
use super::guard::{before_lookup, counted, ClientAddress};
use super::AppState;
use crate::guard::{Presented, RateLimit};
use crate::ingest::payload::{AlertBody, TwoFactorAlertBody};
use crate::ingest::{Admission, ReceiptStatus};
use crate::users::AuthenticatedUser;

/// What the webhook answers once the signal is in the ledger. Fields in alphabetical order: the
/// order of the `json!` object it replaced, so the bytes are unchanged.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalReceipt {
    /// Only when `status` is `rejected`: `halted` (the account), `emergency_stop` (everyone),
    /// `stale`, `no_change`, `risk_rejected` (see `rule`), `not_recorded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "risk_rejected")]
    pub reason: Option<&'static str>,
    /// Only for `risk_rejected`: the risk rule that refused the order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The signal's id (for a duplicate, the original's): `GET /api/signals/{signal_id}`.
    pub signal_id: String,
    pub status: ReceiptState,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// Approved by the risk rules; the order is placed after this answer.
    Accepted,
    /// A resend of an alert already recorded; nothing new happens.
    Duplicate,
    /// Recorded and refused (see `reason`).
    Rejected,
}

impl ReceiptState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/webhook",
    tag = "webhook",
    summary = "Receive a TradingView alert (token in the URL)",
    description = "Seed 003's scheme: the user's webhook token in the `token` query parameter. \
        Answered 200 once the signal is durably recorded, whatever the risk rules decided; 5xx \
        only when nothing was recorded (TradingView resends only on 5xx).",
    security(("webhook_token" = [])),
    request_body(
        description = "The alert: JSON, whatever the Content-Type (TradingView sends text/plain).",
        content((AlertBody = "application/json"), (String = "text/plain")),
    ),
    responses(
        (status = 200, description = "Recorded: accepted, duplicate or rejected", body = SignalReceipt),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_BODY: the alert cannot be read", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN: missing, unknown or wrong credential", body = ErrorBody),
        (status = 403, description = "IP_NOT_ALLOWED: outside the configured allowlist", body = ErrorBody),
        (status = 413, description = "INVALID_BODY: larger than 64 KiB", body = ErrorBody),
        (status = 422, description = "INVALID_MARKET, INVALID_SIZE, NO_REFERENCE_PRICE", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED, LOCKED_OUT", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR: nothing was recorded", body = ErrorBody),
        (status = 503, description = "EXCHANGE_UNAVAILABLE, CONTENDED, STORE_UNAVAILABLE: nothing was recorded, retry", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    query: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<SignalReceipt>> {
    let received_at = Utc::now();
    // Exactly one `token`: with two, which one counts would be the parser's guess.
    let token = match query {
        Ok(Query(params)) => {
            let mut tokens = params.into_iter().filter(|(name, _)| name == "token");
            match (tokens.next(), tokens.next()) {
                (Some((_, token)), None) => token,
                _ => String::new(),
            }
        }
        Err(_) => String::new(),
    };
    let presented = Presented::Token(&token);
    before_lookup(&state, client, presented)?;
    let user = state
        .authenticator
        .authenticate_token(&token)
        .await
        .map_err(ApiError::store)?;
    let (user, quota) = admitted(&state, client, presented, user)?;
    let body = readable(body)?;
    record(&state, &user, quota, &body, &headers, received_at).await
}

#[utoipa::path(
    post,
    path = "/webhooks/{webhook_uuid}",
    tag = "webhook",
    summary = "Receive a TradingView alert (two-factor: uuid in the path, secret in the body)",
    description = "Seed 000's scheme: the user's webhook uuid in the path and the webhook secret \
        as the body's `secret` field (TradingView sends no headers, so the second factor travels \
        in the body). Answers as `POST /api/webhook`.",
    params(("webhook_uuid" = String, Path, description = "The user's webhook uuid")),
    // No security scheme can say "a secret in the body": named for readers (and /docs) instead.
    extensions(("x-credentials" = json!("the webhook uuid in the path and the `secret` in the body"))),
    request_body(
        description = "The alert with `secret`: JSON, whatever the Content-Type.",
        content((TwoFactorAlertBody = "application/json"), (String = "text/plain")),
    ),
    responses(
        (status = 200, description = "Recorded: accepted, duplicate or rejected", body = SignalReceipt),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_BODY: the alert cannot be read", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN: unknown uuid, missing or wrong secret", body = ErrorBody),
        (status = 403, description = "IP_NOT_ALLOWED: outside the configured allowlist", body = ErrorBody),
        (status = 413, description = "INVALID_BODY: larger than 64 KiB", body = ErrorBody),
        (status = 422, description = "INVALID_MARKET, INVALID_SIZE, NO_REFERENCE_PRICE", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED, LOCKED_OUT", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR: nothing was recorded", body = ErrorBody),
        (status = 503, description = "EXCHANGE_UNAVAILABLE, CONTENDED, STORE_UNAVAILABLE: nothing was recorded, retry", body = ErrorBody),
    )
)]
pub async fn receive_two_factor(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    webhook_uuid: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<SignalReceipt>> {
    let received_at = Utc::now();
    let Ok(Path(webhook_uuid)) = webhook_uuid else {
        return Err(ApiError::invalid_token());
    };
    let presented = Presented::WebhookUuid(&webhook_uuid);
    before_lookup(&state, client, presented)?;
    // The secret is in the body, so the body must be read before anyone is authenticated.
    let body = readable(body)?;
    let user = match secret_in(&body) {
        Some(secret) => state
            .authenticator
            .authenticate_two_factor(&webhook_uuid, &secret)
            .await
            .map_err(ApiError::store)?,
        None => None,
    };
    let (user, quota) = admitted(&state, client, presented, user)?;
    record(&state, &user, quota, &body, &headers, received_at).await
}

/// The lookup's outcome counted (see `guard::counted`), then the user held to their rate limit
/// (the service default unless they have their own).
fn admitted(
    state: &AppState,
    client: IpAddr,
    presented: Presented<'_>,
    user: Option<AuthenticatedUser>,
) -> Result<(AuthenticatedUser, SignalQuota)> {
    let user = counted(state, client, presented, user)?;
    let quota = admit_alert(state, &user)?;
    Ok((user, quota))
}

/// Counts one alert of `user` against their own rate limit (the service default unless they
/// have one): the webhook's and the dashboard's test signals share the budget. The quota it
/// answers is the account's to check again, across every instance (aggregates' quota.rs).
pub(super) fn admit_alert(state: &AppState, user: &AuthenticatedUser) -> Result<SignalQuota> {
    let own_limit = user.rate_limit.and_then(|limit| {
        RateLimit::new(
            limit.requests,
            Duration::from_secs(u64::from(limit.window_seconds)),
        )
        .ok()
    });
    let limit = state.guard.admit(&user.user_id, own_limit)?;
    Ok(SignalQuota {
        signals: limit.requests(),
        window_seconds: u32::try_from(limit.window().as_secs()).unwrap_or(u32::MAX),
    })
}

fn readable(body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "INVALID_BODY",
            "The request body could not be read (too large or cut short)",
        )
    })
}

/// Only the `secret` field, borrowed from the body where it has no escapes; every other field is
/// tolerated here and judged by the alert parser afterwards.
#[derive(Deserialize)]
struct SecretOnly<'a> {
    #[serde(borrow, default)]
    secret: Option<Cow<'a, str>>,
}

/// The body's `secret`, if the body is a JSON object with a string `secret`.
fn secret_in(body: &[u8]) -> Option<Cow<'_, str>> {
    // serde would also read a struct from an array (`["..."]`, by position): objects only.
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice::<SecretOnly>(body).ok()?.secret
}

async fn record(
    state: &AppState,
    user: &AuthenticatedUser,
    quota: SignalQuota,
    body: &[u8],
    headers: &HeaderMap,
    received_at: DateTime<Utc>,
) -> Result<Json<SignalReceipt>> {
    // The router already replaced an unacceptable id; checked again because this one is stored.
    let request_id = super::request_id::of(headers).map(str::to_owned);
    let account_id = user.user_id.as_str();
    let receipt = state
        .ingest
        .receive_admitted(
            account_id,
            body,
            received_at,
            request_id,
            Admission {
                quota: Some(quota),
                paper_only: false,
            },
        )
        .await?;
    let meters = &state.webhook_meters;
    let (status, reason, rule) = match receipt.status {
        ReceiptStatus::Accepted => {
            meters.accepted();
            (ReceiptState::Accepted, None, None)
        }
        ReceiptStatus::Duplicate => {
            meters.duplicate();
            (ReceiptState::Duplicate, None, None)
        }
        ReceiptStatus::Rejected { reason, rule } => {
            meters.rejected(reason);
            (ReceiptState::Rejected, Some(reason), rule)
        }
    };
    tracing::info!(account_id, signal_id = %receipt.signal_id, status = status.as_str(), "signal recorded");
    Ok(Json(SignalReceipt {
        reason,
        rule,
        signal_id: receipt.signal_id.0,
        status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_found_among_any_other_fields() {
        let body = br#"{"symbol":"BTCUSDT","secret":"abc","nested":{"secret":"no"},"x":[1,2]}"#;
        assert_eq!(secret_in(body).as_deref(), Some("abc"));
        let escaped = br#"{"secret":"a\u0062c"}"#;
        assert_eq!(secret_in(escaped).as_deref(), Some("abc"));
    }

    #[test]
    fn a_body_without_a_string_secret_has_none() {
        for body in [
            &b"{}"[..],
            br#"{"secret":null}"#,
            br#"{"secret":42}"#,
            br#"{"secret":"a","secret":"b"}"#,
            br#"["secret"]"#,
            br#" ["abc"]"#,
            b"secret=abc",
            b"",
            b"\xff\xfe",
        ] {
            assert_eq!(secret_in(body), None, "{}", String::from_utf8_lossy(body));
        }
    }
}
