//! The HTTP surface: routes, request ids, access logs without query strings, limits.
//!
//! Architecture invariant: only this module knows about JSON error bodies and status codes.

mod error;
mod guard;
mod health;
pub mod server;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use self::error::ApiError;
use crate::guard::Guard;
use crate::ingest::Ingest;
use crate::users::Authenticator;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// TradingView alerts are a few hundred bytes; this is generous and still cheap to buffer.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// TradingView gives up after 3 s; nothing useful happens after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two pieces of a request body (the whole request has `REQUEST_TIMEOUT`).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    pub ingest: Arc<Ingest>,
    pub authenticator: Arc<Authenticator>,
    pub guard: Arc<Guard>,
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    // The IP allowlist guards the webhook routes only: health checks come from the platform.
    let webhooks = Router::new()
        .route("/api/webhook", post(webhook::receive))
        .route_layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            guard::allowlisted,
        ));
    Router::new()
        .merge(webhooks)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings carry webhook tokens and never reach a log line.
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "This endpoint does not accept that method",
    )
}
