//! Conversions between what the databases hold (integers, text) and the service's values. A value
//! out of range or unreadable is a `StoreError::Decode`, never a silent default: a corrupt row must
//! stop its reader, not turn into sequence 0 or a maximum.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Result, StoreError};

/// How much of a bad value an error quotes (it may be a whole corrupt document).
const QUOTED: usize = 64;

pub(crate) fn error(what: &'static str, value: impl Display) -> StoreError {
    StoreError::Decode {
        what,
        value: value.to_string().chars().take(QUOTED).collect(),
    }
}

/// An integer into another integer type: a sequence or count from `i64` to `usize`, or back.
pub(crate) fn int<T, U>(what: &'static str, value: T) -> Result<U>
where
    T: TryInto<U> + Copy + Display,
{
    value.try_into().map_err(|_| error(what, value))
}

pub(crate) fn time(what: &'static str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| error(what, text))
}

pub(crate) fn decimal(what: &'static str, text: &str) -> Result<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str(text).map_err(|_| error(what, text))
}

pub(crate) fn day(what: &'static str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| error(what, text))
}
