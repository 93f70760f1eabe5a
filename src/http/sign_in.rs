//! Signing in and out: `POST /api/auth/nonce` and `/api/auth/verify` (a wallet, EIP-4361),
//! `POST /api/auth/staff` (a staff password), `GET /api/auth/session`, `POST /api/auth/logout`.
//! A sign-in answers with the session cookie (`HttpOnly; Secure; SameSite=Strict`) and the CSRF
//! token the page sends back on every change.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{session_cookie, Caller, Principal, SESSION_COOKIE};
use super::config::base_url;
use super::error::{ApiError, Result};
use super::guard::ClientAddress;
use super::AppState;
use crate::guard::{Presented, RateLimit};
use crate::sign_in::{sessions, wallet, IssuedSession, Site, WalletError};
use crate::siwe::Address;
use crate::staff;
use crate::store::SessionSubject;

/// Nonces one client address may ask for: enough for a person retrying, too few to fill the
/// table (`wallet::MAX_OUTSTANDING_NONCES`) from one address.
const NONCES_PER_ADDRESS: u32 = 10;
const NONCE_WINDOW: Duration = Duration::from_secs(60);
/// Longest sign-in field: a SIWE message is a few hundred bytes.
const MAX_MESSAGE_BYTES: usize = 4096;

#[derive(Deserialize)]
pub struct NonceRequest {
    address: String,
}

pub async fn nonce(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    body: std::result::Result<Json<NonceRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(request) = body.map_err(bad_body)?;
    let address = Address::parse(request.address.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ADDRESS",
            "address must be 0x and 40 hex digits (EIP-55 checksum when in mixed case)",
        )
    })?;
    let limit = RateLimit::new(NONCES_PER_ADDRESS, NONCE_WINDOW).unwrap_or_default();
    state
        .guard
        .admit(&format!("sign-in nonce {client}"), Some(limit))
        .map_err(|refusal| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many sign-in attempts from this address; retry after the time in Retry-After",
            )
            .with_retry_after(refusal.retry_after().seconds())
        })?;
    let site = site(&state, &headers)?;
    let challenge = wallet::challenge(&state.store, &address, &site, Utc::now())
        .await
        .map_err(wallet_error)?;
    Ok(no_store(Json(json!({
        "nonce": challenge.nonce,
        "message": challenge.message,
        "expires_at": challenge.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }))))
}

#[derive(Deserialize)]
pub struct VerifyRequest {
    message: String,
    signature: String,
}

pub async fn verify(
    state: State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Response> {
    counted("wallet", wallet_verify(state, headers, body).await)
}

/// Counts the attempt by its outcome (`telemetry::SIGN_INS`).
fn counted(method: &'static str, answer: Result<Response>) -> Result<Response> {
    crate::telemetry::sign_in(
        method,
        answer.as_ref().map_or_else(ApiError::code, |_| "signed_in"),
    );
    answer
}

async fn wallet_verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(request) = body.map_err(bad_body)?;
    if request.message.len() > MAX_MESSAGE_BYTES || request.signature.len() > 200 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            "The message or the signature is too long",
        ));
    }
    let site = site(&state, &headers)?;
    let now = Utc::now();
    let signed_in = wallet::sign_in(
        state.ingest.ledger(),
        &state.vault,
        &request.message,
        &request.signature,
        &site,
        now,
    )
    .await
    .map_err(wallet_error)?;
    let subject = SessionSubject::Trader {
        user_id: signed_in.user_id.clone(),
    };
    let session = sessions::start(&state.store, &subject, now)
        .await
        .map_err(ApiError::internal)?;
    let body = json!({
        "role": "trader",
        "user_id": signed_in.user_id,
        "address": signed_in.address,
        "created": signed_in.created,
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    Ok(with_session_cookie(&session, body))
}

#[derive(Deserialize)]
pub struct StaffSignIn {
    login: String,
    password: String,
}

pub async fn staff_sign_in(
    state: State<AppState>,
    client: ClientAddress,
    body: std::result::Result<Json<StaffSignIn>, JsonRejection>,
) -> Result<Response> {
    counted("staff", staff_password_sign_in(state, client, body).await)
}

async fn staff_password_sign_in(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    body: std::result::Result<Json<StaffSignIn>, JsonRejection>,
) -> Result<Response> {
    let Json(request) = body.map_err(bad_body)?;
    let login = request.login.trim().to_ascii_lowercase();
    // Failures count per (address, login) and per address, never per login alone: a stranger
    // who knows a login locks only themselves out. Checked before the hash, which costs CPU.
    let presented = Presented::StaffLogin(&login);
    state.guard.check_failures(client, presented)?;
    let member = staff::authenticate_password(&state.store, &login, &request.password)
        .await
        .map_err(ApiError::internal)?;
    let Some(member) = member else {
        state.guard.record_failure(client, presented)?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
            "Wrong login or password",
        ));
    };
    state.guard.record_success(client, presented);
    let subject = SessionSubject::Staff {
        staff_id: member.staff_id.clone(),
    };
    let session = sessions::start(&state.store, &subject, Utc::now())
        .await
        .map_err(ApiError::internal)?;
    let body = json!({
        "role": member.role.as_str(),
        "staff_id": member.staff_id,
        "display_name": member.display_name,
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    Ok(with_session_cookie(&session, body))
}

/// Who the caller is; with a session, its CSRF token and expiry (`null` for key callers).
pub async fn session(caller: Caller) -> Response {
    let mut body = json!({
        "role": caller.role().as_str(),
        "csrf_token": caller.session.as_ref().map(|session| session.csrf_token.clone()),
        "expires_at": caller
            .session
            .as_ref()
            .map(|session| session.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    });
    match &caller.principal {
        Principal::Trader(user) => body["user_id"] = json!(user.user_id),
        Principal::Staff(member) => {
            body["staff_id"] = json!(member.staff_id);
            body["display_name"] = json!(member.display_name);
        }
    }
    no_store(Json(body))
}

/// Revokes the session (a key caller has none) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
) -> Result<Response> {
    if let Some(token) = session_cookie(&headers) {
        sessions::end(&state.store, token, Utc::now())
            .await
            .map_err(ApiError::internal)?;
    }
    let cleared = format!("{SESSION_COOKIE}=; {COOKIE_ATTRIBUTES}; Max-Age=0");
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, header_value(&cleared)?)],
    )
        .into_response())
}

/// No `Max-Age`: the browser keeps the cookie for its session; the server's expiry (24 h after
/// the last use) is the one that counts.
const COOKIE_ATTRIBUTES: &str = "HttpOnly; Secure; SameSite=Strict; Path=/";

fn with_session_cookie(session: &IssuedSession, body: Value) -> Response {
    let cookie = format!("{SESSION_COOKIE}={}; {COOKIE_ATTRIBUTES}", session.token);
    match header_value(&cookie) {
        Ok(cookie) => no_store(([(SET_COOKIE, cookie)], Json(body))),
        Err(error) => error.into_response(),
    }
}

fn header_value(text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text).map_err(ApiError::internal)
}

/// Sign-in answers hold a session's secrets: no cache may keep them.
fn no_store(answer: impl IntoResponse) -> Response {
    ([(CACHE_CONTROL, "no-store")], answer).into_response()
}

fn site(state: &AppState, headers: &HeaderMap) -> Result<Site> {
    Ok(Site {
        origin: base_url(state, headers)?.trim_end_matches('/').to_owned(),
        chain_id: state.sign_in_chain_id,
    })
}

fn bad_body(rejection: JsonRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_BODY",
        format!("The body must be the JSON object described in the API: {rejection}"),
    )
}

fn wallet_error(error: WalletError) -> ApiError {
    match error {
        WalletError::Siwe(error) => {
            ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string())
        }
        WalletError::Nonce => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "SIWE_NONCE_INVALID",
            error.to_string(),
        ),
        WalletError::Busy => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "SIGN_IN_BUSY",
            "Too many sign-ins are in progress; try again in a minute",
        )
        .with_retry_after(60),
        WalletError::Store(error) => ApiError::internal(error),
        WalletError::User(error) => ApiError::internal(error),
    }
}
