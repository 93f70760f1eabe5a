//! Staff endpoints over the audit trail:
//! - `GET /api/compliance/audit` (compliance role): every account's trail, filtered, paged by
//!   cursor or exported whole as JSON Lines or CSV;
//! - `GET /api/compliance/audit/verify` (any staff): whether the hash chain verifies, as of the
//!   latest background verification (`status` `pending` until the first one has finished).
//!
//! Every read is recorded in `compliance_reads` (who, endpoint, filter, when) and the record is
//! durable before any data leaves: a read that cannot be recorded is not served.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::audit_export::{self, AuditPage};
use super::audit_params::{self, AuditQuery};
use super::error::{ApiError, ErrorBody, Result};
use super::staff_authenticated::StaffAuthenticated;
use super::{sorted_json, AppState};
use crate::audit::Verification;
use crate::staff::{self, StaffMember, StaffRole};
use crate::store::Store;

pub const AUDIT_PATH: &str = "/api/compliance/audit";
pub const VERIFY_PATH: &str = "/api/compliance/audit/verify";

#[utoipa::path(
    get,
    path = "/api/compliance/audit",
    tag = "compliance",
    summary = "Every account's audit trail, filtered: a page, or an export (JSON Lines, CSV)",
    description = "Compliance staff only. The read is recorded (who, filter, when) before any \
        row is sent.",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page (`format=json`, the default) or a streamed export",
            content(
                (AuditPage = "application/json"),
                (String = "application/x-ndjson"),
                (String = "text/csv"),
            ),
            headers(
                ("Cache-Control" = String, description = "no-store"),
            )),
        (status = 400, description = "INVALID_PARAMETER: names the parameter", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: not compliance staff", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    staff: StaffAuthenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response> {
    let staff = staff.require(StaffRole::Compliance)?;
    let request = audit_params::parse(&query_pairs(query)?)?;
    let store = state.store.clone();
    record(&store, &staff, AUDIT_PATH, request.to_record()).await?;
    audit_export::respond(store, request).await
}

/// Whether the audit trail's hash chain verifies, as of the latest background verification.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyAnswer<'a> {
    Pending(VerificationPending),
    Done(VerificationDone<'a>),
}

/// Before the first background verification has finished.
#[derive(Serialize, ToSchema)]
pub struct VerificationPending {
    /// Always null while pending.
    pub intact: Option<bool>,
    pub message: &'static str,
    #[schema(example = "pending")]
    pub status: &'static str,
    /// Always null while pending.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub verified_at: Option<()>,
}

#[derive(Serialize, ToSchema)]
pub struct VerificationDone<'a> {
    #[serde(flatten)]
    pub verification: &'a Verification,
    /// Whether the whole chain matched the ledger (`first_mismatch` is null).
    pub intact: bool,
    /// `verified` or `failed`.
    #[schema(example = "verified")]
    pub status: &'static str,
}

#[utoipa::path(
    get,
    path = "/api/compliance/audit/verify",
    operation_id = "audit_verify",
    tag = "compliance",
    summary = "Whether the audit trail's hash chain verifies (latest background verification)",
    description = "Any staff. The read is recorded. Takes no parameters.",
    responses(
        (status = 200, description = "`pending`, `verified` or `failed`", body = VerifyAnswer),
        (status = 400, description = "INVALID_PARAMETER: this endpoint takes none", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    StaffAuthenticated(staff): StaffAuthenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>> {
    if let Some((name, _)) = query_pairs(query)?.first() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!("Invalid query parameter `{name}`: this endpoint takes none"),
        ));
    }
    let store = &state.store;
    record(store, &staff, VERIFY_PATH, json!({})).await?;
    let latest = state.audit_verification.get();
    // Sorted, as the `json!` objects it replaced: the same bytes.
    sorted_json(&match latest.as_deref() {
        None => VerifyAnswer::Pending(VerificationPending {
            intact: None,
            message: "The first verification of the audit trail has not finished yet",
            status: "pending",
            verified_at: None,
        }),
        Some(verification) => {
            let intact = verification.report.is_intact();
            VerifyAnswer::Done(VerificationDone {
                verification,
                intact,
                status: if intact { "verified" } else { "failed" },
            })
        }
    })
}

async fn record(store: &Store, staff: &StaffMember, endpoint: &str, filter: Value) -> Result<()> {
    staff::record_read(store, staff, endpoint, filter, Utc::now())
        .await
        .map_err(ApiError::internal)
}

/// The query string as decoded pairs, or the 400 every bad parameter gets.
pub fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>> {
    query.map(|Query(pairs)| pairs).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            "The query string is not valid URL encoding",
        )
    })
}
