//! The one error type of the HTTP layer. Every error leaves as `{"error","code","timestamp"}`;
//! internal details are logged here and never returned.

use std::time::Duration;

use aggregates::AccountError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::guard::{Refusal, RetryAfter};
use crate::ingest::IngestError;
use crate::ledger::LedgerError;
use crate::markets::MarketError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Sent as `Retry-After` (whole seconds) with 429s.
    retry_after_seconds: Option<u64>,
}

/// The body of every error answer. Fields in alphabetical order: the order the body always had
/// (it was a `json!` object, whose keys serde_json sorts), so answers stay byte for byte the same.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable and machine-readable: `INVALID_TOKEN`, `INVALID_PARAMETER`, `RATE_LIMITED`, ...
    #[schema(example = "INVALID_TOKEN")]
    pub code: String,
    /// What went wrong, for a person. Never a secret, never the service's internals.
    #[schema(example = "Invalid token")]
    pub error: String,
    /// When the answer was made (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2024-06-10T06:13:20.000Z")]
    pub timestamp: String,
}

/// The code of an error answer, left on the response for the webhook's metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    /// The machine-readable code the caller is answered with.
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// The same answer for every credential failure, so a caller learns nothing from it.
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "Invalid token")
    }

    /// The ledger's store cannot be reached or written just now (see `StoreError::is_unavailable`):
    /// the caller may retry, and a retried alert is never recorded twice.
    pub fn store_unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "the store is unavailable; request refused");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "The ledger cannot record just now; the signal was not recorded, retry",
        )
        .with_retry_after(1)
    }

    /// A store error: 503 when the store is unavailable, else the service failed.
    pub fn store(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::store_unavailable(error)
        } else {
            Self::internal(error)
        }
    }

    /// The service failed: the detail goes to the log, the caller gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed inside the service");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "The service could not record the request; it was not processed",
        )
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Payload(error) => Self::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PAYLOAD",
                error.to_string(),
            ),
            IngestError::Market(
                error @ (MarketError::Malformed { .. } | MarketError::Unknown { .. }),
            ) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_MARKET",
                error.to_string(),
            ),
            IngestError::Market(error) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_SIZE",
                error.to_string(),
            ),
            IngestError::EquityUnknown(error) => {
                tracing::warn!(%error, "equity unavailable for a percent-of-equity size");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "EXCHANGE_UNAVAILABLE",
                    "The account's equity could not be read; the signal was not recorded, retry",
                )
            }
            IngestError::NoReferencePrice(market) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "NO_REFERENCE_PRICE",
                format!("{market} has no reference price to check the order against"),
            ),
            IngestError::Ledger(LedgerError::Contended) => {
                tracing::warn!("account contended past the retry limit");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CONTENDED",
                    "The account is busy; the signal was not recorded, retry",
                )
            }
            // The same answer as the guard's limit: the account counted the other instances'
            // signals too (aggregates' quota.rs).
            IngestError::Ledger(LedgerError::Rejected(AccountError::QuotaSpent {
                retry_after_ms,
            })) => Self::from(Refusal::RateLimited(RetryAfter(Duration::from_millis(
                u64::try_from(retry_after_ms).unwrap_or(0),
            )))),
            IngestError::Ledger(error) if error.is_store_unavailable() => {
                Self::store_unavailable(error)
            }
            IngestError::Ledger(error) => Self::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            error: self.message,
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let mut response = (self.status, Json(body)).into_response();
        // For the metrics layer, which counts answers by code without reading bodies.
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
