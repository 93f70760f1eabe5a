//! The trader's settings as facts of the account: where it trades, which credentials it holds
//! (names only, never values), the size of an alert that gives none, webhook rotations and test
//! notifications. Each records who made it (`trader:<user_id>`, `staff:<staff_id>`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{AccountError, AccountEvent, Halt, RiskLimits, SignalStage, TradingAccount};

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

/// The account's limits and the size of an alert that names none, replaced together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingSettings {
    pub limits: RiskLimits,
    /// `None`: the service's default (`serve --default-order-usd`).
    pub default_order_usd: Option<Decimal>,
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

    /// Limits and default size in one decision: both are recorded, or neither.
    pub(crate) fn change_settings(
        &self,
        settings: TradingSettings,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let profile = self.profile()?;
        if let Some(size) = settings.default_order_usd {
            if size <= Decimal::ZERO {
                return Err(AccountError::InvalidSetting(
                    "the default order size must be above 0 USD".to_owned(),
                ));
            }
        }
        let mut events = Vec::new();
        if profile.limits != settings.limits {
            events.push(AccountEvent::RiskLimitsChanged {
                limits: settings.limits,
                by: by.clone(),
                reason,
                at,
            });
        }
        if profile.default_order_usd != settings.default_order_usd {
            events.push(AccountEvent::DefaultOrderSizeChanged {
                default_order_usd: settings.default_order_usd,
                by,
                at,
            });
        }
        Ok(events)
    }
}
