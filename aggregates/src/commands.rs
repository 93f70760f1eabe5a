//! What can be asked of a `TradingAccount`. Every command carries the time and ids it needs, so the
//! aggregate stays deterministic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    ClientOrderId, Halt, Market, Quantity, RiskLimits, SeenKey, SettingsChange, Side, SignalId,
    SignalQuota, Venue,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountCommand {
    OpenAccount {
        display_name: String,
        limits: RiskLimits,
        opened_at: DateTime<Utc>,
    },
    /// A parsed, authenticated alert. The aggregate decides: duplicate, halted, stale, nothing to
    /// do, risk-rejected or approved.
    ReceiveSignal(SignalIntent),
    /// The execution saga reports what the exchange did with the signal's order.
    RecordExecution(ExecutionReport),
    /// The execution saga reports how the reduce-only close of a signal's unprotected position
    /// went (see `ExecutionReport::FilledUnprotected`).
    RecordCompensation(CompensationReport),
    /// The execution saga reports whether the user was told about the signal's outcome.
    RecordNotification {
        signal_id: SignalId,
        channel: String,
        outcome: NotificationOutcome,
        at: DateTime<Utc>,
    },
    /// The execution saga reports whether the user was told of the account-level event at
    /// `about_sequence` (see `AccountEvent::NoticeSent`).
    RecordNotice {
        about_sequence: u64,
        channel: String,
        outcome: NotificationOutcome,
        at: DateTime<Utc>,
    },
    /// The execution saga hands the global emergency stop's engagement (or release) to the
    /// account, so that the trader is told of it as of any notice; `stop_sequence` is its place
    /// in the emergency stop's stream.
    NoteEmergencyStop {
        stop_sequence: u64,
        engaged: bool,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The execution saga reports whether the trader was told their limit order rests on the
    /// book. Recorded only while it rests and only once; never retried.
    RecordRestingNotice {
        signal_id: SignalId,
        channel: String,
        outcome: NotificationOutcome,
        at: DateTime<Utc>,
    },
    /// Replaces the account's risk limits; who and why are kept in the ledger.
    SetRiskLimits {
        limits: RiskLimits,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    HaltTrading {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    ResumeTrading {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// What the venue says the account holds (signed sizes; unlisted markets are flat there), to
    /// compare with the ledger's positions.
    RecordReconciliation {
        venue: String,
        venue_positions: BTreeMap<Market, Decimal>,
        at: DateTime<Utc>,
    },
    /// Records that one of the owner's credentials is about to be decrypted (see
    /// `AccountEvent::CredentialAccessed`).
    RecordCredentialAccess(CredentialAccess),
    /// Sends the account's orders to `venue` from now on. Whether the venue can be used (its
    /// credentials stored) is checked by the caller, which can see the vault.
    ChooseVenue {
        venue: Venue,
        by: String,
        at: DateTime<Utc>,
    },
    /// Changes the risk limits and the default order size together, from where they stand.
    ChangeSettings {
        change: SettingsChange,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Records that one of the owner's vault fields was stored or removed (never the value).
    RecordCredentialChange {
        field: String,
        cleared: bool,
        by: String,
        at: DateTime<Utc>,
    },
    /// Records that the owner's webhook credentials were replaced.
    RecordWebhookRotation { by: String, at: DateTime<Utc> },
    /// Records a test notification and whether it arrived.
    RecordTestNotification {
        channel: String,
        delivered: bool,
        reason: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

/// Who reads which of an owner's vault fields, and why. Names only: never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialAccess {
    pub field: String,
    pub purpose: String,
    pub by: String,
    pub key_version: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalIntent {
    pub signal_id: SignalId,
    /// The alert's own id, or a canonical fingerprint of it when it has none.
    pub idempotency_key: String,
    /// Until when the key is remembered for duplicate detection (ingest derives it from the
    /// configured window: explicit ids ~24 h, fingerprints ~120 s).
    pub key_expires_at: DateTime<Utc>,
    pub market: Market,
    pub instruction: TradeInstruction,
    pub order_type: OrderType,
    /// Bracket prices carried to the approved order, tick-quantized by ingest.
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    /// The price the alert says the market was at, if given: checked against `reference_price`
    /// by the price-deviation circuit breaker.
    pub alert_price: Option<Decimal>,
    /// The exchange's price at receipt, which risk values the order at.
    pub reference_price: Decimal,
    /// When the alert says it was sent, and the largest lag allowed between that and
    /// `received_at`.
    pub sent_at: Option<DateTime<Utc>>,
    pub max_lag_seconds: u32,
    /// Set when the operator's global emergency stop is engaged.
    pub emergency_stop: Option<Halt>,
    /// A trial (the settings' test signal): refused unless the account trades on paper, decided
    /// with the venue under the account's lock, so no venue change slips in between.
    #[serde(default)]
    pub paper_only: bool,
    /// The user's signal quota (theirs, else the service's default); `None`: unlimited.
    #[serde(default)]
    pub quota: Option<SignalQuota>,
    pub received_at: DateTime<Utc>,
    /// What the store remembers of `idempotency_key`: the signal that last used it, and until
    /// when. The ledger looks it up under the account's lock, just before deciding; the account
    /// itself keeps no keys (`keys.rs`).
    #[serde(skip)]
    pub earlier_use: Option<SeenKey>,
}

/// What the alert asks the account to do in its market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeInstruction {
    /// Buy or sell this many base units (already quantized to the market's step by ingest).
    Order { side: Side, size: Quantity },
    /// Hold this signed position afterwards (base units, quantized, 0 = flat). The aggregate
    /// orders the difference from its exposure; going toward zero without crossing it is
    /// reduce-only.
    TargetPosition { size: Decimal },
    /// Close the whole position with a reduce-only order.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderType {
    Market,
    Limit { price: Decimal },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ExecutionReport {
    Filled {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        fill: Fill,
        at: DateTime<Utc>,
    },
    /// Only part of the order filled; the exchange cancelled the rest (an immediate-or-cancel
    /// order meeting too little liquidity). `unfilled` is the exchange's word for the rest: the
    /// account checks that the two add up to the order before anything is booked.
    PartiallyFilled {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        fill: Fill,
        unfilled: Quantity,
        at: DateTime<Utc>,
    },
    /// The exchange took the limit order and it rests on the book until `good_til` (nothing
    /// filled yet, or part of it: the fill is booked when the order ends).
    Resting {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        good_til: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A resting order left the book with nothing filled (expired, or cancelled by the venue).
    Expired {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The entry filled, but what had to follow it failed critically (the TP/SL bracket could
    /// not be placed): the position it opened is to be closed with a reduce-only order.
    FilledUnprotected {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        fill: Fill,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The exchange saw the order and refused it.
    Rejected {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The order could not be placed (the exchange was unreachable after retries).
    Failed {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The saga decided not to place the approved order (a halt was engaged before placement).
    Cancelled {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The signal's deadline passed before the exchange took its order, and the exchange does
    /// not know the client order id: the saga gives up on it.
    Abandoned {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl ExecutionReport {
    pub fn signal_id(&self) -> &SignalId {
        match self {
            Self::Filled { signal_id, .. }
            | Self::PartiallyFilled { signal_id, .. }
            | Self::FilledUnprotected { signal_id, .. }
            | Self::Resting { signal_id, .. }
            | Self::Expired { signal_id, .. }
            | Self::Rejected { signal_id, .. }
            | Self::Failed { signal_id, .. }
            | Self::Cancelled { signal_id, .. }
            | Self::Abandoned { signal_id, .. } => signal_id,
        }
    }

    pub fn client_order_id(&self) -> &ClientOrderId {
        match self {
            Self::Filled {
                client_order_id, ..
            }
            | Self::PartiallyFilled {
                client_order_id, ..
            }
            | Self::FilledUnprotected {
                client_order_id, ..
            }
            | Self::Resting {
                client_order_id, ..
            }
            | Self::Expired {
                client_order_id, ..
            }
            | Self::Abandoned {
                client_order_id, ..
            }
            | Self::Rejected {
                client_order_id, ..
            }
            | Self::Failed {
                client_order_id, ..
            }
            | Self::Cancelled {
                client_order_id, ..
            } => client_order_id,
        }
    }
}

/// What became of the reduce-only close that compensates a signal's unprotected position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CompensationReport {
    /// The close filled (all of it, or the part the exchange reports).
    Closed {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        fill: Fill,
        at: DateTime<Utc>,
    },
    /// The close could not be placed, or the exchange refused it: the position stays open
    /// without protection, and only a person can close it now.
    Failed {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl CompensationReport {
    pub fn signal_id(&self) -> &SignalId {
        match self {
            Self::Closed { signal_id, .. } | Self::Failed { signal_id, .. } => signal_id,
        }
    }
}

/// A fill as the exchange reports it. Market and side are the exchange's word, not copied from
/// the order: the account checks them against the order before anything is folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub market: Market,
    pub side: Side,
    pub price: Decimal,
    pub size: Quantity,
    pub fee: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationOutcome {
    Sent,
    /// Failed for good: nothing will try again.
    Failed {
        reason: String,
    },
    /// Failed for now: try again at `retry_at`, unless the attempts are used up (then it is
    /// recorded as final).
    Deferred {
        reason: String,
        retry_at: DateTime<Utc>,
    },
}

impl NotificationOutcome {
    /// How an attempt is recorded, given the failed attempts before it: `None` when it was sent,
    /// else why it failed and when it is tried again (`None` when final: refused for good, or
    /// the attempts used up).
    pub(crate) fn failure(self, failed_attempts: u32) -> Option<(String, Option<DateTime<Utc>>)> {
        match self {
            Self::Sent => None,
            Self::Failed { reason } => Some((reason, None)),
            Self::Deferred { reason, retry_at } => {
                let last = failed_attempts.saturating_add(1) >= crate::NOTIFICATION_ATTEMPTS;
                Some((reason, (!last).then_some(retry_at)))
            }
        }
    }
}

impl CredentialAccess {
    pub fn into_event(self) -> crate::AccountEvent {
        crate::AccountEvent::CredentialAccessed {
            field: self.field,
            purpose: self.purpose,
            by: self.by,
            key_version: self.key_version,
            at: self.at,
        }
    }
}
