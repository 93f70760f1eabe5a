//! Positions per account and market: signed size, average entry and realized PnL, folded from the
//! `Position*` events a fill produces (the aggregate decided them; this only follows).

use std::collections::BTreeMap;

use aggregates::{AccountEvent, UsdAmount};
use rust_decimal::Decimal;

use crate::Envelope;

/// (account id, market).
pub type PositionKey = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionRow {
    /// Signed: positive is long, negative is short, zero is flat.
    pub size: Decimal,
    /// Zero while flat.
    pub average_entry_price: Decimal,
    /// Everything realized in this market since the account opened.
    pub realized_pnl_usd: Decimal,
    /// The account sequence of the last event that changed the row.
    pub last_sequence: usize,
}

impl PositionRow {
    pub fn side(&self) -> &'static str {
        if self.size.is_zero() {
            "flat"
        } else if self.size.is_sign_negative() {
            "short"
        } else {
            "long"
        }
    }
}

/// The row `envelope` changes, if it is a position event.
pub fn key(envelope: &Envelope) -> Option<PositionKey> {
    use AccountEvent::*;
    match &envelope.event {
        PositionOpened { market, .. }
        | PositionIncreased { market, .. }
        | PositionReduced { market, .. }
        | PositionClosed { market, .. } => {
            Some((envelope.account_id.clone(), market.as_str().to_owned()))
        }
        _ => None,
    }
}

pub fn apply(rows: &mut BTreeMap<PositionKey, PositionRow>, envelope: &Envelope) {
    let Some(key) = key(envelope) else { return };
    let row = rows.entry(key).or_default();
    match &envelope.event {
        AccountEvent::PositionOpened {
            side,
            size,
            entry_price,
            ..
        } => {
            row.size = side.sign() * size.value();
            row.average_entry_price = entry_price.normalize();
        }
        AccountEvent::PositionIncreased {
            new_size,
            average_entry_price,
            ..
        } => {
            row.size = sign_of(row.size) * new_size.value();
            row.average_entry_price = average_entry_price.normalize();
        }
        AccountEvent::PositionReduced {
            new_size,
            realized_pnl_usd,
            ..
        } => {
            row.size = sign_of(row.size) * new_size.value();
            row.realized_pnl_usd = add_usd(row.realized_pnl_usd, *realized_pnl_usd);
        }
        AccountEvent::PositionClosed {
            realized_pnl_usd, ..
        } => {
            row.size = Decimal::ZERO;
            row.average_entry_price = Decimal::ZERO;
            row.realized_pnl_usd = add_usd(row.realized_pnl_usd, *realized_pnl_usd);
        }
        _ => return,
    }
    row.size = row.size.normalize();
    row.last_sequence = envelope.sequence;
}

/// Sums as the aggregate does (`UsdAmount` quantizes, the fold saturates), so the projection's PnL
/// is the account's.
fn add_usd(total: Decimal, amount: UsdAmount) -> Decimal {
    UsdAmount::new(total).saturating_add(amount).value()
}

fn sign_of(value: Decimal) -> Decimal {
    if value.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}
