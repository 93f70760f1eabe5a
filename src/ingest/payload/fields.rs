//! Readers for the text-valued fields: symbol, side, position, order type, id, max lag.

use serde_json::value::RawValue;

use aggregates::Side;

use super::{clip, json_kind, numbers, unrendered_placeholder, PayloadError};

/// Longest explicit alert id accepted; it becomes part of the idempotency key.
pub const MAX_ID_CHARS: usize = 128;

/// Longer than any exchange-prefixed ticker; normalization reports the rest.
pub const MAX_SYMBOL_CHARS: usize = 64;

/// The staleness window an alert may ask for: a day is already far beyond TradingView's resends.
pub const MAX_LAG_SECONDS_MAX: u32 = 86_400;

/// A JSON string, trimmed, non-empty, rendered.
pub fn text(field: &'static str, raw: &RawValue) -> Result<String, PayloadError> {
    if !raw.get().starts_with('"') {
        return Err(PayloadError::new(
            field,
            format!("must be a string; it is {}", json_kind(raw)),
        ));
    }
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| PayloadError::new(field, "is not a valid JSON string"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(PayloadError::new(field, "is empty"));
    }
    if let Some(problem) = unrendered_placeholder(text) {
        return Err(PayloadError::new(field, problem));
    }
    Ok(text.to_owned())
}

pub fn symbol(raw: &RawValue) -> Result<String, PayloadError> {
    let symbol = text("symbol", raw)?;
    if symbol.chars().count() > MAX_SYMBOL_CHARS {
        return Err(PayloadError::new(
            "symbol",
            format!("is longer than {MAX_SYMBOL_CHARS} characters"),
        ));
    }
    Ok(symbol)
}

/// What `side` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideWord {
    Order(Side),
    Close,
}

pub fn side(raw: &RawValue) -> Result<SideWord, PayloadError> {
    let word = text("side", raw)?;
    match word.to_ascii_lowercase().as_str() {
        "buy" | "long" => Ok(SideWord::Order(Side::Buy)),
        "sell" | "short" => Ok(SideWord::Order(Side::Sell)),
        "close" => Ok(SideWord::Close),
        _ => Err(PayloadError::new(
            "side",
            format!(
                "`{}` is not one of buy, sell, long, short, close",
                clip(&word)
            ),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionWord {
    Long,
    Short,
    Flat,
}

pub fn position(raw: &RawValue) -> Result<PositionWord, PayloadError> {
    let word = text("position", raw)?;
    match word.to_ascii_lowercase().as_str() {
        "long" => Ok(PositionWord::Long),
        "short" => Ok(PositionWord::Short),
        "flat" => Ok(PositionWord::Flat),
        _ => Err(PayloadError::new(
            "position",
            format!("`{}` is not one of long, short, flat", clip(&word)),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTypeWord {
    Market,
    Limit,
}

pub fn order_type(raw: &RawValue) -> Result<OrderTypeWord, PayloadError> {
    let word = text("order_type", raw)?;
    match word.to_ascii_lowercase().as_str() {
        "market" => Ok(OrderTypeWord::Market),
        "limit" => Ok(OrderTypeWord::Limit),
        _ => Err(PayloadError::new(
            "order_type",
            format!("`{}` is not one of market, limit", clip(&word)),
        )),
    }
}

/// A string or an integer (`{{strategy.order.id}}` is a string, some templates send numbers).
pub fn id(raw: &RawValue) -> Result<String, PayloadError> {
    let id = match json_kind(raw) {
        "a string" => text("id", raw)?,
        "a number" if is_integer(raw.get()) => raw.get().to_owned(),
        kind => {
            return Err(PayloadError::new(
                "id",
                format!("must be a string or an integer; it is {kind}"),
            ))
        }
    };
    if id.chars().count() > MAX_ID_CHARS {
        return Err(PayloadError::new(
            "id",
            format!("must be 1 to {MAX_ID_CHARS} characters"),
        ));
    }
    if id.chars().any(is_unprintable) {
        return Err(PayloadError::new(
            "id",
            "must contain only printable characters (no control or invisible characters)",
        ));
    }
    Ok(id)
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Control characters, and invisible ones that would make two ids look identical in a log.
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

pub fn max_lag(raw: &RawValue) -> Result<u32, PayloadError> {
    let problem = || {
        PayloadError::new(
            "max_lag",
            format!("must be a whole number of seconds from 1 to {MAX_LAG_SECONDS_MAX}"),
        )
    };
    let text = numbers::number_text("max_lag", raw)?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem());
    }
    match text.parse::<u32>() {
        Ok(seconds) if (1..=MAX_LAG_SECONDS_MAX).contains(&seconds) => Ok(seconds),
        _ => Err(problem()),
    }
}
