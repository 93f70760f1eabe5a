//! Liveness and readiness.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, Result};
use super::AppState;
use crate::catchup::ReaderState;
use crate::telemetry;

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

/// The process's metrics in Prometheus' text format (`crate::telemetry`). Nothing here names a
/// user, an address or a credential. What is a reading rather than a count (reader lag, the
/// pool) is read now, as it is rendered.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::counter!(telemetry::CREDENTIAL_QUERIES)
        .absolute(state.authenticator.credential_queries());
    for reader in state.readers.snapshot() {
        let running = reader.state == ReaderState::Running;
        metrics::gauge!(telemetry::READER_RUNNING, "reader" => reader.reader)
            .set(f64::from(u8::from(running)));
        // Measured only while running: a reader that stops keeps its last reading (and shows 0
        // in `READER_RUNNING`).
        if let (true, Some(events), Some(seconds)) =
            (running, reader.lag_events, reader.lag_seconds)
        {
            metrics::gauge!(telemetry::READER_LAG_EVENTS, "reader" => reader.reader)
                .set(events as f64);
            metrics::gauge!(telemetry::READER_LAG_SECONDS, "reader" => reader.reader)
                .set(seconds as f64);
        }
    }
    let pool = state.store.pool_status();
    metrics::gauge!(telemetry::POOL_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!(telemetry::POOL_CONNECTIONS, "state" => "in_use")
        .set(f64::from(pool.size.saturating_sub(pool.idle)));
    metrics::gauge!(telemetry::POOL_MAX_CONNECTIONS).set(f64::from(pool.max));
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
