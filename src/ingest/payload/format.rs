//! The payload format as data, for `GET /api/config/webhook`: built from the parser's own field
//! table so the documentation cannot drift from what is accepted.

use serde_json::{json, Map, Value};

use super::fields::{MAX_ID_CHARS, MAX_LAG_SECONDS_MAX};
use super::wire::{Field, IGNORED_FIELDS};

fn description(field: Field) -> String {
    match field {
        Field::Symbol => {
            "TradingView symbol ({{ticker}}), e.g. BTCUSDT, BINANCE:BTCUSDT.P, BTC-PERP, \
                          BTC-USD; normalized to a dYdX market"
                .to_owned()
        }
        Field::Side => {
            "buy | sell | long | short | close (close: the whole position, reduce-only); \
                        {{strategy.order.action}}"
                .to_owned()
        }
        Field::Size => {
            "order size in base units ({{strategy.order.contracts}}); number or string".to_owned()
        }
        Field::SizeUsd => "order size as USD notional, converted at the market's price".to_owned(),
        Field::SizePercent => "order size as a percent of account equity, 0 < p <= 100".to_owned(),
        Field::Position => "target form: long | short | flat, with an optional size / size_usd / \
                            size_percent; flat closes the position"
            .to_owned(),
        Field::TargetPosition => "target form: the signed position to hold afterwards in base \
                                  units ({{strategy.position_size}}); 0 = flat"
            .to_owned(),
        Field::OrderType => "market (default) | limit; limit needs price".to_owned(),
        Field::Price => "the alert's price ({{close}} / {{strategy.order.price}}); the limit \
                         price of a limit order"
            .to_owned(),
        Field::TakeProfit => "take-profit price carried to the order".to_owned(),
        Field::StopLoss => "stop-loss price carried to the order".to_owned(),
        Field::Id => format!(
            "unique alert id ({{{{strategy.order.id}}}} plus {{{{timenow}}}}), string or \
             integer, 1 to {MAX_ID_CHARS} printable characters; resends with the same id are \
             answered as duplicates"
        ),
        Field::Timestamp => "when the alert was sent ({{timenow}}): RFC 3339 or unix seconds / \
                             milliseconds; alerts older than max_lag are rejected"
            .to_owned(),
        Field::MaxLag => {
            format!("seconds the alert may lag behind timestamp, 1 to {MAX_LAG_SECONDS_MAX}")
        }
    }
}

fn field_table() -> Value {
    let mut table = Map::new();
    for field in Field::ALL {
        table.insert(
            field.name().to_owned(),
            json!({
                "description": description(field),
                "aliases": field.aliases(),
            }),
        );
    }
    table.insert(
        "secret".to_owned(),
        json!({
            "description": "the webhook secret of the two-factor URL /webhooks/{webhook_uuid}; \
                            never stored or echoed",
            "aliases": [],
        }),
    );
    Value::Object(table)
}

pub fn payload_format() -> Value {
    json!({
        "content_type": "the body is read as JSON whatever the Content-Type (TradingView sends \
                         text/plain); it must be one flat JSON object",
        "required_fields": ["symbol", "side"],
        "optional_fields": [
            "size", "size_usd", "size_percent", "order_type", "price", "take_profit",
            "stop_loss", "id", "timestamp", "max_lag", "secret"
        ],
        "fields": field_table(),
        "ignored_fields": IGNORED_FIELDS
            .iter()
            .filter(|name| **name != "secret")
            .collect::<Vec<_>>(),
        "rules": [
            "give at most one of size, size_usd, size_percent; none uses your default order size",
            "instead of side, a target form may give position (long|short|flat) or target_position",
            "numbers may be JSON numbers or strings; they are exact decimals",
            "sizes are rounded down to the market's step size, prices to its tick size",
            "any other field is rejected, so a typo never falls back to a default",
        ],
        "forms": {
            "simple": {"symbol": "BTCUSDT", "side": "buy", "price": "65000.5", "size": "0.01"},
            "advanced": {
                "symbol": "BTCUSDT", "side": "buy", "order_type": "limit", "price": "65000",
                "size": "0.01", "take_profit": "68000", "stop_loss": "63000"
            },
            "notional": {"symbol": "ETH-USD", "side": "sell", "size_usd": "250"},
            "target": {"symbol": "BINANCE:BTCUSDT.P", "target_position": "-0.02"},
            "target_side": {"symbol": "BTC-USD", "position": "long", "size_percent": "10"},
            "close": {"symbol": "BTC-USD", "side": "close"},
        },
        "example": {
            "symbol": "BTC-USD",
            "side": "buy",
            "size": "0.001",
            "id": "long-entry-2024-05-01T12:00:00Z",
            "timestamp": "2024-05-01T12:00:00Z",
        },
    })
}

/// The alert body as an OpenAPI schema (`/openapi.json`), from the same field table as
/// `payload_format`: every canonical field with its description, the ignored TradingView fields,
/// nothing else (`additionalProperties: false`, as the parser refuses unknown fields). Aliases
/// are named in the descriptions, not as properties: one field given twice is refused.
pub struct AlertBody;

/// The two-factor webhook's body: the same alert with its `secret`.
pub struct TwoFactorAlertBody;

fn alert_schema(secret_required: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
    let typed = |types: &[Type], text: String| {
        ObjectBuilder::new()
            .schema_type(
                types
                    .iter()
                    .cloned()
                    .collect::<utoipa::openapi::schema::SchemaType>(),
            )
            .description(Some(text))
    };
    let mut object = ObjectBuilder::new()
        .description(Some(
            "One flat JSON object (sent as text/plain by TradingView: the body is sniffed, not \
             typed by Content-Type). `symbol` and `side`, or a target form (`position` or \
             `target_position`) instead of `side`.",
        ))
        .required(Field::Symbol.name())
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    for field in Field::ALL {
        let types: &[Type] = match field {
            Field::Symbol | Field::Side | Field::Position | Field::OrderType => &[Type::String],
            Field::Id => &[Type::String, Type::Integer],
            _ => &[Type::Number, Type::String],
        };
        let mut text = description(field);
        if !field.aliases().is_empty() {
            text.push_str(&format!(
                "; also accepted as {}",
                field.aliases().join(", ")
            ));
        }
        object = object.property(field.name(), typed(types, text));
    }
    for ignored in IGNORED_FIELDS.iter().filter(|name| **name != "secret") {
        object = object.property(
            *ignored,
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
                .description(Some(
                    "TradingView's informational placeholder: accepted, ignored",
                )),
        );
    }
    let secret = ObjectBuilder::new().schema_type(Type::String);
    object = if secret_required {
        object
            .property(
                "secret",
                secret.description(Some(
                    "the webhook secret of /webhooks/{webhook_uuid}; never stored or echoed",
                )),
            )
            .required("secret")
    } else {
        object.property(
            "secret",
            secret.description(Some("ignored here (the two-factor webhook's secret)")),
        )
    };
    utoipa::openapi::RefOr::T(Schema::Object(object.build()))
}

impl utoipa::PartialSchema for AlertBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        alert_schema(false)
    }
}

impl utoipa::ToSchema for AlertBody {}

impl utoipa::PartialSchema for TwoFactorAlertBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        alert_schema(true)
    }
}

impl utoipa::ToSchema for TwoFactorAlertBody {}
