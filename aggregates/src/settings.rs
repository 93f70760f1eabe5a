//! The trader's settings as facts of the account: where it trades, which credentials it holds
//! (names only, never values), the size of an alert that gives none, webhook rotations and test
//! notifications. Each records who made it (`trader:<user_id>`, `staff:<staff_id>`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{AccountError, AccountEvent, Halt, Market, RiskLimits, SignalStage, TradingAccount};

/// Where an account's orders go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    /// The paper exchange: no money moves. Every account starts here.
    #[default]
    Paper,
    /// dYdX v4, with the credentials the owner stored in the vault.
    Dydx,
}

impl Venue {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paper => "paper",
            Self::Dydx => "dydx",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "paper" => Some(Self::Paper),
            "dydx" => Some(Self::Dydx),
            _ => None,
        }
    }
}

impl std::fmt::Display for Venue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change to the account's limits and to the size of an alert that names none, applied to the
/// account's settings as they stand when it is decided (under the account's lock, so two changes
/// never undo each other). Every field absent keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsChange {
    pub max_order_notional_usd: Option<Decimal>,
    pub max_position_notional_usd: Option<Decimal>,
    pub max_daily_volume_usd: Option<Decimal>,
    /// Per market: a size, or `None` to lift that market's limit.
    pub max_order_size: BTreeMap<Market, Option<Decimal>>,
    pub max_position_size: BTreeMap<Market, Option<Decimal>>,
    /// The only markets the account may trade; empty: every market.
    pub allowed_markets: Option<BTreeSet<Market>>,
    pub max_price_deviation_bps: Option<u32>,
    pub halt_after_consecutive_failures: Option<u32>,
    /// `Some(None)`: back to the service's default (`serve --default-order-usd`).
    pub default_order_usd: Option<Option<Decimal>>,
}

impl SettingsChange {
    /// `limits` and `default_order_usd` with this change made; every amount must be above zero.
    fn apply(
        &self,
        limits: &RiskLimits,
        default_order_usd: Option<Decimal>,
    ) -> Result<(RiskLimits, Option<Decimal>), AccountError> {
        let positive = |name: &str, value: Decimal| {
            if value > Decimal::ZERO {
                Ok(value)
            } else {
                Err(AccountError::InvalidSetting(format!(
                    "{name} must be greater than zero"
                )))
            }
        };
        let mut limits = limits.clone();
        for (name, value, into) in [
            (
                "max_order_notional_usd",
                self.max_order_notional_usd,
                &mut limits.max_order_notional_usd,
            ),
            (
                "max_position_notional_usd",
                self.max_position_notional_usd,
                &mut limits.max_position_notional_usd,
            ),
            (
                "max_daily_volume_usd",
                self.max_daily_volume_usd,
                &mut limits.max_daily_volume_usd,
            ),
        ] {
            if let Some(value) = value {
                *into = positive(name, value)?;
            }
        }
        for (name, changes, map) in [
            (
                "max_order_size",
                &self.max_order_size,
                &mut limits.max_order_size,
            ),
            (
                "max_position_size",
                &self.max_position_size,
                &mut limits.max_position_size,
            ),
        ] {
            for (market, size) in changes {
                match size {
                    Some(size) => {
                        let size = positive(&format!("{name} of {market}"), *size)?;
                        map.insert(market.clone(), size);
                    }
                    None => {
                        map.remove(market);
                    }
                }
            }
        }
        if let Some(markets) = &self.allowed_markets {
            limits.allowed_markets = markets.clone();
        }
        if let Some(bps) = self.max_price_deviation_bps {
            limits.max_price_deviation_bps = bps;
        }
        if let Some(failures) = self.halt_after_consecutive_failures {
            limits.halt_after_consecutive_failures = failures;
        }
        let default_order_usd = match self.default_order_usd {
            None => default_order_usd,
            Some(None) => None,
            Some(Some(size)) => Some(positive("default_order_usd", size)?),
        };
        Ok((limits, default_order_usd))
    }
}

/// What the trader's settings page shows of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    pub limits: RiskLimits,
    pub default_order_usd: Option<Decimal>,
    /// `None`: never chosen in the ledger.
    pub venue: Option<Venue>,
    pub halt: Option<Halt>,
}

impl TradingAccount {
    /// The account's settings, `None` if it is not open.
    pub fn settings(&self) -> Option<AccountSettings> {
        let profile = self.profile.as_ref()?;
        Some(AccountSettings {
            limits: profile.limits.clone(),
            default_order_usd: profile.default_order_usd,
            venue: self.venue,
            halt: self.halt.clone(),
        })
    }

    /// The venue the account chose in its ledger; `None` if it never chose one there.
    pub fn venue(&self) -> Option<Venue> {
        self.venue
    }

    /// The account's own default order size, if it set one.
    pub fn default_order_usd(&self) -> Option<Decimal> {
        self.profile.as_ref().and_then(|p| p.default_order_usd)
    }

    /// A venue chosen again is nothing to record; a first choice is recorded even when it is
    /// paper, since the account never said so before.
    pub(crate) fn choose_venue(
        &self,
        venue: Venue,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.profile()?;
        if self.venue == Some(venue) {
            return Ok(vec![]);
        }
        // An order still in flight is asked after, cancelled or closed on the venue of the
        // moment: it must be the one that took it. And the ledger's positions are what orders
        // are sized against (targets, closes): on another venue they would trade real sizes
        // against positions that venue does not hold.
        let busy = self
            .in_flight
            .values()
            .any(|signal| signal.stage != SignalStage::AwaitingNotification);
        if busy {
            return Err(AccountError::VenueBusy(
                "orders are still in flight on the current venue; change it once they end"
                    .to_owned(),
            ));
        }
        if let Some(market) = self
            .positions
            .iter()
            .find(|(_, position)| !position.size.is_zero())
            .map(|(market, _)| market)
        {
            return Err(AccountError::VenueBusy(format!(
                "a position in {market} is open on the current venue; close it first"
            )));
        }
        Ok(vec![AccountEvent::VenueChanged { venue, by, at }])
    }

    /// Limits and default size in one decision: both are recorded, or neither; what does not
    /// change is not recorded.
    pub(crate) fn change_settings(
        &self,
        change: SettingsChange,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let profile = self.profile()?;
        let (limits, default_order_usd) =
            change.apply(&profile.limits, profile.default_order_usd)?;
        let mut events = Vec::new();
        if profile.limits != limits {
            events.push(AccountEvent::RiskLimitsChanged {
                limits,
                by: by.clone(),
                reason,
                at,
            });
        }
        if profile.default_order_usd != default_order_usd {
            events.push(AccountEvent::DefaultOrderSizeChanged {
                default_order_usd,
                by,
                at,
            });
        }
        Ok(events)
    }
}
