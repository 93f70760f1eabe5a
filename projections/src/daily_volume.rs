//! Traded volume per account and UTC day, from fills (notional = size × price).

use std::collections::BTreeMap;

use aggregates::{AccountEvent, UsdAmount};
use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::Envelope;

/// (account id, UTC day of the fill).
pub type DailyVolumeKey = (String, NaiveDate);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyVolumeRow {
    pub traded_usd: Decimal,
    pub fills: u64,
}

pub fn key(envelope: &Envelope) -> Option<DailyVolumeKey> {
    match &envelope.event {
        AccountEvent::OrderFilled { filled_at, .. }
        | AccountEvent::OrderPartiallyFilled { filled_at, .. }
        | AccountEvent::PositionCompensated { at: filled_at, .. } => {
            Some((envelope.account_id.clone(), filled_at.date_naive()))
        }
        _ => None,
    }
}

pub fn apply(rows: &mut BTreeMap<DailyVolumeKey, DailyVolumeRow>, envelope: &Envelope) {
    let Some(key) = key(envelope) else { return };
    let (AccountEvent::OrderFilled { price, size, .. }
    | AccountEvent::OrderPartiallyFilled { price, size, .. }
    | AccountEvent::PositionCompensated { price, size, .. }) = &envelope.event
    else {
        return;
    };
    let row = rows.entry(key).or_default();
    // Each fill's notional is quantized like every USD amount, then summed: the same total
    // whatever the order of pages.
    // The account refuses fills whose notional is out of bounds; saturating keeps a fold of any
    // log panic-free all the same.
    let notional = UsdAmount::new(size.value().saturating_mul(*price));
    row.traded_usd = UsdAmount::new(row.traded_usd)
        .saturating_add(notional)
        .value();
    row.fills += 1;
}
