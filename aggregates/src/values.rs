//! Value types that can only exist valid: the HTTP layer parses once into them and the aggregate
//! never re-checks strings.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("market must look like BASE-QUOTE in upper case, e.g. BTC-USD")]
    Market,
    #[error("quantity must be a positive decimal")]
    Quantity,
    #[error("side must be buy or sell")]
    Side,
}

/// A dYdX perpetual market ticker such as `BTC-USD`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Market(String);

impl Market {
    pub fn parse(ticker: &str) -> Result<Self, ParseError> {
        let (base, quote) = ticker.split_once('-').ok_or(ParseError::Market)?;
        let well_formed = |part: &str| {
            (1..=12).contains(&part.len())
                && part
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        };
        if well_formed(base) && well_formed(quote) {
            Ok(Self(ticker.to_owned()))
        } else {
            Err(ParseError::Market)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Market {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Market> for String {
    fn from(market: Market) -> Self {
        market.0
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "buy" | "long" => Ok(Self::Buy),
            "sell" | "short" => Ok(Self::Sell),
            _ => Err(ParseError::Side),
        }
    }

    /// +1 for buy, -1 for sell: the sign a fill of this side adds to a position.
    pub fn sign(self) -> Decimal {
        match self {
            Self::Buy => Decimal::ONE,
            Self::Sell => Decimal::NEGATIVE_ONE,
        }
    }

    /// The side that closes what this side opens.
    pub fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
}

/// A strictly positive amount of a market's base asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Quantity(Decimal);

impl Quantity {
    pub fn new(value: Decimal) -> Result<Self, ParseError> {
        if value > Decimal::ZERO {
            Ok(Self(value.normalize()))
        } else {
            Err(ParseError::Quantity)
        }
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Quantity {
    type Error = ParseError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for Decimal {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An amount of USD (the quote asset of every dYdX market), quantized to cents-of-a-cent so that
/// sums are exact and stable across replays.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UsdAmount(Decimal);

impl UsdAmount {
    pub const DECIMAL_PLACES: u32 = 6;
    pub const ZERO: Self = Self(Decimal::ZERO);

    pub fn new(value: Decimal) -> Self {
        Self(
            value
                .round_dp_with_strategy(
                    Self::DECIMAL_PLACES,
                    rust_decimal::RoundingStrategy::MidpointNearestEven,
                )
                .normalize(),
        )
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

// No `+`/`-` operators: rust_decimal's panic on overflow, and amounts are computed from values the
// exchange and alerts send. Every sum says what happens at the edge.
impl UsdAmount {
    /// The sum, or `None` if it leaves `Decimal`'s range.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self::new)
    }

    /// The difference, or `None` if it leaves `Decimal`'s range.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self::new)
    }

    /// For folds, which never fail: the decision that recorded the amounts checked them.
    pub fn saturating_add(self, other: Self) -> Self {
        Self::new(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Self) -> Self {
        Self::new(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for UsdAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The ledger's id for one signal. It is derived by the caller from the account and the signal's
/// idempotency key, so a resent alert maps to the same id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignalId(pub String);

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id the exchange knows an order by. Derived from the signal id, never random, so a retried
/// placement is recognised by the exchange as the same order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientOrderId(pub String);

impl ClientOrderId {
    pub fn for_signal(signal_id: &SignalId) -> Self {
        Self(format!("lh-{}", signal_id.0))
    }

    /// The reduce-only close that compensates the signal's position: its own id, derived from
    /// the signal's, so it too is placed at most once and found again after a crash.
    pub fn compensation_for(signal_id: &SignalId) -> Self {
        Self(format!("lh-{}-close", signal_id.0))
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markets_parse_only_when_well_formed() {
        assert!(Market::parse("BTC-USD").is_ok());
        assert!(Market::parse("1INCH-USD").is_ok());
        for bad in [
            "btc-usd",
            "BTCUSD",
            "BTC-",
            "-USD",
            "BTC-USD-X",
            "ВТС-USD",
            "",
        ] {
            assert_eq!(Market::parse(bad), Err(ParseError::Market), "{bad}");
        }
    }

    /// The venues' records name sides in either vocabulary, in any case.
    #[test]
    fn sides_parse_from_buy_sell_long_or_short() {
        for (text, side) in [
            ("buy", Side::Buy),
            (" Long ", Side::Buy),
            ("SELL", Side::Sell),
            ("short", Side::Sell),
        ] {
            assert_eq!(Side::parse(text), Ok(side), "{text}");
        }
        assert_eq!(Side::parse("hold"), Err(ParseError::Side));
    }

    #[test]
    fn quantities_are_strictly_positive() {
        assert!(Quantity::new(Decimal::new(1, 3)).is_ok());
        assert!(Quantity::new(Decimal::ZERO).is_err());
        assert!(Quantity::new(Decimal::NEGATIVE_ONE).is_err());
    }

    #[test]
    fn usd_amounts_are_quantized() {
        let amount = UsdAmount::new(Decimal::new(1_234_567_891, 9));
        assert_eq!(amount.value().to_string(), "1.234568");
    }

    #[test]
    fn usd_sums_at_the_edge_of_decimal_never_panic() {
        let max = UsdAmount::new(Decimal::MAX);
        let one = UsdAmount::new(Decimal::ONE);
        assert_eq!(max.checked_add(one), None);
        assert_eq!(UsdAmount::new(Decimal::MIN).checked_sub(one), None);
        assert_eq!(max.saturating_add(one), max);
        assert_eq!(one.checked_add(one), Some(UsdAmount::new(Decimal::TWO)));
    }
}
