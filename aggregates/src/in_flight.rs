//! The signals an account still has work to do for, with what they add to its exposure kept
//! up to date as they change, so a decision costs the same whether one signal is in flight or
//! ten thousand (one busy account whose saga is behind).

use std::collections::BTreeMap;
use std::ops::Deref;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::account::{InFlight, SignalStage};
use crate::{Market, SignalId};

/// Signals with work still to do, by id; read through `Deref`, changed only through the methods
/// below, which keep `pending` equal to the sum of the signals' contributions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlightSignals {
    signals: BTreeMap<SignalId, InFlight>,
    /// Per market: the signed size the signals' orders add once they fill, and how many signals
    /// contribute (a market nobody contributes to has no entry).
    pending: BTreeMap<Market, (Decimal, usize)>,
}

impl InFlightSignals {
    pub(crate) fn insert(&mut self, signal_id: SignalId, signal: InFlight) {
        self.add(&signal);
        if let Some(replaced) = self.signals.insert(signal_id, signal) {
            self.subtract(&replaced);
        }
    }

    pub(crate) fn remove(&mut self, signal_id: &SignalId) -> Option<InFlight> {
        let removed = self.signals.remove(signal_id)?;
        self.subtract(&removed);
        Some(removed)
    }

    /// Changes one signal in place; `None` if it is not in flight.
    pub(crate) fn update<R>(
        &mut self,
        signal_id: &SignalId,
        change: impl FnOnce(&mut InFlight) -> R,
    ) -> Option<R> {
        let signal = self.signals.get_mut(signal_id)?;
        let before = contribution(signal).map(|(market, size)| (market.clone(), size));
        let result = change(signal);
        let after = contribution(signal).map(|(market, size)| (market.clone(), size));
        if before != after {
            if let Some((market, size)) = before {
                self.take_out(&market, size);
            }
            if let Some((market, size)) = after {
                self.put_in(market, size);
            }
        }
        Some(result)
    }

    /// The signed size in `market` that the signals' approved, unfilled orders and pending
    /// compensating closes add once they fill.
    pub fn pending_in(&self, market: &Market) -> Decimal {
        self.pending
            .get(market)
            .map_or(Decimal::ZERO, |(size, _)| *size)
    }

    fn add(&mut self, signal: &InFlight) {
        if let Some((market, size)) = contribution(signal) {
            self.put_in(market.clone(), size);
        }
    }

    fn subtract(&mut self, signal: &InFlight) {
        if let Some((market, size)) = contribution(signal) {
            self.take_out(market, size);
        }
    }

    fn put_in(&mut self, market: Market, size: Decimal) {
        let entry = self.pending.entry(market).or_insert((Decimal::ZERO, 0));
        entry.0 = entry.0.saturating_add(size);
        entry.1 += 1;
    }

    fn take_out(&mut self, market: &Market, size: Decimal) {
        let Some(entry) = self.pending.get_mut(market) else {
            return;
        };
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 == 0 {
            // The last contributor left: no rounding residue or stale scale stays behind.
            self.pending.remove(market);
        } else {
            entry.0 = entry.0.saturating_sub(size);
        }
    }
}

/// What one signal adds to the exposure in a market: its order while it may still fill, or the
/// close that compensates it.
fn contribution(signal: &InFlight) -> Option<(&Market, Decimal)> {
    match signal.stage {
        SignalStage::AwaitingExecution | SignalStage::Resting => Some((
            &signal.market,
            signal.side.sign().saturating_mul(signal.size.value()),
        )),
        SignalStage::AwaitingCompensation => signal.compensation.as_ref().map(|close| {
            (
                &close.market,
                close.side.sign().saturating_mul(close.size.value()),
            )
        }),
        _ => None,
    }
}

impl Deref for InFlightSignals {
    type Target = BTreeMap<SignalId, InFlight>;

    fn deref(&self) -> &Self::Target {
        &self.signals
    }
}

impl<'a> IntoIterator for &'a InFlightSignals {
    type Item = (&'a SignalId, &'a InFlight);
    type IntoIter = std::collections::btree_map::Iter<'a, SignalId, InFlight>;

    fn into_iter(self) -> Self::IntoIter {
        self.signals.iter()
    }
}

impl FromIterator<(SignalId, InFlight)> for InFlightSignals {
    fn from_iter<I: IntoIterator<Item = (SignalId, InFlight)>>(signals: I) -> Self {
        let mut in_flight = Self::default();
        for (signal_id, signal) in signals {
            in_flight.insert(signal_id, signal);
        }
        in_flight
    }
}

/// Stored (in snapshots) as the map alone; the sums are derived again when it is read.
impl Serialize for InFlightSignals {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.signals.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for InFlightSignals {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<SignalId, InFlight>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::account::CompensationOrder;
    use crate::{ClientOrderId, OrderType, Quantity, Side};

    const MARKETS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];
    const STAGES: [SignalStage; 4] = [
        SignalStage::AwaitingExecution,
        SignalStage::Resting,
        SignalStage::AwaitingCompensation,
        SignalStage::AwaitingNotification,
    ];

    /// What the account summed over every signal on each decision before the sums were kept.
    fn summed_over_all(in_flight: &InFlightSignals, market: &Market) -> Decimal {
        in_flight
            .values()
            .filter_map(|signal| contribution(signal))
            .filter(|(of, _)| *of == market)
            .fold(Decimal::ZERO, |total, (_, size)| total + size)
    }

    fn market(index: usize) -> Market {
        Market::parse(MARKETS[index % MARKETS.len()]).unwrap()
    }

    fn size(thousandths: u32) -> Quantity {
        Quantity::new(Decimal::new(i64::from(thousandths) + 1, 3)).unwrap()
    }

    fn signal(
        id: &SignalId,
        stage: SignalStage,
        market_index: usize,
        buy: bool,
        size_milli: u32,
    ) -> InFlight {
        let side = if buy { Side::Buy } else { Side::Sell };
        InFlight {
            stage,
            market: market(market_index),
            side,
            size: size(size_milli),
            reduce_only: false,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            client_order_id: ClientOrderId::for_signal(id),
            reserved_usd: Default::default(),
            reserved_on: DateTime::<Utc>::UNIX_EPOCH.date_naive(),
            approved_at: None,
            compensation: None,
            resting: None,
        }
    }

    #[derive(Debug, Clone)]
    enum Change {
        Insert {
            id: u8,
            stage: usize,
            market: usize,
            buy: bool,
            size: u32,
        },
        Remove {
            id: u8,
        },
        Stage {
            id: u8,
            stage: usize,
        },
        Compensate {
            id: u8,
            market: usize,
            buy: bool,
            size: u32,
        },
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (
                0..12_u8,
                0..4_usize,
                0..3_usize,
                any::<bool>(),
                0..5_000_u32
            )
                .prop_map(|(id, stage, market, buy, size)| Change::Insert {
                    id,
                    stage,
                    market,
                    buy,
                    size
                }),
            (0..12_u8).prop_map(|id| Change::Remove { id }),
            (0..12_u8, 0..4_usize).prop_map(|(id, stage)| Change::Stage { id, stage }),
            (0..12_u8, 0..3_usize, any::<bool>(), 0..5_000_u32).prop_map(
                |(id, market, buy, size)| Change::Compensate {
                    id,
                    market,
                    buy,
                    size
                }
            ),
        ]
    }

    fn id(number: u8) -> SignalId {
        SignalId(format!("s-{number}"))
    }

    fn make(in_flight: &mut InFlightSignals, change: Change) {
        match change {
            Change::Insert {
                id: n,
                stage,
                market,
                buy,
                size,
            } => {
                in_flight.insert(id(n), signal(&id(n), STAGES[stage], market, buy, size));
            }
            Change::Remove { id: n } => {
                in_flight.remove(&id(n));
            }
            Change::Stage { id: n, stage } => {
                in_flight.update(&id(n), |signal| signal.stage = STAGES[stage]);
            }
            Change::Compensate {
                id: n,
                market: m,
                buy,
                size: s,
            } => {
                in_flight.update(&id(n), |signal| {
                    signal.stage = SignalStage::AwaitingCompensation;
                    signal.compensation = Some(CompensationOrder {
                        client_order_id: ClientOrderId::for_signal(&id(n)),
                        market: market(m),
                        side: if buy { Side::Buy } else { Side::Sell },
                        size: size(s),
                    });
                });
            }
        }
    }

    proptest! {
        #[test]
        fn the_kept_sums_equal_the_sum_over_every_signal(changes in prop::collection::vec(change(), 0..80)) {
            let mut in_flight = InFlightSignals::default();
            for change in changes {
                make(&mut in_flight, change);
                for index in 0..MARKETS.len() {
                    let market = market(index);
                    prop_assert_eq!(in_flight.pending_in(&market), summed_over_all(&in_flight, &market));
                }
            }
            // A snapshot read back derives the same sums.
            let stored = serde_json::to_string(&in_flight).unwrap();
            let restored: InFlightSignals = serde_json::from_str(&stored).unwrap();
            prop_assert_eq!(restored, in_flight);
        }
    }

    #[test]
    fn a_market_nobody_contributes_to_any_more_leaves_no_residue() {
        let mut in_flight = InFlightSignals::default();
        let (first, second) = (id(1), id(2));
        in_flight.insert(
            first.clone(),
            signal(&first, SignalStage::AwaitingExecution, 0, true, 499),
        );
        in_flight.insert(
            second.clone(),
            signal(&second, SignalStage::Resting, 0, false, 99),
        );
        assert_eq!(in_flight.pending_in(&market(0)), Decimal::new(400, 3));
        in_flight.update(&first, |signal| {
            signal.stage = SignalStage::AwaitingNotification
        });
        assert_eq!(in_flight.pending_in(&market(0)), Decimal::new(-100, 3));
        in_flight.remove(&second);
        assert_eq!(in_flight.pending_in(&market(0)).to_string(), "0");
        assert_eq!(
            in_flight,
            InFlightSignals::from_iter([(first.clone(), in_flight[&first].clone())])
        );
    }
}
