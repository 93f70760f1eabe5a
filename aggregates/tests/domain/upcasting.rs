//! Events stored by the 1.0 schema, as literal JSON, load as today's events.

use crate::common::*;
use aggregates::{
    upcasters, AccountEvent, OrderType, RejectionReason, RiskLimits, Side, SignalStage,
    TradeInstruction, TradingAccount, EVENT_VERSION,
};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};

/// A row as the store holds it.
fn stored(sequence: usize, event_type: &str, version: &str, payload: Value) -> SerializedEvent {
    SerializedEvent::new(
        "acct-1".to_owned(),
        sequence,
        TradingAccount::TYPE.to_owned(),
        event_type.to_owned(),
        version.to_owned(),
        payload,
        json!({}),
    )
}

/// What the store's read path does: every upcaster that applies, in order, then decoding.
fn load(row: SerializedEvent) -> (String, AccountEvent) {
    let upcast = upcasters().iter().fold(row, |row, upcaster| {
        if upcaster.can_upcast(&row.event_type, &row.event_version) {
            upcaster.upcast(row)
        } else {
            row
        }
    });
    let event = serde_json::from_value(upcast.payload.clone())
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", upcast.payload));
    (upcast.event_version, event)
}

fn v1_opened() -> SerializedEvent {
    stored(
        1,
        "AccountOpened",
        "1.0",
        json!({"AccountOpened": {
            "display_name": "alice",
            "limits": {
                "max_order_notional_usd": "100000",
                "max_position_notional_usd": "250000",
                "max_daily_volume_usd": "1000000",
                "allowed_markets": ["BTC-USD"]
            },
            "opened_at": "2024-03-01T08:00:00Z"
        }}),
    )
}

fn v1_received() -> SerializedEvent {
    stored(
        2,
        "SignalReceived",
        "1.0",
        json!({"SignalReceived": {
            "signal_id": "s1",
            "idempotency_key": "key-s1",
            "market": "BTC-USD",
            "side": "buy",
            "size": "0.5",
            "reference_price": "60000",
            "received_at": "2024-03-01T09:00:00Z"
        }}),
    )
}

fn v1_approved() -> SerializedEvent {
    stored(
        3,
        "RiskApproved",
        "1.0",
        json!({"RiskApproved": {
            "signal_id": "s1",
            "client_order_id": "lh-s1",
            "market": "BTC-USD",
            "side": "buy",
            "size": "0.5",
            "notional_usd": "30000"
        }}),
    )
}

fn v1_rejected() -> SerializedEvent {
    stored(
        4,
        "SignalRejected",
        "1.0",
        json!({"SignalRejected": {
            "signal_id": "s2",
            "idempotency_key": "fp:abc",
            "reason": {"kind": "halted", "detail": "trading halted by ops: maintenance"},
            "received_at": "2024-03-01T09:05:00Z"
        }}),
    )
}

#[test]
fn the_literals_are_in_the_shape_the_types_write() {
    // Decimals and times are stored as strings: the 1.0 literals below rely on it.
    assert_eq!(serde_json::to_value(dec("0.5")).unwrap(), json!("0.5"));
    assert_eq!(
        serde_json::to_value(at("2024-03-01T09:00:00Z")).unwrap(),
        json!("2024-03-01T09:00:00Z")
    );
    assert_eq!(serde_json::to_value(Side::Buy).unwrap(), json!("buy"));
}

#[test]
fn an_account_opened_under_1_0_gets_the_default_new_limits() {
    let (version, event) = load(v1_opened());
    assert_eq!(version, EVENT_VERSION);
    let expected = RiskLimits {
        allowed_markets: [market("BTC-USD")].into_iter().collect(),
        ..RiskLimits::default()
    };
    assert_eq!(
        event,
        AccountEvent::AccountOpened {
            display_name: "alice".to_owned(),
            limits: expected,
            opened_at: at("2024-03-01T08:00:00Z"),
        }
    );
}

#[test]
fn a_1_0_signal_received_becomes_a_market_order_instruction_with_the_old_window() {
    let (version, event) = load(v1_received());
    assert_eq!(version, "2.0");
    assert_eq!(
        event,
        AccountEvent::SignalReceived {
            signal_id: sid("s1"),
            idempotency_key: "key-s1".to_owned(),
            key_expires_at: at("2024-03-02T09:00:00Z"),
            market: market("BTC-USD"),
            instruction: TradeInstruction::Order {
                side: Side::Buy,
                size: qty("0.5"),
            },
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            alert_price: None,
            reference_price: dec("60000"),
            sent_at: None,
            received_at: at("2024-03-01T09:00:00Z"),
        }
    );
}

#[test]
fn a_1_0_risk_approval_is_a_plain_market_order() {
    let (_, event) = load(v1_approved());
    assert_eq!(
        event,
        AccountEvent::RiskApproved {
            signal_id: sid("s1"),
            client_order_id: coid("s1"),
            market: market("BTC-USD"),
            side: Side::Buy,
            size: qty("0.5"),
            reduce_only: false,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            notional_usd: usd("30000"),
        }
    );
}

#[test]
fn a_1_0_rejected_fingerprint_keeps_its_two_minute_window() {
    let (_, event) = load(v1_rejected());
    assert_eq!(
        event,
        AccountEvent::SignalRejected {
            signal_id: sid("s2"),
            idempotency_key: "fp:abc".to_owned(),
            key_expires_at: at("2024-03-01T09:07:00Z"),
            reason: RejectionReason::Halted {
                detail: "trading halted by ops: maintenance".to_owned()
            },
            received_at: at("2024-03-01T09:05:00Z"),
        }
    );
}

#[test]
fn events_whose_shape_did_not_change_load_as_stored() {
    let row = stored(
        5,
        "OrderFailed",
        "1.0",
        json!({"OrderFailed": {
            "signal_id": "s1",
            "client_order_id": "lh-s1",
            "reason": "exchange unreachable",
            "at": "2024-03-01T09:00:30Z"
        }}),
    );
    let (version, event) = load(row);
    assert_eq!(version, "1.0");
    assert_eq!(event.name(), "OrderFailed");
}

#[test]
fn current_events_are_left_alone() {
    let event = signal_received(&btc_target());
    let row = stored(
        2,
        &event.event_type(),
        &event.event_version(),
        serde_json::to_value(&event).unwrap(),
    );
    assert!(upcasters()
        .iter()
        .all(|u| !u.can_upcast(&row.event_type, &row.event_version)));
    assert_eq!(load(row).1, event);
}

fn btc_target() -> aggregates::SignalIntent {
    target("s1", "BTC-USD", "-1", "60000", "2024-03-01T09:00:00Z")
}

#[test]
fn a_1_0_history_replays_into_an_account_with_the_order_in_flight() {
    let history: Vec<AccountEvent> = [v1_opened(), v1_received(), v1_approved()]
        .into_iter()
        .map(|row| load(row).1)
        .collect();
    let state = replay(&history);
    let in_flight = &state.in_flight[&sid("s1")];
    assert_eq!(in_flight.stage, SignalStage::AwaitingExecution);
    assert_eq!(in_flight.size, qty("0.5"));
    assert!(!in_flight.reduce_only);
    assert_eq!(
        remembered_keys(&history)
            .recall("key-s1")
            .unwrap()
            .expires_at,
        at("2024-03-02T09:00:00Z")
    );
    // And it goes on deciding as a 2.0 account would: the same key is still a duplicate.
    let resend = with_key(
        intent(
            "s9",
            "BTC-USD",
            Side::Buy,
            "0.5",
            "60000",
            "2024-03-01T10:00:00Z",
        ),
        "key-s1",
    );
    assert!(matches!(
        state
            .decide(receive(&recalling(&history, resend.clone())))
            .unwrap()
            .as_slice(),
        [AccountEvent::SignalRejected {
            reason: RejectionReason::Duplicate { .. },
            ..
        }]
    ));
}
