//! The query of a paged list (`limit`, `cursor`), read as text and checked here so each bad value
//! gets its own code and message: `INVALID_QUERY`, `INVALID_LIMIT`, `INVALID_CURSOR`.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;

use super::error::{ApiError, Result};

/// The query, or 400 `INVALID_QUERY`.
pub(super) fn query<T>(query: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    query.map(|Query(query)| query).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            "The query string could not be read",
        )
    })
}

/// `limit` as a whole number from 1 to `max`; absent: `default`.
pub(super) fn limit(text: Option<&str>, default: i64, max: i64) -> Result<i64> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<i64>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_LIMIT",
                format!("limit must be a whole number from 1 to {max}"),
            )
        })
}

/// `cursor` as the `T` an earlier answer's `next_cursor` was; absent: the first page.
pub(super) fn cursor<T: FromStr>(text: Option<&str>) -> Result<Option<T>> {
    text.map(|text| text.parse::<T>().map_err(|_| invalid_cursor()))
        .transpose()
}

pub(super) fn invalid_cursor() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_CURSOR",
        "cursor must be a next_cursor from an earlier answer",
    )
}
