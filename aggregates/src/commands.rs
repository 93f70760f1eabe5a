//! What can be asked of a `TradingAccount`. Every command carries the time and ids it needs, so the
//! aggregate stays deterministic.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{ClientOrderId, Market, Quantity, RiskLimits, Side, SignalId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountCommand {
    OpenAccount {
        display_name: String,
        limits: RiskLimits,
        opened_at: DateTime<Utc>,
    },
    /// A parsed, authenticated alert. The aggregate decides: duplicate, halted, risk-rejected or
    /// approved.
    ReceiveSignal(SignalIntent),
    /// The execution saga reports what the exchange did with the signal's order.
    RecordExecution(ExecutionReport),
    /// The execution saga reports whether the user was told about the signal's outcome.
    RecordNotification {
        signal_id: SignalId,
        channel: String,
        outcome: NotificationOutcome,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalIntent {
    pub signal_id: SignalId,
    /// The alert's own id, or a canonical fingerprint of it when it has none.
    pub idempotency_key: String,
    pub market: Market,
    pub side: Side,
    pub size: Quantity,
    /// The price the risk checks value the order at (the exchange's mark price at receipt).
    pub reference_price: Decimal,
    pub received_at: DateTime<Utc>,
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
}

impl ExecutionReport {
    pub fn signal_id(&self) -> &SignalId {
        match self {
            Self::Filled { signal_id, .. }
            | Self::Rejected { signal_id, .. }
            | Self::Failed { signal_id, .. } => signal_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub price: Decimal,
    pub size: Quantity,
    pub fee: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationOutcome {
    Sent,
    Failed { reason: String },
}
