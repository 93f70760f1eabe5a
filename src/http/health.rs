//! Liveness and readiness.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, Result};
use super::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The ledger's store answers (signals can be recorded) and no catch-up reader of this instance is
/// down or further behind than allowed (503 naming it). Parked events do not make it unready.
pub async fn readyz(State(state): State<AppState>) -> Result<Response> {
    let store = &state.store;
    store.ping().await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_READY",
            "The ledger's store is not reachable",
        )
    })?;
    let readers = state.readers.snapshot();
    if let Some((reader, why)) = state.readers.unready() {
        let body = json!({
            "status": "not_ready",
            "code": "READER_NOT_READY",
            "reader": reader.reader,
            "reason": why,
            "readers": readers,
        });
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok(
        Json(json!({ "status": "ready", "store": store.kind(), "readers": readers }))
            .into_response(),
    )
}

/// Counters in Prometheus' text format. Nothing here names a user, an address or a credential.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = format!(
        "# HELP ledgerhook_credential_queries_total Store queries made to authenticate: credential lookups, and loads and change-counter reads of the index of known credentials.\n\
         # TYPE ledgerhook_credential_queries_total counter\n\
         ledgerhook_credential_queries_total {}\n",
        state.authenticator.credential_queries()
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
