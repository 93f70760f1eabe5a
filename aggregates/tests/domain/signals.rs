//! How a signal is taken up: the decision order (duplicate, in flight, halt, emergency stop,
//! staleness), how targets and closes resolve into one order, and what `SignalReceived` records.

use crate::common::*;
use aggregates::{
    AccountEvent, Halt, OrderType, RejectionReason, RiskLimits, Side, SignalIntent, SignalStage,
    TradeInstruction, TradingAccount,
};
use chrono::Duration;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};

fn given(events: Vec<AccountEvent>) -> AggregateTestExecutor<TradingAccount> {
    TestFramework::<TradingAccount>::with(()).given(events)
}

/// Limits wide enough that only the decision under test matters.
fn generous() -> RiskLimits {
    limits("10000000", "10000000", "100000000", &[])
}

fn after(commands: Vec<aggregates::AccountCommand>) -> Vec<AccountEvent> {
    history(std::iter::once(open_command(generous())).chain(commands))
}

fn decide(history: &[AccountEvent], intent: &SignalIntent) -> Vec<AccountEvent> {
    replay(history)
        .decide(receive(&recalling(history, intent.clone())))
        .expect("decided")
}

fn btc_buy(id: &str, size: &str, when: &str) -> SignalIntent {
    intent(id, "BTC-USD", Side::Buy, size, "60000", when)
}

/// An account holding `size` (signed) BTC bought or sold at 60000.
fn holding_btc(size: &str) -> Vec<AccountEvent> {
    let open = target("s0", "BTC-USD", size, "60000", "2024-03-01T08:30:00Z");
    let unsigned = size.trim_start_matches('-');
    let side = if size.starts_with('-') {
        Side::Sell
    } else {
        Side::Buy
    };
    after(vec![
        receive(&open),
        filled_in(
            "BTC-USD",
            side,
            "s0",
            "60000",
            unsigned,
            "0",
            "2024-03-01T08:30:01Z",
        ),
    ])
}

fn the_rejection(events: &[AccountEvent]) -> &RejectionReason {
    match events {
        [AccountEvent::SignalRejected { reason, .. }] => reason,
        other => panic!("expected one SignalRejected, got {other:?}"),
    }
}

fn ops_stop() -> Halt {
    Halt {
        by: "ops".to_owned(),
        reason: "exchange outage".to_owned(),
        at: at("2024-03-01T08:59:00Z"),
    }
}

// ----------------------------------------------------------------------------------------------
// Emergency stop and the order of decisions

#[tokio::test]
async fn the_emergency_stop_rejects_a_signal_as_halted_saying_who_and_why() {
    let mut signal = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    signal.emergency_stop = Some(ops_stop());
    given(after(vec![]))
        .when_async(receive(&signal))
        .await
        .then_expect_events(vec![signal_rejected(
            &signal,
            RejectionReason::Halted {
                detail: "emergency stop engaged by ops: exchange outage".to_owned(),
            },
        )]);
}

#[test]
fn a_resend_during_the_emergency_stop_is_still_a_duplicate() {
    let mut first = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    first.emergency_stop = Some(ops_stop());
    let history = after(vec![receive(&first)]);
    let resend = with_key(btc_buy("s2", "0.1", "2024-03-01T09:00:05Z"), "key-s1");
    assert_eq!(
        the_rejection(&decide(&history, &resend)),
        &RejectionReason::Duplicate {
            original_signal_id: sid("s1")
        }
    );
}

#[test]
fn an_account_halt_is_reported_before_the_emergency_stop() {
    let history = after(vec![halt("2024-03-01T08:50:00Z")]);
    let mut signal = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    signal.emergency_stop = Some(ops_stop());
    assert_eq!(
        the_rejection(&decide(&history, &signal)),
        &RejectionReason::Halted {
            detail: "trading halted by ops: maintenance".to_owned()
        }
    );
}

#[test]
fn the_emergency_stop_is_reported_before_staleness() {
    let mut signal = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    signal.emergency_stop = Some(ops_stop());
    signal.sent_at = Some(at("2024-03-01T08:00:00Z"));
    assert!(matches!(
        the_rejection(&decide(&after(vec![]), &signal)),
        RejectionReason::Halted { .. }
    ));
}

// ----------------------------------------------------------------------------------------------
// Staleness

#[tokio::test]
async fn an_alert_older_than_its_max_lag_is_rejected_as_stale_naming_the_lag() {
    let mut signal = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    signal.sent_at = Some(at("2024-03-01T08:59:28.500Z"));
    signal.max_lag_seconds = 30;
    given(after(vec![]))
        .when_async(receive(&signal))
        .await
        .then_expect_events(vec![signal_rejected(
            &signal,
            RejectionReason::Stale {
                detail: "the alert was sent 31.5 s before it arrived, more than the allowed lag \
                         of 30 s"
                    .to_owned(),
            },
        )]);
}

#[test]
fn an_alert_exactly_at_its_max_lag_is_taken_up() {
    let mut signal = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    signal.sent_at = Some(signal.received_at - Duration::seconds(30));
    signal.max_lag_seconds = 30;
    let events = decide(&after(vec![]), &signal);
    assert_eq!(
        events,
        vec![signal_received(&signal), risk_approved(&signal, "6000")]
    );
}

#[test]
fn an_alert_stamped_too_far_in_the_future_is_stale_and_a_little_ahead_is_not() {
    let mut ahead = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    ahead.max_lag_seconds = 10;
    ahead.sent_at = Some(ahead.received_at + Duration::seconds(11));
    match the_rejection(&decide(&after(vec![]), &ahead)) {
        RejectionReason::Stale { detail } => {
            assert!(detail.contains("11 s in the future"), "{detail}")
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    ahead.sent_at = Some(ahead.received_at + Duration::seconds(10));
    assert_eq!(decide(&after(vec![]), &ahead).len(), 2);
}

#[test]
fn an_alert_without_a_timestamp_is_never_stale() {
    let mut signal = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    signal.max_lag_seconds = 0;
    assert_eq!(decide(&after(vec![]), &signal).len(), 2);
}

#[test]
fn a_stale_alerts_key_is_remembered_so_its_resend_is_a_duplicate() {
    let mut stale = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    stale.sent_at = Some(at("2024-03-01T08:00:00Z"));
    let history = after(vec![receive(&stale)]);
    let mut resend = with_key(btc_buy("s2", "0.1", "2024-03-01T09:00:05Z"), "key-s1");
    resend.sent_at = stale.sent_at;
    assert!(matches!(
        the_rejection(&decide(&history, &resend)),
        RejectionReason::Duplicate { .. }
    ));
}

// ----------------------------------------------------------------------------------------------
// The key's own expiry

#[test]
fn a_key_is_remembered_until_the_expiry_its_signal_carries() {
    let mut first = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    first.key_expires_at = at("2024-03-01T09:10:00Z");
    let history = after(vec![receive(&first)]);
    let inside = with_key(btc_buy("s2", "0.1", "2024-03-01T09:09:59Z"), "key-s1");
    assert!(matches!(
        the_rejection(&decide(&history, &inside)),
        RejectionReason::Duplicate { .. }
    ));
    let outside = with_key(btc_buy("s3", "0.1", "2024-03-01T09:10:00Z"), "key-s1");
    assert_eq!(
        decide(&history, &outside),
        vec![signal_received(&outside), risk_approved(&outside, "6000")]
    );
}

/// The memory of keys keeps only those still live: one that has expired when a signal arrives
/// is dropped from it then, so a replay does not keep a day of dead keys.
#[test]
fn a_key_is_forgotten_when_a_signal_arrives_at_its_expiry_and_not_a_second_before() {
    let mut first = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    first.key_expires_at = at("2024-03-01T09:10:00Z");
    let before = btc_buy("s2", "0.1", "2024-03-01T09:09:59Z");
    let keys = remembered_keys(&after(vec![receive(&first), receive(&before)]));
    assert!(keys.recall("key-s1").is_some());
    let at_expiry = btc_buy("s3", "0.1", "2024-03-01T09:10:00Z");
    let keys = remembered_keys(&after(vec![receive(&first), receive(&at_expiry)]));
    assert!(keys.recall("key-s1").is_none());
    assert!(keys.recall("key-s3").is_some());
    assert_eq!(keys.len(), 1);
}

/// The account's state keeps no keys at all: a day of them was most of what a busy account
/// carried, cloned per command and written into every snapshot.
#[test]
fn the_accounts_state_does_not_grow_with_the_keys_it_has_used() {
    // Signals that ask for nothing new: each is counted and its key used, none stays in flight.
    let no_change = |n: usize| {
        target(
            &format!("s{n}"),
            "BTC-USD",
            "0",
            "60000",
            "2024-03-01T09:00:00Z",
        )
    };
    let one = serde_json::to_string(&replay(&after(vec![receive(&no_change(0))]))).unwrap();
    let signals = (1..=50).map(|n| {
        let mut signal = no_change(n);
        signal.idempotency_key = format!("a-much-longer-key-than-the-others-{n:040}");
        receive(&signal)
    });
    let fifty = serde_json::to_string(&replay(&after(signals.collect()))).unwrap();
    assert!(!fifty.contains("a-much-longer-key"), "{fifty}");
    assert!(
        fifty.len() < one.len() * 3,
        "{} bytes after 1, {} after 50",
        one.len(),
        fifty.len()
    );
}

#[test]
fn a_fingerprint_with_a_longer_configured_window_is_remembered_for_it() {
    let mut first = with_key(btc_buy("s1", "0.1", "2024-03-01T09:00:00Z"), "fp:abc");
    first.key_expires_at = first.received_at + Duration::minutes(10);
    let history = after(vec![receive(&first)]);
    let again = with_key(btc_buy("s2", "0.1", "2024-03-01T09:05:00Z"), "fp:abc");
    assert!(matches!(
        the_rejection(&decide(&history, &again)),
        RejectionReason::Duplicate { .. }
    ));
}

// ----------------------------------------------------------------------------------------------
// What SignalReceived records

#[test]
fn signal_received_records_the_alert_as_it_asked() {
    let mut signal = target("s1", "BTC-USD", "0.5", "60000", "2024-03-01T09:00:00Z");
    signal.order_type = OrderType::Limit {
        price: dec("59900"),
    };
    signal.take_profit = Some(dec("66000"));
    signal.stop_loss = Some(dec("57000"));
    signal.alert_price = Some(dec("60010"));
    signal.sent_at = Some(at("2024-03-01T08:59:59Z"));
    let events = decide(&after(vec![]), &signal);
    assert_eq!(events[0], signal_received(&signal));
    match &events[0] {
        AccountEvent::SignalReceived {
            instruction,
            sent_at,
            ..
        } => {
            assert_eq!(
                instruction,
                &TradeInstruction::TargetPosition { size: dec("0.5") }
            );
            assert_eq!(sent_at, &Some(at("2024-03-01T08:59:59Z")));
        }
        other => panic!("expected SignalReceived, got {other:?}"),
    }
    // The approved order carries the order type and brackets for the saga.
    assert_eq!(
        events[1],
        approved_order(&signal, Side::Buy, "0.5", false, "30000")
    );
    let state = replay(after(vec![]).iter().chain(&events));
    let in_flight = &state.in_flight[&sid("s1")];
    assert_eq!(
        in_flight.order_type,
        OrderType::Limit {
            price: dec("59900")
        }
    );
    assert_eq!(in_flight.take_profit, Some(dec("66000")));
    assert_eq!(in_flight.stop_loss, Some(dec("57000")));
    assert!(!in_flight.reduce_only);
}

// ----------------------------------------------------------------------------------------------
// Target positions

#[test]
fn a_target_from_flat_buys_the_target() {
    let signal = target("s1", "BTC-USD", "0.5", "60000", "2024-03-01T09:00:00Z");
    assert_eq!(
        decide(&after(vec![]), &signal),
        vec![
            signal_received(&signal),
            approved_order(&signal, Side::Buy, "0.5", false, "30000")
        ]
    );
}

#[test]
fn a_negative_target_from_flat_sells_it() {
    let signal = target("s1", "BTC-USD", "-0.25", "60000", "2024-03-01T09:00:00Z");
    assert_eq!(
        decide(&after(vec![]), &signal)[1],
        approved_order(&signal, Side::Sell, "0.25", false, "15000")
    );
}

#[test]
fn a_larger_target_buys_the_difference() {
    let signal = target("s1", "BTC-USD", "1.5", "60000", "2024-03-01T09:00:00Z");
    assert_eq!(
        decide(&holding_btc("1"), &signal)[1],
        approved_order(&signal, Side::Buy, "0.5", false, "30000")
    );
}

#[test]
fn a_smaller_target_on_the_same_side_is_a_reduce_only_order_without_brackets() {
    let mut signal = target("s1", "BTC-USD", "0.5", "60000", "2024-03-01T09:00:00Z");
    signal.take_profit = Some(dec("66000"));
    signal.stop_loss = Some(dec("57000"));
    let events = decide(&holding_btc("2"), &signal);
    assert_eq!(
        events[1],
        approved_order(&signal, Side::Sell, "1.5", true, "90000")
    );
    assert!(matches!(
        events[1],
        AccountEvent::RiskApproved {
            take_profit: None,
            stop_loss: None,
            ..
        }
    ));
}

#[test]
fn a_smaller_short_target_buys_back_reduce_only() {
    let signal = target("s1", "BTC-USD", "-1", "60000", "2024-03-01T09:00:00Z");
    assert_eq!(
        decide(&holding_btc("-3"), &signal)[1],
        approved_order(&signal, Side::Buy, "2", true, "120000")
    );
}

#[test]
fn a_flat_target_closes_reduce_only() {
    let signal = target("s1", "BTC-USD", "0", "60000", "2024-03-01T09:00:00Z");
    assert_eq!(
        decide(&holding_btc("2"), &signal)[1],
        approved_order(&signal, Side::Sell, "2", true, "120000")
    );
}

#[test]
fn a_target_on_the_other_side_flips_with_one_order_that_is_not_reduce_only() {
    let mut signal = target("s1", "BTC-USD", "-0.5", "60000", "2024-03-01T09:00:00Z");
    signal.take_profit = Some(dec("54000"));
    signal.stop_loss = Some(dec("63000"));
    assert_eq!(
        decide(&holding_btc("1"), &signal)[1],
        approved_order(&signal, Side::Sell, "1.5", false, "90000")
    );
}

#[tokio::test]
async fn a_target_already_held_is_rejected_as_no_change() {
    let signal = target("s1", "BTC-USD", "2", "60000", "2024-03-01T09:00:00Z");
    given(holding_btc("2"))
        .when_async(receive(&signal))
        .await
        .then_expect_events(vec![signal_rejected(
            &signal,
            RejectionReason::NoChange {
                detail: "the position in BTC-USD is already 2 (counting orders not yet filled)"
                    .to_owned(),
            },
        )]);
}

#[test]
fn a_target_counts_approved_orders_not_yet_filled() {
    // 1 BTC approved but not filled: a target of 1 has nothing left to do...
    let history = after(vec![receive(&btc_buy("s1", "1", "2024-03-01T09:00:00Z"))]);
    let met = target("s2", "BTC-USD", "1", "60000", "2024-03-01T09:00:01Z");
    assert!(matches!(
        the_rejection(&decide(&history, &met)),
        RejectionReason::NoChange { .. }
    ));
    // ...and a target of 1.25 buys only the rest.
    let more = target("s3", "BTC-USD", "1.25", "60000", "2024-03-01T09:00:01Z");
    assert_eq!(
        decide(&history, &more)[1],
        approved_order(&more, Side::Buy, "0.25", false, "15000")
    );
}

#[test]
fn a_no_change_is_counted_and_its_key_remembered() {
    let met = target("s1", "BTC-USD", "0", "60000", "2024-03-01T09:00:00Z");
    let history = after(vec![receive(&met)]);
    let state = replay(&history);
    assert_eq!(state.signals_received, 1);
    assert_eq!(
        remembered_keys(&history)
            .recall("key-s1")
            .unwrap()
            .signal_id,
        sid("s1")
    );
    assert!(state.in_flight.is_empty());
}

// ----------------------------------------------------------------------------------------------
// Closing

#[test]
fn close_sells_a_whole_long_reduce_only() {
    let signal = close("s1", "BTC-USD", "60000", "2024-03-01T09:00:00Z");
    let events = decide(&holding_btc("0.75"), &signal);
    assert_eq!(
        events,
        vec![
            signal_received(&signal),
            approved_order(&signal, Side::Sell, "0.75", true, "45000")
        ]
    );
}

#[test]
fn close_buys_back_a_whole_short_reduce_only() {
    let signal = close("s1", "BTC-USD", "60000", "2024-03-01T09:00:00Z");
    assert_eq!(
        decide(&holding_btc("-2"), &signal)[1],
        approved_order(&signal, Side::Buy, "2", true, "120000")
    );
}

#[tokio::test]
async fn close_when_flat_is_rejected_as_no_change() {
    let signal = close("s1", "ETH-USD", "3000", "2024-03-01T09:00:00Z");
    given(holding_btc("1"))
        .when_async(receive(&signal))
        .await
        .then_expect_events(vec![signal_rejected(
            &signal,
            RejectionReason::NoChange {
                detail: "there is no position in ETH-USD to close (counting orders not yet \
                         filled)"
                    .to_owned(),
            },
        )]);
}

#[test]
fn a_second_close_while_the_first_is_pending_has_nothing_to_do() {
    let first = close("s1", "BTC-USD", "60000", "2024-03-01T09:00:00Z");
    let mut history = holding_btc("1");
    history.extend(decide(&history, &first));
    assert_eq!(
        replay(&history).in_flight[&sid("s1")].stage,
        SignalStage::AwaitingExecution
    );
    let second = close("s2", "BTC-USD", "60000", "2024-03-01T09:00:01Z");
    assert!(matches!(
        the_rejection(&decide(&history, &second)),
        RejectionReason::NoChange { .. }
    ));
}
