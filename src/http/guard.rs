//! The guard's refusals as HTTP answers, and the IP allowlist as a layer on the webhook routes.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::guard::{Guard, Presented, Refusal};
use crate::users::AuthenticatedUser;

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
            // 429, not 401: only failures are refused this way (a right credential is checked
            // first), unknown credentials exactly like known ones, so this reveals nothing.
            Refusal::LockedOut(retry_after) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "LOCKED_OUT",
                "Too many failed authentications; retry after the time in Retry-After",
            )
            .with_retry_after(retry_after.seconds()),
        }
    }
}

/// The client's address: the TCP peer, or what a trusted proxy forwarded (`Guard::client_ip`).
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The server always records the peer; a router driven without one counts as one caller.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
                peer.ip()
            });
        let forwarded_for = forwarded_for(&parts.headers);
        Ok(Self(state.guard.client_ip(peer, &forwarded_for)))
    }
}

fn forwarded_for(headers: &HeaderMap) -> Vec<Option<&str>> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(|value| value.to_str().ok())
        .collect()
}

/// Before the store is asked about a credential. The credential is checked before any lockout,
/// so failures someone else caused never refuse a right one; that check costs no query for an
/// unknown credential (the authenticator's index). Only while the index cannot decide (more users
/// than it holds) is a failing address refused before the store lookup it would cost.
pub fn before_lookup(
    state: &AppState,
    client: IpAddr,
    presented: Presented<'_>,
) -> Result<(), ApiError> {
    if !state.authenticator.refuses_unknown_in_memory() {
        state.guard.check_failures(client, presented)?;
    }
    Ok(())
}

/// Counts the lookup's outcome: a failure against the caller's address and (address,
/// credential) — 429 once over a limit, else the one 401 — or a success, which clears the pair.
pub fn counted(
    state: &AppState,
    client: IpAddr,
    presented: Presented<'_>,
    user: Option<AuthenticatedUser>,
) -> Result<AuthenticatedUser, ApiError> {
    match user {
        Some(user) => {
            state.guard.record_success(client, presented);
            Ok(user)
        }
        None => {
            state.guard.record_failure(client, presented)?;
            Err(ApiError::invalid_token())
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
        let forwarded_for = forwarded_for(request.headers());
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
