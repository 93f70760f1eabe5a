//! The HTTP surface: routes, request ids, access logs without query strings, limits.
//!
//! Architecture invariant: only this module knows about JSON error bodies and status codes.

mod audit_export;
mod audit_params;
mod authenticated;
mod compliance;
mod config;
mod dashboard;
mod error;
mod guard;
mod health;
mod metered;
mod own_audit;
mod request_id;
pub mod server;
mod staff_authenticated;
mod trader;
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

pub use self::authenticated::Authenticated;
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
    /// What the handlers read through (read models, audit trail, staff, health); they never reach
    /// the store through `ingest` or `authenticator`.
    pub store: crate::store::Store,
    pub ingest: Arc<Ingest>,
    pub authenticator: Arc<Authenticator>,
    /// Reveals a trader's own webhook credentials (`GET /api/config/webhook`), recording it.
    pub vault: crate::vault::Vault,
    pub guard: Arc<Guard>,
    /// Base of the URLs shown to users; `None`: from each request's Host / X-Forwarded-Proto.
    pub public_url: Option<Arc<str>>,
    /// The background verification's latest report, for `GET /api/compliance/audit/verify`.
    pub audit_verification: Arc<crate::audit::LatestVerification>,
    /// Where this instance's catch-up readers stand, for `/readyz`.
    pub readers: Arc<crate::catchup::ReaderRegistry>,
    /// Renders the process's metrics (`crate::telemetry`).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub webhook_meters: Arc<crate::telemetry::WebhookMeters>,
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    // The IP allowlist guards the webhook routes only: health checks come from the platform.
    let webhooks = Router::new()
        .route("/api/webhook", post(webhook::receive))
        .route(
            "/webhooks/{webhook_uuid}",
            post(webhook::receive_two_factor),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            guard::allowlisted,
        ))
        // Outside the allowlist, so its refusals are timed and counted too.
        .route_layer(axum::middleware::from_fn_with_state(
            state.webhook_meters.clone(),
            metered::webhook,
        ));
    Router::new()
        .merge(webhooks)
        .merge(dashboard::routes())
        .route("/api/config/webhook", get(config::webhook))
        .route("/api/audit", get(own_audit::own_audit))
        .route(compliance::AUDIT_PATH, get(compliance::audit))
        .route(compliance::VERIFY_PATH, get(compliance::verify))
        .route("/api/positions", get(trader::positions))
        .route("/api/trades", get(trader::trades))
        .route("/api/signals/{signal_id}", get(trader::signal))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
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
                        path = %loggable_path(request.uri().path()),
                        request_id,
                    )
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // Outermost: a caller's unacceptable id is gone before one is chosen, logged or stored.
        .layer(axum::middleware::map_request(request_id::drop_unacceptable))
}

/// Characters of a two-factor webhook uuid kept in logs: enough to tell users' hooks apart, too
/// few to post to one (the full uuid is an address, and addresses are not for log readers).
const LOGGED_UUID_PREFIX: usize = 8;

fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/webhooks/") {
        Some(rest) => {
            let prefix: String = rest.chars().take(LOGGED_UUID_PREFIX).collect();
            format!("/webhooks/{prefix}…").into()
        }
        None => path.into(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_factor_paths_are_logged_by_prefix_only() {
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let logged = loggable_path(&format!("/webhooks/{uuid}")).into_owned();
        assert_eq!(logged, "/webhooks/0f8fad5b…");
        assert_eq!(loggable_path("/api/webhook"), "/api/webhook");
    }
}
