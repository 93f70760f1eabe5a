//! The dYdX perpetual markets the service trades, with their step and tick sizes; the mapping from
//! the symbols TradingView sends (`BINANCE:BTCUSDT.P`, `BTC-PERP`, ...) to dYdX tickers; and the
//! quantization of sizes and prices to what the exchange accepts. Checked arithmetic throughout.

use rust_decimal::Decimal;

use aggregates::{Market, Quantity};

/// A size as an alert gives it: base units, USD, or a percent of equity (`base_size` turns each into
/// base units). `Default`: the alert gave none (seed 000's simple format allows that); the caller
/// applies the user's configured default order size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Base(Decimal),
    Usd(Decimal),
    PercentOfEquity(Decimal),
    Default,
}

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
    #[error("symbol `{symbol}` {problem}")]
    Malformed { symbol: String, problem: String },
    #[error("symbol `{symbol}` (read as {market}) is not a listed dYdX market; listed: {listed}")]
    Unknown {
        symbol: String,
        market: String,
        listed: String,
    },
    #[error("{what} is too large to trade")]
    TooLarge { what: &'static str },
    #[error("{what} must be greater than zero")]
    NotPositive { what: &'static str },
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

/// (ticker, step size, tick size) of the markets listed by default, as (mantissa, scale) pairs;
/// from the dYdX Indexer's `/v4/perpetualMarkets`.
const DEFAULT_MARKETS: &[(&str, i64, u32, i64, u32)] = &[
    ("BTC-USD", 1, 4, 1, 0),
    ("ETH-USD", 1, 3, 1, 1),
    ("SOL-USD", 1, 1, 1, 2),
    ("DOGE-USD", 10, 0, 1, 5),
    ("LINK-USD", 1, 1, 1, 3),
    ("AVAX-USD", 1, 1, 1, 2),
];

/// Quote currencies that all mean dYdX's USD: perpetuals elsewhere are quoted in stablecoins.
const USD_QUOTES: [&str; 3] = ["USDT", "USDC", "USD"];

/// Other names exchanges give a listed base asset (Kraken and BitMEX call bitcoin XBT).
const BASE_ALIASES: [(&str, &str); 1] = [("XBT", "BTC")];

/// Longer than any exchange-prefixed ticker; longer input is not worth reading.
const MAX_SYMBOL_CHARS: usize = 64;

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

    pub fn specs(&self) -> &[MarketSpec] {
        &self.specs
    }

    /// Maps a TradingView symbol to a listed market: an optional `EXCHANGE:` prefix, a `.P`
    /// (perpetual) suffix, any case, and BASE + USD/USDT/USDC/PERP joined by nothing, `-`, `_`
    /// or `/`. Anything non-ASCII is refused before any mapping, so a look-alike letter can
    /// never pass for a real one.
    pub fn normalize(&self, symbol: &str) -> Result<&MarketSpec, MarketError> {
        let base = base_asset(symbol)?;
        let ticker = format!("{base}-USD");
        let unknown = || MarketError::Unknown {
            symbol: shown(symbol),
            market: ticker.clone(),
            listed: self.listed(),
        };
        let market = Market::parse(&ticker).map_err(|_| unknown())?;
        self.get(&market).ok_or_else(unknown)
    }

    fn listed(&self) -> String {
        let tickers: Vec<&str> = self.specs.iter().map(|spec| spec.market.as_str()).collect();
        tickers.join(", ")
    }
}

/// The upper-case base asset a symbol names, or why it names none.
fn base_asset(symbol: &str) -> Result<String, MarketError> {
    let malformed = |problem: String| MarketError::Malformed {
        symbol: shown(symbol),
        problem,
    };
    if let Some((at, c)) = symbol.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
        return Err(malformed(format!(
            "contains the non-ASCII character U+{:04X} at position {}; market symbols are plain \
             ASCII (a look-alike or invisible character?)",
            u32::from(c),
            at + 1
        )));
    }
    let text = symbol.trim();
    if text.len() > MAX_SYMBOL_CHARS {
        return Err(malformed(format!(
            "is longer than {MAX_SYMBOL_CHARS} characters"
        )));
    }
    let text = text.to_ascii_uppercase();
    let text = match text.split_once(':') {
        Some((_, rest)) if rest.contains(':') => {
            return Err(malformed("has more than one exchange prefix".to_owned()))
        }
        Some((exchange, rest)) if is_alphanumeric(exchange) => rest,
        Some(_) => return Err(malformed("has an invalid exchange prefix".to_owned())),
        None => text.as_str(),
    };
    let text = text.strip_suffix(".P").unwrap_or(text);
    // Suffixes come off from the right: `BTCUSD_PERP` → `BTCUSD` → `BTC`.
    let (text, perpetual) = strip_quote(text, &["PERP"]);
    let (base, usd) = strip_quote(text, &USD_QUOTES);
    if !(perpetual || usd) {
        return Err(malformed(
            "is not quoted in USD (expected BASE-USD, BASEUSDT, BASE-PERP, ...)".to_owned(),
        ));
    }
    if !is_alphanumeric(base) {
        return Err(malformed(format!(
            "does not name a base asset (read `{}`)",
            shown(base)
        )));
    }
    let base = BASE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == base)
        .map_or(base, |(_, canonical)| canonical);
    Ok(base.to_owned())
}

/// Removes the first of `quotes` that ends `text`, with one separator before it if present.
fn strip_quote<'a>(text: &'a str, quotes: &[&str]) -> (&'a str, bool) {
    match quotes.iter().find_map(|quote| text.strip_suffix(quote)) {
        Some(rest) => (rest.strip_suffix(['-', '_', '/']).unwrap_or(rest), true),
        None => (text, false),
    }
}

fn is_alphanumeric(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A symbol as it may appear in a message: short, and ASCII-escaped so a look-alike shows as one.
fn shown(symbol: &str) -> String {
    let clipped: String = symbol.chars().take(32).collect();
    clipped.escape_default().to_string()
}

impl MarketSpec {
    /// Rounds a size down to the step size: an order is never bigger than what was asked.
    pub fn quantize_size(&self, size: Decimal) -> Result<Quantity, MarketError> {
        if size <= Decimal::ZERO {
            return Err(MarketError::NotPositive { what: "size" });
        }
        let quantized =
            round_down(size, self.step_size).ok_or(MarketError::TooLarge { what: "size" })?;
        Quantity::new(quantized).map_err(|_| MarketError::BelowStep {
            market: self.market.to_string(),
            size,
            step: self.step_size,
        })
    }

    /// Rounds a price to the nearest tick (halves away from zero).
    pub fn quantize_price(&self, price: Decimal) -> Result<Decimal, MarketError> {
        let too_large = MarketError::TooLarge { what: "price" };
        if price <= Decimal::ZERO {
            return Err(MarketError::NotPositive { what: "price" });
        }
        let down = round_down(price, self.tick_size).ok_or(too_large.clone())?;
        let remainder = price.checked_sub(down).ok_or(too_large.clone())?;
        let twice = remainder
            .checked_mul(Decimal::TWO)
            .ok_or(too_large.clone())?;
        let nearest = if twice >= self.tick_size {
            down.checked_add(self.tick_size).ok_or(too_large)?
        } else {
            down
        };
        Ok(nearest.normalize())
    }

    /// Base units for a size given in any form, rounded down to the step: `Usd(n)` buys at most
    /// n USD at `reference_price`, `PercentOfEquity(p)` at most p% of `equity`. `Ok(None)` for
    /// `Default`: the caller applies the user's configured default.
    pub fn base_size(
        &self,
        size: SizeSpec,
        reference_price: Decimal,
        equity: Decimal,
    ) -> Result<Option<Quantity>, MarketError> {
        let notional = match size {
            SizeSpec::Default => return Ok(None),
            SizeSpec::Base(base) => return self.quantize_size(base).map(Some),
            SizeSpec::Usd(usd) => Notional {
                numerator: usd,
                denominator: Decimal::ONE,
            },
            SizeSpec::PercentOfEquity(percent) => {
                if equity <= Decimal::ZERO {
                    return Err(MarketError::NotPositive { what: "equity" });
                }
                Notional {
                    numerator: equity
                        .checked_mul(percent)
                        .ok_or(MarketError::TooLarge { what: "equity" })?,
                    denominator: Decimal::ONE_HUNDRED,
                }
            }
        };
        self.size_for_notional(notional, reference_price).map(Some)
    }

    /// The largest step multiple whose value at `price` does not exceed the notional. Division
    /// rounds in the 28th digit, possibly up, so the candidate is checked by multiplication and
    /// stepped down if needed.
    fn size_for_notional(
        &self,
        notional: Notional,
        price: Decimal,
    ) -> Result<Quantity, MarketError> {
        let too_large = MarketError::TooLarge { what: "size" };
        if price <= Decimal::ZERO {
            return Err(MarketError::NotPositive {
                what: "reference price",
            });
        }
        if notional.numerator <= Decimal::ZERO {
            return Err(MarketError::NotPositive { what: "size" });
        }
        let divisor = price
            .checked_mul(notional.denominator)
            .ok_or(too_large.clone())?;
        let estimate = notional
            .numerator
            .checked_div(divisor)
            .ok_or(too_large.clone())?;
        let mut size = round_down(estimate, self.step_size).ok_or(too_large.clone())?;
        // The estimate is off by at most a unit in its 28th digit: one step down always suffices.
        if size > Decimal::ZERO && !notional.covers(size, divisor)? {
            size = size.checked_sub(self.step_size).ok_or(too_large.clone())?;
        }
        if size > Decimal::ZERO && !notional.covers(size, divisor)? {
            return Err(too_large);
        }
        Quantity::new(size).map_err(|_| MarketError::BelowStep {
            market: self.market.to_string(),
            size: estimate.normalize(),
            step: self.step_size,
        })
    }
}

/// `numerator / denominator` USD, kept as a fraction so the check against it is exact.
struct Notional {
    numerator: Decimal,
    denominator: Decimal,
}

impl Notional {
    /// size * price * denominator <= numerator, i.e. size * price <= the notional.
    fn covers(&self, size: Decimal, price_times_denominator: Decimal) -> Result<bool, MarketError> {
        let value = size
            .checked_mul(price_times_denominator)
            .ok_or(MarketError::TooLarge { what: "size" })?;
        Ok(value <= self.numerator)
    }
}

/// The largest multiple of `step` not above `value` (for value >= 0): exact, since a decimal
/// remainder is computed in integers.
fn round_down(value: Decimal, step: Decimal) -> Option<Decimal> {
    if step <= Decimal::ZERO {
        return None;
    }
    let remainder = value.checked_rem(step)?;
    Some(value.checked_sub(remainder)?.normalize())
}

#[cfg(test)]
mod tests;
