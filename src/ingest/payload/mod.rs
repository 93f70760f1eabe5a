//! The alert body: sniffed as JSON whatever its Content-Type (TradingView sends text/plain when
//! the message is not valid JSON), checked field by field, and turned into an [`Alert`]. Numbers
//! are read from their text, never through a float. Every rejection names its field.

mod fields;
mod format;
mod numbers;
mod time;
mod wire;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use aggregates::Side;

use self::fields::{OrderTypeWord, PositionWord, SideWord};
use self::wire::{Field, Fields};

pub use self::fields::{MAX_ID_CHARS, MAX_LAG_SECONDS_MAX, MAX_SYMBOL_CHARS};
pub use self::format::{payload_format, AlertBody, TwoFactorAlertBody};
pub use self::wire::{IGNORED_FIELDS, MAX_FIELDS, MAX_NESTING_DEPTH};
// The size forms are the markets' vocabulary (they convert them to base units); re-exported as
// part of what an alert parses to.
pub use crate::markets::SizeSpec;

/// A field and what is wrong with it, for the 4xx answer. `field` is a canonical field name,
/// `body` for the body as a whole, or (clipped) the unknown key that was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PayloadError {
    pub field: Cow<'static, str>,
    pub problem: String,
}

impl PayloadError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field: Cow::Borrowed(field),
            problem: problem.into(),
        }
    }

    fn named(field: String, problem: impl Into<String>) -> Self {
        Self {
            field: Cow::Owned(field),
            problem: problem.into(),
        }
    }
}

/// A parsed alert, before market normalization and sizing (ingest does those with the market
/// list, the reference price and the account's equity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// As sent (trimmed); `markets::MarketList::normalize` maps it to a dYdX market.
    pub symbol: String,
    pub action: AlertAction,
    pub order_type: AlertOrderType,
    /// The `price` field as sent: the alert's view of the market ({{close}}), and for a limit
    /// order also its limit price.
    pub price: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub max_lag_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertAction {
    Order {
        side: Side,
        size: SizeSpec,
    },
    Target {
        position: TargetSpec,
    },
    /// `side: close` or `position: flat`.
    Close,
}

/// The position to hold afterwards. `parse` yields `AlertAction::Close` for `position: flat`;
/// `Flat` is here for callers that build targets themselves and means the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    /// `target_position`: signed base units, 0 = flat.
    Signed(Decimal),
    Long(SizeSpec),
    Short(SizeSpec),
    Flat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOrderType {
    Market,
    Limit { price: Decimal },
}

pub fn parse(body: &[u8]) -> Result<Alert, PayloadError> {
    let fields = wire::read(body)?;
    let symbol = fields::symbol(required(&fields, Field::Symbol)?)?;
    let action = action(&fields)?;
    let price = optional(&fields, Field::Price, |raw| numbers::positive("price", raw))?;
    let order_type = match optional(&fields, Field::OrderType, fields::order_type)? {
        None | Some(OrderTypeWord::Market) => AlertOrderType::Market,
        Some(OrderTypeWord::Limit) => AlertOrderType::Limit {
            price: price.ok_or_else(|| {
                PayloadError::new("price", "is required for a limit order (order_type: limit)")
            })?,
        },
    };
    Ok(Alert {
        symbol,
        action,
        order_type,
        price,
        take_profit: optional(&fields, Field::TakeProfit, |raw| {
            numbers::positive("take_profit", raw)
        })?,
        stop_loss: optional(&fields, Field::StopLoss, |raw| {
            numbers::positive("stop_loss", raw)
        })?,
        id: optional(&fields, Field::Id, fields::id)?,
        timestamp: optional(&fields, Field::Timestamp, time::parse)?,
        max_lag_seconds: optional(&fields, Field::MaxLag, fields::max_lag)?,
    })
}

/// Which of the three forms the alert is: an order (`side`), a target (`position` /
/// `target_position`) or a close; mixing them is ambiguous and rejected.
fn action(fields: &Fields<'_>) -> Result<AlertAction, PayloadError> {
    let given = |field| fields.has(field);
    match (
        given(Field::Side),
        given(Field::Position),
        given(Field::TargetPosition),
    ) {
        (true, true, _) | (true, _, true) => Err(PayloadError::new(
            "side",
            "cannot be combined with `position` or `target_position`: send an order (side) or \
             a target (position / target_position), not both",
        )),
        (false, true, true) => Err(PayloadError::new(
            "target_position",
            "cannot be combined with `position`: give one target",
        )),
        (false, false, false) => Err(PayloadError::new(
            "side",
            "is required (buy, sell, long, short or close), unless the alert gives a target \
             with `position` or `target_position`",
        )),
        (true, false, false) => match fields::side(required(fields, Field::Side)?)? {
            SideWord::Order(side) => Ok(AlertAction::Order {
                side,
                size: size_spec(fields)?,
            }),
            SideWord::Close => {
                no_size(fields, "a close closes the whole position").map(|()| AlertAction::Close)
            }
        },
        (false, true, false) => match fields::position(required(fields, Field::Position)?)? {
            PositionWord::Long => Ok(AlertAction::Target {
                position: TargetSpec::Long(size_spec(fields)?),
            }),
            PositionWord::Short => Ok(AlertAction::Target {
                position: TargetSpec::Short(size_spec(fields)?),
            }),
            PositionWord::Flat => no_size(fields, "a flat target closes the whole position")
                .map(|()| AlertAction::Close),
        },
        (false, false, true) => {
            no_size(fields, "`target_position` is itself the size")?;
            let size =
                numbers::decimal("target_position", required(fields, Field::TargetPosition)?)?;
            Ok(AlertAction::Target {
                position: TargetSpec::Signed(size),
            })
        }
    }
}

const SIZE_FIELDS: [Field; 3] = [Field::Size, Field::SizeUsd, Field::SizePercent];

/// At most one of `size`, `size_usd`, `size_percent`; none means the configured default.
fn size_spec(fields: &Fields<'_>) -> Result<SizeSpec, PayloadError> {
    let mut given = SIZE_FIELDS.into_iter().filter(|field| fields.has(*field));
    let (first, second) = (given.next(), given.next());
    if let (Some(first), Some(second)) = (first, second) {
        return Err(PayloadError::new(
            second.name(),
            format!(
                "cannot be combined with `{}`: give exactly one of size, size_usd, size_percent",
                first.name()
            ),
        ));
    }
    let Some(field) = first else {
        return Ok(SizeSpec::Default);
    };
    let raw = required(fields, field)?;
    Ok(match field {
        Field::SizeUsd => SizeSpec::Usd(numbers::positive("size_usd", raw)?),
        Field::SizePercent => SizeSpec::PercentOfEquity(numbers::percent("size_percent", raw)?),
        _ => SizeSpec::Base(numbers::positive("size", raw)?),
    })
}

fn no_size(fields: &Fields<'_>, why: &str) -> Result<(), PayloadError> {
    match SIZE_FIELDS.into_iter().find(|field| fields.has(*field)) {
        Some(field) => Err(PayloadError::new(
            field.name(),
            format!("must not be given here: {why}"),
        )),
        None => Ok(()),
    }
}

fn required<'a>(fields: &Fields<'a>, field: Field) -> Result<&'a RawValue, PayloadError> {
    fields
        .get(field)
        .ok_or_else(|| PayloadError::new(field.name(), "is required"))
}

fn optional<'a, T>(
    fields: &Fields<'a>,
    field: Field,
    read: impl FnOnce(&'a RawValue) -> Result<T, PayloadError>,
) -> Result<Option<T>, PayloadError> {
    fields.get(field).map(read).transpose()
}

/// What a JSON value is, for "it is ..." in messages; never the value itself.
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// `{{close}}` left in the body: the alert was sent without TradingView filling it in.
fn unrendered_placeholder(text: &str) -> Option<String> {
    let start = text.find("{{")?;
    let end = text[start..]
        .find("}}")
        .map_or(text.len(), |end| start + end + 2);
    Some(format!(
        "`{}` looks like an unrendered TradingView placeholder; check the alert message",
        clip(&text[start..end])
    ))
}

/// A short, single-line excerpt of input for a message: never more of the body than this.
fn clip(text: &str) -> String {
    clip_to(text, 40)
}

fn clip_to(text: &str, max_chars: usize) -> String {
    let mut clipped: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests;
