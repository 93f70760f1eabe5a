//! The control endpoints tests and people drive the fakes with: what the venue received, the
//! faults to inject, the oracle prices, the owners' authenticators (permissioned keys).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::accountplus::AuthenticatorSpec;
use crate::venue::{Faults, Venue};

/// Where faults meant for the Telegram fake go (an error: they do not parse); `None` when that fake
/// is not mounted.
pub type TelegramFaults = Option<Arc<dyn Fn(Value) -> Result<(), String> + Send + Sync>>;

#[derive(Clone)]
struct Control {
    venue: Arc<Venue>,
    telegram: TelegramFaults,
}

pub fn router(venue: Arc<Venue>, telegram: TelegramFaults) -> Router {
    Router::new()
        .route("/_fake/orders", get(orders))
        .route("/_fake/faults", get(faults).post(set_faults))
        .route("/_fake/prices", get(prices).post(set_prices))
        .route(
            "/_fake/authenticators",
            get(authenticators).post(add_authenticator),
        )
        .route(
            "/_fake/authenticators/{owner}/{id}",
            delete(remove_authenticator),
        )
        .with_state(Control { venue, telegram })
}

/// Every order the node received, accepted or not, and how many times each client id was sent.
async fn orders(State(control): State<Control>) -> Response {
    let received = control.venue.received();
    let mut sends: BTreeMap<String, u32> = BTreeMap::new();
    let orders: Vec<Value> = received
        .iter()
        .map(|(placement, ticker)| {
            *sends.entry(placement.client_id.to_string()).or_insert(0) += 1;
            let market = control.venue.market_by_clob(placement.clob_pair_id);
            json!({
                "client_id": placement.client_id,
                "client_metadata": placement.client_metadata,
                "address": placement.address,
                "subaccount": placement.subaccount,
                "market": ticker,
                "side": placement.side,
                "size": market.as_ref().map(|m| m.size_of(placement.quantums).to_string()),
                "price": market.as_ref().map(|m| m.price_of(placement.subticks).to_string()),
                "trigger_price": market
                    .as_ref()
                    .filter(|_| placement.trigger_subticks > 0)
                    .map(|m| m.price_of(placement.trigger_subticks).to_string()),
                "quantums": placement.quantums,
                "subticks": placement.subticks,
                "flags": placement.order_flags,
                "time_in_force": format!("{:?}", placement.time_in_force).to_uppercase(),
                "reduce_only": placement.reduce_only,
                "condition_type": placement.condition_type,
                "good_til_block": placement.good_til_block,
                "good_til_block_time": placement.good_til_block_time,
                "signer": placement.signer,
                "authenticators": placement.authenticators,
            })
        })
        .collect();
    Json(json!({
        "orders": orders,
        "sends": sends,
        "rate_limited_answers": control.venue.throttled(),
    }))
    .into_response()
}

async fn faults(State(control): State<Control>) -> Response {
    Json(control.venue.faults()).into_response()
}

/// Replaces the faults: `{}` clears them all.
async fn set_faults(State(control): State<Control>, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => return bad_request(&error.to_string()),
    };
    if let Some(telegram) = faults.telegram.clone() {
        match &control.telegram {
            Some(set) => {
                if let Err(error) = set(telegram) {
                    return bad_request(&format!("telegram: {error}"));
                }
            }
            None => return bad_request("the Telegram fake is not mounted in this build"),
        }
    }
    control.venue.set_faults(faults);
    Json(control.venue.faults()).into_response()
}

async fn prices(State(control): State<Control>) -> Response {
    let prices: BTreeMap<String, String> = control
        .venue
        .markets()
        .into_iter()
        .map(|market| (market.ticker, market.oracle_price.to_string()))
        .collect();
    Json(prices).into_response()
}

/// `{"BTC-USD": "64000.5", ...}`: sets those markets' oracle prices.
async fn set_prices(State(control): State<Control>, body: axum::body::Bytes) -> Response {
    let prices: HashMap<String, Decimal> = match serde_json::from_slice(&body) {
        Ok(prices) => prices,
        Err(error) => return bad_request(&error.to_string()),
    };
    match control.venue.set_prices(&prices) {
        Ok(()) => prices_response(&control),
        Err(error) => bad_request(&error),
    }
}

fn prices_response(control: &Control) -> Response {
    let prices: BTreeMap<String, String> = control
        .venue
        .markets()
        .into_iter()
        .map(|market| (market.ticker, market.oracle_price.to_string()))
        .collect();
    Json(prices).into_response()
}

async fn authenticators(State(control): State<Control>) -> Response {
    Json(json!({ "authenticators": control.venue.authenticators.all() })).into_response()
}

/// `{"owner", "public_key" (hex), "message_filter": [type URLs], "subaccount_filter"?: [numbers],
/// "clob_pair_filter"?: [ids]}` → `{"id"}`: what the owner's `MsgAddAuthenticator` would do.
async fn add_authenticator(State(control): State<Control>, body: axum::body::Bytes) -> Response {
    let spec: AuthenticatorSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(error) => return bad_request(&error.to_string()),
    };
    match control.venue.authenticators.add(spec) {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(error) => bad_request(&error),
    }
}

/// What the owner's `MsgRemoveAuthenticator` would do; 404 when the owner has no such id.
async fn remove_authenticator(
    State(control): State<Control>,
    Path((owner, id)): Path<(String, u64)>,
) -> Response {
    if control.venue.authenticators.remove(&owner, id) {
        Json(json!({ "removed": id })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such authenticator", "code": "not_found" })),
        )
            .into_response()
    }
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": message, "code": "bad_request", "timestamp": chrono::Utc::now() })),
    )
        .into_response()
}
