//! Times and counts every webhook answer (`crate::telemetry::WebhookMeters`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ErrorCode;
use crate::telemetry::{Scheme, WebhookMeters};

pub async fn webhook(
    State(meters): State<Arc<WebhookMeters>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Only the two webhook routes come here; the path itself is never a label (the two-factor
    // path holds the user's webhook uuid).
    let scheme = if request.uri().path() == "/api/webhook" {
        Scheme::Token
    } else {
        Scheme::TwoFactor
    };
    let response = next.run(request).await;
    let status = response.status();
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        meters.refused(scheme, code);
    }
    meters.answered(scheme, status.as_u16(), started.elapsed());
    response
}
