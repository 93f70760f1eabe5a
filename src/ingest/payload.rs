//! The alert body: sniffed as JSON whatever its Content-Type (TradingView sends text/plain when
//! the message is not valid JSON), then parsed into domain types. Numbers are read from their text,
//! never through a float.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use aggregates::Side;

/// Longest explicit alert id accepted; it becomes part of the idempotency key.
pub const MAX_ID_CHARS: usize = 128;

/// A field and what is wrong with it, for the 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PayloadError {
    pub field: &'static str,
    pub problem: String,
}

impl PayloadError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// Seed 003's alert: `{"symbol", "side", "size", "id"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPayload {
    pub symbol: String,
    pub side: Side,
    pub size: Decimal,
    pub id: Option<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow)]
    side: Option<&'a RawValue>,
    #[serde(borrow)]
    size: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

impl AlertPayload {
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| PayloadError::new("body", "is not valid UTF-8"))?;
        let wire: Wire = serde_json::from_str(text).map_err(|error| {
            PayloadError::new("body", format!("is not a valid JSON object ({error})"))
        })?;
        let symbol = string_field("symbol", wire.symbol)?;
        let side = string_field("side", wire.side)?;
        let side =
            Side::parse(&side).map_err(|_| PayloadError::new("side", "must be buy or sell"))?;
        let size = decimal_field("size", wire.size)?;
        let id = match wire.id {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => Some(id_field(raw)?),
        };
        Ok(Self {
            symbol,
            side,
            size,
            id,
        })
    }
}

fn string_field(field: &'static str, raw: Option<&RawValue>) -> Result<String, PayloadError> {
    let raw = raw.ok_or_else(|| PayloadError::new(field, "is required"))?;
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| PayloadError::new(field, "must be a string"))?;
    if text.trim().is_empty() {
        return Err(PayloadError::new(field, "must not be empty"));
    }
    Ok(text)
}

/// A positive decimal given as a JSON number or a string of one.
fn decimal_field(field: &'static str, raw: Option<&RawValue>) -> Result<Decimal, PayloadError> {
    let raw = raw.ok_or_else(|| PayloadError::new(field, "is required"))?;
    let text = match serde_json::from_str::<String>(raw.get()) {
        Ok(quoted) => quoted,
        Err(_) => raw.get().to_owned(),
    };
    let text = text.trim();
    let value = Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .or_else(|_| Decimal::from_str(text))
        .map_err(|_| {
            PayloadError::new(field, format!("`{}` is not a decimal number", clip(text)))
        })?;
    if value <= Decimal::ZERO {
        return Err(PayloadError::new(field, "must be greater than zero"));
    }
    Ok(value)
}

fn id_field(raw: &RawValue) -> Result<String, PayloadError> {
    let id = match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => text,
        Err(_) if raw.get().bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            raw.get().to_owned()
        }
        Err(_) => return Err(PayloadError::new("id", "must be a string or an integer")),
    };
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(PayloadError::new(
            "id",
            format!("must be 1 to {MAX_ID_CHARS} characters"),
        ));
    }
    Ok(id)
}

fn clip(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_003_payloads_parse_with_string_or_number_sizes() {
        let parsed = AlertPayload::parse(br#"{"symbol":"ETH-PERP","side":"buy","size":"0.5"}"#);
        assert_eq!(parsed.map(|p| p.size), Ok(Decimal::new(5, 1)));
        let parsed =
            AlertPayload::parse(br#"{"symbol":"ETH-PERP","side":"SELL","size":0.1,"id":"a-1"}"#);
        assert_eq!(
            parsed.map(|p| (p.side, p.size, p.id)),
            Ok((Side::Sell, Decimal::new(1, 1), Some("a-1".to_owned())))
        );
    }

    #[test]
    fn each_rejection_names_its_field() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "body"),
            (b"\xff\xfe", "body"),
            (br#"{"side":"buy","size":1}"#, "symbol"),
            (br#"{"symbol":"BTCUSDT","side":"hold","size":1}"#, "side"),
            (br#"{"symbol":"BTCUSDT","side":"buy","size":"NaN"}"#, "size"),
            (br#"{"symbol":"BTCUSDT","side":"buy","size":-1}"#, "size"),
            (br#"{"symbol":"BTCUSDT","side":"buy","size":0}"#, "size"),
            (br#"{"symbol":"BTCUSDT","side":"buy","size":1e308}"#, "size"),
            (
                br#"{"symbol":"BTCUSDT","side":"buy","size":1,"id":{"a":1}}"#,
                "id",
            ),
        ];
        for (body, field) in cases {
            let error = AlertPayload::parse(body).err();
            assert_eq!(
                error.map(|e| e.field),
                Some(*field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
