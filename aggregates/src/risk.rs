//! Per-account risk limits, checked inside the aggregate before any order exists.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Market, OrderType, Quantity, Side, UsdAmount};

/// The stable names of the risk rules, as recorded in `RiskRejected::rule`.
pub mod rule {
    pub const ALLOWED_MARKETS: &str = "allowed_markets";
    pub const REFERENCE_PRICE: &str = "reference_price";
    pub const LIMIT_PRICE: &str = "limit_price";
    pub const PRICE_DEVIATION: &str = "price_deviation";
    pub const BRACKET_PRICES: &str = "bracket_prices";
    pub const MAX_ORDER_SIZE: &str = "max_order_size";
    pub const MAX_ORDER_NOTIONAL: &str = "max_order_notional";
    pub const MAX_POSITION_SIZE: &str = "max_position_size";
    pub const MAX_POSITION_NOTIONAL: &str = "max_position_notional";
    pub const MAX_DAILY_VOLUME: &str = "max_daily_volume";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskLimits {
    /// Largest single order per market, in base units; a market absent from the map has none.
    pub max_order_size: BTreeMap<Market, Decimal>,
    /// Largest single order, valued at the reference price.
    pub max_order_notional_usd: Decimal,
    /// Largest absolute position per market after the order, in base units; absent means none.
    pub max_position_size: BTreeMap<Market, Decimal>,
    /// Largest absolute position in one market after the order, valued at the reference price.
    pub max_position_notional_usd: Decimal,
    /// Most notional the account may trade in one UTC day.
    pub max_daily_volume_usd: Decimal,
    /// Markets this account may trade; empty means every market the service lists.
    pub allowed_markets: BTreeSet<Market>,
    /// Circuit breaker: the alert's price and a limit order's price may be at most this many
    /// basis points away from the reference price. 0 turns it off.
    pub max_price_deviation_bps: u32,
    /// Halt the account after this many orders in a row could not be placed. 0 never halts.
    pub halt_after_consecutive_failures: u32,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_order_size: BTreeMap::new(),
            max_order_notional_usd: Decimal::from(100_000),
            max_position_size: BTreeMap::new(),
            max_position_notional_usd: Decimal::from(250_000),
            max_daily_volume_usd: Decimal::from(1_000_000),
            allowed_markets: BTreeSet::new(),
            max_price_deviation_bps: 500,
            halt_after_consecutive_failures: 3,
        }
    }
}

/// A failed rule: its name (stable, for filtering) and a sentence for the trader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskCheck {
    pub rule: &'static str,
    pub detail: String,
}

impl RiskCheck {
    fn new(rule: &'static str, detail: String) -> Self {
        Self { rule, detail }
    }
}

/// The order a signal resolved to, with the prices risk judges it by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProposedOrder {
    pub market: Market,
    pub side: Side,
    pub size: Quantity,
    pub reduce_only: bool,
    pub order_type: OrderType,
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub alert_price: Option<Decimal>,
    pub reference_price: Decimal,
}

impl RiskLimits {
    /// Returns the order's notional when every rule passes. `exposure` is the signed position
    /// the account would hold if every order already approved filled.
    pub(crate) fn check(
        &self,
        order: &ProposedOrder,
        exposure: Decimal,
        traded_today_usd: UsdAmount,
    ) -> Result<UsdAmount, RiskCheck> {
        let market = &order.market;
        if !self.allowed_markets.is_empty() && !self.allowed_markets.contains(market) {
            return Err(RiskCheck::new(
                rule::ALLOWED_MARKETS,
                format!("{market} is not among this account's allowed markets"),
            ));
        }
        let reference = order.reference_price;
        if reference <= Decimal::ZERO {
            return Err(RiskCheck::new(
                rule::REFERENCE_PRICE,
                "no positive reference price to value the order".to_owned(),
            ));
        }
        self.check_prices(order)?;
        let too_large = || {
            RiskCheck::new(
                rule::MAX_ORDER_NOTIONAL,
                "order notional is beyond any limit".to_owned(),
            )
        };
        let size = order.size.value();
        let notional = UsdAmount::new(size.checked_mul(reference).ok_or_else(too_large)?);
        let after = exposure
            .checked_add(order.side.sign() * size)
            .ok_or_else(too_large)?
            .abs();
        // Reduce-only orders can only lower risk, so size and notional limits never block them.
        if order.reduce_only {
            return Ok(notional);
        }
        if let Some(limit) = self.max_order_size.get(market) {
            if size > *limit {
                return Err(RiskCheck::new(
                    rule::MAX_ORDER_SIZE,
                    format!("order size {size} {market} exceeds the limit of {limit}"),
                ));
            }
        }
        if notional.value() > self.max_order_notional_usd {
            return Err(RiskCheck::new(
                rule::MAX_ORDER_NOTIONAL,
                format!(
                    "order notional {notional} USD exceeds the limit of {} USD",
                    self.max_order_notional_usd
                ),
            ));
        }
        // A trade that shrinks the position is allowed whatever its size: it lowers risk.
        let grows = after > exposure.abs();
        if let Some(limit) = self.max_position_size.get(market) {
            if grows && after > *limit {
                return Err(RiskCheck::new(
                    rule::MAX_POSITION_SIZE,
                    format!("position in {market} would be {after}, above the limit of {limit}"),
                ));
            }
        }
        let position_notional = UsdAmount::new(after.checked_mul(reference).ok_or_else(too_large)?);
        if grows && position_notional.value() > self.max_position_notional_usd {
            return Err(RiskCheck::new(
                rule::MAX_POSITION_NOTIONAL,
                format!(
                    "position in {market} would be {position_notional} USD, above the limit of {} USD",
                    self.max_position_notional_usd
                ),
            ));
        }
        let volume_after = traded_today_usd
            .checked_add(notional)
            .ok_or_else(too_large)?;
        if volume_after.value() > self.max_daily_volume_usd {
            return Err(RiskCheck::new(
                rule::MAX_DAILY_VOLUME,
                format!(
                    "today's volume would be {volume_after} USD, above the limit of {} USD",
                    self.max_daily_volume_usd
                ),
            ));
        }
        Ok(notional)
    }

    /// The limit price, the price-deviation circuit breaker and the bracket prices.
    fn check_prices(&self, order: &ProposedOrder) -> Result<(), RiskCheck> {
        let reference = order.reference_price;
        let limit_price = match order.order_type {
            OrderType::Limit { price } if price <= Decimal::ZERO => {
                return Err(RiskCheck::new(
                    rule::LIMIT_PRICE,
                    format!("limit price {price} is not positive"),
                ))
            }
            OrderType::Limit { price } => Some(price),
            OrderType::Market => None,
        };
        if self.max_price_deviation_bps > 0 {
            let checked = [
                ("alert price", order.alert_price),
                ("limit price", limit_price),
            ];
            for (what, price) in checked {
                let Some(price) = price else { continue };
                if deviates(price, reference, self.max_price_deviation_bps) {
                    return Err(RiskCheck::new(
                        rule::PRICE_DEVIATION,
                        format!(
                            "{what} {price} is more than {}% away from the market price {reference}",
                            Decimal::new(i64::from(self.max_price_deviation_bps), 2).normalize()
                        ),
                    ));
                }
            }
        }
        // A buy's profit lies above the market and its stop below; a sell's the other way round.
        let (profit_above, side) = match order.side {
            Side::Buy => (true, "buy"),
            Side::Sell => (false, "sell"),
        };
        let brackets = [
            ("take-profit", order.take_profit, profit_above),
            ("stop-loss", order.stop_loss, !profit_above),
        ];
        for (what, price, must_be_above) in brackets {
            let Some(price) = price else { continue };
            let sane = price > Decimal::ZERO
                && if must_be_above {
                    price > reference
                } else {
                    price < reference
                };
            if !sane {
                let place = if must_be_above { "above" } else { "below" };
                return Err(RiskCheck::new(
                    rule::BRACKET_PRICES,
                    format!(
                        "a {side}'s {what} {price} must be {place} the market price {reference}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `price` is more than `bps` basis points away from the positive `reference`, computed
/// without division so no rounding decides the edge.
fn deviates(price: Decimal, reference: Decimal, bps: u32) -> bool {
    let distance = price.checked_sub(reference).map(|d| d.abs());
    let scaled = distance.and_then(|d| d.checked_mul(Decimal::from(10_000)));
    let allowed = reference.checked_mul(Decimal::from(bps));
    match (scaled, allowed) {
        (Some(scaled), Some(allowed)) => scaled > allowed,
        _ => true,
    }
}
