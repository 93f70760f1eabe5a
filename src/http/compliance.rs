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
use serde_json::{json, Value};

use super::audit_export;
use super::audit_params;
use super::error::{ApiError, Result};
use super::staff_authenticated::StaffAuthenticated;
use super::AppState;
use crate::staff::{self, StaffMember, StaffRole};
use crate::store::Store;

pub const AUDIT_PATH: &str = "/api/compliance/audit";
pub const VERIFY_PATH: &str = "/api/compliance/audit/verify";

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
    let Some(latest) = state.audit_verification.get() else {
        return Ok(Json(json!({
            "status": "pending",
            "intact": null,
            "verified_at": null,
            "message": "The first verification of the audit trail has not finished yet",
        })));
    };
    let mut answer = serde_json::to_value(&*latest).map_err(ApiError::internal)?;
    let intact = latest.report.is_intact();
    answer["intact"] = intact.into();
    answer["status"] = if intact { "verified" } else { "failed" }.into();
    Ok(Json(answer))
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
