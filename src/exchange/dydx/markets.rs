//! The dYdX markets' trading parameters and oracle prices, read from the Indexer and kept in
//! memory: risk checks value orders at the cached oracle price without a request.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bigdecimal::BigDecimal;
use dydx::indexer::PerpetualMarket;
use rust_decimal::{Decimal, RoundingStrategy};

use aggregates::{Market, Side};

/// What the adapter needs of a market, in exact decimals.
#[derive(Debug, Clone)]
pub struct MarketParams {
    pub tick_size: Decimal,
    /// dYdX's minimum order size is one step.
    pub step_size: Decimal,
    pub oracle_price: Decimal,
    /// The official client's model, which its order builder quantizes with.
    pub model: PerpetualMarket,
    pub fetched_at: Instant,
}

impl MarketParams {
    pub fn from_model(model: PerpetualMarket) -> Option<Self> {
        Some(Self {
            tick_size: to_decimal(&model.tick_size)?,
            step_size: to_decimal(&model.step_size)?,
            oracle_price: to_decimal(model.oracle_price.as_ref()?)?,
            model,
            fetched_at: Instant::now(),
        })
    }

    /// The worst price a market order of `side` may fill at: the oracle price moved by
    /// `slippage` against the taker, rounded onto the tick grid toward the oracle price so the cap
    /// is never exceeded.
    pub fn worst_price(&self, side: Side, slippage: Decimal) -> Option<Decimal> {
        let (moved, rounding) = match side {
            Side::Buy => (
                self.oracle_price.checked_mul(Decimal::ONE + slippage)?,
                RoundingStrategy::ToNegativeInfinity,
            ),
            Side::Sell => (
                self.oracle_price.checked_mul(Decimal::ONE - slippage)?,
                RoundingStrategy::ToPositiveInfinity,
            ),
        };
        on_grid(moved, self.tick_size, rounding)
    }

    /// `size` on the step grid (down: never more than asked), or `None` below one step.
    pub fn quantize_size(&self, size: Decimal) -> Option<Decimal> {
        on_grid(size, self.step_size, RoundingStrategy::ToZero).filter(|size| *size > Decimal::ZERO)
    }

    /// `price` on the tick grid, rounded the way that keeps a limit within what was asked.
    pub fn quantize_limit(&self, side: Side, price: Decimal) -> Option<Decimal> {
        let rounding = match side {
            Side::Buy => RoundingStrategy::ToNegativeInfinity,
            Side::Sell => RoundingStrategy::ToPositiveInfinity,
        };
        on_grid(price, self.tick_size, rounding).filter(|price| *price > Decimal::ZERO)
    }
}

fn on_grid(value: Decimal, unit: Decimal, rounding: RoundingStrategy) -> Option<Decimal> {
    if unit <= Decimal::ZERO {
        return None;
    }
    let units = value.checked_div(unit)?.round_dp_with_strategy(0, rounding);
    Some(units.checked_mul(unit)?.normalize())
}

/// Exact conversion: both are base-10; the text form is lossless.
pub fn to_decimal(value: &BigDecimal) -> Option<Decimal> {
    let plain = value.to_plain_string();
    Decimal::from_str(&plain)
        .ok()
        .or_else(|| Decimal::from_scientific(&value.to_string()).ok())
}

pub fn to_big(value: Decimal) -> Option<BigDecimal> {
    BigDecimal::from_str(&value.normalize().to_string()).ok()
}

/// Markets by ticker, refreshed when older than `max_age`.
pub struct MarketCache {
    markets: RwLock<HashMap<Market, MarketParams>>,
    pub max_age: Duration,
}

impl MarketCache {
    pub fn new(max_age: Duration) -> Self {
        Self {
            markets: RwLock::new(HashMap::new()),
            max_age,
        }
    }

    pub fn fresh(&self, market: &Market) -> Option<MarketParams> {
        self.read()
            .get(market)
            .filter(|params| params.fetched_at.elapsed() < self.max_age)
            .cloned()
    }

    pub fn oracle_price(&self, market: &Market) -> Option<Decimal> {
        self.read().get(market).map(|params| params.oracle_price)
    }

    pub fn store(&self, market: Market, params: MarketParams) {
        self.markets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(market, params);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Market, MarketParams>> {
        self.markets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
