//! The guard's refusals as HTTP answers, and the IP allowlist as a layer on the webhook routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::guard::{Guard, Refusal};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::RateLimited(retry_after) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests for this webhook; retry after the time in Retry-After",
            )
            .with_retry_after(retry_after.seconds()),
            // 429, not 401: unknown credentials lock out exactly like known ones, so this reveals
            // nothing about a credential, and tells a real user why correct alerts are refused.
            Refusal::LockedOut(retry_after) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "LOCKED_OUT",
                "Too many failed authentications; retry after the time in Retry-After",
            )
            .with_retry_after(retry_after.seconds()),
        }
    }
}

/// Refuses webhook calls from addresses outside the allowlist (when one is configured) before
/// anything else reads the request.
pub async fn allowlisted(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(allowlist) = guard.allowlist() else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let admitted = {
        let forwarded_for: Vec<Option<&str>> = request
            .headers()
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|value| value.to_str().ok())
            .collect();
        peer.is_some_and(|peer| allowlist.admits(peer, &forwarded_for))
    };
    if !admitted {
        tracing::debug!(peer = ?peer, "webhook call from an address outside the allowlist");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "IP_NOT_ALLOWED",
            "This address may not call the webhook",
        )
        .into_response();
    }
    next.run(request).await
}
