//! Bringing stored events written by older versions of this crate up to `EVENT_VERSION`.
//!
//! Every event is stored with its schema version. When an event's shape changes, its old version
//! gets an upcaster here that rewrites the stored JSON on load; the list is applied by the store on
//! every read path (command loads, catch-up readers, replay). Events whose shape did not change
//! keep their stored version and need none.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::{json, Map, Value};

use crate::{RiskLimits, EVENT_VERSION};

/// The 1.0 schema remembered keys for fixed windows, chosen by the key's prefix. Frozen here: the
/// service's current defaults may change, what 1.0 did may not.
const V1_FINGERPRINT_PREFIX: &str = "fp:";
const V1_FINGERPRINT_WINDOW_SECONDS: i64 = 120;
const V1_ID_WINDOW_HOURS: i64 = 24;

/// The upcasters for every stored event version older than `EVENT_VERSION`.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![
        Box::new(FromV1 {
            event_type: "AccountOpened",
            rewrite: account_opened_v1,
        }),
        Box::new(FromV1 {
            event_type: "SignalReceived",
            rewrite: signal_received_v1,
        }),
        Box::new(FromV1 {
            event_type: "SignalRejected",
            rewrite: signal_rejected_v1,
        }),
        Box::new(FromV1 {
            event_type: "RiskApproved",
            rewrite: risk_approved_v1,
        }),
    ]
}

/// Rewrites one event type's 1.0 payload (the fields inside its enum tag) to the current shape.
struct FromV1 {
    event_type: &'static str,
    rewrite: fn(&mut Map<String, Value>),
}

impl EventUpcaster for FromV1 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == self.event_type && event_version == "1.0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        // A payload of another shape is left alone: decoding it then fails with a clear error.
        if let Some(Value::Object(fields)) = event.payload.get_mut(self.event_type) {
            (self.rewrite)(fields);
        }
        event.event_version = EVENT_VERSION.to_owned();
        event
    }
}

/// Limits gained per-market size caps, the price-deviation breaker and the automatic halt; an
/// account opened before them gets today's defaults.
fn account_opened_v1(fields: &mut Map<String, Value>) {
    let defaults = RiskLimits::default();
    if let Some(Value::Object(limits)) = fields.get_mut("limits") {
        limits.entry("max_order_size").or_insert_with(|| json!({}));
        limits
            .entry("max_position_size")
            .or_insert_with(|| json!({}));
        limits
            .entry("max_price_deviation_bps")
            .or_insert_with(|| json!(defaults.max_price_deviation_bps));
        limits
            .entry("halt_after_consecutive_failures")
            .or_insert_with(|| json!(defaults.halt_after_consecutive_failures));
    }
}

/// A 1.0 signal was always a market order of `side`/`size`, without brackets or timestamps.
fn signal_received_v1(fields: &mut Map<String, Value>) {
    let side = fields.remove("side").unwrap_or(Value::Null);
    let size = fields.remove("size").unwrap_or(Value::Null);
    fields.insert(
        "instruction".to_owned(),
        json!({ "Order": { "side": side, "size": size } }),
    );
    fields.insert("order_type".to_owned(), json!("Market"));
    for absent in ["take_profit", "stop_loss", "alert_price", "sent_at"] {
        fields.insert(absent.to_owned(), Value::Null);
    }
    insert_v1_key_expiry(fields);
}

fn signal_rejected_v1(fields: &mut Map<String, Value>) {
    insert_v1_key_expiry(fields);
}

/// A 1.0 approval was a plain market order.
fn risk_approved_v1(fields: &mut Map<String, Value>) {
    fields.insert("reduce_only".to_owned(), json!(false));
    fields.insert("order_type".to_owned(), json!("Market"));
    fields.insert("take_profit".to_owned(), Value::Null);
    fields.insert("stop_loss".to_owned(), Value::Null);
}

/// When 1.0 would have forgotten the key: a fixed window after receipt, by the key's prefix.
fn insert_v1_key_expiry(fields: &mut Map<String, Value>) {
    let received_at = fields
        .get("received_at")
        .cloned()
        .and_then(|value| serde_json::from_value::<DateTime<Utc>>(value).ok());
    let fingerprint = fields
        .get("idempotency_key")
        .and_then(Value::as_str)
        .is_some_and(|key| key.starts_with(V1_FINGERPRINT_PREFIX));
    let window = if fingerprint {
        Duration::seconds(V1_FINGERPRINT_WINDOW_SECONDS)
    } else {
        Duration::hours(V1_ID_WINDOW_HOURS)
    };
    let expires_at = received_at
        .and_then(|at| at.checked_add_signed(window))
        .and_then(|at| serde_json::to_value(at).ok());
    if let Some(expires_at) = expires_at {
        fields.insert("key_expires_at".to_owned(), expires_at);
    }
}
