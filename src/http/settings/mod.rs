//! The trader's settings: `GET /api/settings` and the changes, each recorded as an event in the
//! trader's own account naming who made it (`trader:<user_id>`).
//!
//! - `mod.rs`: reading the settings, the venue, limits and default order size;
//! - `credentials.rs`: vault fields (write-only, shown only as set or not) and webhook rotation;
//! - `trials.rs`: the test notification and the test signal.

pub(super) mod credentials;
pub(super) mod trials;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use aggregates::{
    AccountCommand, AccountError, AccountSettings, Market, RiskLimits, SettingsChange, Venue,
};

use super::authenticated::Authenticated;
use super::error::{ApiError, ErrorBody, Result};
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

// The answers' fields are in alphabetical order: the order of the `json!` objects they replaced,
// so the bytes are unchanged. Amounts are exact decimals written as strings.

/// A trader's settings: `GET /api/settings`, and the answer to every change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    /// Each credential a trader may store: set or not, never its value.
    pub credentials: BTreeMap<&'static str, CredentialState>,
    /// The size of an alert that gives none, in USD (the service's unless the account set one).
    #[schema(example = "100")]
    pub default_order_usd: String,
    pub default_order_usd_is_own: bool,
    /// Whether the stored credentials are enough to trade on dYdX.
    pub dydx_ready: bool,
    /// The account's halt, if it is halted.
    pub halted: Option<HaltView>,
    pub limits: Limits,
    pub user_id: String,
    /// `paper` or `dydx`.
    #[schema(example = "paper")]
    pub venue: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialState {
    pub set: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HaltView {
    #[schema(format = DateTime)]
    pub at: String,
    /// Who halted it: `staff:<id>`, `trader:<id>`, or the service.
    pub by: String,
    pub reason: String,
}

/// The account's risk limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct Limits {
    /// The only markets it may trade; empty: every market.
    pub allowed_markets: Vec<String>,
    /// Exchange failures in a row before the account halts itself (0: never).
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub halt_after_consecutive_failures: u32,
    pub max_daily_volume_usd: String,
    pub max_order_notional_usd: String,
    /// Per market, in base units.
    pub max_order_size: BTreeMap<String, String>,
    pub max_position_notional_usd: String,
    /// Per market, in base units.
    pub max_position_size: BTreeMap<String, String>,
    /// Largest distance from the reference price, in basis points.
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub max_price_deviation_bps: u32,
}

#[utoipa::path(
    get,
    path = "/api/settings",
    tag = "settings",
    summary = "The caller's settings: venue, limits, default order size, which credentials are set",
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = 404, description = "NO_ACCOUNT: the user has no trading account", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
) -> Result<Json<Settings>> {
    Ok(Json(settings_answer(&state, &user).await?))
}

/// What `GET /api/settings` shows, also the answer to every change.
async fn settings_answer(state: &AppState, user: &AuthenticatedUser) -> Result<Settings> {
    let (settings, venue) = current(state, &user.user_id).await?;
    let held = state
        .vault
        .held(&user.user_id)
        .await
        .map_err(ApiError::internal)?;
    // Set or not, never the value nor any part of it: nothing is decrypted to answer this.
    let credentials = Field::TRADER_SETTABLE
        .into_iter()
        .map(|field| {
            (
                field.name(),
                CredentialState {
                    set: held.contains(&field),
                },
            )
        })
        .collect();
    let halted = settings.halt.as_ref().map(|halt| HaltView {
        at: halt.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        by: halt.by.clone(),
        reason: halt.reason.clone(),
    });
    let service_default = state.default_order_usd;
    Ok(Settings {
        credentials,
        default_order_usd: settings
            .default_order_usd
            .unwrap_or(service_default)
            .to_string(),
        default_order_usd_is_own: settings.default_order_usd.is_some(),
        dydx_ready: Field::dydx_ready(&held),
        halted,
        limits: limits_view(&settings.limits),
        user_id: user.user_id.clone(),
        venue: venue.as_str(),
    })
}

fn limits_view(limits: &RiskLimits) -> Limits {
    let per_market = |map: &BTreeMap<Market, Decimal>| {
        map.iter()
            .map(|(market, size)| (market.to_string(), size.to_string()))
            .collect()
    };
    Limits {
        allowed_markets: limits
            .allowed_markets
            .iter()
            .map(ToString::to_string)
            .collect(),
        halt_after_consecutive_failures: limits.halt_after_consecutive_failures,
        max_daily_volume_usd: limits.max_daily_volume_usd.to_string(),
        max_order_notional_usd: limits.max_order_notional_usd.to_string(),
        max_order_size: per_market(&limits.max_order_size),
        max_position_notional_usd: limits.max_position_notional_usd.to_string(),
        max_position_size: per_market(&limits.max_position_size),
        max_price_deviation_bps: limits.max_price_deviation_bps,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VenueRequest {
    /// `paper` or `dydx`.
    #[schema(pattern = "^(paper|dydx)$")]
    venue: String,
}

/// `PUT /api/settings/venue`: paper always; dYdX only once its credentials are stored (a venue
/// without them would fail every order).
#[utoipa::path(
    put,
    path = "/api/settings/venue",
    tag = "settings",
    summary = "Choose the venue: paper, or dYdX once its credentials are stored",
    request_body = VenueRequest,
    responses(
        (status = 200, description = "The settings after the change", body = Settings),
        (status = 400, description = "INVALID_BODY, INVALID_VENUE", body = ErrorBody),
        (status = 404, description = "NO_ACCOUNT", body = ErrorBody),
        (status = 409, description = "DYDX_CREDENTIALS_MISSING, DYDX_NOT_CONFIGURED; VENUE_BUSY: an order in flight or a position open", body = ErrorBody),
        (status = 422, description = "INVALID_SETTING: refused by the account", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "CONTENDED: the account is busy; nothing changed, retry", body = ErrorBody),
    )
)]
pub async fn choose_venue(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<VenueRequest>, JsonRejection>,
) -> Result<Json<Settings>> {
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
/// (Amounts: exact decimals greater than zero, as JSON numbers or strings.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    #[schema(value_type = Option<String>, example = "5000")]
    max_order_notional_usd: Option<Decimal>,
    #[schema(value_type = Option<String>, example = "20000")]
    max_position_notional_usd: Option<Decimal>,
    #[schema(value_type = Option<String>, example = "100000")]
    max_daily_volume_usd: Option<Decimal>,
    /// Per market: a size, or `null` to lift that market's limit.
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    max_order_size: Option<BTreeMap<Market, Option<Decimal>>>,
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    max_position_size: Option<BTreeMap<Market, Option<Decimal>>>,
    /// The only markets the account may trade; `[]`: every market.
    #[schema(value_type = Option<Vec<String>>, example = json!(["BTC-USD"]))]
    allowed_markets: Option<Vec<Market>>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    max_price_deviation_bps: Option<u32>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    halt_after_consecutive_failures: Option<u32>,
    /// `null`: back to the service's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "100")]
    default_order_usd: Option<Option<Decimal>>,
    /// Recorded with the change (at most 500 characters).
    #[schema(max_length = 500)]
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

#[utoipa::path(
    put,
    path = "/api/settings/limits",
    tag = "settings",
    summary = "Change risk limits and the default order size (absent fields keep their value)",
    request_body = LimitsRequest,
    responses(
        (status = 200, description = "The settings after the change", body = Settings),
        (status = 400, description = "INVALID_BODY", body = ErrorBody),
        (status = 404, description = "NO_ACCOUNT", body = ErrorBody),
        (status = 422, description = "INVALID_SETTING: an amount not above zero, a reason too long, or refused by the account", body = ErrorBody),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
        (status = 503, description = "CONTENDED: the account is busy; nothing changed, retry", body = ErrorBody),
    )
)]
pub async fn change_limits(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
    request: std::result::Result<Json<LimitsRequest>, JsonRejection>,
) -> Result<Json<Settings>> {
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
