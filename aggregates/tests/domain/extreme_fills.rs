//! Property tests: an exchange reporting any fill at all — the wrong market or side, more than the
//! order, prices and sizes at the edge of `Decimal` (7.9e28), zero, negative, absurd fees — never
//! panics the account; a refused fill leaves every position as it was; and each position is
//! always exactly the signed sum of the fills the account accepted.

use std::collections::BTreeMap;

use crate::common::{at, coid, dec, intent, limits, market, open_command, replay, sid};
use aggregates::{
    AccountCommand, AccountEvent, ExecutionReport, Fill, Market, NotificationOutcome, Quantity,
    Side, TradingAccount, MAX_FILL_PRICE,
};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

const MARKETS: [&str; 3] = ["BTC-USD", "ETH-USD", "DOGE-USD"];
const REFERENCE_PRICES: [&str; 5] = ["60000", "3200", "0.15", "0.000001", "1000000000"];

#[derive(Debug, Clone)]
enum SizeAsked {
    /// `n` quarters of the order (1..=4 is at most the order).
    Quarters(i64),
    /// The order plus `n` units of its last decimal place.
    Over(i64),
    Max,
    /// 1e-28, the smallest positive Decimal.
    Tiny,
}

#[derive(Debug, Clone)]
enum PriceAsked {
    /// The reference price moved by this many basis points.
    Near(i64),
    Zero,
    Negative,
    /// 7.9e28.
    Edge,
    Max,
    AboveAnyMarket,
    Tiny,
}

#[derive(Debug, Clone)]
enum FeeAsked {
    Cents(i64),
    Max,
    Min,
}

#[derive(Debug, Clone)]
struct Trade {
    market: usize,
    buy: bool,
    /// The order's size: `units` at `scale` decimal places.
    units: i64,
    scale: u32,
    reference: usize,
    other_market: bool,
    other_side: bool,
    size: SizeAsked,
    price: PriceAsked,
    fee: FeeAsked,
}

fn size_asked() -> impl Strategy<Value = SizeAsked> {
    prop_oneof![
        16 => (1i64..=4).prop_map(SizeAsked::Quarters),
        2 => (5i64..=400).prop_map(SizeAsked::Quarters),
        2 => (1i64..=3).prop_map(SizeAsked::Over),
        1 => Just(SizeAsked::Max),
        1 => Just(SizeAsked::Tiny),
    ]
}

fn price_asked() -> impl Strategy<Value = PriceAsked> {
    prop_oneof![
        30 => (-500i64..=500).prop_map(PriceAsked::Near),
        1 => Just(PriceAsked::Zero),
        1 => Just(PriceAsked::Negative),
        1 => Just(PriceAsked::Edge),
        1 => Just(PriceAsked::Max),
        1 => Just(PriceAsked::AboveAnyMarket),
        1 => Just(PriceAsked::Tiny),
    ]
}

fn fee_asked() -> impl Strategy<Value = FeeAsked> {
    prop_oneof![
        30 => (-100i64..=10_000).prop_map(FeeAsked::Cents),
        1 => Just(FeeAsked::Max),
        1 => Just(FeeAsked::Min),
    ]
}

fn trade() -> impl Strategy<Value = Trade> {
    (
        (
            0..MARKETS.len(),
            any::<bool>(),
            1i64..=1_000_000_000_000,
            0u32..=12,
            0..REFERENCE_PRICES.len(),
        ),
        (
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.1),
            size_asked(),
            price_asked(),
            fee_asked(),
        ),
    )
        .prop_map(
            |(
                (market, buy, units, scale, reference),
                (other_market, other_side, size, price, fee),
            )| {
                Trade {
                    market,
                    buy,
                    units,
                    scale,
                    reference,
                    other_market,
                    other_side,
                    size,
                    price,
                    fee,
                }
            },
        )
}

fn side(buy: bool) -> Side {
    if buy {
        Side::Buy
    } else {
        Side::Sell
    }
}

struct Run {
    state: TradingAccount,
    events: Vec<AccountEvent>,
    now: DateTime<Utc>,
    /// The signed sum of the accepted fills, per market.
    accepted: BTreeMap<Market, Decimal>,
    signals: u64,
}

impl Run {
    fn new() -> Self {
        let mut run = Self {
            state: TradingAccount::default(),
            events: Vec::new(),
            now: at("2024-03-01T09:00:00Z"),
            accepted: BTreeMap::new(),
            signals: 0,
        };
        // Limits far above anything generated: the fills, not risk, are under test.
        let wide = "1000000000000000000000000000";
        run.run(open_command(limits(wide, wide, wide, &MARKETS)));
        run
    }

    fn run(&mut self, command: AccountCommand) -> Vec<AccountEvent> {
        let events = self
            .state
            .decide(command.clone())
            .unwrap_or_else(|error| panic!("{command:?} was refused: {error}"));
        for event in &events {
            cqrs_es::Aggregate::apply(&mut self.state, event.clone());
        }
        self.events.extend(events.iter().cloned());
        events
    }

    fn step(&mut self, trade: &Trade) {
        self.now += Duration::seconds(1);
        self.signals += 1;
        let id = format!("s{}", self.signals);
        let ticker = MARKETS[trade.market];
        let order_size = Decimal::new(trade.units, trade.scale);
        let reference = dec(REFERENCE_PRICES[trade.reference]);
        let received = self.run(crate::common::receive(&intent(
            &id,
            ticker,
            side(trade.buy),
            &order_size.to_string(),
            &reference.to_string(),
            &self.now.to_rfc3339(),
        )));
        if !received
            .iter()
            .any(|e| matches!(e, AccountEvent::RiskApproved { .. }))
        {
            return;
        }
        let order = self.state.in_flight[&sid(&id)].clone();
        let fill = Fill {
            market: if trade.other_market {
                market(MARKETS[(trade.market + 1) % MARKETS.len()])
            } else {
                order.market.clone()
            },
            side: side(trade.buy != trade.other_side),
            size: Quantity::new(match trade.size {
                SizeAsked::Quarters(n) => order.size.value() * Decimal::from(n) / Decimal::from(4),
                SizeAsked::Over(n) => order.size.value() + Decimal::new(n, trade.scale),
                SizeAsked::Max => Decimal::MAX,
                SizeAsked::Tiny => Decimal::new(1, 28),
            })
            .unwrap(),
            price: match trade.price {
                PriceAsked::Near(bp) => {
                    reference * Decimal::from(10_000 + bp) / Decimal::from(10_000)
                }
                PriceAsked::Zero => Decimal::ZERO,
                PriceAsked::Negative => -reference,
                PriceAsked::Edge => dec("79000000000000000000000000000"),
                PriceAsked::Max => Decimal::MAX,
                PriceAsked::AboveAnyMarket => MAX_FILL_PRICE + Decimal::ONE,
                PriceAsked::Tiny => Decimal::new(1, 28),
            },
            fee: match trade.fee {
                FeeAsked::Cents(cents) => Decimal::new(cents, 2),
                FeeAsked::Max => Decimal::MAX,
                FeeAsked::Min => Decimal::MIN,
            },
        };
        self.now += Duration::seconds(1);
        let positions_before = self.state.positions.clone();
        let was_halted = self.state.halt.is_some();
        let events = self.run(AccountCommand::RecordExecution(ExecutionReport::Filled {
            signal_id: sid(&id),
            client_order_id: coid(&id),
            exchange_order_id: format!("ex-{id}"),
            fill: fill.clone(),
            at: self.now,
        }));
        let names: Vec<&str> = events.iter().map(AccountEvent::name).collect();
        if names.contains(&"FillMismatch") {
            assert_eq!(names[..2], ["OrderSubmitted", "FillMismatch"]);
            assert_eq!(names.len(), if was_halted { 2 } else { 3 }, "{names:?}");
            assert_eq!(
                self.state.positions, positions_before,
                "a refused fill moved a position"
            );
            assert!(self.state.halt.is_some());
        } else {
            // Accepted: it was the order's, no larger, at a price a market can have.
            // Less than the order is booked as a partial fill, the rest released.
            let booked = if fill.size < order.size {
                assert_eq!(names.last(), Some(&"RiskReservationReleased"), "{events:?}");
                "OrderPartiallyFilled"
            } else {
                "OrderFilled"
            };
            assert_eq!(names[..2], ["OrderSubmitted", booked], "{events:?}");
            assert_eq!(fill.market, order.market);
            assert_eq!(fill.side, order.side);
            assert!(fill.size <= order.size);
            assert!(fill.price > Decimal::ZERO && fill.price <= MAX_FILL_PRICE);
            let sum = self.accepted.entry(order.market.clone()).or_default();
            *sum = sum
                .checked_add(fill.side.sign() * fill.size.value())
                .expect("an accepted fill keeps the sum in range");
        }
        self.now += Duration::seconds(1);
        self.run(AccountCommand::RecordNotification {
            signal_id: sid(&id),
            channel: "log".to_owned(),
            outcome: NotificationOutcome::Sent,
            at: self.now,
        });
        if self.state.halt.is_some() {
            self.run(AccountCommand::ResumeTrading {
                by: "ops".to_owned(),
                reason: "checked the exchange".to_owned(),
                at: self.now,
            });
        }
        self.check();
    }

    fn check(&self) {
        for ticker in MARKETS {
            let held = self
                .state
                .positions
                .get(&market(ticker))
                .map_or(Decimal::ZERO, |p| p.size);
            let accepted = self
                .accepted
                .get(&market(ticker))
                .copied()
                .unwrap_or_default();
            assert_eq!(held, accepted, "{ticker}: position vs the accepted fills");
        }
        assert_eq!(
            replay(&self.events),
            self.state,
            "replay folds to the same state"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn extreme_fills_never_panic_and_positions_are_the_accepted_fills(
        trades in proptest::collection::vec(trade(), 1..40)
    ) {
        let mut run = Run::new();
        for trade in &trades {
            run.step(trade);
        }
        let mismatches = run
            .events
            .iter()
            .filter(|e| matches!(e, AccountEvent::FillMismatch { .. }))
            .count();
        let fills = run
            .events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    AccountEvent::OrderFilled { .. } | AccountEvent::OrderPartiallyFilled { .. }
                )
            })
            .count();
        prop_assert_eq!(run.state.orders_filled, fills as u64);
        // Every report was either booked or refused, never both, never lost.
        let reports = run
            .events
            .iter()
            .filter(|e| matches!(e, AccountEvent::OrderSubmitted { .. }))
            .count();
        prop_assert_eq!(reports, fills + mismatches);
    }
}
