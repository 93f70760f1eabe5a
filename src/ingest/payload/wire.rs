//! From bytes to named raw fields: UTF-8, a cheap nesting check, one JSON object, every key known
//! (or an ignored TradingView informational field), no key given twice.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{clip, clip_to, PayloadError};

/// The payload is flat; a little room lets a nested value be reported against its field ("must be
/// a number, not an object") rather than as "too deep", while the scan stays cheap.
pub const MAX_NESTING_DEPTH: usize = 4;

/// More keys than any honest alert has; bounds the work done per body.
pub const MAX_FIELDS: usize = 64;

/// The fields the parser reads, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Symbol,
    Side,
    Size,
    SizeUsd,
    SizePercent,
    Position,
    TargetPosition,
    OrderType,
    Price,
    TakeProfit,
    StopLoss,
    Id,
    Timestamp,
    MaxLag,
}

impl Field {
    pub const ALL: [Field; 14] = [
        Field::Symbol,
        Field::Side,
        Field::Size,
        Field::SizeUsd,
        Field::SizePercent,
        Field::Position,
        Field::TargetPosition,
        Field::OrderType,
        Field::Price,
        Field::TakeProfit,
        Field::StopLoss,
        Field::Id,
        Field::Timestamp,
        Field::MaxLag,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Field::Symbol => "symbol",
            Field::Side => "side",
            Field::Size => "size",
            Field::SizeUsd => "size_usd",
            Field::SizePercent => "size_percent",
            Field::Position => "position",
            Field::TargetPosition => "target_position",
            Field::OrderType => "order_type",
            Field::Price => "price",
            Field::TakeProfit => "take_profit",
            Field::StopLoss => "stop_loss",
            Field::Id => "id",
            Field::Timestamp => "timestamp",
            Field::MaxLag => "max_lag",
        }
    }

    /// Other spellings accepted for the field: the names TradingView's placeholders and common
    /// templates use. Kept short and documented in `payload_format`.
    pub const fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::Symbol => &["ticker"],
            Field::Side => &["action"],
            Field::Size => &["contracts", "quantity", "qty"],
            Field::OrderType => &["type"],
            Field::TakeProfit => &["tp"],
            Field::StopLoss => &["sl"],
            Field::MaxLag => &["max_lag_seconds"],
            _ => &[],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Accepted and ignored: TradingView's informational placeholders, and the two-factor `secret`,
/// which the webhook handler reads itself and which must never be stored or echoed.
pub const IGNORED_FIELDS: &[&str] = &[
    "secret",
    "exchange",
    "interval",
    "comment",
    "alert_message",
    "message",
    "strategy",
    "market_position",
    "prev_market_position",
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
];

enum Key {
    Read(Field),
    Ignored,
}

fn classify(key: &str) -> Result<Key, PayloadError> {
    if let Some(field) = Field::ALL
        .into_iter()
        .find(|field| field.name() == key || field.aliases().contains(&key))
    {
        return Ok(Key::Read(field));
    }
    if IGNORED_FIELDS.contains(&key) {
        return Ok(Key::Ignored);
    }
    let candidates = suggestions(key);
    let hint = if candidates.is_empty() {
        String::new()
    } else {
        format!("; did you mean `{}`?", candidates.join("` or `"))
    };
    Err(PayloadError::named(
        clip(key),
        format!("is not a known field{hint}"),
    ))
}

/// The canonical names a mistyped key was probably meant to be (`sise` → `side` or `size`): a
/// typo must be answered, not silently dropped.
fn suggestions(key: &str) -> Vec<&'static str> {
    let key = key.to_ascii_lowercase();
    if key.len() > 32 {
        return Vec::new();
    }
    if matches!(key.as_str(), "position_size" | "strategy.position_size") {
        return vec!["target_position"];
    }
    if matches!(key.as_str(), "timenow" | "time_now") {
        return vec!["timestamp"];
    }
    let distances: Vec<(usize, &'static str)> = Field::ALL
        .into_iter()
        .map(|field| (edit_distance(&key, field.name()), field.name()))
        .collect();
    let closest = distances.iter().map(|(distance, _)| *distance).min();
    match closest {
        Some(closest) if closest <= 2 => distances
            .into_iter()
            .filter(|(distance, _)| *distance == closest)
            .map(|(_, name)| name)
            .collect(),
        _ => Vec::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The raw values of the fields read, each with the key it came under (for messages).
#[derive(Default)]
pub struct Fields<'a> {
    values: [Option<(String, &'a RawValue)>; Field::ALL.len()],
}

impl<'a> Fields<'a> {
    pub fn get(&self, field: Field) -> Option<&'a RawValue> {
        self.values[field.index()].as_ref().map(|(_, raw)| *raw)
    }

    pub fn has(&self, field: Field) -> bool {
        self.values[field.index()].is_some()
    }
}

pub fn read(body: &[u8]) -> Result<Fields<'_>, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|error| {
        PayloadError::new(
            "body",
            format!("is not valid UTF-8 (at byte {})", error.valid_up_to()),
        )
    })?;
    check_object(text)?;
    check_depth(text)?;
    let entries: Entries<'_> = serde_json::from_str(text).map_err(|error| {
        PayloadError::new(
            "body",
            format!("is not valid JSON ({})", clip_to(&error.to_string(), 120)),
        )
    })?;
    let mut fields = Fields::default();
    let mut ignored_seen: Vec<String> = Vec::new();
    for (key, raw) in entries.0 {
        match classify(&key)? {
            Key::Read(field) => {
                if let Some((earlier, _)) = &fields.values[field.index()] {
                    return Err(twice(field, earlier, &key));
                }
                fields.values[field.index()] = Some((key, raw));
            }
            Key::Ignored => {
                if ignored_seen.contains(&key) {
                    return Err(PayloadError::named(clip(&key), "is given twice"));
                }
                ignored_seen.push(key);
            }
        }
    }
    Ok(fields)
}

fn twice(field: Field, earlier: &str, later: &str) -> PayloadError {
    let problem = if earlier == later {
        "is given twice".to_owned()
    } else {
        format!("is given twice (as `{earlier}` and `{later}`)")
    };
    PayloadError::new(field.name(), problem)
}

fn check_object(text: &str) -> Result<(), PayloadError> {
    let kind = match text.trim_start().bytes().next() {
        Some(b'{') => return Ok(()),
        None => "empty",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "not JSON",
    };
    Err(PayloadError::new(
        "body",
        format!("must be a JSON object like {{\"symbol\": ..., \"side\": ...}}; it is {kind}"),
    ))
}

/// Rejects deep nesting before the parser sees it, counting brackets outside strings.
fn check_depth(text: &str) -> Result<(), PayloadError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(PayloadError::new(
                        "body",
                        format!(
                            "is nested more than {MAX_NESTING_DEPTH} levels deep; \
                             an alert is one flat object"
                        ),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A JSON object's entries in order, duplicates kept so they can be rejected. Values stay raw
/// (borrowed) so numbers can be read from their text.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.len() == MAX_FIELDS {
                return Err(serde::de::Error::custom(format!(
                    "more than {MAX_FIELDS} fields"
                )));
            }
            let value: &'de RawValue = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Entries(entries))
    }
}
