//! `GET /api/audit`: a trader's own audit trail, with the compliance endpoint's filters, cursor
//! and formats, always scoped to the caller's account. Naming another account is a 403 rather
//! than silently ignored, so a caller never mistakes their own rows for someone else's.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::audit_export::{self, AuditPage};
use super::audit_params::{self, AuditQuery};
use super::authenticated::Authenticated;
use super::compliance::query_pairs;
use super::error::{ApiError, ErrorBody, Result};
use super::AppState;

#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "trader",
    summary = "The caller's own audit trail: a page, or the whole of it as JSON Lines or CSV",
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
        (status = 403, description = "FORBIDDEN: `account_id` names another account", body = ErrorBody),
        (status = 429, description = "LOCKED_OUT: too many failed authentications", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn own_audit(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response> {
    let mut request = audit_params::parse(&query_pairs(query)?)?;
    if request
        .filter
        .account_id
        .as_ref()
        .is_some_and(|named| *named != user.user_id)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "You can read only your own account's audit trail",
        ));
    }
    request.filter.account_id = Some(user.user_id);
    audit_export::respond(state.store.clone(), request).await
}
