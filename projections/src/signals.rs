//! Signal status: every signal with where it stands, its outcome and the events that tell its
//! story.

use std::collections::BTreeMap;

use aggregates::{AccountEvent, RejectionReason};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Envelope;

/// (account id, signal id).
pub type SignalKey = (String, String);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalEventRef {
    pub sequence: usize,
    pub event_type: String,
    pub recorded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalRow {
    /// Where the signal stands: `received`, then `accepted`/`rejected`/`duplicate`/`stale`/
    /// `halted`, then `submitted`, `resting` (a limit order on the book, its notice sent or not),
    /// `filled`/`partially_filled`/`expired`/`failed`/`cancelled`/`abandoned`
    /// (its deadline passed before the exchange took it)/`mismatch` (the exchange reported a fill
    /// that is not the order's), `compensating` while the position a fill left unprotected is
    /// being closed, then `compensated`/`compensation_failed`, and `notified` last.
    pub status: String,
    /// The decision or execution result, which notification does not overwrite: `accepted`,
    /// `rejected`, `duplicate`, `stale`, `halted`, `filled`, `partially_filled`, `failed`,
    /// `cancelled`, `abandoned`, `mismatch`, `compensated`, `compensation_failed`, or `received`
    /// before any.
    pub outcome: String,
    pub market: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    /// When the ledger recorded the signal's latest event.
    pub updated_at: Option<DateTime<Utc>>,
    /// Why it was rejected or failed, in the ledger's words.
    pub detail: Option<String>,
    /// Later alerts with the same key, recorded as duplicates of this signal.
    pub duplicates: u64,
    pub events: Vec<SignalEventRef>,
}

pub fn key(envelope: &Envelope) -> Option<SignalKey> {
    let signal_id = envelope.event.signal_id()?;
    Some((envelope.account_id.clone(), signal_id.0.clone()))
}

pub fn apply(rows: &mut BTreeMap<SignalKey, SignalRow>, envelope: &Envelope) {
    let Some(key) = key(envelope) else { return };
    let row = rows.entry(key).or_default();
    let known = !row.events.is_empty();
    row.events.push(SignalEventRef {
        sequence: envelope.sequence,
        event_type: envelope.event.name().to_owned(),
        recorded_at: envelope.recorded_at,
    });
    if envelope.recorded_at.is_some() {
        row.updated_at = envelope.recorded_at;
    }
    let conclude = |row: &mut SignalRow, status: &str, detail: Option<String>| {
        row.status = status.to_owned();
        row.outcome = status.to_owned();
        if detail.is_some() {
            row.detail = detail;
        }
    };
    use AccountEvent::*;
    match &envelope.event {
        SignalReceived {
            market,
            received_at,
            ..
        } => {
            row.market = Some(market.as_str().to_owned());
            row.received_at = Some(*received_at);
            conclude(row, "received", None);
        }
        RiskApproved { market, .. } => {
            row.market = Some(market.as_str().to_owned());
            conclude(row, "accepted", None);
        }
        RiskRejected { rule, detail, .. } => {
            conclude(row, "rejected", Some(format!("{rule}: {detail}")));
        }
        // A resent alert maps to its original's signal id: it is counted there, and the
        // original's own status stands.
        SignalRejected {
            reason: RejectionReason::Duplicate { .. },
            ..
        } if known => row.duplicates += 1,
        SignalRejected {
            reason,
            received_at,
            ..
        } => {
            row.received_at = row.received_at.or(Some(*received_at));
            let (status, detail) = match reason {
                RejectionReason::Duplicate { original_signal_id } => (
                    "duplicate",
                    format!("duplicate of signal {original_signal_id}"),
                ),
                RejectionReason::Stale { detail } => ("stale", detail.clone()),
                RejectionReason::Halted { detail } => ("halted", detail.clone()),
                RejectionReason::NoChange { detail } => ("rejected", detail.clone()),
            };
            conclude(row, status, Some(detail));
        }
        OrderSubmitted { market, .. } => {
            row.market = Some(market.as_str().to_owned());
            row.status = "submitted".to_owned();
        }
        OrderFilled { .. } => conclude(row, "filled", None),
        OrderPartiallyFilled { size, unfilled, .. } => conclude(
            row,
            "partially_filled",
            Some(format!(
                "{size} filled; the exchange cancelled the other {unfilled}"
            )),
        ),
        OrderResting { good_til, .. } => {
            row.status = "resting".to_owned();
            row.outcome = "resting".to_owned();
            row.detail = Some(format!("on the book until {}", good_til.to_rfc3339()));
        }
        OrderExpired { reason, .. } => conclude(row, "expired", Some(reason.clone())),
        ExecutionAbandoned { reason, .. } => conclude(row, "abandoned", Some(reason.clone())),
        // The fill stands as the outcome until the close is recorded.
        CompensationRequired { reason, .. } => {
            row.status = "compensating".to_owned();
            row.detail = Some(reason.clone());
        }
        PositionCompensated { size, price, .. } => conclude(
            row,
            "compensated",
            Some(format!(
                "the position it opened was closed: {size} at {price}"
            )),
        ),
        CompensationFailed { reason, .. } => {
            conclude(row, "compensation_failed", Some(reason.clone()));
        }
        OrderRejected { reason, .. } | OrderFailed { reason, .. } => {
            conclude(row, "failed", Some(reason.clone()));
        }
        OrderCancelled { reason, .. } => conclude(row, "cancelled", Some(reason.clone())),
        FillMismatch { reason, .. } => conclude(row, "mismatch", Some(reason.clone())),
        // The notice that an order rests tells nothing new of where it stands.
        NotificationSent { .. } | NotificationFailed { .. } if row.status == "resting" => {}
        NotificationSent { .. } | NotificationFailed { .. } => {
            row.status = "notified".to_owned();
        }
        _ => {}
    }
    if row.outcome.is_empty() {
        // A signal first seen mid-story (its start lies before the log's beginning).
        row.outcome = row.status.clone();
    }
}
