//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, Result};
use super::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The ledger's store answers: signals can be recorded.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>> {
    let store = state.ingest.ledger().store();
    store.ping().await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_READY",
            "The ledger's store is not reachable",
        )
    })?;
    Ok(Json(json!({ "status": "ready", "store": store.kind() })))
}
