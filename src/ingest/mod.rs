//! From an authenticated alert body to a recorded signal: parse, normalise, derive the idempotency
//! key and signal id, and run `ReceiveSignal` on the account. Returns only once the ledger has
//! durably recorded the outcome.

pub mod payload;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use aggregates::{
    AccountCommand, AccountEvent, RejectionReason, SignalId, SignalIntent, FINGERPRINT_KEY_PREFIX,
};

pub use self::payload::{AlertPayload, PayloadError, MAX_ID_CHARS};
use crate::exchange::Exchange;
use crate::ledger::{EventContext, Ledger, LedgerError};
use crate::markets::{MarketError, MarketList};

/// Namespace of signal ids: UUIDv5 of (account, idempotency key) under it.
const SIGNAL_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_686f_6f6b_2d73_6967_6e6c);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptStatus {
    Accepted,
    Duplicate,
    Rejected { reason: String },
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
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

pub struct Ingest {
    ledger: Ledger,
    markets: MarketList,
    exchange: Arc<dyn Exchange>,
}

impl Ingest {
    pub fn new(ledger: Ledger, markets: MarketList, exchange: Arc<dyn Exchange>) -> Self {
        Self {
            ledger,
            markets,
            exchange,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub async fn receive(
        &self,
        account_id: &str,
        body: &[u8],
        received_at: DateTime<Utc>,
        request_id: Option<String>,
    ) -> Result<Receipt, IngestError> {
        let alert = AlertPayload::parse(body)?;
        let spec = self.markets.normalize(&alert.symbol)?;
        let size = spec.quantize_size(alert.size)?;
        let reference_price = self
            .exchange
            .reference_price(&spec.market)
            .ok_or_else(|| IngestError::NoReferencePrice(spec.market.to_string()))?;
        let (idempotency_key, signal_id) = match &alert.id {
            Some(id) => {
                let key = format!("id:{id}");
                let signal_id = signal_id_for(account_id, &key);
                (key, signal_id)
            }
            None => {
                let key = fingerprint(
                    &spec.market.to_string(),
                    alert.side.as_str(),
                    &size.to_string(),
                );
                // A fingerprint is forgotten after minutes and the same alert may then be a new
                // trade, which must not reuse the old signal's id (and so its client order id).
                let unique = format!("{key}@{}", received_at.timestamp_micros());
                (key, signal_id_for(account_id, &unique))
            }
        };
        let command = AccountCommand::ReceiveSignal(SignalIntent {
            signal_id: signal_id.clone(),
            idempotency_key,
            market: spec.market.clone(),
            side: alert.side,
            size,
            reference_price,
            received_at,
        });
        let context = EventContext::new("webhook", received_at).with_request_id(request_id);
        // The command runs in its own task: if the HTTP request is cancelled, the signal is still
        // recorded whole rather than abandoned halfway through an append.
        let ledger = self.ledger.clone();
        let account_id = account_id.to_owned();
        let committed =
            tokio::spawn(async move { ledger.execute(&account_id, command, &context).await })
                .await
                .map_err(|error| LedgerError::Store(format!("signal task failed: {error}")))??;
        Ok(receipt(signal_id, &committed.events))
    }
}

/// The id a signal gets: the same for every resend of the same alert to the same account.
pub fn signal_id_for(account_id: &str, idempotency_key: &str) -> SignalId {
    let name = format!("{account_id}/{idempotency_key}");
    SignalId(Uuid::new_v5(&SIGNAL_ID_NAMESPACE, name.as_bytes()).to_string())
}

/// An alert without an id is known by what it asks for.
fn fingerprint(market: &str, side: &str, size: &str) -> String {
    let digest = Sha256::digest(format!("{market}|{side}|{size}").as_bytes());
    format!("{FINGERPRINT_KEY_PREFIX}{}", hex::encode(&digest[..16]))
}

fn receipt(signal_id: SignalId, events: &[AccountEvent]) -> Receipt {
    for event in events {
        let status = match event {
            AccountEvent::RiskApproved { .. } => ReceiptStatus::Accepted,
            AccountEvent::RiskRejected { detail, .. } => ReceiptStatus::Rejected {
                reason: detail.clone(),
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
                reason: RejectionReason::Halted { detail } | RejectionReason::Stale { detail },
                ..
            } => ReceiptStatus::Rejected {
                reason: detail.clone(),
            },
            _ => continue,
        };
        return Receipt { status, signal_id };
    }
    Receipt {
        status: ReceiptStatus::Rejected {
            reason: "the account recorded nothing for this signal".to_owned(),
        },
        signal_id,
    }
}
