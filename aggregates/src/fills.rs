//! Whether a fill the exchange reports is the order's, with numbers a market can produce. The
//! account folds only such fills; anything else is recorded as `FillMismatch` and halts it, the
//! same for every exchange.

use rust_decimal::Decimal;

use crate::{Fill, InFlight, Market, Quantity, Side};

/// 1e12 USD per unit: far above any price a market quotes (BTC is ~1e5). A report beyond it is a
/// broken or hostile exchange; keeping prices this far inside `Decimal`'s range (7.9e28) also keeps
/// every later product and sum of them representable.
pub const MAX_FILL_PRICE: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);
/// 1e15 USD in one fill, for the same reason.
pub const MAX_FILL_NOTIONAL_USD: Decimal = Decimal::from_parts(0xA4C6_8000, 0x3_8D7E, 0, false, 0);

/// Every reason `fill` cannot be taken as a fill of `order`; empty when it can.
pub(crate) fn problems(order: &InFlight, fill: &Fill) -> Vec<String> {
    problems_against(&order.market, order.side, order.remaining(), fill)
}

/// Every reason `fill` cannot be taken as a fill of an order in `market` on `side` with
/// `remaining` left to fill; empty when it can.
pub(crate) fn problems_against(
    market: &Market,
    side: Side,
    remaining: Quantity,
    fill: &Fill,
) -> Vec<String> {
    let mut problems = Vec::new();
    if &fill.market != market {
        problems.push(format!(
            "market {} is not the order's {market}",
            fill.market
        ));
    }
    if fill.side != side {
        problems.push(format!(
            "side {} is not the order's {}",
            fill.side.as_str(),
            side.as_str()
        ));
    }
    if fill.size > remaining {
        problems.push(format!(
            "size {} is more than the {remaining} left to fill",
            fill.size
        ));
    }
    if fill.price <= Decimal::ZERO {
        problems.push(format!("price {} is not positive", fill.price));
    } else if fill.price > MAX_FILL_PRICE {
        problems.push(format!(
            "price {} is beyond any market's ({MAX_FILL_PRICE})",
            fill.price
        ));
    }
    match fill.size.value().checked_mul(fill.price) {
        Some(notional) if notional.abs() <= MAX_FILL_NOTIONAL_USD => {
            if fill.fee.abs() > notional.abs() {
                problems.push(format!(
                    "fee {} is more than the fill's notional {notional}",
                    fill.fee
                ));
            }
        }
        _ => problems.push(format!(
            "notional {} × {} is beyond any fill's ({MAX_FILL_NOTIONAL_USD} USD)",
            fill.size, fill.price
        )),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_of(size: i64, price: i64) -> (Quantity, Fill) {
        let size = Quantity::new(Decimal::from(size)).expect("positive");
        let fill = Fill {
            market: Market::parse("BTC-USD").expect("a market"),
            side: Side::Buy,
            price: Decimal::from(price),
            size,
            fee: Decimal::ZERO,
        };
        (size, fill)
    }

    #[test]
    fn a_notional_is_taken_up_to_its_bound_and_not_past_it() {
        let market = Market::parse("BTC-USD").expect("a market");
        // 1e9 × 1e6 is the bound itself; 1e9 + 1 units at the same price is past it, though
        // the price and the size are each within their own.
        let (size, at_bound) = fill_of(1_000_000_000, 1_000_000);
        assert!(problems_against(&market, Side::Buy, size, &at_bound).is_empty());
        let (size, past) = fill_of(1_000_000_001, 1_000_000);
        let problems = problems_against(&market, Side::Buy, size, &past);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("beyond any fill's"), "{problems:?}");
    }

    #[test]
    fn the_bounds_are_what_they_say() {
        assert_eq!(MAX_FILL_PRICE, Decimal::from(1_000_000_000_000_i64));
        assert_eq!(
            MAX_FILL_NOTIONAL_USD,
            Decimal::from(1_000_000_000_000_000_i64)
        );
    }
}
