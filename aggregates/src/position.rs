//! A position in one market and the events a fill produces on it.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{AccountEvent, Market, Quantity, Side, SignalId, UsdAmount};

/// Average entry prices are kept to this many places: enough for any dYdX tick size, and fixed so
/// that replays produce the same digits.
const PRICE_DECIMAL_PLACES: u32 = 12;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Signed: positive is long, negative is short, zero is flat.
    pub size: Decimal,
    pub average_entry_price: Decimal,
    pub realized_pnl_usd: UsdAmount,
}

impl Position {
    pub fn is_flat(&self) -> bool {
        self.size.is_zero()
    }

    /// The events a fill of `side`/`size` at `price` produces on this position.
    pub fn events_for_fill(
        &self,
        signal_id: &SignalId,
        market: &Market,
        side: Side,
        size: Quantity,
        price: Decimal,
    ) -> Vec<AccountEvent> {
        let fill = size.value();
        let held = self.size.abs();
        let opened = |side: Side, size: Quantity| AccountEvent::PositionOpened {
            signal_id: signal_id.clone(),
            market: market.clone(),
            side,
            size,
            entry_price: price,
        };
        if self.is_flat() {
            return vec![opened(side, size)];
        }
        if sign_of(self.size) == side.sign() {
            let new_size = held + fill;
            let average = ((held * self.average_entry_price + fill * price) / new_size)
                .round_dp(PRICE_DECIMAL_PLACES)
                .normalize();
            return vec![AccountEvent::PositionIncreased {
                signal_id: signal_id.clone(),
                market: market.clone(),
                size_delta: size,
                new_size: quantity(new_size),
                average_entry_price: average,
            }];
        }
        let closing = fill.min(held);
        let pnl = UsdAmount::new(closing * (price - self.average_entry_price) * sign_of(self.size));
        if fill < held {
            return vec![AccountEvent::PositionReduced {
                signal_id: signal_id.clone(),
                market: market.clone(),
                size_delta: size,
                new_size: quantity(held - fill),
                realized_pnl_usd: pnl,
            }];
        }
        let mut events = vec![AccountEvent::PositionClosed {
            signal_id: signal_id.clone(),
            market: market.clone(),
            size_delta: quantity(held),
            realized_pnl_usd: pnl,
        }];
        if fill > held {
            events.push(opened(side, quantity(fill - held)));
        }
        events
    }

    /// Folds one position event into the position.
    pub(crate) fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::PositionOpened {
                side,
                size,
                entry_price,
                ..
            } => {
                self.size = side.sign() * size.value();
                self.average_entry_price = *entry_price;
            }
            AccountEvent::PositionIncreased {
                new_size,
                average_entry_price,
                ..
            } => {
                self.size = sign_of(self.size) * new_size.value();
                self.average_entry_price = *average_entry_price;
            }
            AccountEvent::PositionReduced {
                new_size,
                realized_pnl_usd,
                ..
            } => {
                self.size = sign_of(self.size) * new_size.value();
                self.realized_pnl_usd = self.realized_pnl_usd + *realized_pnl_usd;
            }
            AccountEvent::PositionClosed {
                realized_pnl_usd, ..
            } => {
                self.size = Decimal::ZERO;
                self.average_entry_price = Decimal::ZERO;
                self.realized_pnl_usd = self.realized_pnl_usd + *realized_pnl_usd;
            }
            _ => {}
        }
    }
}

/// Sizes computed here are differences of positive quantities that the branches above keep
/// positive; a zero would be a bug in this module, not bad input.
fn quantity(value: Decimal) -> Quantity {
    Quantity::new(value).unwrap_or_else(|_| unreachable!("position arithmetic produced {value}"))
}

fn sign_of(value: Decimal) -> Decimal {
    if value.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}
