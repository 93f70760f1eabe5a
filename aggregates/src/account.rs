//! The `TradingAccount` aggregate: the state one user's events fold into, and the decisions its
//! commands make on that state.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    AccountCommand, AccountEvent, ClientOrderId, ExecutionReport, Market, NotificationOutcome,
    Position, Quantity, RejectionReason, RiskLimits, Side, SignalId, SignalIntent, UsdAmount,
};

/// How long an alert's explicit id is remembered. It must cover TradingView's resends (3 × 5 s)
/// with a wide margin, and bounds the state an account carries.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// Keys with this prefix are fingerprints of alerts that carried no id. Two identical alerts without
/// an id can be two real trades, so a fingerprint is only remembered long enough to absorb
/// TradingView's resends of one request (three retries, 5 s apart, after a 3 s timeout).
pub const FINGERPRINT_KEY_PREFIX: &str = "fp:";
pub const FINGERPRINT_WINDOW_SECONDS: i64 = 120;

/// The shape of a serialized `TradingAccount` and of the fold that builds it. Bump it whenever a
/// field or `evolve` changes, so stored snapshots written by older code are ignored.
pub const STATE_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is not open")]
    NotOpened,
    #[error("the account is already open")]
    AlreadyOpened,
    #[error("signal {0} has no order in flight")]
    NotInFlight(SignalId),
    #[error("signal {0} has not reached an outcome yet")]
    NotConcluded(SignalId),
    #[error("the report names client order id {reported}, but signal's order is {expected}")]
    ClientOrderIdMismatch {
        expected: ClientOrderId,
        reported: ClientOrderId,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TradingAccount {
    pub profile: Option<Profile>,
    pub halt: Option<Halt>,
    /// Idempotency keys seen inside the window, with the signal each produced.
    pub seen_keys: BTreeMap<String, SeenKey>,
    /// The same keys ordered by when they expire, so expired keys can be forgotten cheaply.
    key_expiry: BTreeSet<(DateTime<Utc>, String)>,
    /// When the most recent signal arrived: the UTC day its approved volume counts toward.
    last_signal_at: Option<DateTime<Utc>>,
    /// Signals with work still to do, by id. Finished signals leave this map.
    pub in_flight: BTreeMap<SignalId, InFlight>,
    pub positions: BTreeMap<Market, Position>,
    pub daily_volume: DailyVolume,
    pub signals_received: u64,
    pub orders_filled: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenKey {
    pub signal_id: SignalId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub display_name: String,
    pub limits: RiskLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyVolume {
    pub day: Option<NaiveDate>,
    pub traded_usd: UsdAmount,
}

impl DailyVolume {
    /// Volume counted against `day`. A signal stamped slightly earlier than the latest one (clock
    /// skew between instances) counts toward the latest day: the day never moves backwards.
    fn on(&self, day: NaiveDate) -> UsdAmount {
        match self.day {
            Some(current) if current >= day => self.traded_usd,
            _ => UsdAmount::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub stage: SignalStage,
    pub market: Market,
    pub side: Side,
    pub size: Quantity,
    pub client_order_id: ClientOrderId,
    pub reserved_usd: UsdAmount,
    pub reserved_on: NaiveDate,
}

/// Where an in-flight signal stands; the execution saga moves it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalStage {
    /// Risk approved it; the order is yet to be placed.
    AwaitingExecution,
    /// Its outcome (filled, rejected, failed) is recorded; the user is yet to be told.
    AwaitingNotification,
}

impl Aggregate for TradingAccount {
    const TYPE: &'static str = "TradingAccount";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.evolve(&event);
    }
}

impl TradingAccount {
    /// Decides the events a command produces. Events that depend on earlier ones in the same
    /// command are computed on a scratch copy, so the decision sees exactly what replay will.
    pub fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::OpenAccount {
                display_name,
                limits,
                opened_at,
            } => {
                if self.profile.is_some() {
                    return Err(AccountError::AlreadyOpened);
                }
                Ok(vec![AccountEvent::AccountOpened {
                    display_name,
                    limits,
                    opened_at,
                }])
            }
            AccountCommand::ReceiveSignal(intent) => self.receive_signal(intent),
            AccountCommand::RecordExecution(report) => self.record_execution(report),
            AccountCommand::RecordNotification {
                signal_id,
                channel,
                outcome,
                at,
            } => {
                let in_flight = self.in_flight_signal(&signal_id)?;
                if in_flight.stage != SignalStage::AwaitingNotification {
                    return Err(AccountError::NotConcluded(signal_id));
                }
                Ok(vec![match outcome {
                    NotificationOutcome::Sent => AccountEvent::NotificationSent {
                        signal_id,
                        channel,
                        at,
                    },
                    NotificationOutcome::Failed { reason } => AccountEvent::NotificationFailed {
                        signal_id,
                        channel,
                        reason,
                        at,
                    },
                }])
            }
            AccountCommand::HaltTrading { by, reason, at } => {
                self.profile()?;
                if self.halt.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![AccountEvent::TradingHalted { by, reason, at }])
            }
            AccountCommand::ResumeTrading { by, reason, at } => {
                self.profile()?;
                if self.halt.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![AccountEvent::TradingResumed { by, reason, at }])
            }
        }
    }

    fn profile(&self) -> Result<&Profile, AccountError> {
        self.profile.as_ref().ok_or(AccountError::NotOpened)
    }

    fn in_flight_signal(&self, signal_id: &SignalId) -> Result<&InFlight, AccountError> {
        self.in_flight
            .get(signal_id)
            .ok_or_else(|| AccountError::NotInFlight(signal_id.clone()))
    }

    fn receive_signal(&self, intent: SignalIntent) -> Result<Vec<AccountEvent>, AccountError> {
        let profile = self.profile()?;
        let seen = self
            .seen_keys
            .get(&intent.idempotency_key)
            .filter(|seen| seen.expires_at > intent.received_at);
        if let Some(original) = seen {
            return Ok(vec![AccountEvent::SignalRejected {
                signal_id: intent.signal_id,
                idempotency_key: intent.idempotency_key,
                reason: RejectionReason::Duplicate {
                    original_signal_id: original.signal_id.clone(),
                },
                received_at: intent.received_at,
            }]);
        }
        // A signal id still in flight is the same alert again (a fingerprint that expired while
        // its order was being worked): approving it again would reuse its client order id.
        if self.in_flight.contains_key(&intent.signal_id) {
            return Ok(vec![AccountEvent::SignalRejected {
                signal_id: intent.signal_id.clone(),
                idempotency_key: intent.idempotency_key,
                reason: RejectionReason::Duplicate {
                    original_signal_id: intent.signal_id,
                },
                received_at: intent.received_at,
            }]);
        }
        if let Some(halt) = &self.halt {
            return Ok(vec![AccountEvent::SignalRejected {
                signal_id: intent.signal_id,
                idempotency_key: intent.idempotency_key,
                reason: RejectionReason::Halted {
                    detail: format!("trading halted by {}: {}", halt.by, halt.reason),
                },
                received_at: intent.received_at,
            }]);
        }
        let received = AccountEvent::SignalReceived {
            signal_id: intent.signal_id.clone(),
            idempotency_key: intent.idempotency_key.clone(),
            market: intent.market.clone(),
            side: intent.side,
            size: intent.size,
            reference_price: intent.reference_price,
            received_at: intent.received_at,
        };
        let traded_today = self.daily_volume.on(intent.received_at.date_naive());
        let verdict =
            match profile
                .limits
                .check(&intent, self.exposure(&intent.market), traded_today)
            {
                Ok(notional_usd) => AccountEvent::RiskApproved {
                    client_order_id: ClientOrderId::for_signal(&intent.signal_id),
                    signal_id: intent.signal_id,
                    market: intent.market,
                    side: intent.side,
                    size: intent.size,
                    notional_usd,
                },
                Err(failed) => AccountEvent::RiskRejected {
                    signal_id: intent.signal_id,
                    rule: failed.rule.to_owned(),
                    detail: failed.detail,
                },
            };
        Ok(vec![received, verdict])
    }

    fn record_execution(&self, report: ExecutionReport) -> Result<Vec<AccountEvent>, AccountError> {
        let signal_id = report.signal_id().clone();
        let in_flight = self.in_flight_signal(&signal_id)?;
        if in_flight.stage != SignalStage::AwaitingExecution {
            // Already recorded: a resumed saga reports again. Nothing new happened.
            return Ok(vec![]);
        }
        let reported = match &report {
            ExecutionReport::Filled {
                client_order_id, ..
            }
            | ExecutionReport::Rejected {
                client_order_id, ..
            }
            | ExecutionReport::Failed {
                client_order_id, ..
            } => client_order_id,
        };
        if reported != &in_flight.client_order_id {
            return Err(AccountError::ClientOrderIdMismatch {
                expected: in_flight.client_order_id.clone(),
                reported: reported.clone(),
            });
        }
        let submitted = |at: DateTime<Utc>| AccountEvent::OrderSubmitted {
            signal_id: signal_id.clone(),
            client_order_id: in_flight.client_order_id.clone(),
            market: in_flight.market.clone(),
            side: in_flight.side,
            size: in_flight.size,
            submitted_at: at,
        };
        let released = AccountEvent::RiskReservationReleased {
            signal_id: signal_id.clone(),
            notional_usd: in_flight.reserved_usd,
        };
        Ok(match report {
            ExecutionReport::Filled {
                client_order_id,
                exchange_order_id,
                fill,
                at,
                ..
            } => {
                let position = self
                    .positions
                    .get(&in_flight.market)
                    .cloned()
                    .unwrap_or_default();
                let mut events = vec![
                    submitted(at),
                    AccountEvent::OrderFilled {
                        signal_id: signal_id.clone(),
                        client_order_id,
                        exchange_order_id,
                        market: in_flight.market.clone(),
                        side: in_flight.side,
                        price: fill.price,
                        size: fill.size,
                        fee_usd: UsdAmount::new(fill.fee),
                        filled_at: at,
                    },
                ];
                events.extend(position.events_for_fill(
                    &signal_id,
                    &in_flight.market,
                    in_flight.side,
                    fill.size,
                    fill.price,
                ));
                events
            }
            ExecutionReport::Rejected {
                client_order_id,
                reason,
                at,
                ..
            } => vec![
                submitted(at),
                AccountEvent::OrderRejected {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    reason,
                    at,
                },
                released,
            ],
            ExecutionReport::Failed {
                client_order_id,
                reason,
                at,
                ..
            } => vec![
                AccountEvent::OrderFailed {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    reason,
                    at,
                },
                released,
            ],
        })
    }

    /// Folds one event into the state. Never fails: an event is a fact that already happened.
    fn evolve(&mut self, event: &AccountEvent) {
        use AccountEvent::*;
        match event {
            AccountOpened {
                display_name,
                limits,
                ..
            } => {
                self.profile = Some(Profile {
                    display_name: display_name.clone(),
                    limits: limits.clone(),
                });
            }
            SignalReceived {
                signal_id,
                idempotency_key,
                received_at,
                ..
            } => {
                self.signals_received += 1;
                self.remember_key(idempotency_key, signal_id, *received_at);
            }
            SignalRejected {
                signal_id,
                idempotency_key,
                reason,
                received_at,
            } => {
                self.signals_received += 1;
                if !matches!(reason, RejectionReason::Duplicate { .. }) {
                    self.remember_key(idempotency_key, signal_id, *received_at);
                }
            }
            RiskApproved {
                signal_id,
                client_order_id,
                market,
                side,
                size,
                notional_usd,
            } => {
                let signal_day = self.last_key_day();
                if self
                    .daily_volume
                    .day
                    .is_none_or(|current| signal_day > current)
                {
                    self.daily_volume = DailyVolume {
                        day: Some(signal_day),
                        traded_usd: UsdAmount::ZERO,
                    };
                }
                let day = self.daily_volume.day.unwrap_or(signal_day);
                self.daily_volume.traded_usd = self.daily_volume.traded_usd + *notional_usd;
                self.in_flight.insert(
                    signal_id.clone(),
                    InFlight {
                        stage: SignalStage::AwaitingExecution,
                        market: market.clone(),
                        side: *side,
                        size: *size,
                        client_order_id: client_order_id.clone(),
                        reserved_usd: *notional_usd,
                        reserved_on: day,
                    },
                );
            }
            RiskRejected { .. } | OrderSubmitted { .. } => {}
            OrderFilled { signal_id, .. } => {
                self.orders_filled += 1;
                self.conclude(signal_id);
            }
            OrderRejected { signal_id, .. } | OrderFailed { signal_id, .. } => {
                self.conclude(signal_id);
            }
            RiskReservationReleased {
                signal_id,
                notional_usd,
            } => {
                let reserved_on = self.in_flight.get(signal_id).map(|f| f.reserved_on);
                if reserved_on.is_some() && reserved_on == self.daily_volume.day {
                    let left = self.daily_volume.traded_usd - *notional_usd;
                    self.daily_volume.traded_usd = left.max(UsdAmount::ZERO);
                }
            }
            PositionOpened { market, .. }
            | PositionIncreased { market, .. }
            | PositionReduced { market, .. }
            | PositionClosed { market, .. } => {
                self.positions
                    .entry(market.clone())
                    .or_default()
                    .apply(event);
            }
            NotificationSent { signal_id, .. } | NotificationFailed { signal_id, .. } => {
                self.in_flight.remove(signal_id);
            }
            TradingHalted { by, reason, at } => {
                self.halt = Some(Halt {
                    by: by.clone(),
                    reason: reason.clone(),
                    at: *at,
                });
            }
            TradingResumed { .. } => self.halt = None,
        }
    }

    /// The signed size the account holds in a market once every approved, unfilled order fills:
    /// what the position limit must be checked against.
    fn exposure(&self, market: &Market) -> Decimal {
        let filled = self.positions.get(market).map_or(Decimal::ZERO, |p| p.size);
        self.in_flight
            .values()
            .filter(|f| &f.market == market && f.stage == SignalStage::AwaitingExecution)
            .fold(filled, |total, f| total + f.side.sign() * f.size.value())
    }

    fn conclude(&mut self, signal_id: &SignalId) {
        if let Some(in_flight) = self.in_flight.get_mut(signal_id) {
            in_flight.stage = SignalStage::AwaitingNotification;
        }
    }

    /// The UTC day of the most recent signal: the day a risk approval's volume counts toward.
    fn last_key_day(&self) -> NaiveDate {
        self.last_signal_at
            .map(|at| at.date_naive())
            .unwrap_or_default()
    }

    fn remember_key(&mut self, key: &str, signal_id: &SignalId, received_at: DateTime<Utc>) {
        self.last_signal_at = Some(received_at);
        while let Some((expires_at, _)) = self.key_expiry.first() {
            if *expires_at > received_at {
                break;
            }
            if let Some((_, expired)) = self.key_expiry.pop_first() {
                self.seen_keys.remove(&expired);
            }
        }
        let window = if key.starts_with(FINGERPRINT_KEY_PREFIX) {
            Duration::seconds(FINGERPRINT_WINDOW_SECONDS)
        } else {
            Duration::hours(IDEMPOTENCY_WINDOW_HOURS)
        };
        let expires_at = received_at + window;
        let previous = self.seen_keys.insert(
            key.to_owned(),
            SeenKey {
                signal_id: signal_id.clone(),
                expires_at,
            },
        );
        if let Some(previous) = previous {
            self.key_expiry
                .remove(&(previous.expires_at, key.to_owned()));
        }
        self.key_expiry.insert((expires_at, key.to_owned()));
    }
}
