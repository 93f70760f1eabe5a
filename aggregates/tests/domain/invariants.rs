//! Property tests: random command sequences against one account, then the invariants every history
//! must keep, whatever the order of alerts, execution reports, notifications, halts and resumes.
//!
//! Each command's outcome is also checked against a small model (is the key a duplicate, is the
//! account halted, where is the signal in its life), so a sequence that "passes" because every
//! command was refused cannot go unnoticed.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{at, dec, decide_as_ledger, limits, market, open_command, replay};
use aggregates::{
    AccountCommand, AccountError, AccountEvent, ClientOrderId, ExecutionReport, Fill, KeyMemory,
    Market, NotificationOutcome, OrderType, Quantity, RejectionReason, Side, SignalId,
    SignalIntent, SignalStage, TradeInstruction, TradingAccount, UsdAmount, FINGERPRINT_KEY_PREFIX,
    FINGERPRINT_WINDOW_SECONDS, IDEMPOTENCY_WINDOW_HOURS,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use cqrs_es::Aggregate;
use proptest::prelude::*;
use proptest::sample::Index;
use rust_decimal::Decimal;

/// Ticker, reference price, and the decimal places of generated sizes. DOGE-USD is not among the
/// account's allowed markets.
const MARKETS: [(&str, &str, u32); 4] = [
    ("BTC-USD", "60000", 3),
    ("ETH-USD", "3000", 2),
    ("SOL-USD", "150", 1),
    ("DOGE-USD", "0.15", 0),
];

fn account_limits() -> aggregates::RiskLimits {
    limits(
        "25000",
        "40000",
        "150000",
        &["BTC-USD", "ETH-USD", "SOL-USD"],
    )
}

/// The other limits an operator switches to: a size cap, and no automatic halt.
fn other_limits() -> aggregates::RiskLimits {
    let mut limits = account_limits();
    limits.max_order_size.insert(market("SOL-USD"), dec("20"));
    limits.max_position_size.insert(market("ETH-USD"), dec("5"));
    limits.halt_after_consecutive_failures = 0;
    limits
}

#[derive(Debug, Clone)]
enum Target {
    /// One of the signals currently in flight (any signal issued so far when none is).
    InFlight(Index),
    /// Any signal id issued so far, finished or refused ones included.
    Issued(Index),
}

#[derive(Debug, Clone)]
enum Outcome {
    Filled {
        price_bp: i64,
        quarters: i64,
        fee_cents: i64,
    },
    Rejected,
    Failed,
    Cancelled,
}

/// What a generated alert asks for.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Order,
    /// Hold this many signed size units afterwards.
    Target(i64),
    Close,
}

#[derive(Debug, Clone)]
enum Op {
    Signal {
        market: usize,
        ask: Ask,
        buy: bool,
        size_units: i64,
        price_bp: i64,
        reuse_key: Option<Index>,
        fingerprint: bool,
    },
    Execute {
        target: Target,
        outcome: Outcome,
        wrong_id: bool,
    },
    Notify {
        target: Target,
        sent: bool,
    },
    Halt,
    Resume,
    Reopen,
    /// Switch between the account's two sets of limits.
    SetLimits,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    /// Signal ids derived from the idempotency key (as the service does), or one per alert.
    derived_ids: bool,
    /// Whether some keys are `fp:` fingerprints with their short window.
    fingerprints: bool,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => any::<Index>().prop_map(Target::InFlight),
        1 => any::<Index>().prop_map(Target::Issued),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => (-300i64..=300, 1i64..=4, 0i64..=500).prop_map(|(price_bp, quarters, fee_cents)| {
            Outcome::Filled { price_bp, quarters, fee_cents }
        }),
        1 => Just(Outcome::Rejected),
        1 => Just(Outcome::Failed),
        1 => Just(Outcome::Cancelled),
    ]
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        6 => Just(Ask::Order),
        3 => (-600i64..=600).prop_map(Ask::Target),
        1 => Just(Ask::Close),
    ]
}

fn op(config: Config) -> impl Strategy<Value = Op> {
    let signal = (
        0..MARKETS.len(),
        ask(),
        any::<bool>(),
        1i64..=600,
        -500i64..=500,
        proptest::option::weighted(0.3, any::<Index>()),
        any::<bool>(),
    )
        .prop_map(
            move |(market, ask, buy, size_units, price_bp, reuse_key, fp)| Op::Signal {
                market,
                ask,
                buy,
                size_units,
                price_bp,
                reuse_key,
                fingerprint: config.fingerprints && fp,
            },
        );
    let execute = (target(), outcome(), proptest::bool::weighted(0.1)).prop_map(
        |(target, outcome, wrong_id)| Op::Execute {
            target,
            outcome,
            wrong_id,
        },
    );
    let notify = (target(), any::<bool>()).prop_map(|(target, sent)| Op::Notify { target, sent });
    prop_oneof![
        10 => signal,
        8 => execute,
        5 => notify,
        1 => Just(Op::Halt),
        2 => Just(Op::Resume),
        1 => Just(Op::Reopen),
        1 => Just(Op::SetLimits),
    ]
}

/// Steps: seconds since the previous command, and the command.
fn steps(config: Config, max_gap_seconds: i64) -> impl Strategy<Value = Vec<(i64, Op)>> {
    let gap = prop_oneof![3 => 0i64..=90, 2 => 0i64..=max_gap_seconds];
    proptest::collection::vec((gap, op(config)), 1..60)
}

fn window(key: &str) -> Duration {
    if key.starts_with(FINGERPRINT_KEY_PREFIX) {
        Duration::seconds(FINGERPRINT_WINDOW_SECONDS)
    } else {
        Duration::hours(IDEMPOTENCY_WINDOW_HOURS)
    }
}

fn reference_price(ticker: &str) -> Decimal {
    let (_, price, _) = MARKETS
        .iter()
        .find(|(t, _, _)| *t == ticker)
        .expect("a generated market");
    dec(price)
}

/// `price` moved by `bp` basis points.
fn moved(price: Decimal, bp: i64) -> Decimal {
    price * Decimal::new(10_000 + bp, 4)
}

/// Drives one account through generated steps, checking each command's outcome as it goes.
struct Sim {
    config: Config,
    state: TradingAccount,
    /// The ledger's memory of keys (the store's table), which the account is told from.
    store_keys: KeyMemory,
    events: Vec<AccountEvent>,
    now: DateTime<Utc>,
    /// Every key generated so far, for resends.
    keys: Vec<String>,
    /// Model of the idempotency memory: key -> (signal it produced, when it stops counting).
    remembered: BTreeMap<String, (SignalId, DateTime<Utc>)>,
    /// Every signal id sent so far, duplicates and refused ones included.
    issued: Vec<SignalId>,
    halted: bool,
    alerts: usize,
    other_limits: bool,
}

impl Sim {
    fn new(config: Config, start: &str) -> Self {
        let mut sim = Self {
            config,
            state: TradingAccount::default(),
            store_keys: KeyMemory::default(),
            events: Vec::new(),
            now: at(start),
            keys: Vec::new(),
            remembered: BTreeMap::new(),
            issued: Vec::new(),
            halted: false,
            alerts: 0,
            other_limits: false,
        };
        let opened = sim.run(open_command(account_limits())).unwrap();
        assert_eq!(opened.len(), 1);
        sim
    }

    fn run(&mut self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        let result = decide_as_ledger(&mut self.state, &mut self.store_keys, command);
        if let Ok(events) = &result {
            self.events.extend(events.iter().cloned());
        }
        result
    }

    fn pick(&self, target: &Target) -> Option<SignalId> {
        let in_flight: Vec<&SignalId> = self.state.in_flight.keys().collect();
        match target {
            Target::InFlight(index) if !in_flight.is_empty() => {
                Some(in_flight[index.index(in_flight.len())].clone())
            }
            Target::InFlight(index) | Target::Issued(index) if !self.issued.is_empty() => {
                Some(self.issued[index.index(self.issued.len())].clone())
            }
            _ => None,
        }
    }

    fn step(&mut self, gap_seconds: i64, op: &Op) {
        self.now += Duration::seconds(gap_seconds);
        match op {
            Op::Signal {
                market: m,
                ask,
                buy,
                size_units,
                price_bp,
                reuse_key,
                fingerprint,
            } => self.signal(
                *m,
                *ask,
                *buy,
                *size_units,
                *price_bp,
                reuse_key,
                *fingerprint,
            ),
            Op::Execute {
                target,
                outcome,
                wrong_id,
            } => self.execute(target, outcome, *wrong_id),
            Op::Notify { target, sent } => self.notify(target, *sent),
            Op::Halt => {
                let events = self
                    .run(crate::common::halt(&self.now.to_rfc3339()))
                    .unwrap();
                assert_eq!(events.len(), usize::from(!self.halted), "{events:?}");
                self.halted = true;
            }
            Op::Resume => {
                let events = self
                    .run(crate::common::resume(&self.now.to_rfc3339()))
                    .unwrap();
                assert_eq!(events.len(), usize::from(self.halted), "{events:?}");
                self.halted = false;
            }
            Op::Reopen => {
                assert_eq!(
                    self.run(open_command(account_limits())),
                    Err(AccountError::AlreadyOpened)
                );
            }
            Op::SetLimits => {
                self.other_limits = !self.other_limits;
                let limits = if self.other_limits {
                    other_limits()
                } else {
                    account_limits()
                };
                let events = self
                    .run(AccountCommand::SetRiskLimits {
                        limits,
                        by: "ops".to_owned(),
                        reason: "switch".to_owned(),
                        at: self.now,
                    })
                    .unwrap();
                assert_eq!(crate::common::names(&events), ["RiskLimitsChanged"]);
            }
        }
    }

    /// The signed size the account holds in `market` once every order awaiting execution fills.
    fn exposure(&self, market: &Market) -> Decimal {
        let held = self
            .state
            .positions
            .get(market)
            .map_or(Decimal::ZERO, |p| p.size);
        self.state
            .in_flight
            .values()
            .filter(|f| &f.market == market && f.stage == SignalStage::AwaitingExecution)
            .fold(held, |sum, f| sum + f.side.sign() * f.size.value())
    }

    #[allow(clippy::too_many_arguments)]
    fn signal(
        &mut self,
        m: usize,
        ask: Ask,
        buy: bool,
        size_units: i64,
        price_bp: i64,
        reuse_key: &Option<Index>,
        fingerprint: bool,
    ) {
        let (ticker, price, scale) = MARKETS[m];
        self.alerts += 1;
        let key = match reuse_key {
            Some(index) if !self.keys.is_empty() => self.keys[index.index(self.keys.len())].clone(),
            _ => {
                let key = if fingerprint {
                    format!("{FINGERPRINT_KEY_PREFIX}{}", self.alerts)
                } else {
                    format!("alert-{}", self.alerts)
                };
                self.keys.push(key.clone());
                key
            }
        };
        // Derived as the service derives them: from the key, and for fingerprints (which expire
        // and may come back as a new alert) also from the arrival time.
        let signal_id = if self.config.derived_ids && key.starts_with("fp:") {
            SignalId(format!(
                "sig-{key}-{}",
                self.now.timestamp_nanos_opt().unwrap_or_default()
            ))
        } else if self.config.derived_ids {
            SignalId(format!("sig-{key}"))
        } else {
            SignalId(format!("sig-{}", self.alerts))
        };
        self.issued.push(signal_id.clone());
        let wanted_target = match ask {
            Ask::Order => None,
            Ask::Target(units) => Some(Decimal::new(units, scale)),
            Ask::Close => Some(Decimal::ZERO),
        };
        let instruction = match ask {
            Ask::Order => TradeInstruction::Order {
                side: if buy {
                    aggregates::Side::Buy
                } else {
                    aggregates::Side::Sell
                },
                size: Quantity::new(Decimal::new(size_units, scale)).unwrap(),
            },
            Ask::Target(units) => TradeInstruction::TargetPosition {
                size: Decimal::new(units, scale),
            },
            Ask::Close => TradeInstruction::Close,
        };
        let exposure = self.exposure(&market(ticker));
        let intent = SignalIntent {
            signal_id: signal_id.clone(),
            idempotency_key: key.clone(),
            key_expires_at: self.now + window(&key),
            market: market(ticker),
            instruction,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            alert_price: None,
            reference_price: moved(dec(price), price_bp),
            sent_at: None,
            max_lag_seconds: 30,
            emergency_stop: None,
            paper_only: false,
            quota: None,
            received_at: self.now,
            earlier_use: None,
        };
        let original = self
            .remembered
            .get(&key)
            .filter(|(_, expires_at)| *expires_at > self.now)
            .map(|(original, _)| original.clone());
        let events = self
            .run(AccountCommand::ReceiveSignal(intent))
            .expect("an open account always decides on a signal");
        match events.as_slice() {
            [AccountEvent::SignalRejected {
                reason: RejectionReason::Duplicate { original_signal_id },
                ..
            }] => {
                assert_eq!(Some(original_signal_id), original.as_ref(), "{key}");
                return;
            }
            [AccountEvent::SignalRejected {
                reason: RejectionReason::Halted { .. },
                ..
            }] => assert!(self.halted && original.is_none(), "{key}"),
            [AccountEvent::SignalRejected {
                reason: RejectionReason::NoChange { .. },
                ..
            }] => {
                assert!(!self.halted && original.is_none(), "{key}");
                assert_eq!(wanted_target, Some(exposure), "{events:?}");
            }
            [AccountEvent::SignalReceived { .. }, AccountEvent::RiskApproved {
                side,
                size,
                reduce_only,
                ..
            }] => {
                assert!(!self.halted && original.is_none(), "{key}: {events:?}");
                let after = exposure + side.sign() * size.value();
                if let Some(target) = wanted_target {
                    assert_eq!(after, target, "{events:?}");
                }
                // Reduce-only: toward zero, never across it.
                if *reduce_only {
                    assert!(
                        !exposure.is_zero() && after.abs() < exposure.abs(),
                        "{events:?}"
                    );
                    assert!(
                        after.is_zero() || after.is_sign_negative() == exposure.is_sign_negative()
                    );
                }
                assert_eq!(
                    *reduce_only,
                    wanted_target.is_some_and(|t| after.abs() < exposure.abs()
                        && (t.is_zero() || t.is_sign_negative() == exposure.is_sign_negative()))
                );
            }
            [AccountEvent::SignalReceived { .. }, AccountEvent::RiskRejected { .. }] => {
                assert!(!self.halted && original.is_none(), "{key}: {events:?}")
            }
            other => panic!("unexpected decision on a signal: {other:?}"),
        }
        self.remembered
            .insert(key.clone(), (signal_id, self.now + window(&key)));
    }

    fn execute(&mut self, target: &Target, outcome: &Outcome, wrong_id: bool) {
        let Some(signal_id) = self.pick(target) else {
            return;
        };
        let in_flight = self.state.in_flight.get(&signal_id).cloned();
        let client_order_id = if wrong_id {
            ClientOrderId("lh-somebody-else".to_owned())
        } else {
            ClientOrderId::for_signal(&signal_id)
        };
        let when = self.now;
        let report = match outcome {
            Outcome::Filled {
                price_bp,
                quarters,
                fee_cents,
            } => {
                let (ticker, side, size) = match &in_flight {
                    Some(f) => (f.market.as_str().to_owned(), f.side, f.size.value()),
                    None => ("BTC-USD".to_owned(), Side::Buy, Decimal::ONE),
                };
                let price = moved(reference_price(&ticker), *price_bp);
                let size = size * Decimal::from(*quarters) / Decimal::from(4);
                // An honest exchange's fee is a fraction of the fill's value: a larger one is a
                // misreport (a `FillMismatch`, tested in fills.rs and extreme_fills.rs).
                let fee = Decimal::new(*fee_cents, 2).min(price * size);
                ExecutionReport::Filled {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    exchange_order_id: format!("ex-{signal_id}"),
                    fill: Fill {
                        market: market(&ticker),
                        side,
                        price,
                        size: Quantity::new(size).unwrap(),
                        fee,
                    },
                    at: when,
                }
            }
            Outcome::Rejected => ExecutionReport::Rejected {
                signal_id: signal_id.clone(),
                client_order_id,
                reason: "post-only would cross".to_owned(),
                at: when,
            },
            Outcome::Failed => ExecutionReport::Failed {
                signal_id: signal_id.clone(),
                client_order_id,
                reason: "exchange unreachable".to_owned(),
                at: when,
            },
            Outcome::Cancelled => ExecutionReport::Cancelled {
                signal_id: signal_id.clone(),
                client_order_id,
                reason: "halted before placement".to_owned(),
                at: when,
            },
        };
        let result = self.run(AccountCommand::RecordExecution(report));
        let Some(in_flight) = in_flight else {
            assert_eq!(result, Err(AccountError::NotInFlight(signal_id)));
            return;
        };
        if in_flight.stage == SignalStage::AwaitingNotification {
            assert_eq!(result, Ok(vec![]));
            return;
        }
        if wrong_id {
            assert!(
                matches!(result, Err(AccountError::ClientOrderIdMismatch { .. })),
                "{result:?}"
            );
            return;
        }
        let events = result.unwrap();
        let names: Vec<&str> = events.iter().map(AccountEvent::name).collect();
        match outcome {
            Outcome::Filled { quarters, .. } => {
                // Less than the order is a partial fill: only that part is booked, and the
                // rest's reservation is released after the position moves.
                let (fill, moves) = if *quarters < 4 {
                    assert_eq!(names.last(), Some(&"RiskReservationReleased"));
                    ("OrderPartiallyFilled", &names[2..names.len() - 1])
                } else {
                    ("OrderFilled", &names[2..])
                };
                assert_eq!(names[..2], ["OrderSubmitted", fill]);
                assert!(matches!(
                    moves,
                    ["PositionOpened"]
                        | ["PositionIncreased"]
                        | ["PositionReduced"]
                        | ["PositionClosed"]
                        | ["PositionClosed", "PositionOpened"]
                ));
            }
            Outcome::Rejected => assert_eq!(
                names,
                ["OrderSubmitted", "OrderRejected", "RiskReservationReleased"]
            ),
            Outcome::Failed => {
                assert_eq!(names[..2], ["OrderFailed", "RiskReservationReleased"]);
                // The automatic halt, only ever on an account not already halted.
                if names.len() == 3 {
                    assert_eq!(names[2], "TradingHalted");
                    assert!(!self.halted);
                    self.halted = true;
                }
                assert!(names.len() <= 3);
            }
            Outcome::Cancelled => {
                assert_eq!(names, ["OrderCancelled", "RiskReservationReleased"])
            }
        }
        assert_eq!(
            self.state.in_flight[&signal_id].stage,
            SignalStage::AwaitingNotification
        );
    }

    fn notify(&mut self, target: &Target, sent: bool) {
        let Some(signal_id) = self.pick(target) else {
            return;
        };
        let stage = self.state.in_flight.get(&signal_id).map(|f| f.stage);
        let outcome = if sent {
            NotificationOutcome::Sent
        } else {
            NotificationOutcome::Failed {
                reason: "rate limited".to_owned(),
            }
        };
        let result = self.run(AccountCommand::RecordNotification {
            signal_id: signal_id.clone(),
            channel: "telegram".to_owned(),
            outcome,
            at: self.now,
        });
        match stage {
            None => assert_eq!(result, Err(AccountError::NotInFlight(signal_id))),
            Some(SignalStage::AwaitingExecution | SignalStage::AwaitingCompensation) => {
                assert_eq!(result, Err(AccountError::NotConcluded(signal_id)))
            }
            Some(SignalStage::AwaitingNotification) => {
                assert_eq!(result.map(|events| events.len()), Ok(1));
                assert!(!self.state.in_flight.contains_key(&signal_id));
            }
            // Its notice has its own command; its outcome is not known yet.
            Some(SignalStage::Resting) => {
                assert_eq!(result, Err(AccountError::NotConcluded(signal_id)))
            }
        }
    }

    /// Invariants that must hold after every command.
    fn check_step(&self) {
        // (d) Daily volume never goes negative.
        assert!(
            self.state.daily_volume.traded_usd >= UsdAmount::ZERO,
            "daily volume {:?}",
            self.state.daily_volume
        );
        // (a) Each market's signed position is the signed sum of its fills.
        let mut filled: BTreeMap<Market, Decimal> = BTreeMap::new();
        for event in &self.events {
            if let AccountEvent::OrderFilled {
                market, side, size, ..
            }
            | AccountEvent::OrderPartiallyFilled {
                market, side, size, ..
            } = event
            {
                *filled.entry(market.clone()).or_default() += side.sign() * size.value();
            }
        }
        let markets: BTreeSet<&Market> = filled.keys().chain(self.state.positions.keys()).collect();
        for market in markets {
            let position = self
                .state
                .positions
                .get(market)
                .map_or(Decimal::ZERO, |p| p.size);
            let fills = filled.get(market).copied().unwrap_or_default();
            assert_eq!(position, fills, "position in {market}");
        }
    }

    /// Invariants over the whole history.
    fn check_history(&self) {
        // (b) One submission per signal; one approval per key per window.
        let mut submitted: BTreeMap<&SignalId, usize> = BTreeMap::new();
        let mut approvals: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        // Reservations, by signal: (day, notional); and which were released.
        let mut reserved: BTreeMap<&SignalId, (NaiveDate, UsdAmount)> = BTreeMap::new();
        // What each release gave back; partial fills release only their unfilled share.
        let mut released: BTreeMap<&SignalId, UsdAmount> = BTreeMap::new();
        let mut partial: BTreeSet<&SignalId> = BTreeSet::new();
        let mut concluded: BTreeSet<&SignalId> = BTreeSet::new();
        let mut notified: BTreeSet<&SignalId> = BTreeSet::new();
        let mut last_received: Option<(&SignalId, &str, DateTime<Utc>)> = None;
        let mut alerts = 0u64;
        let mut fills = 0u64;
        for event in &self.events {
            match event {
                AccountEvent::SignalReceived {
                    signal_id,
                    idempotency_key,
                    received_at,
                    ..
                } => {
                    alerts += 1;
                    last_received = Some((signal_id, idempotency_key, *received_at));
                }
                AccountEvent::SignalRejected { .. } => alerts += 1,
                AccountEvent::RiskApproved {
                    signal_id,
                    notional_usd,
                    ..
                } => {
                    let (received, key, received_at) = last_received.expect("received first");
                    assert_eq!(received, signal_id);
                    approvals.entry(key).or_default().push(received_at);
                    let previous =
                        reserved.insert(signal_id, (received_at.date_naive(), *notional_usd));
                    assert!(previous.is_none(), "{signal_id} approved twice");
                }
                AccountEvent::OrderSubmitted { signal_id, .. } => {
                    *submitted.entry(signal_id).or_default() += 1;
                }
                AccountEvent::OrderPartiallyFilled { signal_id, .. } => {
                    partial.insert(signal_id);
                    fills += 1;
                    assert!(reserved.contains_key(signal_id));
                    assert!(concluded.insert(signal_id), "{signal_id} concluded twice");
                }
                AccountEvent::OrderFilled { signal_id, .. } => {
                    fills += 1;
                    assert!(reserved.contains_key(signal_id));
                    assert!(concluded.insert(signal_id), "{signal_id} concluded twice");
                }
                AccountEvent::OrderRejected { signal_id, .. }
                | AccountEvent::OrderFailed { signal_id, .. }
                | AccountEvent::OrderCancelled { signal_id, .. } => {
                    assert!(reserved.contains_key(signal_id));
                    assert!(concluded.insert(signal_id), "{signal_id} concluded twice");
                }
                AccountEvent::RiskReservationReleased {
                    signal_id,
                    notional_usd,
                } => {
                    if partial.contains(signal_id) {
                        assert!(*notional_usd < reserved[signal_id].1);
                    } else {
                        assert_eq!(reserved[signal_id].1, *notional_usd);
                    }
                    let previous = released.insert(signal_id, *notional_usd);
                    assert!(previous.is_none(), "{signal_id} released twice");
                }
                AccountEvent::NotificationSent { signal_id, .. }
                | AccountEvent::NotificationFailed { signal_id, .. } => {
                    assert!(concluded.contains(signal_id));
                    assert!(notified.insert(signal_id), "{signal_id} notified twice");
                }
                _ => {}
            }
        }
        for (signal_id, count) in &submitted {
            assert_eq!(*count, 1, "{signal_id} submitted {count} times");
        }
        for (key, times) in &approvals {
            for pair in times.windows(2) {
                assert!(
                    pair[1] - pair[0] >= window(key),
                    "key {key} approved at {} and again at {}",
                    pair[0],
                    pair[1]
                );
            }
        }
        assert_eq!(self.state.signals_received, alerts);
        assert_eq!(self.state.orders_filled, fills);

        // In flight: approved and not yet notified; awaiting notification once concluded.
        let expected: BTreeSet<&SignalId> = reserved
            .keys()
            .filter(|id| !notified.contains(*id))
            .copied()
            .collect();
        assert_eq!(
            self.state.in_flight.keys().collect::<BTreeSet<_>>(),
            expected
        );
        for (signal_id, in_flight) in &self.state.in_flight {
            let stage = if concluded.contains(signal_id) {
                SignalStage::AwaitingNotification
            } else {
                SignalStage::AwaitingExecution
            };
            assert_eq!(in_flight.stage, stage, "{signal_id}");
        }

        // (d) Today's volume: what was approved on the volume's day, less what was given back.
        if let Some(day) = self.state.daily_volume.day {
            let expected = reserved.iter().filter(|(_, (on, _))| *on == day).fold(
                UsdAmount::ZERO,
                |sum, (id, (_, notional))| {
                    let kept = notional
                        .checked_sub(released.get(*id).copied().unwrap_or_default())
                        .expect("in range");
                    sum.checked_add(kept).expect("in range")
                },
            );
            assert_eq!(self.state.daily_volume.traded_usd, expected);
        }

        // (c) Replaying the history, straight or through JSON as the store does, gives the state.
        assert_eq!(replay(&self.events), self.state);
        let stored: Vec<AccountEvent> = self
            .events
            .iter()
            .map(|event| {
                let json = serde_json::to_string(event).unwrap();
                let back: AccountEvent = serde_json::from_str(&json).unwrap();
                assert_eq!(&back, event, "{json}");
                back
            })
            .collect();
        assert_eq!(replay(&stored), self.state);
        // And a snapshot of the state survives JSON too.
        let snapshot = serde_json::to_string(&self.state).unwrap();
        let restored: TradingAccount = serde_json::from_str(&snapshot).unwrap();
        assert_eq!(restored, self.state);
    }
}

fn simulate(config: Config, start: &str, steps: &[(i64, Op)]) -> Sim {
    let mut sim = Sim::new(config, start);
    for (gap, op) in steps {
        sim.step(*gap, op);
        sim.check_step();
    }
    sim.check_history();
    sim
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Within one idempotency window (under 20 hours, across a UTC midnight), with signal ids
    /// derived from the key as the service derives them.
    #[test]
    fn histories_within_a_window_keep_the_invariants(
        steps in steps(Config { derived_ids: true, fingerprints: false }, 1200)
    ) {
        let sim = simulate(
            Config { derived_ids: true, fingerprints: false },
            "2024-03-01T16:00:00Z",
            &steps,
        );
        prop_assert!(sim.now - at("2024-03-01T16:00:00Z") < Duration::hours(IDEMPOTENCY_WINDOW_HOURS));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over several days, with fingerprint keys and their two-minute window, so keys expire and
    /// come back, and daily volume rolls over.
    #[test]
    fn histories_over_days_keep_the_invariants(
        steps in steps(Config { derived_ids: false, fingerprints: true }, 6 * 3600)
    ) {
        simulate(
            Config { derived_ids: false, fingerprints: true },
            "2024-03-01T16:00:00Z",
            &steps,
        );
    }
}

/// The generators are not vacuous: a fixed busy history reaches every kind of event.
#[test]
fn a_busy_history_reaches_every_kind_of_event() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let config = Config {
        derived_ids: false,
        fingerprints: true,
    };
    let mut runner = TestRunner::deterministic();
    let mut names = BTreeSet::new();
    for _ in 0..64 {
        let steps = steps(config, 6 * 3600)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let sim = simulate(config, "2024-03-01T16:00:00Z", &steps);
        names.extend(sim.events.iter().map(AccountEvent::name));
    }
    let all = [
        "AccountOpened",
        "SignalReceived",
        "RiskApproved",
        "RiskRejected",
        "SignalRejected",
        "OrderSubmitted",
        "OrderFilled",
        "OrderRejected",
        "OrderFailed",
        "OrderCancelled",
        "RiskReservationReleased",
        "PositionOpened",
        "PositionIncreased",
        "PositionReduced",
        "PositionClosed",
        "NotificationSent",
        "NotificationFailed",
        "RiskLimitsChanged",
        "TradingHalted",
        "TradingResumed",
    ];
    let missing: Vec<&str> = all.into_iter().filter(|n| !names.contains(n)).collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}

proptest! {
    // A known failure: keep its seeds out of a regressions file.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Fingerprint keys expire after 120 s by design; with signal ids derived from the key, an
    /// identical id-less alert a few minutes later reuses a signal id that may still be in flight.
    #[test]
    fn histories_with_derived_ids_and_fingerprints_keep_the_invariants(
        steps in steps(Config { derived_ids: true, fingerprints: true }, 1200)
    ) {
        simulate(
            Config { derived_ids: true, fingerprints: true },
            "2024-03-01T16:00:00Z",
            &steps,
        );
    }
}

// ----------------------------------------------------------------------------------------------
// Target positions heal: whatever the account held and whenever the orders fill, once every order
// has filled the position is the last target.

#[derive(Debug, Clone)]
enum Move {
    /// A plain order of signed size units, before any target.
    Order(i64),
    /// A target of signed size units (0 = flat), or a close when None.
    Target(Option<i64>),
}

/// Plain orders first, then targets; each with whether it fills at once or at the very end.
type Moves = (Vec<(i64, bool)>, Vec<(Option<i64>, bool)>);

fn moves() -> impl Strategy<Value = Moves> {
    let signed = prop_oneof![(-50i64..=-1), (1i64..=50)];
    let prefix = proptest::collection::vec((signed, any::<bool>()), 0..4);
    let target = proptest::option::weighted(0.85, -50i64..=50);
    let targets = proptest::collection::vec((target, any::<bool>()), 1..12);
    (prefix, targets)
}

struct Healing {
    state: TradingAccount,
    events: Vec<AccountEvent>,
    now: DateTime<Utc>,
    count: usize,
}

impl Healing {
    fn run(&mut self, command: AccountCommand) -> Vec<AccountEvent> {
        let events = self.state.decide(command).expect("decided");
        for event in &events {
            self.state.apply(event.clone());
        }
        self.events.extend(events.clone());
        events
    }

    fn position(&self) -> Decimal {
        self.state
            .positions
            .get(&market("BTC-USD"))
            .map_or(Decimal::ZERO, |p| p.size)
    }

    fn send(&mut self, instruction: TradeInstruction) -> Option<SignalId> {
        self.count += 1;
        self.now += Duration::seconds(7);
        let id = format!("h{}", self.count);
        let signal =
            crate::common::signal(&id, "BTC-USD", instruction, "60000", &self.now.to_rfc3339());
        let exposure = self.state.exposure(&market("BTC-USD"));
        match self.run(AccountCommand::ReceiveSignal(signal)).as_slice() {
            [AccountEvent::SignalReceived { .. }, AccountEvent::RiskApproved {
                side,
                size,
                reduce_only,
                ..
            }] => {
                // Reduce-only is judged against the exposure: toward zero, never across it.
                let after = exposure + side.sign() * size.value();
                if *reduce_only {
                    assert!(after.abs() < exposure.abs(), "{exposure} -> {after}");
                    assert!(
                        after.is_zero() || after.is_sign_negative() == exposure.is_sign_negative()
                    );
                }
                Some(crate::common::sid(&id))
            }
            [AccountEvent::SignalRejected {
                reason: RejectionReason::NoChange { .. },
                ..
            }] => None,
            other => panic!("unexpected decision: {other:?}"),
        }
    }

    /// Fills the signal's order whole. When nothing else is pending, the position is what its
    /// reduce-only flag was judged against, so such an order must move it toward zero only.
    fn fill(&mut self, signal_id: &SignalId) {
        let alone = self.state.in_flight.len() == 1;
        let order = self.state.in_flight[signal_id].clone();
        let before = self.position();
        self.now += Duration::seconds(1);
        self.run(AccountCommand::RecordExecution(ExecutionReport::Filled {
            signal_id: signal_id.clone(),
            client_order_id: order.client_order_id.clone(),
            exchange_order_id: format!("ex-{signal_id}"),
            fill: Fill {
                market: order.market.clone(),
                side: order.side,
                price: dec("60000"),
                size: order.size,
                fee: Decimal::ZERO,
            },
            at: self.now,
        }));
        let after = self.position();
        if order.reduce_only && alone {
            assert!(after.abs() < before.abs(), "{before} -> {after}");
            assert!(after.is_zero() || after.is_sign_negative() == before.is_sign_negative());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn once_every_order_fills_the_position_is_the_last_target((prefix, targets) in moves()) {
        let mut sim = Healing {
            state: TradingAccount::default(),
            events: Vec::new(),
            now: at("2024-03-01T09:00:00Z"),
            count: 0,
        };
        sim.run(open_command(limits("1000000000", "1000000000", "1000000000", &[])));
        let mut pending = Vec::new();
        let moves = prefix
            .into_iter()
            .map(|(units, now)| (Move::Order(units), now))
            .chain(targets.into_iter().map(|(units, now)| (Move::Target(units), now)));
        let mut last_target = Decimal::ZERO;
        for (step, fill_now) in moves {
            let instruction = match step {
                Move::Order(units) => TradeInstruction::Order {
                    side: if units > 0 { aggregates::Side::Buy } else { aggregates::Side::Sell },
                    size: Quantity::new(Decimal::new(units.abs(), 2)).unwrap(),
                },
                Move::Target(Some(units)) => {
                    last_target = Decimal::new(units, 2);
                    TradeInstruction::TargetPosition { size: last_target }
                }
                Move::Target(None) => {
                    last_target = Decimal::ZERO;
                    TradeInstruction::Close
                }
            };
            if let Some(signal_id) = sim.send(instruction) {
                if fill_now {
                    sim.fill(&signal_id);
                } else {
                    pending.push(signal_id);
                }
            }
        }
        for signal_id in &pending {
            sim.fill(signal_id);
        }
        prop_assert_eq!(sim.position(), last_target);
        // No signal's order is submitted twice, and the history replays to the same account.
        let mut submitted = BTreeSet::new();
        for event in &sim.events {
            if let AccountEvent::OrderSubmitted { signal_id, .. } = event {
                prop_assert!(submitted.insert(signal_id.clone()), "{} submitted twice", signal_id);
            }
        }
        prop_assert_eq!(replay(&sim.events), sim.state);
    }
}
