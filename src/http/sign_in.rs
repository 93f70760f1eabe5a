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
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{session_cookie, Caller, Principal, SESSION_COOKIE};
use super::config::base_url;
use super::error::{ApiError, ErrorBody, Result};
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

// The answers' fields are in alphabetical order: the order of the objects they replaced (whose
// keys serde_json sorts), so the bytes are unchanged.

#[derive(Deserialize, ToSchema)]
pub struct NonceRequest {
    /// The wallet's address: 0x and 40 hex digits, all lowercase, all uppercase, or mixed case
    /// with a valid EIP-55 checksum.
    #[schema(
        pattern = "^0x([0-9a-f]{40}|[0-9A-F]{40})$",
        example = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
    )]
    address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    /// When the nonce stops being accepted (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The whole EIP-4361 message to sign with `personal_sign`, then send to `/api/auth/verify`.
    pub message: String,
    /// Single-use.
    pub nonce: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/nonce",
    tag = "sign-in",
    summary = "Start a wallet sign-in: a single-use nonce and the EIP-4361 message to sign",
    request_body = NonceRequest,
    responses(
        (status = 200, description = "The message to sign", body = Challenge,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "INVALID_BODY, INVALID_ADDRESS, INVALID_HOST", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (per client address), SIGN_IN_BUSY", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
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
    Ok(no_store(Json(Challenge {
        expires_at: challenge
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        message: challenge.message,
        nonce: challenge.nonce,
    })))
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The message `/api/auth/nonce` gave, exactly (at most 4096 bytes).
    #[schema(max_length = 1024)]
    message: String,
    /// The `personal_sign` signature (EIP-191): 0x and 130 hex digits.
    #[schema(pattern = "^0x[0-9a-fA-F]{130}$")]
    signature: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletSession {
    /// The wallet's address, EIP-55.
    pub address: String,
    /// Whether this sign-in opened the account.
    pub created: bool,
    /// Send back as `x-csrf-token` with every state-changing request.
    pub csrf_token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(example = "trader")]
    pub role: &'static str,
    pub user_id: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/verify",
    operation_id = "sign_in_verify",
    tag = "sign-in",
    summary = "Finish a wallet sign-in: the signed message; opens the account at the first one",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Signed in: the session cookie is set", body = WalletSession,
            headers(
                ("Set-Cookie" = String, description = "lh_session=…; HttpOnly; Secure; SameSite=Strict; Path=/"),
                ("Cache-Control" = String, description = "no-store"),
            )),
        (status = 400, description = "INVALID_BODY, INVALID_HOST", body = ErrorBody),
        (status = 401, description = "SIWE_*: the message or signature is refused (domain, URI, chain, time, nonce)", body = ErrorBody),
        (status = 429, description = "SIGN_IN_BUSY", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
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
    let body = WalletSession {
        address: signed_in.address,
        created: signed_in.created,
        csrf_token: session.csrf_token.clone(),
        expires_at: session
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        role: "trader",
        user_id: signed_in.user_id,
    };
    Ok(with_session_cookie(&session, Json(body)))
}

#[derive(Deserialize, ToSchema)]
pub struct StaffSignIn {
    login: String,
    #[schema(format = Password)]
    password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffSession {
    /// Send back as `x-csrf-token` with every state-changing request.
    pub csrf_token: String,
    pub display_name: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// `compliance` or `operator`.
    #[schema(example = "compliance")]
    pub role: &'static str,
    pub staff_id: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/staff",
    tag = "sign-in",
    summary = "Staff sign-in with a login and password",
    request_body = StaffSignIn,
    responses(
        (status = 200, description = "Signed in: the session cookie is set", body = StaffSession,
            headers(
                ("Set-Cookie" = String, description = "lh_session=…; HttpOnly; Secure; SameSite=Strict; Path=/"),
                ("Cache-Control" = String, description = "no-store"),
            )),
        (status = 400, description = "INVALID_BODY", body = ErrorBody),
        (status = 401, description = "INVALID_CREDENTIALS: wrong login or password", body = ErrorBody),
        (status = 429, description = "LOCKED_OUT: too many failures from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
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
    let body = StaffSession {
        csrf_token: session.csrf_token.clone(),
        display_name: member.display_name,
        expires_at: session
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        role: member.role.as_str(),
        staff_id: member.staff_id,
    };
    Ok(with_session_cookie(&session, Json(body)))
}

/// Who the caller is. `user_id` for a trader, `staff_id` and `display_name` for staff.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentSession {
    /// The session's; null for a caller with an API key.
    pub csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The session's expiry (24 h after its last use); null for a caller with an API key.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// `trader`, `compliance` or `operator`.
    #[schema(example = "trader")]
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staff_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Who the caller is; with a session, its CSRF token and expiry (`null` for key callers).
#[utoipa::path(
    get,
    path = "/api/auth/session",
    tag = "sign-in",
    summary = "Who the caller is (a session, or any key)",
    responses(
        (status = 200, description = "The caller", body = CurrentSession,
            headers(("Cache-Control" = String, description = "no-store"))),
    )
)]
pub async fn session(caller: Caller) -> Response {
    let (user_id, staff_id, display_name) = match &caller.principal {
        Principal::Trader(user) => (Some(user.user_id.clone()), None, None),
        Principal::Staff(member) => (
            None,
            Some(member.staff_id.clone()),
            Some(member.display_name.clone()),
        ),
    };
    no_store(Json(CurrentSession {
        csrf_token: caller
            .session
            .as_ref()
            .map(|session| session.csrf_token.clone()),
        display_name,
        expires_at: caller.session.as_ref().map(|session| {
            session
                .expires_at
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        }),
        role: caller.role().as_str(),
        staff_id,
        user_id,
    }))
}

/// Revokes the session (a key caller has none) and clears the cookie.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "sign-in",
    summary = "Sign out: the session is revoked and the cookie cleared",
    responses(
        (status = 204, description = "Signed out",
            headers(("Set-Cookie" = String, description = "lh_session=; Max-Age=0 (cleared)"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
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

fn with_session_cookie(session: &IssuedSession, body: impl IntoResponse) -> Response {
    let cookie = format!("{SESSION_COOKIE}={}; {COOKIE_ATTRIBUTES}", session.token);
    match header_value(&cookie) {
        Ok(cookie) => no_store(([(SET_COOKIE, cookie)], body)),
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
