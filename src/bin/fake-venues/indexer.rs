//! The fake Indexer's REST API: the paths and JSON shapes of dYdX's comlink service (every field
//! the official client's models require, numbers as strings as comlink sends them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::venue::{
    FakeFill, FakeMarket, FakeOrder, FakePosition, Misreport, RequestFault, Service, Venue,
    FLAG_CONDITIONAL, OUT_OF_RANGE,
};

/// Lists are cut to this many entries unless the request asks for fewer, as comlink's default.
const DEFAULT_LIMIT: usize = 100;

pub fn router(venue: Arc<Venue>) -> Router {
    Router::new()
        .route("/v4/perpetualMarkets", get(perpetual_markets))
        .route("/v4/perpetualPositions", get(perpetual_positions))
        .route("/v4/fills", get(fills))
        .route("/v4/orders", get(orders))
        .route("/v4/orders/{id}", get(order))
        .route(
            "/v4/addresses/{address}/subaccountNumber/{number}",
            get(subaccount),
        )
        .route("/v4/height", get(height))
        .route("/v4/time", get(time))
        .layer(middleware::from_fn_with_state(venue.clone(), faults))
        .with_state(venue)
}

/// The faults set for the Indexer, applied before any handler.
async fn faults(State(venue): State<Arc<Venue>>, request: Request, next: Next) -> Response {
    let slow = venue.slow_ms(Service::Indexer);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    match venue.request_fault(Service::Indexer) {
        Some(RequestFault::Down | RequestFault::ServerError) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Some(RequestFault::RateLimited) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            response
        }
        None => next.run(request).await,
    }
}

/// comlink's error body.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "errors": [{ "msg": message }] }))).into_response()
}

fn iso(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn text(value: Decimal) -> String {
    value.normalize().to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarketsQuery {
    ticker: Option<String>,
    limit: Option<usize>,
}

async fn perpetual_markets(
    State(venue): State<Arc<Venue>>,
    Query(query): Query<MarketsQuery>,
) -> Response {
    let markets: serde_json::Map<String, Value> = venue
        .markets()
        .iter()
        .filter(|market| query.ticker.as_ref().is_none_or(|t| *t == market.ticker))
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|market| (market.ticker.clone(), market_json(market)))
        .collect();
    Json(json!({ "markets": markets })).into_response()
}

fn market_json(market: &FakeMarket) -> Value {
    json!({
        "clobPairId": market.clob_pair_id.to_string(),
        "ticker": market.ticker,
        "status": "ACTIVE",
        "oraclePrice": text(market.oracle_price),
        "priceChange24H": "0",
        "volume24H": "1250000.5",
        "trades24H": 4821,
        "nextFundingRate": "0.00000125",
        "initialMarginFraction": text(market.initial_margin_fraction),
        "maintenanceMarginFraction": text(market.maintenance_margin_fraction),
        "openInterest": "1000",
        "atomicResolution": market.atomic_resolution,
        "quantumConversionExponent": market.quantum_conversion_exponent,
        "tickSize": text(market.tick_size()),
        "stepSize": text(market.step_size()),
        "stepBaseQuantums": market.step_base_quantums,
        "subticksPerTick": market.subticks_per_tick,
        "marketType": "CROSS",
        "openInterestLowerCap": null,
        "openInterestUpperCap": null,
        "baseOpenInterest": "1000",
        "defaultFundingRate1H": "0",
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubaccountQuery {
    address: String,
    subaccount_number: u32,
    limit: Option<usize>,
    status: Option<String>,
    ticker: Option<String>,
    market: Option<String>,
    side: Option<String>,
    #[serde(rename = "type")]
    order_type: Option<String>,
    #[allow(dead_code)]
    return_latest_orders: Option<bool>,
}

async fn perpetual_positions(
    State(venue): State<Arc<Venue>>,
    Query(query): Query<SubaccountQuery>,
) -> Response {
    let positions: Vec<Value> = venue
        .positions(&query.address, query.subaccount_number)
        .iter()
        .map(|(ticker, position)| position_json(ticker, position, query.subaccount_number, &venue))
        .map(|position| out_of_range(&venue, position, "size"))
        .filter(|position| {
            query
                .status
                .as_ref()
                .is_none_or(|status| position["status"] == *status)
        })
        .take(query.limit.unwrap_or(DEFAULT_LIMIT))
        .collect();
    Json(json!({ "positions": positions })).into_response()
}

fn position_json(ticker: &str, position: &FakePosition, number: u32, venue: &Venue) -> Value {
    let open = !position.size.is_zero();
    let oracle = venue.oracle(ticker).unwrap_or(position.entry_price);
    let unrealized = (oracle - position.entry_price) * position.size;
    json!({
        "market": ticker,
        "status": if open { "OPEN" } else { "CLOSED" },
        "side": if position.size.is_sign_negative() { "SHORT" } else { "LONG" },
        "size": text(position.size),
        "maxSize": text(position.max_size),
        "entryPrice": text(position.entry_price),
        "realizedPnl": text(position.realized_pnl),
        "createdAt": iso(position.created_at),
        "createdAtHeight": position.created_at_height.to_string(),
        "sumOpen": text(position.sum_open),
        "sumClose": text(position.sum_close),
        "netFunding": "0",
        "unrealizedPnl": text(if open { unrealized } else { Decimal::ZERO }),
        "closedAt": if open { Value::Null } else { json!(iso(Utc::now())) },
        "exitPrice": if open { Value::Null } else { json!(text(position.entry_price)) },
        "subaccountNumber": number,
    })
}

async fn fills(State(venue): State<Arc<Venue>>, Query(query): Query<SubaccountQuery>) -> Response {
    let fills: Vec<Value> = venue
        .fills()
        .iter()
        .rev()
        .filter(|fill| fill.address == query.address && fill.subaccount == query.subaccount_number)
        .filter(|fill| query.market.as_ref().is_none_or(|m| *m == fill.ticker))
        .take(query.limit.unwrap_or(DEFAULT_LIMIT))
        .map(|fill| match venue.faults().misreport {
            Some(misreport) => fill_json(&misreport.fill(fill)),
            None => fill_json(fill),
        })
        .map(|fill| out_of_range(&venue, fill, "size"))
        .collect();
    Json(json!({ "fills": fills })).into_response()
}

fn fill_json(fill: &FakeFill) -> Value {
    json!({
        "id": fill.id,
        "side": fill.side,
        "liquidity": "TAKER",
        "type": "LIMIT",
        "market": fill.ticker,
        "marketType": "PERPETUAL",
        "price": text(fill.price),
        "size": text(fill.size),
        "fee": text(fill.fee),
        "affiliateRevShare": "0",
        "createdAt": iso(fill.created_at),
        "createdAtHeight": fill.created_at_height.to_string(),
        "orderId": fill.order_id,
        "clientMetadata": fill.client_metadata.to_string(),
        "subaccountNumber": fill.subaccount,
        "builderFee": null,
        "builderAddress": null,
        "orderRouterAddress": null,
        "orderRouterFee": null,
    })
}

/// Newest first, like comlink with `returnLatestOrders=true` (and this fake always).
async fn orders(State(venue): State<Arc<Venue>>, Query(query): Query<SubaccountQuery>) -> Response {
    let orders: Vec<Value> = venue
        .orders()
        .iter()
        .rev()
        .filter(|order| {
            order.placement.address == query.address
                && order.placement.subaccount == query.subaccount_number
        })
        .filter(|order| query.ticker.as_ref().is_none_or(|t| *t == order.ticker))
        .map(|order| shown_order_json(&venue, order))
        .filter(|order| {
            query.side.as_ref().is_none_or(|s| order["side"] == *s)
                && query.status.as_ref().is_none_or(|s| order["status"] == *s)
                && query
                    .order_type
                    .as_ref()
                    .is_none_or(|t| order["type"] == *t)
        })
        .take(query.limit.unwrap_or(DEFAULT_LIMIT))
        .collect();
    Json(orders).into_response()
}

async fn order(State(venue): State<Arc<Venue>>, Path(id): Path<String>) -> Response {
    match venue.orders().iter().find(|order| order.id == id) {
        Some(order) => Json(shown_order_json(&venue, order)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("Unable to find order with id: {id}"),
        ),
    }
}

/// The order as the Indexer shows it, misreported when that fault is set.
fn shown_order_json(venue: &Venue, order: &FakeOrder) -> Value {
    let shown = match venue.faults().misreport {
        Some(misreport) => order_json(&misreport.order(order)),
        None => order_json(order),
    };
    out_of_range(venue, shown, "totalFilled")
}

/// `field` of `shown` as a number no decimal holds, under `Misreport::OutOfRange`.
fn out_of_range(venue: &Venue, mut shown: Value, field: &str) -> Value {
    if venue.faults().misreport == Some(Misreport::OutOfRange) {
        shown[field] = json!(OUT_OF_RANGE);
    }
    shown
}

fn order_json(order: &FakeOrder) -> Value {
    let p = &order.placement;
    let time_in_force = match p.time_in_force {
        crate::venue::TimeInForce::Ioc => "IOC",
        crate::venue::TimeInForce::Fok => "FOK",
        crate::venue::TimeInForce::Gtt | crate::venue::TimeInForce::PostOnly => "GTT",
    };
    json!({
        "id": order.id,
        "subaccountId": uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{}/{}", p.address, p.subaccount).as_bytes(),
        ).to_string(),
        "clientId": p.client_id.to_string(),
        "clobPairId": p.clob_pair_id.to_string(),
        "side": p.side,
        "size": text(order.size),
        "totalFilled": text(order.total_filled),
        "price": text(order.price),
        "type": order.order_type,
        "status": order.status,
        "timeInForce": time_in_force,
        "reduceOnly": p.reduce_only,
        "orderFlags": p.order_flags.to_string(),
        "goodTilBlock": p.good_til_block.map(|block| block.to_string()),
        "goodTilBlockTime": p.good_til_block_time.and_then(|seconds| {
            chrono::DateTime::from_timestamp(i64::from(seconds), 0).map(iso)
        }),
        "createdAtHeight": order.created_at_height.to_string(),
        "clientMetadata": p.client_metadata.to_string(),
        "triggerPrice": if p.order_flags == FLAG_CONDITIONAL {
            order.trigger_price.map(text)
        } else {
            None
        },
        "updatedAt": iso(order.updated_at),
        "updatedAtHeight": order.updated_at_height.to_string(),
        "postOnly": p.time_in_force == crate::venue::TimeInForce::PostOnly,
        "ticker": order.ticker,
        "subaccountNumber": p.subaccount,
        "feePpm": null,
        "builderAddress": null,
        "orderRouterAddress": null,
        "duration": null,
        "interval": null,
        "priceTolerance": null,
    })
}

async fn subaccount(
    State(venue): State<Arc<Venue>>,
    Path((address, number)): Path<(String, u32)>,
) -> Response {
    let height = venue.height().to_string();
    let positions = venue.positions(&address, number);
    let open: serde_json::Map<String, Value> = positions
        .iter()
        .filter(|(_, position)| !position.size.is_zero())
        .map(|(ticker, position)| {
            (
                ticker.clone(),
                position_json(ticker, position, number, &venue),
            )
        })
        .collect();
    let usdc = venue.usdc_balance(&address, number);
    let unrealized: Decimal = positions
        .iter()
        .map(|(ticker, position)| {
            let oracle = venue.oracle(ticker).unwrap_or(position.entry_price);
            (oracle - position.entry_price) * position.size
        })
        .sum();
    let equity = match venue.faults().misreport {
        Some(Misreport::OutOfRange) => OUT_OF_RANGE.to_owned(),
        _ => text(usdc + unrealized),
    };
    let assets: HashMap<&str, Value> = HashMap::from([(
        "USDC",
        json!({
            "symbol": "USDC",
            "side": "LONG",
            "size": text(usdc),
            "assetId": "0",
            "subaccountNumber": number,
        }),
    )]);
    Json(json!({
        "subaccount": {
            "address": address,
            "subaccountNumber": number,
            "equity": equity,
            "freeCollateral": equity,
            "openPerpetualPositions": open,
            "assetPositions": assets,
            "marginEnabled": true,
            "updatedAtHeight": height,
            "latestProcessedBlockHeight": height,
        }
    }))
    .into_response()
}

async fn height(State(venue): State<Arc<Venue>>) -> Response {
    Json(json!({ "height": venue.height().to_string(), "time": iso(Utc::now()) })).into_response()
}

async fn time() -> Response {
    let now = Utc::now();
    let epoch = now.timestamp_millis() as f64 / 1000.0;
    Json(json!({ "iso": iso(now), "epoch": epoch })).into_response()
}
