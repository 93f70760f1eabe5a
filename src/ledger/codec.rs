//! Between the domain's events and the store's serialized rows: upcasting, metadata, sequences.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use serde::Deserialize;

use aggregates::{AccountEvent, TradingAccount, EVENT_VERSION};

/// Who or what caused an event, and when it was recorded. Stored as the event's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    pub recorded_at: DateTime<Utc>,
    /// `webhook`, `execution`, `cli`, ...
    pub actor: String,
    pub request_id: Option<String>,
}

impl EventContext {
    pub fn new(actor: &str, recorded_at: DateTime<Utc>) -> Self {
        Self {
            recorded_at,
            actor: actor.to_owned(),
            request_id: None,
        }
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    fn to_metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::from([
            ("recorded_at".to_owned(), self.recorded_at.to_rfc3339()),
            ("actor".to_owned(), self.actor.clone()),
        ]);
        if let Some(request_id) = &self.request_id {
            metadata.insert("request_id".to_owned(), request_id.clone());
        }
        metadata
    }
}

/// An event as read back from the ledger, upcast to the current schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub account_id: String,
    pub sequence: usize,
    pub event_type: String,
    pub stored_version: String,
    pub recorded_at: Option<DateTime<Utc>>,
    pub metadata: HashMap<String, String>,
    pub event: AccountEvent,
}

#[derive(Debug, thiserror::Error)]
#[error("event {account_id}#{sequence} ({event_type}) cannot be read: {reason}")]
pub struct DecodeError {
    pub account_id: String,
    pub sequence: usize,
    pub event_type: String,
    pub reason: String,
}

pub fn encode(
    account_id: &str,
    first_sequence: usize,
    events: &[AccountEvent],
    context: &EventContext,
) -> Result<Vec<SerializedEvent>, serde_json::Error> {
    encode_for::<TradingAccount>(account_id, first_sequence, events, context)
}

/// Serializes events of any aggregate the ledger stores, numbered from `first_sequence`.
pub fn encode_for<A: Aggregate>(
    aggregate_id: &str,
    first_sequence: usize,
    events: &[A::Event],
    context: &EventContext,
) -> Result<Vec<SerializedEvent>, serde_json::Error> {
    let metadata = serde_json::to_value(context.to_metadata())?;
    events
        .iter()
        .enumerate()
        .map(|(offset, event)| {
            Ok(SerializedEvent {
                aggregate_id: aggregate_id.to_owned(),
                sequence: first_sequence + offset,
                aggregate_type: A::TYPE.to_owned(),
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(event)?,
                metadata: metadata.clone(),
            })
        })
        .collect()
}

/// Decodes a stored event, read in place: it is copied only when an upcaster rewrites it.
pub fn decode(
    stored: &SerializedEvent,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<RecordedEvent, DecodeError> {
    let stored_version = stored.event_version.clone();
    let upcast = upcasters
        .iter()
        .fold(Cow::Borrowed(stored), |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                Cow::Owned(upcaster.upcast(event.into_owned()))
            } else {
                event
            }
        });
    let fail = |reason: String| DecodeError {
        account_id: upcast.aggregate_id.clone(),
        sequence: upcast.sequence,
        event_type: upcast.event_type.clone(),
        reason,
    };
    // A later release's schema may mean something else by the same fields: never guess.
    if is_newer(&upcast.event_version, EVENT_VERSION) {
        return Err(fail(format!(
            "version {} was written by a newer release (this one reads up to {EVENT_VERSION})",
            upcast.event_version
        )));
    }
    let event = AccountEvent::deserialize(&upcast.payload).map_err(|e| fail(e.to_string()))?;
    let metadata = HashMap::<String, String>::deserialize(&upcast.metadata)
        .map_err(|e| fail(e.to_string()))?;
    let recorded_at = metadata
        .get("recorded_at")
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc));
    Ok(RecordedEvent {
        account_id: upcast.aggregate_id.clone(),
        sequence: upcast.sequence,
        event_type: upcast.event_type.clone(),
        stored_version,
        recorded_at,
        metadata,
        event,
    })
}

/// Whether `version` ("major.minor[.patch]") is later than `known`; one that cannot be read counts
/// as later.
fn is_newer(version: &str, known: &str) -> bool {
    let parse = |text: &str| -> Option<Vec<u32>> {
        let mut parts = text
            .split('.')
            .map(|part| part.parse().ok())
            .collect::<Option<Vec<u32>>>()?;
        // "1.0" and "1.0.0" are the same version.
        while parts.last() == Some(&0) {
            parts.pop();
        }
        Some(parts)
    };
    match (parse(version), parse(known)) {
        (Some(version), Some(known)) => version > known,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::is_newer;

    #[test]
    fn only_versions_after_this_release_are_newer() {
        assert!(!is_newer("1.0", "2.0"));
        assert!(!is_newer("2.0", "2.0"));
        assert!(!is_newer("1.0.0", "2.0"));
        assert!(!is_newer("0.9", "2.0"));
        assert!(!is_newer("2", "2.0"));
        assert!(is_newer("2.1", "2.0"));
        assert!(is_newer("99", "2.0"));
        assert!(is_newer("not a version", "2.0"));
    }
}
