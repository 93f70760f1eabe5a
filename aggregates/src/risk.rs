//! Per-account risk limits, checked inside the aggregate before any order exists.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Market, SignalIntent, UsdAmount};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskLimits {
    /// Largest single order, valued at the reference price.
    pub max_order_notional_usd: Decimal,
    /// Largest absolute position in one market after the order, valued at the reference price.
    pub max_position_notional_usd: Decimal,
    /// Most notional the account may trade in one UTC day.
    pub max_daily_volume_usd: Decimal,
    /// Markets this account may trade; empty means every market the service lists.
    pub allowed_markets: BTreeSet<Market>,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_order_notional_usd: Decimal::from(100_000),
            max_position_notional_usd: Decimal::from(250_000),
            max_daily_volume_usd: Decimal::from(1_000_000),
            allowed_markets: BTreeSet::new(),
        }
    }
}

/// A failed rule: its name (stable, for filtering) and a sentence for the trader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskCheck {
    pub rule: &'static str,
    pub detail: String,
}

impl RiskLimits {
    /// Returns the order's notional when every rule passes. `exposure` is the signed position
    /// the account would hold if every order already approved filled.
    pub fn check(
        &self,
        intent: &SignalIntent,
        exposure: Decimal,
        traded_today_usd: UsdAmount,
    ) -> Result<UsdAmount, RiskCheck> {
        if !self.allowed_markets.is_empty() && !self.allowed_markets.contains(&intent.market) {
            return Err(RiskCheck {
                rule: "allowed_markets",
                detail: format!(
                    "{} is not among this account's allowed markets",
                    intent.market
                ),
            });
        }
        if intent.reference_price <= Decimal::ZERO {
            return Err(RiskCheck {
                rule: "reference_price",
                detail: "no positive reference price to value the order".to_owned(),
            });
        }
        let too_large = || RiskCheck {
            rule: "max_order_notional",
            detail: "order notional is beyond any limit".to_owned(),
        };
        let notional = UsdAmount::new(
            intent
                .size
                .value()
                .checked_mul(intent.reference_price)
                .ok_or_else(too_large)?,
        );
        if notional.value() > self.max_order_notional_usd {
            return Err(RiskCheck {
                rule: "max_order_notional",
                detail: format!(
                    "order notional {notional} USD exceeds the limit of {} USD",
                    self.max_order_notional_usd
                ),
            });
        }
        let current = exposure;
        let after = current
            .checked_add(intent.side.sign() * intent.size.value())
            .ok_or_else(too_large)?
            .abs();
        let position_notional = UsdAmount::new(
            after
                .checked_mul(intent.reference_price)
                .ok_or_else(too_large)?,
        );
        // A trade that shrinks the position is always allowed: it lowers risk.
        if after > current.abs() && position_notional.value() > self.max_position_notional_usd {
            return Err(RiskCheck {
                rule: "max_position_notional",
                detail: format!(
                    "position in {} would be {position_notional} USD, above the limit of {} USD",
                    intent.market, self.max_position_notional_usd
                ),
            });
        }
        let volume_after = traded_today_usd + notional;
        if volume_after.value() > self.max_daily_volume_usd {
            return Err(RiskCheck {
                rule: "max_daily_volume",
                detail: format!(
                    "today's volume would be {volume_after} USD, above the limit of {} USD",
                    self.max_daily_volume_usd
                ),
            });
        }
        Ok(notional)
    }
}
