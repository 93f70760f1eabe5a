//! The dYdX perpetual markets the service trades, with their step and tick sizes, and the mapping
//! from the symbols TradingView sends (`BINANCE:BTCUSDT.P`, `BTC-PERP`, ...) to dYdX tickers.

use rust_decimal::{Decimal, RoundingStrategy};

use aggregates::{Market, Quantity};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSpec {
    pub market: Market,
    /// Sizes are whole multiples of this.
    pub step_size: Decimal,
    /// Prices are whole multiples of this.
    pub tick_size: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    #[error("symbol `{0}` does not name a dYdX market")]
    Unknown(String),
    #[error("size is too large to trade")]
    TooLarge,
    #[error("size {size} is below the {market} step size of {step}")]
    BelowStep {
        market: String,
        size: Decimal,
        step: Decimal,
    },
}

#[derive(Debug, Clone)]
pub struct MarketList {
    specs: Vec<MarketSpec>,
}

/// (ticker, step size, tick size) of the markets listed by default; from the dYdX Indexer's
/// `/v4/perpetualMarkets`.
const DEFAULT_MARKETS: &[(&str, i64, u32, i64, u32)] = &[
    ("BTC-USD", 1, 4, 1, 0),
    ("ETH-USD", 1, 3, 1, 1),
    ("SOL-USD", 1, 1, 1, 2),
    ("DOGE-USD", 10, 0, 1, 5),
    ("LINK-USD", 1, 1, 1, 3),
    ("AVAX-USD", 1, 1, 1, 2),
];

impl Default for MarketList {
    fn default() -> Self {
        let specs = DEFAULT_MARKETS
            .iter()
            .filter_map(|&(ticker, step, step_scale, tick, tick_scale)| {
                Some(MarketSpec {
                    market: Market::parse(ticker).ok()?,
                    step_size: Decimal::new(step, step_scale),
                    tick_size: Decimal::new(tick, tick_scale),
                })
            })
            .collect();
        Self { specs }
    }
}

impl MarketList {
    pub fn get(&self, market: &Market) -> Option<&MarketSpec> {
        self.specs.iter().find(|spec| &spec.market == market)
    }

    /// Maps a TradingView symbol to a listed market.
    pub fn normalize(&self, symbol: &str) -> Result<&MarketSpec, MarketError> {
        let unknown = || MarketError::Unknown(symbol.chars().take(64).collect());
        let mut text = symbol.trim().to_ascii_uppercase();
        if let Some((_, rest)) = text.split_once(':') {
            text = rest.to_owned();
        }
        let text = text.strip_suffix(".P").unwrap_or(&text).replace('_', "-");
        let text = text
            .strip_suffix("-PERP")
            .or_else(|| text.strip_suffix("PERP"))
            .unwrap_or(&text);
        let base = match text.split_once('-') {
            Some((base, quote)) if is_usd_quote(quote) => base.to_owned(),
            Some(_) => return Err(unknown()),
            None => ["USDT", "USDC", "USD"]
                .iter()
                .find_map(|quote| text.strip_suffix(quote))
                .unwrap_or(text)
                .to_owned(),
        };
        let market = Market::parse(&format!("{base}-USD")).map_err(|_| unknown())?;
        self.get(&market).ok_or_else(unknown)
    }
}

fn is_usd_quote(quote: &str) -> bool {
    matches!(quote, "USD" | "USDT" | "USDC")
}

impl MarketSpec {
    /// Rounds a size down to the step size: an order is never bigger than what was asked.
    pub fn quantize_size(&self, size: Decimal) -> Result<Quantity, MarketError> {
        let steps = size
            .checked_div(self.step_size)
            .ok_or(MarketError::TooLarge)?
            .round_dp_with_strategy(0, RoundingStrategy::ToZero);
        let quantized = steps
            .checked_mul(self.step_size)
            .ok_or(MarketError::TooLarge)?;
        Quantity::new(quantized.normalize()).map_err(|_| MarketError::BelowStep {
            market: self.market.to_string(),
            size,
            step: self.step_size,
        })
    }

    /// Rounds a price to the nearest tick.
    pub fn quantize_price(&self, price: Decimal) -> Decimal {
        ((price / self.tick_size).round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
            * self.tick_size)
            .normalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tradingview_symbols_map_to_dydx_markets() {
        let markets = MarketList::default();
        for symbol in [
            "BTCUSDT",
            "BTCUSDT.P",
            "BINANCE:BTCUSDT.P",
            "BTCUSD",
            "BTC-PERP",
            "BTC_USD",
            "btc-usd",
            "BTC-USD",
        ] {
            let spec = markets.normalize(symbol).map_err(|e| e.to_string());
            assert_eq!(
                spec.map(|s| s.market.to_string()),
                Ok("BTC-USD".to_owned()),
                "{symbol}"
            );
        }
        for symbol in ["XYZUSDT", "BTC-EUR", "", "ВТСUSDT", "BTC:"] {
            assert!(markets.normalize(symbol).is_err(), "{symbol}");
        }
    }

    #[test]
    fn sizes_round_down_to_the_step() {
        let markets = MarketList::default();
        let btc = markets.normalize("BTC-USD").map_err(|e| e.to_string());
        let btc = btc.as_ref().map_err(String::clone);
        let Ok(btc) = btc else {
            panic!("BTC-USD is listed")
        };
        assert_eq!(
            btc.quantize_size(Decimal::new(123_456, 6))
                .map(Quantity::value),
            Ok(Decimal::new(1234, 4))
        );
        assert!(btc.quantize_size(Decimal::new(1, 5)).is_err());
    }
}
