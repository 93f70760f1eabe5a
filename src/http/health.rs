//! Liveness and readiness.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Result};
use super::{sorted_json, AppState};
use crate::catchup::{ReaderState, ReaderStatus};
use crate::telemetry;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process serves HTTP",
    security(()),
    responses((status = 200, description = "Always `ok`", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready: signals can be recorded and every reader keeps up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub readers: Vec<ReaderStatus>,
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    pub store: &'static str,
}

/// A reader of this instance is down or further behind than allowed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReaderNotReady {
    #[schema(example = "READER_NOT_READY")]
    pub code: &'static str,
    /// The first reader found unready.
    pub reader: &'static str,
    pub readers: Vec<ReaderStatus>,
    #[schema(example = "down: connection refused")]
    pub reason: String,
    #[schema(example = "not_ready")]
    pub status: &'static str,
}

/// The two bodies of a 503: the store unreachable (the error body) or a reader unready. Only
/// describes them for `/openapi.json`; each is answered from its own type.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum NotReady {
    Store(ErrorBody),
    Reader(ReaderNotReady),
}

/// The ledger's store answers (signals can be recorded) and no catch-up reader of this instance is
/// down or further behind than allowed (503 naming it). Parked events do not make it unready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the store answers and every catch-up reader keeps up",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "NOT_READY (the store) or READER_NOT_READY", body = NotReady),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
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
        let body = ReaderNotReady {
            code: "READER_NOT_READY",
            reader: reader.reader,
            readers,
            reason: why,
            status: "not_ready",
        };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, sorted_json(&body)?).into_response());
    }
    let body = Ready {
        readers,
        status: "ready",
        store: store.kind(),
    };
    Ok(sorted_json(&body)?.into_response())
}

/// The process's metrics in Prometheus' text format (`crate::telemetry`). Nothing here names a
/// user, an address or a credential. What is a reading rather than a count (reader lag, the
/// pool) is read now, as it is rendered.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain"))
)]
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
