//! The `TradingAccount` aggregate: the state one user's events fold into, and the decisions its
//! commands make on that state.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::in_flight::InFlightSignals;
use crate::quota::RecentSignals;
use crate::{
    AccountCommand, AccountEvent, ClientOrderId, Drift, Market, NotificationOutcome, OrderType,
    Position, Quantity, RejectionReason, RiskLimits, Side, SignalId, UsdAmount, Venue,
};

/// The service's default for how long an alert's explicit id is remembered (each signal carries
/// its own `key_expires_at`). It must cover TradingView's resends (3 × 5 s) with a wide margin,
/// and bounds the keys the store keeps for an account (`keys.rs`).
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// Keys with this prefix are fingerprints of alerts that carried no id. Two identical alerts without
/// an id can be two real trades, so a fingerprint is only remembered long enough to absorb
/// TradingView's resends of one request (three retries, 5 s apart, after a 3 s timeout). This is
/// the service's default window for them.
pub const FINGERPRINT_KEY_PREFIX: &str = "fp:";
pub const FINGERPRINT_WINDOW_SECONDS: i64 = 120;

/// Attempts at telling the trader how one signal ended (the first and the retries) before the
/// failure is recorded as final. A notification never holds a trade up, so this only bounds how
/// long an account remembers an undelivered message.
pub const NOTIFICATION_ATTEMPTS: u32 = 6;

/// The shape of a serialized `TradingAccount` and of the fold that builds it. Bump it whenever a
/// field or `evolve` changes, so stored snapshots written by older code are ignored.
pub const STATE_VERSION: &str = "11";

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
    #[error("the notice about event {0} is already recorded")]
    NoticeAlreadyRecorded(u64),
    #[error("{0}")]
    InvalidSetting(String),
    /// The venue cannot change while the account has business on the current one.
    #[error("{0}")]
    VenueBusy(String),
    #[error("test signals trade on paper only, and this account trades on {0}")]
    NotOnPaper(Venue),
    /// The user's signal quota is spent; nothing was recorded.
    #[error("the signal quota is spent for the next {retry_after_ms} ms")]
    QuotaSpent { retry_after_ms: i64 },
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
    /// When the most recent signal arrived: the UTC day its approved volume counts toward.
    pub(crate) last_signal_at: Option<DateTime<Utc>>,
    /// When the latest signals arrived, for the user's quota (`quota.rs`).
    #[serde(default)]
    pub(crate) recent_signals: RecentSignals,
    /// Signals with work still to do, by id. Finished signals leave this map.
    pub in_flight: InFlightSignals,
    pub positions: BTreeMap<Market, Position>,
    pub daily_volume: DailyVolume,
    pub signals_received: u64,
    pub orders_filled: u64,
    /// Orders that could not be placed since the exchange last answered: the automatic halt's
    /// count.
    pub consecutive_failures: u32,
    /// Position drifts reconciliation reported and has not cleared, by market.
    pub drift: BTreeMap<Market, Drift>,
    /// Signals whose notification failed and is to be tried again, with the failed attempts so
    /// far. Each leaves when a retry is sent or the attempts run out.
    #[serde(default)]
    pub undelivered: BTreeMap<SignalId, u32>,
    /// Account notices (an operator's halt or resume, a drift found or cleared) are told in the
    /// order of the account's events: the sequence of the last one whose telling is recorded (0:
    /// none yet). A notice at or below it is never recorded again, unless it awaits a retry.
    #[serde(default)]
    pub notices_through: u64,
    /// Notices whose telling failed and is to be tried again, by the sequence of the event they
    /// tell, with the failed attempts so far.
    #[serde(default)]
    pub undelivered_notices: BTreeMap<u64, u32>,
    /// The sequence, in the emergency stop's own stream, of the last engagement or release this
    /// account noted (0: none): each is noted once, and told as a notice.
    #[serde(default)]
    pub emergency_noted_through: u64,
    /// The venue the account chose in its ledger (`VenueChanged`); `None` before any choice
    /// there (the user row's column, paper by default, speaks for it then).
    #[serde(default)]
    pub(crate) venue: Option<Venue>,
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
    /// The size of an alert that gives none, in USD; `None`: the service's default.
    #[serde(default)]
    pub default_order_usd: Option<Decimal>,
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
    pub(crate) fn on(&self, day: NaiveDate) -> UsdAmount {
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
    pub reduce_only: bool,
    pub order_type: OrderType,
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub client_order_id: ClientOrderId,
    pub reserved_usd: UsdAmount,
    pub reserved_on: NaiveDate,
    /// When risk approved it (the signal's receipt, recorded in the same decision): the saga's
    /// deadline counts from here, so a restart does not reset it. `None` only in state folded
    /// from an approval that had no receipt before it.
    #[serde(default)]
    pub approved_at: Option<DateTime<Utc>>,
    /// The reduce-only close that compensates the position this signal opened, once its fill
    /// turned out unprotected (`CompensationRequired`).
    #[serde(default)]
    pub compensation: Option<CompensationOrder>,
    /// The order on the venue's book, once the exchange said it rests (`OrderResting`).
    #[serde(default)]
    pub resting: Option<RestingOrder>,
}

/// A signal's limit order resting on the venue's book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestingOrder {
    pub exchange_order_id: String,
    pub good_til: DateTime<Utc>,
    /// The trader was told it rests (or telling failed for good): told once.
    pub told: bool,
}

/// A reduce-only order that closes what a signal's fill opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationOrder {
    pub client_order_id: ClientOrderId,
    pub market: Market,
    pub side: Side,
    pub size: Quantity,
}

impl InFlight {
    /// What is left of the order to fill. One report concludes its order (a partial fill is
    /// the exchange cancelling the rest), so it is the whole order until then.
    pub fn remaining(&self) -> Quantity {
        self.size
    }
}

/// Where an in-flight signal stands; the execution saga moves it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalStage {
    /// Risk approved it; the order is yet to be placed.
    AwaitingExecution,
    /// Its limit order rests on the venue's book (`InFlight::resting`): neither concluded nor
    /// placed again; its reservation is held until the order fills, expires or is cancelled.
    Resting,
    /// Its order filled but left a position without protection: the compensating reduce-only
    /// close (`InFlight::compensation`) is yet to be placed.
    AwaitingCompensation,
    /// Its outcome (filled, partially filled, rejected, failed, cancelled, abandoned,
    /// compensated) is recorded; the user is yet to be told.
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
            AccountCommand::RecordCompensation(report) => self.record_compensation(report),
            AccountCommand::RecordNotification {
                signal_id,
                channel,
                outcome,
                at,
            } => {
                // A retry of a failed notification, else the first attempt.
                let failed_attempts = match self.undelivered.get(&signal_id) {
                    Some(failed) => *failed,
                    None => {
                        let in_flight = self.in_flight_signal(&signal_id)?;
                        if in_flight.stage != SignalStage::AwaitingNotification {
                            return Err(AccountError::NotConcluded(signal_id));
                        }
                        0
                    }
                };
                Ok(vec![match outcome.failure(failed_attempts) {
                    None => AccountEvent::NotificationSent {
                        signal_id,
                        channel,
                        at,
                    },
                    Some((reason, retry_at)) => AccountEvent::NotificationFailed {
                        signal_id,
                        channel,
                        reason,
                        at,
                        retry_at,
                    },
                }])
            }
            AccountCommand::RecordNotice {
                about_sequence,
                channel,
                outcome,
                at,
            } => self.record_notice(about_sequence, channel, outcome, at),
            AccountCommand::NoteEmergencyStop {
                stop_sequence,
                engaged,
                by,
                reason,
                at,
            } => {
                self.profile()?;
                // Noted once per engagement or release, whoever hands it over again.
                if stop_sequence <= self.emergency_noted_through {
                    return Ok(vec![]);
                }
                Ok(vec![AccountEvent::EmergencyStopNoted {
                    stop_sequence,
                    engaged,
                    by,
                    reason,
                    at,
                }])
            }
            AccountCommand::RecordRestingNotice {
                signal_id,
                channel,
                outcome,
                at,
            } => {
                self.profile()?;
                // Told once, never retried; an order that ended meanwhile is told by its end.
                let untold = self.in_flight.get(&signal_id).is_some_and(|in_flight| {
                    in_flight.stage == SignalStage::Resting
                        && in_flight
                            .resting
                            .as_ref()
                            .is_some_and(|resting| !resting.told)
                });
                if !untold {
                    return Ok(vec![]);
                }
                Ok(vec![match outcome {
                    NotificationOutcome::Sent => AccountEvent::NotificationSent {
                        signal_id,
                        channel,
                        at,
                    },
                    NotificationOutcome::Failed { reason }
                    | NotificationOutcome::Deferred { reason, .. } => {
                        AccountEvent::NotificationFailed {
                            signal_id,
                            channel,
                            reason,
                            at,
                            retry_at: None,
                        }
                    }
                }])
            }
            AccountCommand::SetRiskLimits {
                limits,
                by,
                reason,
                at,
            } => {
                if self.profile()?.limits == limits {
                    return Ok(vec![]);
                }
                Ok(vec![AccountEvent::RiskLimitsChanged {
                    limits,
                    by,
                    reason,
                    at,
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
            AccountCommand::RecordReconciliation {
                venue,
                venue_positions,
                at,
            } => self.reconcile(venue, venue_positions, at),
            AccountCommand::RecordCredentialAccess(access) => {
                self.profile()?;
                Ok(vec![access.into_event()])
            }
            AccountCommand::ChooseVenue { venue, by, at } => self.choose_venue(venue, by, at),
            AccountCommand::ChangeSettings {
                change,
                by,
                reason,
                at,
            } => self.change_settings(change, by, reason, at),
            AccountCommand::RecordCredentialChange {
                field,
                cleared,
                by,
                at,
            } => {
                self.profile()?;
                Ok(vec![AccountEvent::CredentialChanged {
                    field,
                    cleared,
                    by,
                    at,
                }])
            }
            AccountCommand::RecordWebhookRotation { by, at } => {
                self.profile()?;
                Ok(vec![AccountEvent::WebhookRotated { by, at }])
            }
            AccountCommand::RecordTestNotification {
                channel,
                delivered,
                reason,
                by,
                at,
            } => {
                self.profile()?;
                Ok(vec![AccountEvent::TestNotificationSent {
                    channel,
                    delivered,
                    reason,
                    by,
                    at,
                }])
            }
        }
    }

    pub(crate) fn profile(&self) -> Result<&Profile, AccountError> {
        self.profile.as_ref().ok_or(AccountError::NotOpened)
    }

    pub(crate) fn in_flight_signal(&self, signal_id: &SignalId) -> Result<&InFlight, AccountError> {
        self.in_flight
            .get(signal_id)
            .ok_or_else(|| AccountError::NotInFlight(signal_id.clone()))
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
                    default_order_usd: None,
                });
            }
            SignalReceived { received_at, .. } => {
                self.signals_received += 1;
                self.recent_signals.record(*received_at);
                self.last_signal_at = Some(*received_at);
            }
            SignalRejected {
                reason,
                received_at,
                ..
            } => {
                self.signals_received += 1;
                if !matches!(reason, RejectionReason::Duplicate { .. }) {
                    self.recent_signals.record(*received_at);
                    self.last_signal_at = Some(*received_at);
                }
            }
            RiskApproved {
                signal_id,
                client_order_id,
                market,
                side,
                size,
                reduce_only,
                order_type,
                take_profit,
                stop_loss,
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
                self.daily_volume.traded_usd =
                    self.daily_volume.traded_usd.saturating_add(*notional_usd);
                self.in_flight.insert(
                    signal_id.clone(),
                    InFlight {
                        stage: SignalStage::AwaitingExecution,
                        market: market.clone(),
                        side: *side,
                        size: *size,
                        reduce_only: *reduce_only,
                        order_type: order_type.clone(),
                        take_profit: *take_profit,
                        stop_loss: *stop_loss,
                        client_order_id: client_order_id.clone(),
                        reserved_usd: *notional_usd,
                        reserved_on: day,
                        approved_at: self.last_signal_at,
                        compensation: None,
                        resting: None,
                    },
                );
            }
            RiskRejected { .. } | OrderSubmitted { .. } => {}
            OrderFilled { signal_id, .. } | OrderPartiallyFilled { signal_id, .. } => {
                self.orders_filled += 1;
                self.consecutive_failures = 0;
                self.conclude(signal_id);
            }
            // The exchange answered, so it is reachable: the failure streak is over.
            OrderRejected { signal_id, .. } => {
                self.consecutive_failures = 0;
                self.conclude(signal_id);
            }
            OrderFailed { signal_id, .. } | ExecutionAbandoned { signal_id, .. } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.conclude(signal_id);
            }
            // The exchange took the order: it is reachable.
            OrderResting {
                signal_id,
                exchange_order_id,
                good_til,
                ..
            } => {
                self.consecutive_failures = 0;
                self.in_flight.update(signal_id, |in_flight| {
                    in_flight.stage = SignalStage::Resting;
                    in_flight.resting = Some(RestingOrder {
                        exchange_order_id: exchange_order_id.clone(),
                        good_til: *good_til,
                        told: false,
                    });
                });
            }
            OrderExpired { signal_id, .. } => self.conclude(signal_id),
            // Never sent: says nothing about the exchange.
            OrderCancelled { signal_id, .. } => self.conclude(signal_id),
            // Nothing is folded: the report is kept for the operator, the trader is told next.
            FillMismatch { signal_id, .. } => self.conclude(signal_id),
            CompensationRequired {
                signal_id,
                client_order_id,
                market,
                side,
                size,
                ..
            } => {
                self.in_flight.update(signal_id, |in_flight| {
                    in_flight.stage = SignalStage::AwaitingCompensation;
                    in_flight.compensation = Some(CompensationOrder {
                        client_order_id: client_order_id.clone(),
                        market: market.clone(),
                        side: *side,
                        size: *size,
                    });
                });
            }
            // The exchange answered the close: it is reachable.
            PositionCompensated { signal_id, .. } => {
                self.consecutive_failures = 0;
                self.conclude(signal_id);
            }
            // Halted in the same decision; the count says nothing more.
            CompensationFailed { signal_id, .. } => self.conclude(signal_id),
            RiskReservationReleased {
                signal_id,
                notional_usd,
            } => {
                let reserved_on = self.in_flight.get(signal_id).map(|f| f.reserved_on);
                if reserved_on.is_some() && reserved_on == self.daily_volume.day {
                    let left = self.daily_volume.traded_usd.saturating_sub(*notional_usd);
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
            // A resting order's notice: the signal goes on resting, told.
            NotificationSent { signal_id, .. } | NotificationFailed { signal_id, .. }
                if self.mark_resting_told(signal_id) => {}
            NotificationSent { signal_id, .. } => {
                self.in_flight.remove(signal_id);
                self.undelivered.remove(signal_id);
            }
            NotificationFailed {
                signal_id,
                retry_at,
                ..
            } => {
                self.in_flight.remove(signal_id);
                if retry_at.is_some() {
                    let failed = self.undelivered.entry(signal_id.clone()).or_insert(0);
                    *failed = failed.saturating_add(1);
                } else {
                    self.undelivered.remove(signal_id);
                }
            }
            RiskLimitsChanged { limits, .. } => {
                if let Some(profile) = &mut self.profile {
                    profile.limits = limits.clone();
                }
            }
            TradingHalted { by, reason, at } => {
                self.halt = Some(Halt {
                    by: by.clone(),
                    reason: reason.clone(),
                    at: *at,
                });
            }
            // Resuming is the operator saying the exchange is worth trying again.
            TradingResumed { .. } => {
                self.halt = None;
                self.consecutive_failures = 0;
            }
            PositionDriftDetected {
                venue,
                market,
                ledger_size,
                venue_size,
                ..
            } => {
                let drift = Drift {
                    venue: venue.clone(),
                    ledger_size: *ledger_size,
                    venue_size: *venue_size,
                };
                self.drift.insert(market.clone(), drift);
            }
            PositionDriftCleared { market, .. } => {
                self.drift.remove(market);
            }
            NoticeSent { about_sequence, .. } => {
                self.notices_through = self.notices_through.max(*about_sequence);
                self.undelivered_notices.remove(about_sequence);
            }
            NoticeFailed {
                about_sequence,
                retry_at,
                ..
            } => {
                self.notices_through = self.notices_through.max(*about_sequence);
                if retry_at.is_some() {
                    let failed = self.undelivered_notices.entry(*about_sequence).or_insert(0);
                    *failed = failed.saturating_add(1);
                } else {
                    self.undelivered_notices.remove(about_sequence);
                }
            }
            EmergencyStopNoted { stop_sequence, .. } => {
                self.emergency_noted_through = self.emergency_noted_through.max(*stop_sequence);
            }
            VenueChanged { venue, .. } => self.venue = Some(*venue),
            DefaultOrderSizeChanged {
                default_order_usd, ..
            } => {
                if let Some(profile) = &mut self.profile {
                    profile.default_order_usd = *default_order_usd;
                }
            }
            // Records for compliance and the trader: the account's state does not change.
            CredentialAccessed { .. }
            | CredentialChanged { .. }
            | WebhookRotated { .. }
            | TestNotificationSent { .. } => {}
        }
    }

    /// The signed size the account holds in a market once every approved, unfilled order and
    /// every pending compensating close fills: what the position limit must be checked against
    /// (and what a close must close, so it never closes what a compensation already will).
    pub fn exposure(&self, market: &Market) -> Decimal {
        let filled = self.positions.get(market).map_or(Decimal::ZERO, |p| p.size);
        // Normalized: the same exposure reads the same however the signals came and went.
        filled
            .saturating_add(self.in_flight.pending_in(market))
            .normalize()
    }

    /// How many entries the state holds in its collections: about what storing it costs.
    pub fn entries(&self) -> usize {
        self.in_flight.len()
            + self.positions.len()
            + self.drift.len()
            + self.undelivered.len()
            + self.undelivered_notices.len()
            + self.recent_signals.len()
    }

    /// Marks a resting signal's notice as told; false when the signal is not resting.
    fn mark_resting_told(&mut self, signal_id: &SignalId) -> bool {
        self.in_flight
            .update(signal_id, |in_flight| {
                if in_flight.stage != SignalStage::Resting {
                    return false;
                }
                if let Some(resting) = &mut in_flight.resting {
                    resting.told = true;
                }
                true
            })
            .unwrap_or(false)
    }

    fn conclude(&mut self, signal_id: &SignalId) {
        self.in_flight.update(signal_id, |in_flight| {
            in_flight.stage = SignalStage::AwaitingNotification;
        });
    }

    /// The UTC day of the most recent signal: the day a risk approval's volume counts toward.
    fn last_key_day(&self) -> NaiveDate {
        self.last_signal_at
            .map(|at| at.date_naive())
            .unwrap_or_default()
    }
}
