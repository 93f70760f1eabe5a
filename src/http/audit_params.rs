//! The query string of the audit endpoints (`/api/compliance/audit`, a trader's `/api/audit`),
//! parsed once into a filter, a cursor, a page size and a format. Anything it does not know is a
//! 400 naming the parameter: a misspelt filter must not silently widen an audit read.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::error::ApiError;
use crate::store::AuditFilter;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
/// Distinct event types one request may ask for (the domain has a few dozen).
const MAX_EVENT_TYPES: usize = 50;
const MAX_EVENT_TYPE_CHARS: usize = 64;
const MAX_ID_CHARS: usize = 256;
/// Cursors are opaque to clients: this prefix, hex-encoded with the position after it, lets a
/// later version change what a cursor holds without clients noticing.
const CURSOR_PREFIX: &str = "audit:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One page of rows and the cursor of the next.
    Json,
    /// The whole filtered trail, streamed, one JSON object per line.
    JsonLines,
    /// The whole filtered trail, streamed, with a header row.
    Csv,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRequest {
    pub filter: AuditFilter,
    /// Rows strictly after this position (0: from the start).
    pub after: i64,
    /// Page size (format `json` only).
    pub limit: i64,
    pub format: Format,
}

impl AuditRequest {
    /// What a compliance read records about the request: the filter, where it started, its size.
    pub fn to_record(&self) -> Value {
        let time = |time: Option<DateTime<Utc>>| {
            time.map(|time| time.to_rfc3339_opts(SecondsFormat::Micros, true))
        };
        json!({
            "account_id": self.filter.account_id,
            "from": time(self.filter.from),
            "to": time(self.filter.to),
            "event_type": self.filter.event_types,
            "signal_id": self.filter.signal_id,
            "after_position": self.after,
            "limit": (self.format == Format::Json).then_some(self.limit),
            "format": self.format.as_str(),
        })
    }
}

/// The audit endpoints' query parameters, for `/openapi.json`, from the limits `parse` enforces.
/// (The parser reads the raw pairs itself, to refuse unknown and repeated names.)
pub struct AuditQuery;

impl utoipa::IntoParams for AuditQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn, ParameterStyle};
        use utoipa::openapi::schema::{
            ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let identifier = || {
            text()
                .min_length(Some(1))
                .max_length(Some(MAX_ID_CHARS))
                .pattern(Some(r"^[^\x00-\x1F\x7F-\x9F]*$"))
        };
        let time = || text().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
        let event_type =
            text().pattern(Some(format!("^[A-Za-z0-9_]{{1,{MAX_EVENT_TYPE_CHARS}}}$")));
        // The cursor is hex of `audit:<position>`; positions fit 18 digits for good.
        let cursor_pattern = format!("^{}(3[0-9]){{1,18}}$", hex::encode(CURSOR_PREFIX));
        let parameter = |name: &str, description: &str, schema: utoipa::openapi::schema::Schema| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .description(Some(description))
                .schema(Some(schema))
        };
        vec![
            parameter(
                "account_id",
                "Only this account's rows",
                identifier().build().into(),
            )
            .build(),
            parameter(
                "signal_id",
                "Only this signal's rows",
                identifier().build().into(),
            )
            .build(),
            parameter(
                "from",
                "Rows recorded at or after this time (RFC 3339)",
                time().build().into(),
            )
            .build(),
            parameter(
                "to",
                "Rows recorded at or before this time (RFC 3339), not earlier than `from`",
                time().build().into(),
            )
            .build(),
            parameter(
                "event_type",
                "Only these event types; repeated, or comma-separated in one value",
                ArrayBuilder::new()
                    .items(event_type)
                    .max_items(Some(MAX_EVENT_TYPES))
                    .build()
                    .into(),
            )
            .style(Some(ParameterStyle::Form))
            .explode(Some(true))
            .build(),
            parameter(
                "cursor",
                "`next_cursor` of the previous page",
                text().pattern(Some(cursor_pattern)).build().into(),
            )
            .build(),
            parameter(
                "limit",
                &format!("Rows per page (format `json` only), default {DEFAULT_LIMIT}"),
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_LIMIT))
                    .build()
                    .into(),
            )
            .build(),
            parameter(
                "format",
                "`json`: a page; `jsonl`, `csv`: the whole filtered trail, streamed",
                text()
                    .enum_values(Some(["json", "jsonl", "csv"]))
                    .build()
                    .into(),
            )
            .build(),
        ]
    }
}

pub fn encode_cursor(position: i64) -> String {
    hex::encode(format!("{CURSOR_PREFIX}{position}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = hex::decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let position: i64 = text.strip_prefix(CURSOR_PREFIX)?.parse().ok()?;
    (position >= 0).then_some(position)
}

fn invalid(parameter: &str, problem: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETER",
        format!("Invalid query parameter `{parameter}`: {problem}"),
    )
}

/// Parses the decoded `name=value` pairs of a query string.
pub fn parse(pairs: &[(String, String)]) -> Result<AuditRequest, ApiError> {
    let mut seen = BTreeSet::new();
    let mut filter = AuditFilter::default();
    let mut event_types = BTreeSet::new();
    let mut after = 0;
    let mut limit = None;
    let mut format = Format::Json;
    for (name, value) in pairs {
        // event_type may repeat; every other parameter says one thing once.
        if name != "event_type" && !seen.insert(name.as_str()) {
            return Err(invalid(name, "given more than once"));
        }
        match name.as_str() {
            "account_id" => filter.account_id = Some(identifier(name, value)?),
            "signal_id" => filter.signal_id = Some(identifier(name, value)?),
            "from" => filter.from = Some(time(name, value)?),
            "to" => filter.to = Some(time(name, value)?),
            "event_type" => {
                for event_type in value.split(',') {
                    event_types.insert(event_type_name(event_type)?);
                }
                if event_types.len() > MAX_EVENT_TYPES {
                    return Err(invalid(
                        name,
                        &format!("at most {MAX_EVENT_TYPES} event types"),
                    ));
                }
            }
            "cursor" => {
                after = decode_cursor(value)
                    .ok_or_else(|| invalid(name, "not a cursor this service issued"))?;
            }
            "limit" => {
                let parsed = value
                    .parse::<i64>()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        invalid(name, &format!("a whole number from 1 to {MAX_LIMIT}"))
                    })?;
                limit = Some(parsed);
            }
            "format" => {
                format = match value.as_str() {
                    "json" => Format::Json,
                    "jsonl" => Format::JsonLines,
                    "csv" => Format::Csv,
                    _ => return Err(invalid(name, "one of json, jsonl, csv")),
                };
            }
            _ => return Err(invalid(name, "unknown parameter")),
        }
    }
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if to < from {
            return Err(invalid("to", "earlier than `from`"));
        }
    }
    if limit.is_some() && format != Format::Json {
        return Err(invalid(
            "limit",
            "exports (jsonl, csv) always hold every matching row; page with format=json",
        ));
    }
    filter.event_types = event_types.into_iter().collect();
    Ok(AuditRequest {
        filter,
        after,
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        format,
    })
}

fn identifier(name: &str, value: &str) -> Result<String, ApiError> {
    let length = value.chars().count();
    if length == 0 || length > MAX_ID_CHARS || value.chars().any(char::is_control) {
        return Err(invalid(
            name,
            &format!("1 to {MAX_ID_CHARS} characters, no control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                name,
                "an RFC 3339 time such as 2024-06-10T06:13:20Z (a `+` in an offset must be sent as %2B)",
            )
        })
}

fn event_type_name(value: &str) -> Result<String, ApiError> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_EVENT_TYPE_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "event_type",
            "event type names such as OrderFilled (letters, digits, _), comma-separated or repeated",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn message(result: Result<AuditRequest, ApiError>) -> String {
        format!("{:?}", result.expect_err("refused"))
    }

    #[test]
    fn defaults_are_the_first_json_page_of_everything() {
        let request = parse(&[]).expect("no parameters is valid");
        assert_eq!(request.filter, AuditFilter::default());
        assert_eq!(
            (request.after, request.limit, request.format),
            (0, DEFAULT_LIMIT, Format::Json)
        );
    }

    #[test]
    fn every_filter_is_read() {
        let cursor = encode_cursor(42);
        let request = parse(&pairs(&[
            ("account_id", "acct-1"),
            ("from", "2024-06-10T06:00:00+02:00"),
            ("to", "2024-06-10T07:00:00Z"),
            ("event_type", "OrderFilled,SignalReceived"),
            ("event_type", "OrderFilled"),
            ("event_type", "RiskApproved"),
            ("signal_id", "sig-1"),
            ("cursor", &cursor),
            ("limit", "1000"),
        ]))
        .expect("valid");
        assert_eq!(request.filter.account_id.as_deref(), Some("acct-1"));
        assert_eq!(
            request.filter.from.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-06-10T04:00:00+00:00")
        );
        assert_eq!(
            request.filter.event_types,
            ["OrderFilled", "RiskApproved", "SignalReceived"]
        );
        assert_eq!(request.filter.signal_id.as_deref(), Some("sig-1"));
        assert_eq!((request.after, request.limit), (42, 1000));
    }

    #[test]
    fn bad_input_names_the_parameter() {
        for (query, parameter) in [
            (vec![("from", "yesterday")], "`from`"),
            (vec![("to", "2024-13-01T00:00:00Z")], "`to`"),
            (
                vec![
                    ("from", "2024-06-10T00:00:00Z"),
                    ("to", "2024-06-09T00:00:00Z"),
                ],
                "`to`",
            ),
            (vec![("limit", "0")], "`limit`"),
            (vec![("limit", "1001")], "`limit`"),
            (vec![("limit", "ten")], "`limit`"),
            (vec![("format", "csv"), ("limit", "10")], "`limit`"),
            (vec![("format", "xml")], "`format`"),
            (vec![("cursor", "42")], "`cursor`"),
            (vec![("cursor", &hex::encode("audit:-1"))], "`cursor`"),
            (vec![("event_type", "OrderFilled,")], "`event_type`"),
            (vec![("event_type", "Order Filled")], "`event_type`"),
            (vec![("account_id", "")], "`account_id`"),
            (
                vec![("account_id", "a"), ("account_id", "b")],
                "`account_id`",
            ),
            (vec![("signal_id", "a\nb")], "`signal_id`"),
            (vec![("acount_id", "a")], "`acount_id`"),
        ] {
            let shown = message(parse(&pairs(&query)));
            assert!(shown.contains(parameter), "{query:?}: {shown}");
            assert!(shown.contains("INVALID_PARAMETER"), "{query:?}: {shown}");
        }
        let many: Vec<String> = (0..=MAX_EVENT_TYPES).map(|i| format!("T{i}")).collect();
        let shown = message(parse(&pairs(&[("event_type", &many.join(","))])));
        assert!(shown.contains("`event_type`"), "{shown}");
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        for position in [0, 1, 999_999, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(position)), Some(position));
        }
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor(&hex::encode("other:5")), None);
    }
}
