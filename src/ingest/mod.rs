//! From an authenticated alert body to a recorded signal: parse, normalise, derive the idempotency
//! key, and run `ReceiveSignal` on the account under a signal id derived from where the account
//! records it. Returns only once the ledger has durably recorded the outcome.

mod intent;
pub mod payload;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use aggregates::{
    AccountCommand, AccountEvent, RejectionReason, SignalId, SignalIntent, SignalQuota,
};

use self::intent::Sizing;
pub use self::intent::{signal_id_for, KeyWindows};
pub use self::payload::{payload_format, PayloadError, MAX_ID_CHARS};
use crate::emergency::EmergencySwitch;
use crate::exchange::{Exchange, ExchangeError};
use crate::ledger::{EventContext, Ledger, LedgerError};
use crate::markets::{MarketError, MarketList};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptStatus {
    Accepted,
    Duplicate,
    /// `reason` is a code (see `receipt`), never the event's text: a halt's reason and who halted
    /// are an operator's words, not for whoever holds a webhook URL. `rule` names the risk rule.
    Rejected {
        reason: &'static str,
        rule: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub status: ReceiptStatus,
    pub signal_id: SignalId,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Market(#[from] MarketError),
    #[error("no reference price for {0}")]
    NoReferencePrice(String),
    /// The size is a percent of equity and the exchange could not say what the equity is.
    #[error("the account's equity is unknown: {0}")]
    EquityUnknown(ExchangeError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// How the caller let an alert in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admission {
    /// The user's signal quota, checked by their account; `None`: unlimited.
    pub quota: Option<SignalQuota>,
    /// A trial (the settings' test signal): paper accounts only.
    pub paper_only: bool,
}

/// What ingest applies where an alert says nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    pub key_windows: KeyWindows,
    /// How far behind its own `timestamp` an alert may arrive when it names no `max_lag`.
    pub default_max_lag_seconds: u32,
    /// The order size of an alert that gives none.
    pub default_order_usd: Decimal,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            key_windows: KeyWindows::default(),
            default_max_lag_seconds: 60,
            default_order_usd: Decimal::ONE_HUNDRED,
        }
    }
}

pub struct Ingest {
    ledger: Ledger,
    markets: MarketList,
    exchange: Arc<dyn Exchange>,
    emergency: Arc<EmergencySwitch>,
    config: IngestConfig,
}

impl Ingest {
    pub fn new(
        ledger: Ledger,
        markets: MarketList,
        exchange: Arc<dyn Exchange>,
        emergency: Arc<EmergencySwitch>,
    ) -> Self {
        Self {
            ledger,
            markets,
            exchange,
            emergency,
            config: IngestConfig::default(),
        }
    }

    pub fn with_config(mut self, config: IngestConfig) -> Self {
        self.config = config;
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// An alert with no quota, as a test or a tool would send it; the webhook uses
    /// `receive_admitted`.
    pub async fn receive(
        &self,
        account_id: &str,
        body: &[u8],
        received_at: DateTime<Utc>,
        request_id: Option<String>,
    ) -> Result<Receipt, IngestError> {
        self.receive_admitted(
            account_id,
            body,
            received_at,
            request_id,
            Admission::default(),
        )
        .await
    }

    /// An alert as its caller admitted it: held to the user's quota by the account (see
    /// `aggregates` quota.rs; spent: `AccountError::QuotaSpent`, nothing recorded) and, for a
    /// trial, refused unless the account trades on paper (`AccountError::NotOnPaper`).
    pub async fn receive_admitted(
        &self,
        account_id: &str,
        body: &[u8],
        received_at: DateTime<Utc>,
        request_id: Option<String>,
        admission: Admission,
    ) -> Result<Receipt, IngestError> {
        let alert = payload::parse(body)?;
        let spec = self.markets.normalize(&alert.symbol)?;
        let reference_price = self
            .exchange
            .reference_price(&spec.market)
            .ok_or_else(|| IngestError::NoReferencePrice(spec.market.to_string()))?;
        let equity_usd = if intent::needs_equity(&alert.action) {
            let equity = self.exchange.account_equity(account_id).await;
            Some(equity.map_err(IngestError::EquityUnknown)?)
        } else {
            None
        };
        // The account's own default when it set one (read only when the alert needs it).
        let default_order_usd = if intent::needs_default_size(&alert.action) {
            self.ledger.default_order_usd(account_id).await?
        } else {
            None
        };
        let sizing = Sizing {
            reference_price,
            default_order_usd: default_order_usd.unwrap_or(self.config.default_order_usd),
            equity_usd,
        };
        let instruction = intent::instruction(spec, alert.action, &sizing)?;
        let order_type = intent::order_type(spec, alert.order_type)?;
        let take_profit = intent::price(spec, alert.take_profit)?;
        let stop_loss = intent::price(spec, alert.stop_loss)?;
        let identity = intent::identity(
            alert.id.as_deref(),
            &intent::Request {
                market: &spec.market,
                instruction: &instruction,
                order_type: &order_type,
                take_profit,
                stop_loss,
            },
            received_at,
            self.config.key_windows,
        );
        let market = spec.market.clone();
        let max_lag_seconds = alert
            .max_lag_seconds
            .unwrap_or(self.config.default_max_lag_seconds);
        let emergency_stop = self.emergency.engaged();
        let key = identity.idempotency_key.clone();
        let intent = move |signal_id| SignalIntent {
            signal_id,
            idempotency_key: identity.idempotency_key.clone(),
            key_expires_at: identity.key_expires_at,
            market: market.clone(),
            instruction: instruction.clone(),
            order_type: order_type.clone(),
            take_profit,
            stop_loss,
            alert_price: alert.price,
            reference_price,
            sent_at: alert.timestamp,
            max_lag_seconds,
            emergency_stop: emergency_stop.clone(),
            paper_only: admission.paper_only,
            quota: admission.quota,
            received_at,
            earlier_use: None,
        };
        let context = EventContext::new("webhook", received_at).with_request_id(request_id);
        // Named by the sequence its first event takes: an id reused after its window is a new
        // signal with a new client order id, never the old one's. The ledger runs the command in
        // a task of its own: a cancelled HTTP request still has its signal recorded whole.
        let named = account_id.to_owned();
        let numbered =
            move |sequence| AccountCommand::ReceiveSignal(intent(signal_id_for(&named, sequence)));
        let committed = self
            .ledger
            .execute_numbered(account_id, Some(key), numbered, &context)
            .await?;
        // A resend is recorded under its original's id, anything else under the new one.
        let signal_id = committed
            .events
            .first()
            .and_then(AccountEvent::signal_id)
            .cloned()
            .unwrap_or_else(|| signal_id_for(account_id, committed.version + 1));
        Ok(receipt(signal_id, &committed.events))
    }
}

/// What the webhook caller is told: `accepted`, `duplicate`, or a rejection by code — `halted`
/// (the account), `emergency_stop` (everyone), `stale`, `no_change`, `risk_rejected` with its rule.
/// The details stay in the ledger, for the trader's API and the audit trail.
fn receipt(signal_id: SignalId, events: &[AccountEvent]) -> Receipt {
    let rejected = |reason| ReceiptStatus::Rejected { reason, rule: None };
    for event in events {
        let status = match event {
            AccountEvent::RiskApproved { .. } => ReceiptStatus::Accepted,
            AccountEvent::RiskRejected { rule, .. } => ReceiptStatus::Rejected {
                reason: "risk_rejected",
                rule: Some(rule.clone()),
            },
            AccountEvent::SignalRejected {
                reason: RejectionReason::Duplicate { original_signal_id },
                ..
            } => {
                return Receipt {
                    status: ReceiptStatus::Duplicate,
                    signal_id: original_signal_id.clone(),
                }
            }
            AccountEvent::SignalRejected {
                reason: RejectionReason::Halted { detail },
                ..
            } => rejected(halt_code(detail)),
            AccountEvent::SignalRejected {
                reason: RejectionReason::Stale { .. },
                ..
            } => rejected("stale"),
            AccountEvent::SignalRejected {
                reason: RejectionReason::NoChange { .. },
                ..
            } => rejected("no_change"),
            _ => continue,
        };
        return Receipt { status, signal_id };
    }
    Receipt {
        status: rejected("not_recorded"),
        signal_id,
    }
}

/// The aggregate checks the account's own halt before the emergency stop and words them
/// "trading halted by ..." and "emergency stop engaged by ..." (tests/it/hardening.rs holds both).
fn halt_code(detail: &str) -> &'static str {
    if detail.starts_with("emergency stop") {
        "emergency_stop"
    } else {
        "halted"
    }
}
