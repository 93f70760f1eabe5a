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

    /// The events a fill of `side`/`size` at `price` produces on this position, or why the
    /// position cannot take it. Price and size come from the exchange, so every step is checked:
    /// a sum that leaves `Decimal`'s range, or that `Decimal` could only round, refuses the fill
    /// (the position then stays exactly the sum of the fills it took).
    pub fn events_for_fill(
        &self,
        signal_id: &SignalId,
        market: &Market,
        side: Side,
        size: Quantity,
        price: Decimal,
    ) -> Result<Vec<AccountEvent>, Unrepresentable> {
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
            return Ok(vec![opened(side, size)]);
        }
        if sign_of(self.size) == side.sign() {
            let new_size = exact_add(held, fill)?;
            let held_value = held
                .checked_mul(self.average_entry_price)
                .ok_or(Unrepresentable("the position's value"))?;
            let fill_value = fill
                .checked_mul(price)
                .ok_or(Unrepresentable("the fill's value"))?;
            let average = held_value
                .checked_add(fill_value)
                .and_then(|value| value.checked_div(new_size))
                .ok_or(Unrepresentable("the average entry price"))?
                .round_dp(PRICE_DECIMAL_PLACES)
                .normalize();
            return Ok(vec![AccountEvent::PositionIncreased {
                signal_id: signal_id.clone(),
                market: market.clone(),
                size_delta: size,
                new_size: quantity(new_size)?,
                average_entry_price: average,
            }]);
        }
        let closing = fill.min(held);
        let pnl = price
            .checked_sub(self.average_entry_price)
            .and_then(|move_| move_.checked_mul(closing))
            .and_then(|pnl| pnl.checked_mul(sign_of(self.size)))
            .map(UsdAmount::new)
            .ok_or(Unrepresentable("the realized PnL"))?;
        // The fold adds it to what is already realized; that sum must fit too.
        self.realized_pnl_usd
            .checked_add(pnl)
            .ok_or(Unrepresentable("the total realized PnL"))?;
        if fill < held {
            return Ok(vec![AccountEvent::PositionReduced {
                signal_id: signal_id.clone(),
                market: market.clone(),
                size_delta: size,
                new_size: quantity(exact_sub(held, fill)?)?,
                realized_pnl_usd: pnl,
            }]);
        }
        let mut events = vec![AccountEvent::PositionClosed {
            signal_id: signal_id.clone(),
            market: market.clone(),
            size_delta: quantity(held)?,
            realized_pnl_usd: pnl,
        }];
        if fill > held {
            events.push(opened(side, quantity(exact_sub(fill, held)?)?));
        }
        Ok(events)
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
                self.realized_pnl_usd = self.realized_pnl_usd.saturating_add(*realized_pnl_usd);
            }
            AccountEvent::PositionClosed {
                realized_pnl_usd, ..
            } => {
                self.size = Decimal::ZERO;
                self.average_entry_price = Decimal::ZERO;
                self.realized_pnl_usd = self.realized_pnl_usd.saturating_add(*realized_pnl_usd);
            }
            _ => {}
        }
    }
}

/// A fill the position cannot take: naming the quantity that would leave `Decimal`'s range or
/// lose digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be represented: out of range, or only rounded")]
pub struct Unrepresentable(pub &'static str);

/// `a + b`, only when `Decimal` holds it without rounding: past 28 digits it rounds silently,
/// and a rounded sum can round back (`(1e20 + 1e-9) - 1e-9 == 1e20`), so both ways are checked.
fn exact_add(a: Decimal, b: Decimal) -> Result<Decimal, Unrepresentable> {
    a.checked_add(b)
        .filter(|sum| sum.checked_sub(b) == Some(a) && sum.checked_sub(a) == Some(b))
        .ok_or(Unrepresentable("the position's size"))
}

/// `a - b`, only when `Decimal` holds it without rounding.
fn exact_sub(a: Decimal, b: Decimal) -> Result<Decimal, Unrepresentable> {
    a.checked_sub(b)
        .filter(|difference| {
            difference.checked_add(b) == Some(a) && a.checked_sub(*difference) == Some(b)
        })
        .ok_or(Unrepresentable("the position's size"))
}

/// Sizes here are sums and differences of positive quantities that the branches keep positive.
fn quantity(value: Decimal) -> Result<Quantity, Unrepresentable> {
    Quantity::new(value).map_err(|_| Unrepresentable("the position's size"))
}

fn sign_of(value: Decimal) -> Decimal {
    if value.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_decimal_could_only_round_is_refused() {
        let ten = Decimal::from(10);
        let smallest = Decimal::new(1, 28);
        // 10 - 1e-28 needs 29 digits: it rounds to 10, and 10 + 1e-28 rounds back to 10, so
        // only the second check sees that nothing was taken away.
        assert!(exact_sub(ten, smallest).is_err());
        assert_eq!(exact_sub(ten, Decimal::ONE).ok(), Some(Decimal::from(9)));
    }
}
