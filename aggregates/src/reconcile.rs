//! Reconciliation: the ledger's positions compared with what the venue says the account holds.
//!
//! A drift is recorded when it appears or changes, and cleared when the two agree again, so a
//! periodic check of an account that stays drifted adds no event. A market with an order the
//! venue may have filled but the ledger has not recorded yet (a signal awaiting execution) is not
//! judged: its difference is expected and passes once the saga records the outcome.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{AccountError, AccountEvent, Market, SignalStage, TradingAccount};

/// A difference reported and not yet cleared: the signed sizes each side held when it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub venue: String,
    pub ledger_size: Decimal,
    pub venue_size: Decimal,
}

impl TradingAccount {
    /// The events a reconciliation against `venue`, which reported `venue_positions` (signed
    /// sizes; a market it does not list is flat there), produces.
    pub(crate) fn reconcile(
        &self,
        venue: String,
        venue_positions: BTreeMap<Market, Decimal>,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.profile()?;
        let unsettled: BTreeSet<&Market> = self
            .in_flight
            .values()
            // A resting order may fill on the venue before the watcher records it.
            .filter(|signal| {
                matches!(
                    signal.stage,
                    SignalStage::AwaitingExecution | SignalStage::Resting
                )
            })
            .map(|signal| &signal.market)
            .collect();
        let markets: BTreeSet<&Market> = self
            .positions
            .keys()
            .chain(venue_positions.keys())
            .chain(self.drift.keys())
            .filter(|market| !unsettled.contains(market))
            .collect();
        let mut events = Vec::new();
        for market in markets {
            let ledger_size = self
                .positions
                .get(market)
                .map_or(Decimal::ZERO, |position| position.size)
                .normalize();
            let venue_size = venue_positions
                .get(market)
                .copied()
                .unwrap_or(Decimal::ZERO)
                .normalize();
            let reported = self.drift.get(market);
            if ledger_size != venue_size {
                let drift = Drift {
                    venue: venue.clone(),
                    ledger_size,
                    venue_size,
                };
                if reported != Some(&drift) {
                    events.push(AccountEvent::PositionDriftDetected {
                        venue: venue.clone(),
                        market: market.clone(),
                        ledger_size,
                        venue_size,
                        detected_at: at,
                    });
                }
            } else if reported.is_some() {
                events.push(AccountEvent::PositionDriftCleared {
                    venue: venue.clone(),
                    market: market.clone(),
                    size: ledger_size,
                    cleared_at: at,
                });
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountCommand, RiskLimits};
    use chrono::TimeZone;
    use cqrs_es::Aggregate;
    use std::str::FromStr;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, minute, 0)
            .single()
            .unwrap()
    }

    fn opened() -> TradingAccount {
        let mut account = TradingAccount::default();
        account.apply(AccountEvent::AccountOpened {
            display_name: "a".into(),
            limits: RiskLimits::default(),
            opened_at: at(0),
        });
        account
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn market(name: &str) -> Market {
        Market::parse(name).unwrap()
    }

    fn reconcile(
        account: &mut TradingAccount,
        venue: &[(&str, Decimal)],
        minute: u32,
    ) -> Vec<AccountEvent> {
        let events = account
            .decide(AccountCommand::RecordReconciliation {
                venue: "paper".into(),
                venue_positions: venue.iter().map(|(m, size)| (market(m), *size)).collect(),
                at: at(minute),
            })
            .unwrap();
        for event in &events {
            account.apply(event.clone());
        }
        events
    }

    #[test]
    fn agreement_records_nothing() {
        let mut account = opened();
        assert!(reconcile(&mut account, &[], 1).is_empty());
        assert!(reconcile(&mut account, &[("BTC-USD", d("0"))], 2).is_empty());
    }

    #[test]
    fn a_drift_is_recorded_once_and_again_only_when_it_changes() {
        let mut account = opened();
        let first = reconcile(&mut account, &[("ETH-USD", d("-0.5"))], 1);
        assert_eq!(
            first,
            vec![AccountEvent::PositionDriftDetected {
                venue: "paper".into(),
                market: market("ETH-USD"),
                ledger_size: d("0"),
                venue_size: d("-0.5"),
                detected_at: at(1),
            }]
        );
        assert!(reconcile(&mut account, &[("ETH-USD", d("-0.50"))], 2).is_empty());
        let changed = reconcile(&mut account, &[("ETH-USD", d("-1"))], 3);
        assert!(matches!(
            changed.as_slice(),
            [AccountEvent::PositionDriftDetected { venue_size, .. }] if *venue_size == d("-1")
        ));
    }

    #[test]
    fn a_drift_that_goes_away_is_cleared_once() {
        let mut account = opened();
        reconcile(&mut account, &[("ETH-USD", d("2"))], 1);
        let cleared = reconcile(&mut account, &[], 2);
        assert!(matches!(
            cleared.as_slice(),
            [AccountEvent::PositionDriftCleared { size, .. }] if size.is_zero()
        ));
        assert!(account.drift.is_empty());
        assert!(reconcile(&mut account, &[], 3).is_empty());
    }

    #[test]
    fn a_market_with_an_order_not_yet_recorded_is_not_judged() {
        use crate::{ClientOrderId, InFlight, OrderType, Quantity, Side, SignalId};
        let mut account = opened();
        let signal = SignalId("s-1".into());
        account.in_flight.insert(
            signal.clone(),
            InFlight {
                stage: SignalStage::AwaitingExecution,
                market: market("ETH-USD"),
                side: Side::Buy,
                size: Quantity::new(d("1")).unwrap(),
                reduce_only: false,
                order_type: OrderType::Market,
                take_profit: None,
                stop_loss: None,
                client_order_id: ClientOrderId::for_signal(&signal),
                reserved_usd: Default::default(),
                reserved_on: at(0).date_naive(),
                approved_at: Some(at(0)),
                compensation: None,
                resting: None,
            },
        );
        // The venue may have filled it already: not a drift, yet.
        assert!(reconcile(&mut account, &[("ETH-USD", d("1"))], 1).is_empty());
        // Another market is judged as usual.
        assert_eq!(reconcile(&mut account, &[("BTC-USD", d("1"))], 2).len(), 1);
    }

    #[test]
    fn an_account_that_is_not_open_cannot_be_reconciled() {
        let account = TradingAccount::default();
        let refused = account.decide(AccountCommand::RecordReconciliation {
            venue: "paper".into(),
            venue_positions: BTreeMap::new(),
            at: at(1),
        });
        assert_eq!(refused, Err(AccountError::NotOpened));
    }
}
