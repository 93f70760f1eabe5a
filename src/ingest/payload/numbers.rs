//! Decimals read from their JSON text (a number, or a string holding one), never through f64, so
//! `0.1` is exactly 0.1 and `1e308` is an error rather than infinity.

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::{clip, json_kind, unrendered_placeholder, PayloadError};

/// rust_decimal holds at most 28 significant digits and 28 decimal places.
const MAX_DIGITS: usize = 28;

pub fn positive(field: &'static str, raw: &RawValue) -> Result<Decimal, PayloadError> {
    let value = decimal(field, raw)?;
    if value <= Decimal::ZERO {
        let what = if value.is_zero() { "zero" } else { "negative" };
        return Err(PayloadError::new(
            field,
            format!("must be greater than zero; it is {what}"),
        ));
    }
    Ok(value)
}

/// A percentage of equity: 0 < p <= 100.
pub fn percent(field: &'static str, raw: &RawValue) -> Result<Decimal, PayloadError> {
    let value = positive(field, raw)?;
    if value > Decimal::ONE_HUNDRED {
        return Err(PayloadError::new(
            field,
            "must be at most 100 (percent of equity)",
        ));
    }
    Ok(value)
}

/// Any sign, zero included.
pub fn decimal(field: &'static str, raw: &RawValue) -> Result<Decimal, PayloadError> {
    let text = number_text(field, raw)?;
    parse(&text).map_err(|problem| PayloadError::new(field, problem))
}

/// The text of a number: the raw JSON number, or the contents of a JSON string.
pub fn number_text(field: &'static str, raw: &RawValue) -> Result<String, PayloadError> {
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text)
            .map_err(|_| PayloadError::new(field, "is not a valid JSON string"))?;
        let inner = inner.trim();
        if inner.is_empty() {
            return Err(PayloadError::new(field, "is empty; expected a number"));
        }
        if let Some(problem) = unrendered_placeholder(inner) {
            return Err(PayloadError::new(field, problem));
        }
        return Ok(inner.to_owned());
    }
    match json_kind(raw) {
        "a number" => Ok(text.to_owned()),
        kind => Err(PayloadError::new(
            field,
            format!("must be a number or a string holding one; it is {kind}"),
        )),
    }
}

/// Parses JSON's number grammar exactly; the problem is a sentence for `PayloadError`.
pub fn parse(text: &str) -> Result<Decimal, String> {
    let not_a_number = || format!("`{}` is not a decimal number", clip(text));
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned == "nan" {
        return Err("is NaN (not a number)".to_owned());
    }
    if unsigned == "inf" || unsigned == "infinity" {
        return Err("is infinite".to_owned());
    }

    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (integer, fraction) = match mantissa.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(integer) || fraction.is_some_and(|f| !all_digits(f)) {
        return Err(not_a_number());
    }
    let exponent = match exponent {
        None => 0,
        Some(exponent) => parse_exponent(exponent).ok_or_else(not_a_number)?,
    };
    let fraction = fraction.unwrap_or("");

    // value = digits * 10^(exponent - fraction.len()), with digits stripped of leading zeros.
    let digits = format!("{integer}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let fraction_len = i64::try_from(fraction.len()).map_err(|_| not_a_number())?;
    let mut scale = fraction_len.saturating_sub(exponent);
    // Trailing zeros behind the point carry no value: `1.50000` is 1.5 whatever its length.
    let mut significant = digits;
    while scale > 0 {
        match significant.strip_suffix('0') {
            Some(shorter) => {
                significant = shorter;
                scale -= 1;
            }
            None => break,
        }
    }
    let zeros_to_append = usize::try_from(-scale.min(0)).unwrap_or(usize::MAX);
    let total_digits = significant.len().saturating_add(zeros_to_append);
    if total_digits > MAX_DIGITS {
        let integer_digits =
            total_digits.saturating_sub(usize::try_from(scale.max(0)).unwrap_or(0));
        return Err(if integer_digits > MAX_DIGITS {
            format!("is beyond the decimal range (more than {MAX_DIGITS} digits before the point)")
        } else {
            format!("has more than {MAX_DIGITS} significant digits")
        });
    }
    if scale > MAX_DIGITS as i64 {
        return Err(format!("has more than {MAX_DIGITS} decimal places"));
    }
    // Both bounds are checked above, so these conversions cannot fail; `?` keeps it panic-free.
    let mut mantissa: i128 = significant.parse().map_err(|_| not_a_number())?;
    for _ in 0..zeros_to_append {
        mantissa = mantissa.checked_mul(10).ok_or_else(not_a_number)?;
    }
    if negative {
        mantissa = -mantissa;
    }
    let scale = u32::try_from(scale.max(0)).map_err(|_| not_a_number())?;
    Decimal::try_from_i128_with_scale(mantissa, scale)
        .map_err(|_| format!("is beyond the decimal range (more than {MAX_DIGITS} digits)"))
}

/// An exponent's value; absurd ones saturate (they are out of range whatever the mantissa, unless
/// it is zero).
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    let magnitude = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse::<i64>().unwrap_or(i64::MAX)
    };
    let magnitude = magnitude.min(i64::from(i32::MAX));
    Some(if negative { -magnitude } else { magnitude })
}
