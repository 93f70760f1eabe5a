//! The trader's settings: `GET /api/settings` and the changes, each recorded as an event in the
//! trader's own account naming who made it (`trader:<user_id>`).
//!
//! - `mod.rs`: reading the settings, the venue, limits and default order size;
//! - `credentials.rs`: vault fields (write-only, shown only as set or not) and webhook rotation;
//! - `trials.rs`: the test notification and the test signal.

mod credentials;
mod trials;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;

use aggregates::{
    AccountCommand, AccountError, AccountSettings, Market, RiskLimits, SettingsChange, Venue,
};

pub use self::credentials::{clear_credential, rotate_webhook, set_credential};
pub use self::trials::{test_notification, test_signal};
use super::authenticated::Authenticated;
use super::error::{ApiError, Result};
use super::AppState;
use crate::ledger::{EventContext, LedgerError};
use crate::users::AuthenticatedUser;
use crate::vault::Field;

/// Longest `reason` recorded with a change, in characters.
const LONGEST_REASON: usize = 500;

/// Who a trader's own change is recorded as made by.
fn trader_by(user: &AuthenticatedUser) -> String {
    format!("trader:{}", user.user_id)
}

/// The context a settings change is recorded with: who, when, and the request's id.
fn context(by: &str, headers: &HeaderMap) -> EventContext {
    let request_id = super::request_id::of(headers).map(str::to_owned);
    EventContext::new(by, Utc::now()).with_request_id(request_id)
}

/// A JSON body, or the 400 every settings endpoint answers for one it cannot read.
fn body<T>(body: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    body.map(|Json(value)| value).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            format!(
                "The request body could not be read: {}",
                rejection.body_text()
            ),
        )
    })
}

/// A ledger failure of a settings command: the account refusing it is the caller's error.
fn ledger_error(error: LedgerError) -> ApiError {
    match error {
        LedgerError::Rejected(AccountError::InvalidSetting(message)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_SETTING", message)
        }
        LedgerError::Rejected(AccountError::VenueBusy(message)) => {
            ApiError::new(StatusCode::CONFLICT, "VENUE_BUSY", message)
        }
        // A user row whose account was never opened (a crash inside `users create`).
        LedgerError::Rejected(AccountError::NotOpened) => ApiError::new(
            StatusCode::NOT_FOUND,
            "NO_ACCOUNT",
            "This user has no trading account",
        ),
        LedgerError::Contended => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "CONTENDED",
            "The account is busy; nothing was changed, retry",
        ),
        other => ApiError::internal(other),
    }
}

/// The account's settings from the ledger (the user row only for a venue never chosen there).
async fn current(state: &AppState, user_id: &str) -> Result<(AccountSettings, Venue)> {
    let settings = state
        .ledger
        .settings(user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ledger_error(LedgerError::Rejected(AccountError::NotOpened)))?;
    let venue = match settings.venue {
        Some(venue) => venue,
        None => state
            .store
            .credentials()
            .venue_of(user_id)
            .await
            .map_err(ApiError::internal)?
            .as_deref()
            .and_then(Venue::parse)
            .unwrap_or_default(),
    };
    Ok((settings, venue))
}

pub async fn show(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
) -> Result<Json<Value>> {
    Ok(Json(settings_answer(&state, &user).await?))
}

/// What `GET /api/settings` shows, also the answer to every change.
async fn settings_answer(state: &AppState, user: &AuthenticatedUser) -> Result<Value> {
    let (settings, venue) = current(state, &user.user_id).await?;
    let held = state
        .vault
        .held(&user.user_id)
        .await
        .map_err(ApiError::internal)?;
    // Set or not, never the value nor any part of it: nothing is decrypted to answer this.
    let credentials: serde_json::Map<String, Value> = Field::TRADER_SETTABLE
        .into_iter()
        .map(|field| {
            (
                field.name().to_owned(),
                json!({ "set": held.contains(&field) }),
            )
        })
        .collect();
    let halt = settings.halt.as_ref().map(|halt| {
        json!({
            "by": halt.by,
            "reason": halt.reason,
            "at": halt.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        })
    });
    let service_default = state.default_order_usd;
    Ok(json!({
        "user_id": user.user_id,
        "venue": venue.as_str(),
        "dydx_ready": Field::dydx_ready(&held),
        "halted": halt,
        "limits": limits_json(&settings.limits),
        "default_order_usd": settings.default_order_usd.unwrap_or(service_default).to_string(),
        "default_order_usd_is_own": settings.default_order_usd.is_some(),
        "credentials": credentials,
    }))
}

fn limits_json(limits: &RiskLimits) -> Value {
    let per_market = |map: &BTreeMap<Market, Decimal>| -> Value {
        map.iter()
            .map(|(market, size)| (market.to_string(), Value::from(size.to_string())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "max_order_notional_usd": limits.max_order_notional_usd.to_string(),
        "max_position_notional_usd": limits.max_position_notional_usd.to_string(),
        "max_daily_volume_usd": limits.max_daily_volume_usd.to_string(),
        "max_order_size": per_market(&limits.max_order_size),
        "max_position_size": per_market(&limits.max_position_size),
        "allowed_markets": limits.allowed_markets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "max_price_deviation_bps": limits.max_price_deviation_bps,
        "halt_after_consecutive_failures": limits.halt_after_consecutive_failures,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueRequest {
    venue: String,
}

/// `PUT /api/settings/venue`: paper always; dYdX only once its credentials are stored (a venue
/// without them would fail every order).
pub async fn choose_venue(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<VenueRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    let request = body(request)?;
    let venue = Venue::parse(&request.venue).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VENUE",
            "venue must be \"paper\" or \"dydx\"",
        )
    })?;
    if venue == Venue::Dydx {
        let held = state
            .vault
            .held(&user.user_id)
            .await
            .map_err(ApiError::internal)?;
        if !Field::dydx_ready(&held) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "DYDX_CREDENTIALS_MISSING",
                "Store your dYdX credentials first (dydx_mnemonic, or dydx_trading_mnemonic with \
                 dydx_owner_address and dydx_authenticator_id)",
            ));
        }
        if !state.dydx_configured {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "DYDX_NOT_CONFIGURED",
                "This service is not connected to dYdX; only paper trading is available",
            ));
        }
    }
    // Already where the account trades (its user row speaking for an account that never chose
    // in its ledger): nothing to change, nothing to record.
    let (_, current_venue) = current(&state, &user.user_id).await?;
    if current_venue == venue {
        return Ok(Json(settings_answer(&state, &user).await?));
    }
    let by = trader_by(&user);
    let command = AccountCommand::ChooseVenue {
        venue,
        by: by.clone(),
        at: Utc::now(),
    };
    let committed = state
        .ledger
        .execute(&user.user_id, command, &context(&by, &headers))
        .await
        .map_err(ledger_error)?;
    if !committed.events.is_empty() {
        // The column is a copy for what reads the user row; the ledger decides (see
        // `exchange::LedgerVenues`), so a failure here changes no order's venue.
        if let Err(error) = state
            .store
            .credentials()
            .set_venue(&user.user_id, venue.as_str())
            .await
        {
            tracing::warn!(%error, user_id = %user.user_id, "venue column not updated");
        }
    }
    Ok(Json(settings_answer(&state, &user).await?))
}

/// `PUT /api/settings/limits`: every field optional; an absent one keeps its value.
/// `default_order_usd: null` goes back to the service's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    max_order_notional_usd: Option<Decimal>,
    max_position_notional_usd: Option<Decimal>,
    max_daily_volume_usd: Option<Decimal>,
    /// Per market: a size, or `null` to lift that market's limit.
    max_order_size: Option<BTreeMap<Market, Option<Decimal>>>,
    max_position_size: Option<BTreeMap<Market, Option<Decimal>>>,
    /// The only markets the account may trade; `[]`: every market.
    allowed_markets: Option<Vec<Market>>,
    max_price_deviation_bps: Option<u32>,
    halt_after_consecutive_failures: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    default_order_usd: Option<Option<Decimal>>,
    reason: Option<String>,
}

/// A field that is present, even as `null`, is `Some`: absent stays `None` (serde's default).
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl LimitsRequest {
    /// The change the account is asked to make (it checks the amounts), and why.
    fn into_change(self) -> Result<(SettingsChange, Option<String>)> {
        let reason = self.reason.filter(|reason| !reason.trim().is_empty());
        if reason
            .as_ref()
            .is_some_and(|reason| reason.chars().count() > LONGEST_REASON)
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_SETTING",
                format!("reason must be at most {LONGEST_REASON} characters"),
            ));
        }
        let change = SettingsChange {
            max_order_notional_usd: self.max_order_notional_usd,
            max_position_notional_usd: self.max_position_notional_usd,
            max_daily_volume_usd: self.max_daily_volume_usd,
            max_order_size: self.max_order_size.unwrap_or_default(),
            max_position_size: self.max_position_size.unwrap_or_default(),
            allowed_markets: self
                .allowed_markets
                .map(|markets| markets.into_iter().collect()),
            max_price_deviation_bps: self.max_price_deviation_bps,
            halt_after_consecutive_failures: self.halt_after_consecutive_failures,
            default_order_usd: self.default_order_usd,
        };
        Ok((change, reason))
    }
}

pub async fn change_limits(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<LimitsRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    let (change, reason) = body(request)?.into_change()?;
    let by = trader_by(&user);
    let command = AccountCommand::ChangeSettings {
        change,
        by: by.clone(),
        reason: reason.unwrap_or_else(|| "changed in the trader's settings".to_owned()),
        at: Utc::now(),
    };
    state
        .ledger
        .execute(&user.user_id, command, &context(&by, &headers))
        .await
        .map_err(ledger_error)?;
    Ok(Json(settings_answer(&state, &user).await?))
}
