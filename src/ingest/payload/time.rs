//! `timestamp`: what `{{timenow}}` / `{{time}}` render (RFC 3339, e.g. 2024-05-01T12:00:00Z), or
//! unix seconds / milliseconds as a number or a string of digits.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{clip, numbers, PayloadError};

const FIELD: &str = "timestamp";

/// Integers at or above this are milliseconds: as seconds they would be past the year 5000.
const MILLISECONDS_FROM: i64 = 100_000_000_000;

/// Years outside this are a mistake (seconds read as milliseconds or a placeholder gone wrong),
/// not a stale or future alert.
const EARLIEST_YEAR: &str = "2000-01-01T00:00:00Z";
const LATEST_YEAR: &str = "2100-01-01T00:00:00Z";

pub fn parse(raw: &RawValue) -> Result<DateTime<Utc>, PayloadError> {
    let text = numbers::number_text(FIELD, raw).map_err(|error| {
        if error.problem.starts_with("must be a number") {
            PayloadError::new(
                FIELD,
                "must be an RFC 3339 time (2024-05-01T12:00:00Z) or unix seconds / milliseconds",
            )
        } else {
            error
        }
    })?;
    let time = if text.bytes().all(|b| b.is_ascii_digit()) {
        from_unix(&text)?
    } else {
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|_| {
                PayloadError::new(
                    FIELD,
                    format!(
                        "`{}` is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor unix \
                         seconds / milliseconds",
                        clip(&text)
                    ),
                )
            })?
    };
    in_range(time)
}

fn from_unix(digits: &str) -> Result<DateTime<Utc>, PayloadError> {
    let out_of_range = || PayloadError::new(FIELD, "is not a time between 2000 and 2100");
    let number: i64 = digits.parse().map_err(|_| out_of_range())?;
    let time = if number >= MILLISECONDS_FROM {
        DateTime::from_timestamp_millis(number)
    } else {
        DateTime::from_timestamp(number, 0)
    };
    time.ok_or_else(out_of_range)
}

fn in_range(time: DateTime<Utc>) -> Result<DateTime<Utc>, PayloadError> {
    let bound = |text: &str| DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc));
    match (bound(EARLIEST_YEAR), bound(LATEST_YEAR)) {
        (Ok(earliest), Ok(latest)) if earliest <= time && time < latest => Ok(time),
        _ => Err(PayloadError::new(
            FIELD,
            "is not a time between 2000 and 2100",
        )),
    }
}
