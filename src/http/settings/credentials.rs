//! Vault fields from the settings API, write-only: `PUT` stores a value, `DELETE` removes it,
//! and every answer shows only whether each field is set. The value is never echoed, logged or
//! recorded: the event (`CredentialChanged`) names the field alone. And webhook rotation, whose
//! new credentials are shown once.
//!
//! The vault row and the event are two writes: the row is written first and put back as it was
//! (its old ciphertext, or none) if the event cannot be recorded, so the ledger never misses a
//! change that stayed.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use aggregates::AccountCommand;

use super::{context, ledger_error, settings_answer, trader_by, Settings};
use crate::http::authenticated::Authenticated;
use crate::http::error::{ApiError, ErrorBody, Result};
use crate::http::AppState;
use crate::users::urls;
use crate::vault::Field;

/// The path's field, if a trader may set it.
fn settable(field: std::result::Result<Path<String>, PathRejection>) -> Result<Field> {
    let unknown = || {
        let names: Vec<&str> = Field::TRADER_SETTABLE.iter().map(|f| f.name()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "UNKNOWN_FIELD",
            format!(
                "No such credential; the settable ones are {}",
                names.join(", ")
            ),
        )
    };
    let Ok(Path(name)) = field else {
        return Err(unknown());
    };
    name.parse::<Field>()
        .ok()
        .filter(|field| Field::TRADER_SETTABLE.contains(field))
        .ok_or_else(unknown)
}

/// `{"value": "..."}`; nothing else is read from the body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueOnly {
    /// The credential; never echoed, logged or recorded.
    #[schema(write_only)]
    value: String,
}

/// The value of the body, with errors that never quote it (serde's messages may).
fn value_of(body: std::result::Result<Bytes, BytesRejection>) -> Result<Zeroizing<String>> {
    let unreadable = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            "The body must be a JSON object with one string field, \"value\"",
        )
    };
    let body = body.map_err(|_| unreadable())?;
    let parsed: ValueOnly = serde_json::from_slice(&body).map_err(|_| unreadable())?;
    Ok(Zeroizing::new(parsed.value))
}

#[utoipa::path(
    put,
    path = "/api/settings/credentials/{field}",
    tag = "settings",
    summary = "Store a credential (write-only: never shown again, only whether it is set)",
    params(("field" = String, Path, pattern = "^(dydx_mnemonic|dydx_subaccount|dydx_owner_address|dydx_trading_mnemonic|dydx_authenticator_id|telegram_chat_id)$",
        description = "dydx_mnemonic, dydx_subaccount, dydx_owner_address, dydx_trading_mnemonic, dydx_authenticator_id or telegram_chat_id")),
    request_body = ValueOnly,
    responses(
        (status = 200, description = "The settings after the change", body = Settings),
        (status = 400, description = "INVALID_BODY", body = ErrorBody),
        (status = 404, description = "UNKNOWN_FIELD; NO_ACCOUNT", body = ErrorBody),
        (status = 422, description = "INVALID_CREDENTIAL: names the rule, never the value; INVALID_SETTING", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "CONTENDED: the account is busy; nothing changed, retry", body = ErrorBody),
    )
)]
pub async fn set_credential(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    field: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Settings>> {
    let field = settable(field)?;
    let value = value_of(body)?;
    // The rule is named, never the value (`Field::validate`).
    field.validate(&value).map_err(|rule| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_CREDENTIAL", rule)
    })?;
    let owner = user.user_id.as_str();
    let previous = state
        .vault
        .sealed(owner, field)
        .await
        .map_err(ApiError::internal)?;
    state
        .vault
        .seal(owner, field, &value)
        .await
        .map_err(ApiError::internal)?;
    drop(value);
    record(&state, &user, field, false, &headers, previous).await?;
    Ok(Json(settings_answer(&state, &user).await?))
}

#[utoipa::path(
    delete,
    path = "/api/settings/credentials/{field}",
    tag = "settings",
    summary = "Remove a stored credential",
    params(("field" = String, Path, pattern = "^(dydx_mnemonic|dydx_subaccount|dydx_owner_address|dydx_trading_mnemonic|dydx_authenticator_id|telegram_chat_id)$",
        description = "As for PUT")),
    responses(
        (status = 200, description = "The settings after the change", body = Settings),
        (status = 404, description = "UNKNOWN_FIELD; NO_ACCOUNT", body = ErrorBody),
        (status = 422, description = "INVALID_SETTING", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "CONTENDED: the account is busy; nothing changed, retry", body = ErrorBody),
    )
)]
pub async fn clear_credential(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    field: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Settings>> {
    let field = settable(field)?;
    let owner = user.user_id.as_str();
    let previous = state
        .vault
        .sealed(owner, field)
        .await
        .map_err(ApiError::internal)?;
    // Clearing what is not set changes nothing, and records nothing.
    if previous.is_some() {
        state
            .vault
            .clear(owner, field)
            .await
            .map_err(ApiError::internal)?;
        record(&state, &user, field, true, &headers, previous).await?;
    }
    Ok(Json(settings_answer(&state, &user).await?))
}

/// Records the change; if it cannot be, the vault row goes back to what it was.
async fn record(
    state: &AppState,
    user: &crate::users::AuthenticatedUser,
    field: Field,
    cleared: bool,
    headers: &HeaderMap,
    previous: Option<crate::store::SealedSecret>,
) -> Result<()> {
    let by = trader_by(user);
    let command = AccountCommand::RecordCredentialChange {
        field: field.name().to_owned(),
        cleared,
        by: by.clone(),
        at: Utc::now(),
    };
    let recorded = state
        .ledger
        .execute(&user.user_id, command, &context(&by, headers))
        .await;
    if let Err(error) = recorded {
        if let Err(undo) = state
            .vault
            .restore(&user.user_id, field, previous.as_ref())
            .await
        {
            tracing::error!(%undo, user_id = %user.user_id, %field, "credential change not undone");
        }
        return Err(ledger_error(error));
    }
    Ok(())
}

/// New webhook credentials. Fields in alphabetical order: the order of the `json!` object it
/// replaced, so the bytes are unchanged.
#[derive(Serialize, ToSchema)]
pub struct RotatedWebhook {
    pub credentials: RotatedCredentials,
    pub note: &'static str,
    pub two_factor_url: String,
    pub user_id: String,
    pub webhook_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct RotatedCredentials {
    pub webhook_secret: String,
    pub webhook_token: String,
    pub webhook_uuid: String,
}

/// `POST /api/settings/webhook/rotate`: new token, uuid and secret, shown once in this answer
/// (`GET /api/config/webhook` shows them again, recorded); the old ones stop working at once.
#[utoipa::path(
    post,
    path = "/api/settings/webhook/rotate",
    tag = "settings",
    summary = "New webhook credentials; the old ones stop working at once",
    responses(
        (status = 200, description = "The new credentials, shown once", body = RotatedWebhook,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "INVALID_HOST: no public URL is configured and the Host header is unusable", body = ErrorBody),
        (status = 404, description = "NO_ACCOUNT", body = ErrorBody),
        (status = 422, description = "INVALID_SETTING", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "CONTENDED: rotated but not yet recorded; rotate again", body = ErrorBody),
    )
)]
pub async fn rotate_webhook(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
) -> Result<([(HeaderName, &'static str); 1], Json<RotatedWebhook>)> {
    let base = crate::http::config::base_url(&state, &headers)?;
    let by = trader_by(&user);
    let issued = state
        .authenticator
        .rotate_webhook(&state.vault, &user.user_id)
        .await
        .map_err(ApiError::internal)?;
    // Rotated already: the old credentials must not come back, so a failure to record it is
    // reported (5xx, logged) and the caller rotates again to see working ones with a record.
    let command = AccountCommand::RecordWebhookRotation {
        by: by.clone(),
        at: Utc::now(),
    };
    state
        .ledger
        .execute(&user.user_id, command, &context(&by, &headers))
        .await
        .map_err(ledger_error)?;
    let answer = RotatedWebhook {
        credentials: RotatedCredentials {
            webhook_secret: issued.webhook_secret.to_string(),
            webhook_token: issued.webhook_token.to_string(),
            webhook_uuid: issued.webhook_uuid.to_string(),
        },
        note: "Shown once here; the previous URL and secret no longer work.",
        two_factor_url: urls::two_factor_url(&base, &issued.webhook_uuid),
        user_id: user.user_id,
        webhook_url: urls::webhook_url(&base, &issued.webhook_token),
    };
    Ok(([(CACHE_CONTROL, "no-store")], Json(answer)))
}
