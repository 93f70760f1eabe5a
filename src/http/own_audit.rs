//! `GET /api/audit`: a trader's own audit trail, with the compliance endpoint's filters, cursor
//! and formats, always scoped to the caller's account. Naming another account is a 403 rather
//! than silently ignored, so a caller never mistakes their own rows for someone else's.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::audit_export;
use super::audit_params;
use super::authenticated::Authenticated;
use super::compliance::query_pairs;
use super::error::{ApiError, Result};
use super::AppState;

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
