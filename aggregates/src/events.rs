//! Everything that can happen to a `TradingAccount`. Events are facts: never edited, never deleted;
//! mistakes are answered by compensating events.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    ClientOrderId, Market, OrderType, Quantity, RiskLimits, Side, SignalId, TradeInstruction,
    UsdAmount, Venue,
};

/// The schema version every event is written with today. Older stored versions are brought up to
/// date on load by the upcasters in `upcasting.rs`.
pub const EVENT_VERSION: &str = "2.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountOpened {
        display_name: String,
        limits: RiskLimits,
        opened_at: DateTime<Utc>,
    },
    /// The alert as it asked, before it is resolved into an order. Always followed by
    /// `RiskApproved` or `RiskRejected`.
    SignalReceived {
        signal_id: SignalId,
        idempotency_key: String,
        key_expires_at: DateTime<Utc>,
        market: Market,
        instruction: TradeInstruction,
        order_type: OrderType,
        take_profit: Option<Decimal>,
        stop_loss: Option<Decimal>,
        alert_price: Option<Decimal>,
        reference_price: Decimal,
        sent_at: Option<DateTime<Utc>>,
        received_at: DateTime<Utc>,
    },
    /// The order the signal resolved to, as the exchange is to receive it.
    RiskApproved {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        market: Market,
        side: Side,
        size: Quantity,
        reduce_only: bool,
        order_type: OrderType,
        take_profit: Option<Decimal>,
        stop_loss: Option<Decimal>,
        notional_usd: UsdAmount,
    },
    RiskRejected {
        signal_id: SignalId,
        rule: String,
        detail: String,
    },
    /// The signal was not taken up at all: it stands alone, without `SignalReceived`. Its key is
    /// remembered until `key_expires_at` unless it is itself a duplicate.
    SignalRejected {
        signal_id: SignalId,
        idempotency_key: String,
        key_expires_at: DateTime<Utc>,
        reason: RejectionReason,
        received_at: DateTime<Utc>,
    },
    OrderSubmitted {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        market: Market,
        side: Side,
        size: Quantity,
        submitted_at: DateTime<Utc>,
    },
    OrderFilled {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        market: Market,
        side: Side,
        price: Decimal,
        size: Quantity,
        fee_usd: UsdAmount,
        filled_at: DateTime<Utc>,
    },
    /// Part of the order filled and the exchange cancelled the rest. Only `size` is booked into
    /// the position (the position events follow); the reservation of `unfilled` is released
    /// next. The signal ends here: partially filled.
    OrderPartiallyFilled {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        market: Market,
        side: Side,
        price: Decimal,
        size: Quantity,
        unfilled: Quantity,
        fee_usd: UsdAmount,
        filled_at: DateTime<Utc>,
    },
    /// The exchange took a limit order that did not fill at once: it rests on the book until
    /// `good_til`. The signal stays in flight, its reservation held, until the order fills
    /// (`OrderFilled`, `OrderPartiallyFilled`) or ends with nothing filled (`OrderExpired`).
    OrderResting {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        good_til: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A resting order left the book with nothing filled: it expired, or the venue cancelled it.
    /// Its reservation is released next. The signal ends here.
    OrderExpired {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    OrderRejected {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    OrderFailed {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The exchange reported a fill that is not the order's (another market or side, more than
    /// was left to fill) or whose numbers no market produces. Nothing is folded into a position;
    /// the account is halted in the same decision and the trader told.
    FillMismatch {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        expected_market: Market,
        expected_side: Side,
        expected_remaining: Quantity,
        reported_market: Market,
        reported_side: Side,
        reported_size: Quantity,
        reported_price: Decimal,
        reported_fee: Decimal,
        /// Every check the report failed, in words.
        reason: String,
        at: DateTime<Utc>,
    },
    /// The saga decided not to place an approved order (a halt was engaged before placement).
    OrderCancelled {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Compensation: the signal's deadline passed and the exchange never took its order, so it
    /// will not be placed. Its reservation is released next.
    ExecutionAbandoned {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The signal's order filled but a later step failed critically (its TP/SL bracket could not
    /// be placed): the saga is to close what the fill opened with the reduce-only order
    /// described here, under its own client order id.
    CompensationRequired {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        market: Market,
        side: Side,
        size: Quantity,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The compensating reduce-only close filled; the position events it made follow.
    PositionCompensated {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        market: Market,
        side: Side,
        price: Decimal,
        size: Quantity,
        fee_usd: UsdAmount,
        at: DateTime<Utc>,
    },
    /// The compensating close could not be made (or closed less than asked, or the exchange
    /// reported a fill that is not the close's). The position is left as booked, the account is
    /// halted in the same decision and the trader told to close it by hand.
    CompensationFailed {
        signal_id: SignalId,
        client_order_id: ClientOrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Compensation: an approved signal that did not trade gives back the daily volume it reserved.
    RiskReservationReleased {
        signal_id: SignalId,
        notional_usd: UsdAmount,
    },
    PositionOpened {
        signal_id: SignalId,
        market: Market,
        side: Side,
        size: Quantity,
        entry_price: Decimal,
    },
    PositionIncreased {
        signal_id: SignalId,
        market: Market,
        size_delta: Quantity,
        new_size: Quantity,
        average_entry_price: Decimal,
    },
    PositionReduced {
        signal_id: SignalId,
        market: Market,
        size_delta: Quantity,
        new_size: Quantity,
        realized_pnl_usd: UsdAmount,
    },
    PositionClosed {
        signal_id: SignalId,
        market: Market,
        size_delta: Quantity,
        realized_pnl_usd: UsdAmount,
    },
    NotificationSent {
        signal_id: SignalId,
        channel: String,
        at: DateTime<Utc>,
    },
    NotificationFailed {
        signal_id: SignalId,
        channel: String,
        reason: String,
        at: DateTime<Utc>,
        /// When the next attempt is due; absent when this failure is final (a permanent refusal,
        /// or the last attempt). Absent in events written before retries existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
    },
    RiskLimitsChanged {
        limits: RiskLimits,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// `by` is an operator, or `execution` for the automatic halts (repeated exchange failures, a
    /// fill that is not the order's, a compensating close that failed).
    TradingHalted {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    TradingResumed {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Reconciliation found the venue holding another signed size than the ledger in `market`
    /// (recorded when it appears or changes). The ledger's positions are not changed: which side
    /// is right is for a person to find out.
    PositionDriftDetected {
        venue: String,
        market: Market,
        ledger_size: Decimal,
        venue_size: Decimal,
        detected_at: DateTime<Utc>,
    },
    /// A drift recorded earlier is gone: the venue and the ledger agree again on `size`.
    PositionDriftCleared {
        venue: String,
        market: Market,
        size: Decimal,
        cleared_at: DateTime<Utc>,
    },
    /// The global emergency stop was engaged (`engaged`) or released, as this account noted it:
    /// the notice the trader is told of. Changes nothing else (the stop itself is its own stream).
    EmergencyStopNoted {
        stop_sequence: u64,
        engaged: bool,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The trader was told of an account-level event (an operator's halt or resume, a drift found
    /// or cleared): the one at `about_sequence` in this account's stream.
    NoticeSent {
        about_sequence: u64,
        channel: String,
        at: DateTime<Utc>,
    },
    /// Telling the trader of the event at `about_sequence` failed; `retry_at` as for
    /// `NotificationFailed` (absent: final).
    NoticeFailed {
        about_sequence: u64,
        channel: String,
        reason: String,
        at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
    },
    /// A credential of the account's owner was decrypted from the vault: which field, for what,
    /// by whom, under which key version. Recorded before the decryption; never the value.
    CredentialAccessed {
        field: String,
        purpose: String,
        by: String,
        key_version: u32,
        at: DateTime<Utc>,
    },
    /// The account's orders go to `venue` from now on (the trader's settings, or an operator).
    VenueChanged {
        venue: Venue,
        by: String,
        at: DateTime<Utc>,
    },
    /// One of the owner's vault fields was stored anew, or removed (`cleared`). The field's
    /// name only: never its value, nor any part of it.
    CredentialChanged {
        field: String,
        #[serde(default)]
        cleared: bool,
        by: String,
        at: DateTime<Utc>,
    },
    /// The size an alert without one is given (`None`: the service's default).
    DefaultOrderSizeChanged {
        default_order_usd: Option<Decimal>,
        by: String,
        at: DateTime<Utc>,
    },
    /// New webhook token, uuid and secret were issued; the old ones stopped working.
    WebhookRotated { by: String, at: DateTime<Utc> },
    /// A test message was sent to the owner's notification channel at their request, and
    /// whether it arrived (`reason`: why not).
    TestNotificationSent {
        channel: String,
        delivered: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectionReason {
    /// The idempotency key was seen before; `original_signal_id` is the signal it produced.
    Duplicate {
        original_signal_id: SignalId,
    },
    Stale {
        detail: String,
    },
    /// The account is halted, or the operator's global emergency stop is engaged.
    Halted {
        detail: String,
    },
    /// The signal asks for what the account already holds (a target already met, a close when
    /// flat).
    NoChange {
        detail: String,
    },
}

impl AccountEvent {
    /// The signal this event belongs to, if any.
    pub fn signal_id(&self) -> Option<&SignalId> {
        use AccountEvent::*;
        match self {
            SignalReceived { signal_id, .. }
            | RiskApproved { signal_id, .. }
            | RiskRejected { signal_id, .. }
            | SignalRejected { signal_id, .. }
            | OrderSubmitted { signal_id, .. }
            | OrderFilled { signal_id, .. }
            | OrderPartiallyFilled { signal_id, .. }
            | OrderResting { signal_id, .. }
            | OrderExpired { signal_id, .. }
            | ExecutionAbandoned { signal_id, .. }
            | CompensationRequired { signal_id, .. }
            | PositionCompensated { signal_id, .. }
            | CompensationFailed { signal_id, .. }
            | OrderRejected { signal_id, .. }
            | OrderFailed { signal_id, .. }
            | OrderCancelled { signal_id, .. }
            | FillMismatch { signal_id, .. }
            | RiskReservationReleased { signal_id, .. }
            | PositionOpened { signal_id, .. }
            | PositionIncreased { signal_id, .. }
            | PositionReduced { signal_id, .. }
            | PositionClosed { signal_id, .. }
            | NotificationSent { signal_id, .. }
            | NotificationFailed { signal_id, .. } => Some(signal_id),
            AccountOpened { .. }
            | RiskLimitsChanged { .. }
            | TradingHalted { .. }
            | TradingResumed { .. }
            | PositionDriftDetected { .. }
            | PositionDriftCleared { .. }
            | NoticeSent { .. }
            | NoticeFailed { .. }
            | EmergencyStopNoted { .. }
            | CredentialAccessed { .. }
            | VenueChanged { .. }
            | CredentialChanged { .. }
            | DefaultOrderSizeChanged { .. }
            | WebhookRotated { .. }
            | TestNotificationSent { .. } => None,
        }
    }

    pub fn name(&self) -> &'static str {
        use AccountEvent::*;
        match self {
            AccountOpened { .. } => "AccountOpened",
            SignalReceived { .. } => "SignalReceived",
            RiskApproved { .. } => "RiskApproved",
            RiskRejected { .. } => "RiskRejected",
            SignalRejected { .. } => "SignalRejected",
            OrderSubmitted { .. } => "OrderSubmitted",
            OrderFilled { .. } => "OrderFilled",
            OrderPartiallyFilled { .. } => "OrderPartiallyFilled",
            OrderResting { .. } => "OrderResting",
            OrderExpired { .. } => "OrderExpired",
            ExecutionAbandoned { .. } => "ExecutionAbandoned",
            CompensationRequired { .. } => "CompensationRequired",
            PositionCompensated { .. } => "PositionCompensated",
            CompensationFailed { .. } => "CompensationFailed",
            OrderRejected { .. } => "OrderRejected",
            OrderFailed { .. } => "OrderFailed",
            OrderCancelled { .. } => "OrderCancelled",
            FillMismatch { .. } => "FillMismatch",
            RiskReservationReleased { .. } => "RiskReservationReleased",
            PositionOpened { .. } => "PositionOpened",
            PositionIncreased { .. } => "PositionIncreased",
            PositionReduced { .. } => "PositionReduced",
            PositionClosed { .. } => "PositionClosed",
            NotificationSent { .. } => "NotificationSent",
            NotificationFailed { .. } => "NotificationFailed",
            RiskLimitsChanged { .. } => "RiskLimitsChanged",
            TradingHalted { .. } => "TradingHalted",
            TradingResumed { .. } => "TradingResumed",
            PositionDriftDetected { .. } => "PositionDriftDetected",
            PositionDriftCleared { .. } => "PositionDriftCleared",
            NoticeSent { .. } => "NoticeSent",
            EmergencyStopNoted { .. } => "EmergencyStopNoted",
            NoticeFailed { .. } => "NoticeFailed",
            CredentialAccessed { .. } => "CredentialAccessed",
            VenueChanged { .. } => "VenueChanged",
            CredentialChanged { .. } => "CredentialChanged",
            DefaultOrderSizeChanged { .. } => "DefaultOrderSizeChanged",
            WebhookRotated { .. } => "WebhookRotated",
            TestNotificationSent { .. } => "TestNotificationSent",
        }
    }
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_a_signal_names_it_and_an_account_wide_one_does_not() {
        let at = chrono::DateTime::UNIX_EPOCH;
        let released = AccountEvent::RiskReservationReleased {
            signal_id: SignalId("s1".to_owned()),
            notional_usd: UsdAmount::new(Decimal::ONE),
        };
        assert_eq!(released.signal_id().map(|id| id.0.as_str()), Some("s1"));
        let rotated = AccountEvent::WebhookRotated {
            by: "owner".to_owned(),
            at,
        };
        assert_eq!(rotated.signal_id(), None);
    }

    #[test]
    fn events_are_stored_under_the_current_version() {
        let rotated = AccountEvent::WebhookRotated {
            by: "owner".to_owned(),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        assert_eq!(rotated.event_version(), EVENT_VERSION);
        assert_eq!(EVENT_VERSION, "2.0");
    }
}
