//! Behaviour of the `TradingAccount` aggregate, one command at a time, through cqrs-es's
//! `TestFramework`: given a history, when a command arrives, then these events (or this error).

use crate::common::*;
use aggregates::{
    AccountCommand, AccountError, AccountEvent, ClientOrderId, ExecutionReport, Fill,
    NotificationOutcome, RejectionReason, RiskLimits, Side, SignalIntent, SignalStage,
    TradingAccount, UsdAmount, IDEMPOTENCY_WINDOW_HOURS,
};
use chrono::Duration;
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use rust_decimal::Decimal;

fn given(events: Vec<AccountEvent>) -> Given {
    Given(events)
}

/// `TestFramework`'s given/when, with a signal told what the history remembers of its key, as
/// the ledger tells it.
struct Given(Vec<AccountEvent>);

impl Given {
    async fn when_async(
        self,
        mut command: AccountCommand,
    ) -> AggregateResultValidator<TradingAccount> {
        if let AccountCommand::ReceiveSignal(intent) = &mut command {
            *intent = recalling(&self.0, intent.clone());
        }
        TestFramework::<TradingAccount>::with(())
            .given(self.0)
            .when_async(command)
            .await
    }
}

/// An open account with the default (generous) limits.
fn open_default() -> Vec<AccountEvent> {
    vec![opened(RiskLimits::default())]
}

fn btc_buy(id: &str, size: &str, when: &str) -> SignalIntent {
    intent(id, "BTC-USD", Side::Buy, size, "60000", when)
}

/// The account's history after `commands`, starting from an open account with `limits`.
fn after(limits: RiskLimits, commands: Vec<AccountCommand>) -> Vec<AccountEvent> {
    history(std::iter::once(open_command(limits)).chain(commands))
}

/// Asserts that `result` is exactly `SignalReceived` followed by `RiskRejected` under `rule`.
fn assert_risk_rejected(
    result: Result<Vec<AccountEvent>, AccountError>,
    signal: &SignalIntent,
    rule: &str,
) {
    let events = result.expect("a risk rejection is an outcome, not an error");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], signal_received(signal));
    match &events[1] {
        AccountEvent::RiskRejected {
            signal_id,
            rule: failed,
            detail,
        } => {
            assert_eq!(signal_id, &signal.signal_id);
            assert_eq!(failed, rule);
            assert!(!detail.is_empty());
        }
        other => panic!("expected RiskRejected, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------------------------
// Opening

#[tokio::test]
async fn opening_an_account_records_its_name_and_limits() {
    let limits = limits("1000", "5000", "20000", &["BTC-USD"]);
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when_async(open_command(limits.clone()))
        .await
        .then_expect_events(vec![opened(limits)]);
}

#[tokio::test]
async fn opening_an_open_account_is_refused() {
    given(open_default())
        .when_async(open_command(RiskLimits::default()))
        .await
        .then_expect_error(AccountError::AlreadyOpened);
}

#[tokio::test]
async fn a_signal_on_an_unopened_account_is_refused() {
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when_async(receive(&btc_buy("s1", "0.1", "2024-03-01T09:00:00Z")))
        .await
        .then_expect_error(AccountError::NotOpened);
}

#[tokio::test]
async fn halting_or_resuming_an_unopened_account_is_refused() {
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when_async(halt("2024-03-01T09:00:00Z"))
        .await
        .then_expect_error(AccountError::NotOpened);
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when_async(resume("2024-03-01T09:00:00Z"))
        .await
        .then_expect_error(AccountError::NotOpened);
}

// ----------------------------------------------------------------------------------------------
// Receiving signals

#[tokio::test]
async fn an_approved_signal_reserves_its_notional_under_a_derived_client_order_id() {
    let signal = btc_buy("s1", "0.5", "2024-03-01T09:00:00Z");
    let events = given(open_default())
        .when_async(receive(&signal))
        .await
        .inspect_result()
        .unwrap();
    // 0.5 BTC at a reference price of 60000 USD.
    assert_eq!(
        events,
        vec![signal_received(&signal), risk_approved(&signal, "30000")]
    );
    match &events[1] {
        AccountEvent::RiskApproved {
            client_order_id,
            notional_usd,
            ..
        } => {
            assert_eq!(
                client_order_id,
                &ClientOrderId::for_signal(&signal.signal_id)
            );
            assert_eq!(notional_usd.value(), dec("0.5") * signal.reference_price);
        }
        other => panic!("expected RiskApproved, got {other:?}"),
    }

    let state = replay(open_default().iter().chain(&events));
    assert_eq!(state.signals_received, 1);
    assert_eq!(state.daily_volume.traded_usd, usd("30000"));
    let in_flight = &state.in_flight[&signal.signal_id];
    assert_eq!(in_flight.stage, SignalStage::AwaitingExecution);
    assert_eq!(
        in_flight.client_order_id,
        ClientOrderId::for_signal(&signal.signal_id)
    );
    assert_eq!(in_flight.reserved_usd, usd("30000"));
}

#[tokio::test]
async fn a_repeated_idempotency_key_is_rejected_as_a_duplicate_of_the_original() {
    let first = btc_buy("s1", "0.5", "2024-03-01T09:00:00Z");
    let resend = with_key(btc_buy("s2", "0.5", "2024-03-01T09:00:08Z"), "key-s1");
    given(after(RiskLimits::default(), vec![receive(&first)]))
        .when_async(receive(&resend))
        .await
        .then_expect_events(vec![AccountEvent::SignalRejected {
            // The resend is the original signal again, whatever id it arrived under.
            signal_id: first.signal_id.clone(),
            idempotency_key: "key-s1".to_owned(),
            key_expires_at: resend.key_expires_at,
            reason: RejectionReason::Duplicate {
                original_signal_id: first.signal_id.clone(),
            },
            received_at: resend.received_at,
        }]);
}

#[tokio::test]
async fn a_duplicate_reserves_nothing_and_starts_no_order() {
    let first = btc_buy("s1", "0.5", "2024-03-01T09:00:00Z");
    let resend = with_key(btc_buy("s2", "0.5", "2024-03-01T09:00:08Z"), "key-s1");
    let events = after(
        RiskLimits::default(),
        vec![receive(&first), receive(&resend)],
    );
    let state = replay(&events);
    assert_eq!(state.signals_received, 2);
    assert_eq!(state.daily_volume.traded_usd, usd("30000"));
    assert_eq!(state.in_flight.len(), 1);
    assert!(!state.in_flight.contains_key(&resend.signal_id));
    assert_eq!(
        remembered_keys(&events).recall("key-s1").unwrap().signal_id,
        first.signal_id
    );
}

#[tokio::test]
async fn the_key_of_a_risk_rejected_signal_is_remembered_too() {
    let limits = limits("1000", "250000", "1000000", &[]);
    let first = btc_buy("s1", "0.5", "2024-03-01T09:00:00Z");
    let resend = with_key(btc_buy("s2", "0.5", "2024-03-01T09:00:08Z"), "key-s1");
    let events = given(after(limits, vec![receive(&first)]))
        .when_async(receive(&resend))
        .await
        .inspect_result()
        .unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::SignalRejected {
            reason: RejectionReason::Duplicate { original_signal_id },
            ..
        }] if original_signal_id == &first.signal_id
    ));
}

#[tokio::test]
async fn a_key_is_still_remembered_just_inside_the_window() {
    let first = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    let mut resend = with_key(btc_buy("s2", "0.1", "2024-03-01T09:00:00Z"), "key-s1");
    resend.received_at =
        first.received_at + Duration::hours(IDEMPOTENCY_WINDOW_HOURS) - Duration::seconds(1);
    let events = given(after(RiskLimits::default(), vec![receive(&first)]))
        .when_async(receive(&resend))
        .await
        .inspect_result()
        .unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::SignalRejected {
            reason: RejectionReason::Duplicate { .. },
            ..
        }]
    ));
}

#[tokio::test]
async fn a_key_older_than_the_window_is_forgotten_once_a_later_signal_has_arrived() {
    let first = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    // Another alert 25 hours later, then the first alert's key again.
    let other = btc_buy("s2", "0.1", "2024-03-02T10:00:00Z");
    let again = with_key(btc_buy("s3", "0.1", "2024-03-02T10:00:30Z"), "key-s1");
    given(after(
        RiskLimits::default(),
        vec![receive(&first), receive(&other)],
    ))
    .when_async(receive(&again))
    .await
    .then_expect_events(vec![signal_received(&again), risk_approved(&again, "6000")]);
}

/// The same key 25 hours later is a new alert, even when nothing arrived in between to purge it.
#[tokio::test]
async fn the_same_key_25_hours_later_is_accepted() {
    let first = btc_buy("s1", "0.1", "2024-03-01T09:00:00Z");
    let mut again = with_key(btc_buy("s2", "0.1", "2024-03-01T09:00:00Z"), "key-s1");
    again.received_at = first.received_at + Duration::hours(IDEMPOTENCY_WINDOW_HOURS + 1);
    given(after(RiskLimits::default(), vec![receive(&first)]))
        .when_async(receive(&again))
        .await
        .then_expect_events(vec![signal_received(&again), risk_approved(&again, "6000")]);
}

/// Fingerprint keys (`fp:` prefix, alerts without an id) are meant to be remembered for 120 s only,
/// so the same id-less alert five minutes later is a second, real trade.
#[tokio::test]
async fn the_same_fingerprint_five_minutes_later_is_accepted() {
    let first = with_key(btc_buy("s1", "0.1", "2024-03-01T09:00:00Z"), "fp:abc");
    let again = with_key(btc_buy("s2", "0.1", "2024-03-01T09:05:00Z"), "fp:abc");
    given(after(RiskLimits::default(), vec![receive(&first)]))
        .when_async(receive(&again))
        .await
        .then_expect_events(vec![signal_received(&again), risk_approved(&again, "6000")]);
}

#[tokio::test]
async fn a_fingerprint_is_forgotten_after_two_minutes_once_a_later_signal_has_arrived() {
    let first = with_key(btc_buy("s1", "0.1", "2024-03-01T09:00:00Z"), "fp:abc");
    let other = btc_buy("s2", "0.1", "2024-03-01T09:04:00Z");
    let again = with_key(btc_buy("s3", "0.1", "2024-03-01T09:05:00Z"), "fp:abc");
    let resend = with_key(btc_buy("s4", "0.1", "2024-03-01T09:00:05Z"), "fp:abc");
    // Within 120 s the fingerprint absorbs a resend...
    let events = given(after(RiskLimits::default(), vec![receive(&first)]))
        .when_async(receive(&resend))
        .await
        .inspect_result()
        .unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::SignalRejected {
            reason: RejectionReason::Duplicate { .. },
            ..
        }]
    ));
    // ...and after it, the same fingerprint is a new trade.
    given(after(
        RiskLimits::default(),
        vec![receive(&first), receive(&other)],
    ))
    .when_async(receive(&again))
    .await
    .then_expect_events(vec![signal_received(&again), risk_approved(&again, "6000")]);
}

/// `SignalId` is documented (values.rs) as derived from the idempotency key, and fingerprints are
/// forgotten after 120 s on purpose. Two identical id-less alerts five minutes apart therefore carry
/// the same signal id; the second is approved under it and replaces the first's in-flight entry
/// (its stage, size and reservation), and reuses its client order id.
#[tokio::test]
async fn a_signal_id_already_in_flight_is_not_approved_again() {
    let first = with_key(
        btc_buy("sig-fp:abc", "0.1", "2024-03-01T09:00:00Z"),
        "fp:abc",
    );
    let second = with_key(
        btc_buy("sig-fp:abc", "0.1", "2024-03-01T09:05:00Z"),
        "fp:abc",
    );
    // The first is filled and awaiting its notification.
    let history = after(
        RiskLimits::default(),
        vec![
            receive(&first),
            filled("sig-fp:abc", "60000", "0.1", "1", "2024-03-01T09:00:02Z"),
        ],
    );
    let events = given(history)
        .when_async(receive(&second))
        .await
        .inspect_result()
        .unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AccountEvent::RiskApproved { .. })),
        "{events:?}"
    );
}

// ----------------------------------------------------------------------------------------------
// Halting and resuming

#[tokio::test]
async fn halting_an_open_account_emits_trading_halted() {
    given(open_default())
        .when_async(halt("2024-03-01T09:00:00Z"))
        .await
        .then_expect_events(vec![AccountEvent::TradingHalted {
            by: "ops".to_owned(),
            reason: "maintenance".to_owned(),
            at: at("2024-03-01T09:00:00Z"),
        }]);
}

#[tokio::test]
async fn a_signal_on_a_halted_account_is_rejected_as_halted() {
    let signal = btc_buy("s1", "0.1", "2024-03-01T09:30:00Z");
    given(after(
        RiskLimits::default(),
        vec![halt("2024-03-01T09:00:00Z")],
    ))
    .when_async(receive(&signal))
    .await
    .then_expect_events(vec![AccountEvent::SignalRejected {
        signal_id: signal.signal_id.clone(),
        idempotency_key: signal.idempotency_key.clone(),
        key_expires_at: signal.key_expires_at,
        reason: RejectionReason::Halted {
            detail: "trading halted by ops: maintenance".to_owned(),
        },
        received_at: signal.received_at,
    }]);
}

#[tokio::test]
async fn halting_a_halted_account_emits_nothing() {
    given(after(
        RiskLimits::default(),
        vec![halt("2024-03-01T09:00:00Z")],
    ))
    .when_async(halt("2024-03-01T09:10:00Z"))
    .await
    .then_expect_events(vec![]);
}

#[tokio::test]
async fn resuming_a_halted_account_emits_trading_resumed() {
    given(after(
        RiskLimits::default(),
        vec![halt("2024-03-01T09:00:00Z")],
    ))
    .when_async(resume("2024-03-01T10:00:00Z"))
    .await
    .then_expect_events(vec![AccountEvent::TradingResumed {
        by: "ops".to_owned(),
        reason: "done".to_owned(),
        at: at("2024-03-01T10:00:00Z"),
    }]);
}

#[tokio::test]
async fn resuming_an_account_that_is_not_halted_emits_nothing() {
    given(open_default())
        .when_async(resume("2024-03-01T10:00:00Z"))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn after_resuming_signals_are_approved_again() {
    let signal = btc_buy("s1", "0.1", "2024-03-01T10:30:00Z");
    given(after(
        RiskLimits::default(),
        vec![halt("2024-03-01T09:00:00Z"), resume("2024-03-01T10:00:00Z")],
    ))
    .when_async(receive(&signal))
    .await
    .then_expect_events(vec![
        signal_received(&signal),
        risk_approved(&signal, "6000"),
    ]);
}

// ----------------------------------------------------------------------------------------------
// Risk rules

#[tokio::test]
async fn a_market_outside_the_allowed_list_is_risk_rejected() {
    let limits = limits("100000", "250000", "1000000", &["BTC-USD"]);
    let eth = intent(
        "s1",
        "ETH-USD",
        Side::Buy,
        "1",
        "3000",
        "2024-03-01T09:00:00Z",
    );
    let result = given(vec![opened(limits.clone())])
        .when_async(receive(&eth))
        .await
        .inspect_result();
    assert_risk_rejected(result, &eth, "allowed_markets");

    let btc = btc_buy("s2", "0.1", "2024-03-01T09:00:00Z");
    given(vec![opened(limits)])
        .when_async(receive(&btc))
        .await
        .then_expect_events(vec![signal_received(&btc), risk_approved(&btc, "6000")]);
}

#[tokio::test]
async fn an_empty_allowed_list_allows_every_market() {
    let doge = intent(
        "s1",
        "DOGE-USD",
        Side::Sell,
        "1000",
        "0.15",
        "2024-03-01T09:00:00Z",
    );
    given(open_default())
        .when_async(receive(&doge))
        .await
        .then_expect_events(vec![signal_received(&doge), risk_approved(&doge, "150")]);
}

#[tokio::test]
async fn a_signal_without_a_positive_reference_price_is_risk_rejected() {
    let signal = intent(
        "s1",
        "BTC-USD",
        Side::Buy,
        "0.1",
        "0",
        "2024-03-01T09:00:00Z",
    );
    let result = given(open_default())
        .when_async(receive(&signal))
        .await
        .inspect_result();
    assert_risk_rejected(result, &signal, "reference_price");
}

#[tokio::test]
async fn an_order_above_the_order_notional_limit_is_risk_rejected() {
    let limits = limits("10000", "250000", "1000000", &[]);
    // 0.2 BTC at 60000 is 12000 USD, above 10000.
    let big = btc_buy("s1", "0.2", "2024-03-01T09:00:00Z");
    let result = given(vec![opened(limits.clone())])
        .when_async(receive(&big))
        .await
        .inspect_result();
    assert_risk_rejected(result, &big, "max_order_notional");

    // Exactly at the limit is allowed: 0.25 BTC at 40000 is 10000 USD.
    let at_limit = intent(
        "s2",
        "BTC-USD",
        Side::Buy,
        "0.25",
        "40000",
        "2024-03-01T09:00:00Z",
    );
    given(vec![opened(limits)])
        .when_async(receive(&at_limit))
        .await
        .then_expect_events(vec![
            signal_received(&at_limit),
            risk_approved(&at_limit, "10000"),
        ]);
}

#[tokio::test]
async fn an_order_too_large_to_value_is_risk_rejected_not_a_panic() {
    // 10^20 × 10^10 = 10^30, beyond what a Decimal holds (about 7.9 × 10^28).
    let absurd = intent(
        "s1",
        "BTC-USD",
        Side::Buy,
        "100000000000000000000",
        "10000000000",
        "2024-03-01T09:00:00Z",
    );
    let result = given(open_default())
        .when_async(receive(&absurd))
        .await
        .inspect_result();
    assert_risk_rejected(result, &absurd, "max_order_notional");
}

#[tokio::test]
async fn a_trade_growing_a_position_above_the_position_limit_is_risk_rejected() {
    let limits = limits("100000", "50000", "1000000", &[]);
    let first = btc_buy("s1", "0.5", "2024-03-01T09:00:00Z");
    let history = after(
        limits,
        vec![
            receive(&first),
            filled("s1", "60000", "0.5", "1", "2024-03-01T09:00:01Z"),
        ],
    );
    // Long 0.5 BTC; another 0.5 makes 1 BTC = 60000 USD, above 50000.
    let more = btc_buy("s2", "0.5", "2024-03-01T09:10:00Z");
    let result = given(history.clone())
        .when_async(receive(&more))
        .await
        .inspect_result();
    assert_risk_rejected(result, &more, "max_position_notional");

    // 0.3 more makes 0.8 BTC = 48000 USD: allowed.
    let some = btc_buy("s3", "0.3", "2024-03-01T09:10:00Z");
    given(history)
        .when_async(receive(&some))
        .await
        .then_expect_events(vec![signal_received(&some), risk_approved(&some, "18000")]);
}

#[tokio::test]
async fn a_trade_reducing_a_position_above_the_limit_is_allowed() {
    // Long 1.5 BTC opened under generous limits...
    let generous = btc_buy("s1", "1.5", "2024-03-01T09:00:00Z");
    let mut history = after(
        RiskLimits::default(),
        vec![
            receive(&generous),
            filled("s1", "60000", "1.5", "1", "2024-03-01T09:00:01Z"),
        ],
    );
    // ...then held by an account whose position limit is 50000 USD (1.5 BTC = 90000 USD).
    history[0] = opened(limits("100000", "50000", "1000000", &[]));

    // Selling 0.5 leaves 1 BTC = 60000 USD, still above the limit but lower: allowed.
    let reduce = intent(
        "s2",
        "BTC-USD",
        Side::Sell,
        "0.5",
        "60000",
        "2024-03-01T09:10:00Z",
    );
    given(history.clone())
        .when_async(receive(&reduce))
        .await
        .then_expect_events(vec![
            signal_received(&reduce),
            risk_approved(&reduce, "30000"),
        ]);

    // Buying 0.1 grows it: rejected.
    let grow = btc_buy("s3", "0.1", "2024-03-01T09:10:00Z");
    let result = given(history.clone())
        .when_async(receive(&grow))
        .await
        .inspect_result();
    assert_risk_rejected(result, &grow, "max_position_notional");

    // Selling 5 flips it to short 3.5 BTC = 210000 USD, larger than now: rejected (the order
    // notional, 300000, is above its own limit too, so raise that one out of the way).
    history[0] = opened(limits("1000000", "50000", "10000000", &[]));
    let flip = intent(
        "s4",
        "BTC-USD",
        Side::Sell,
        "5",
        "60000",
        "2024-03-01T09:10:00Z",
    );
    let result = given(history)
        .when_async(receive(&flip))
        .await
        .inspect_result();
    assert_risk_rejected(result, &flip, "max_position_notional");
}

/// Two buys approved before either fills are each checked against the position as it is, so
/// together they open a position above the limit.
#[tokio::test]
async fn orders_in_flight_count_toward_the_position_limit() {
    let limits = limits("100000", "50000", "1000000", &[]);
    // 0.5 BTC (30000 USD) approved and not yet filled...
    let first = btc_buy("s1", "0.5", "2024-03-01T09:00:00Z");
    // ...so another 0.5 would make 1 BTC = 60000 USD, above 50000.
    let second = btc_buy("s2", "0.5", "2024-03-01T09:00:01Z");
    let result = given(after(limits, vec![receive(&first)]))
        .when_async(receive(&second))
        .await
        .inspect_result();
    assert_risk_rejected(result, &second, "max_position_notional");
}

fn daily_limits() -> RiskLimits {
    limits("100000", "1000000", "100000", &[])
}

#[tokio::test]
async fn volume_above_the_daily_limit_is_risk_rejected() {
    // 1 BTC at 60000 is approved: 60000 of 100000 used today.
    let first = btc_buy("s1", "1", "2024-03-01T09:00:00Z");
    let second = btc_buy("s2", "1", "2024-03-01T23:59:59Z");
    let result = given(after(daily_limits(), vec![receive(&first)]))
        .when_async(receive(&second))
        .await
        .inspect_result();
    // 60000 + 60000 = 120000 > 100000.
    assert_risk_rejected(result, &second, "max_daily_volume");

    // 40000 more reaches the limit exactly: allowed.
    let rest = intent(
        "s3",
        "BTC-USD",
        Side::Buy,
        "1",
        "40000",
        "2024-03-01T23:59:59Z",
    );
    given(after(daily_limits(), vec![receive(&first)]))
        .when_async(receive(&rest))
        .await
        .then_expect_events(vec![signal_received(&rest), risk_approved(&rest, "40000")]);
}

#[tokio::test]
async fn daily_volume_starts_again_on_a_new_utc_day() {
    let first = btc_buy("s1", "1", "2024-03-01T23:00:00Z");
    let next_day = btc_buy("s2", "1", "2024-03-02T00:00:00Z");
    let history = after(daily_limits(), vec![receive(&first)]);
    let events = given(history.clone())
        .when_async(receive(&next_day))
        .await
        .inspect_result()
        .unwrap();
    assert_eq!(
        events,
        vec![
            signal_received(&next_day),
            risk_approved(&next_day, "60000")
        ]
    );
    let state = replay(history.iter().chain(&events));
    assert_eq!(
        state.daily_volume.day,
        Some(next_day.received_at.date_naive())
    );
    assert_eq!(state.daily_volume.traded_usd, usd("60000"));
}

#[tokio::test]
async fn a_failed_order_releases_its_daily_volume() {
    let first = btc_buy("s1", "1", "2024-03-01T09:00:00Z");
    let second = btc_buy("s2", "1", "2024-03-01T09:30:00Z");
    let history = after(
        daily_limits(),
        vec![
            receive(&first),
            failed("s1", "exchange unreachable", "2024-03-01T09:00:30Z"),
        ],
    );
    assert_eq!(replay(&history).daily_volume.traded_usd, UsdAmount::ZERO);
    given(history)
        .when_async(receive(&second))
        .await
        .then_expect_events(vec![
            signal_received(&second),
            risk_approved(&second, "60000"),
        ]);
}

#[tokio::test]
async fn a_rejected_order_releases_its_daily_volume() {
    let first = btc_buy("s1", "1", "2024-03-01T09:00:00Z");
    let second = btc_buy("s2", "1", "2024-03-01T09:30:00Z");
    let history = after(
        daily_limits(),
        vec![
            receive(&first),
            rejected("s1", "insufficient margin", "2024-03-01T09:00:30Z"),
        ],
    );
    given(history)
        .when_async(receive(&second))
        .await
        .then_expect_events(vec![
            signal_received(&second),
            risk_approved(&second, "60000"),
        ]);
}

#[tokio::test]
async fn a_filled_order_keeps_its_daily_volume() {
    let first = btc_buy("s1", "1", "2024-03-01T09:00:00Z");
    let second = btc_buy("s2", "1", "2024-03-01T09:30:00Z");
    let history = after(
        daily_limits(),
        vec![
            receive(&first),
            filled("s1", "60000", "1", "3", "2024-03-01T09:00:30Z"),
        ],
    );
    let result = given(history)
        .when_async(receive(&second))
        .await
        .inspect_result();
    assert_risk_rejected(result, &second, "max_daily_volume");
}

#[tokio::test]
async fn releasing_yesterdays_reservation_does_not_free_todays_volume() {
    let yesterday = btc_buy("s1", "1", "2024-03-01T23:50:00Z");
    let today = btc_buy("s2", "1", "2024-03-02T00:10:00Z");
    let later = btc_buy("s3", "1", "2024-03-02T00:30:00Z");
    let history = after(
        daily_limits(),
        vec![
            receive(&yesterday),
            receive(&today),
            failed("s1", "exchange unreachable", "2024-03-02T00:20:00Z"),
        ],
    );
    assert_eq!(replay(&history).daily_volume.traded_usd, usd("60000"));
    let result = given(history)
        .when_async(receive(&later))
        .await
        .inspect_result();
    // Today: 60000 (s2) + 60000 = 120000 > 100000, whatever happened to yesterday's s1.
    assert_risk_rejected(result, &later, "max_daily_volume");
}

/// Times come from the web servers' clocks. A signal stamped a moment before midnight that is
/// folded in after one stamped just after midnight rewinds the volume day, and today's approved
/// volume is forgotten: the daily limit can be exceeded.
#[tokio::test]
async fn a_slightly_earlier_timestamp_across_midnight_does_not_forget_todays_volume() {
    let after_midnight = btc_buy("s1", "1", "2024-03-02T00:00:01Z");
    let skewed = intent(
        "s2",
        "ETH-USD",
        Side::Buy,
        "1",
        "10",
        "2024-03-01T23:59:59Z",
    );
    let later = btc_buy("s3", "1", "2024-03-02T00:00:05Z");
    let history = after(
        daily_limits(),
        vec![receive(&after_midnight), receive(&skewed)],
    );
    // 60000 already approved for 2024-03-02; another 60000 that day is above 100000.
    let result = given(history)
        .when_async(receive(&later))
        .await
        .inspect_result();
    assert_risk_rejected(result, &later, "max_daily_volume");
}

/// The same rewind, then a release of the forgotten reservation, drives daily volume negative.
#[test]
fn a_slightly_earlier_timestamp_across_midnight_never_makes_volume_negative() {
    let history = after(
        daily_limits(),
        vec![
            // 60000 reserved for 2024-03-02...
            receive(&btc_buy("s1", "1", "2024-03-02T00:00:01Z")),
            // ...a skewed clock rewinds the volume day to 2024-03-01...
            receive(&intent(
                "s2",
                "ETH-USD",
                Side::Buy,
                "1",
                "10",
                "2024-03-01T23:59:59Z",
            )),
            // ...the next signal starts 2024-03-02 afresh at 6000...
            receive(&btc_buy("s3", "0.1", "2024-03-02T00:00:05Z")),
            // ...and s1's 60000 is given back from it.
            failed("s1", "exchange unreachable", "2024-03-02T00:00:07Z"),
        ],
    );
    let volume = replay(&history).daily_volume.traded_usd;
    assert!(volume.value() >= Decimal::ZERO, "daily volume is {volume}");
}

fn after_state(history: &[AccountEvent], command: AccountCommand) -> Vec<AccountEvent> {
    replay(history).decide(command).unwrap()
}

// ----------------------------------------------------------------------------------------------
// Execution reports

fn one_btc_in_flight() -> Vec<AccountEvent> {
    after(
        RiskLimits::default(),
        vec![receive(&btc_buy("s1", "1", "2024-03-01T09:00:00Z"))],
    )
}

#[tokio::test]
async fn a_fill_submits_fills_and_opens_a_position() {
    given(one_btc_in_flight())
        .when_async(filled("s1", "60010", "1", "4.5", "2024-03-01T09:00:02Z"))
        .await
        .then_expect_events(vec![
            AccountEvent::OrderSubmitted {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                market: market("BTC-USD"),
                side: Side::Buy,
                size: qty("1"),
                submitted_at: at("2024-03-01T09:00:02Z"),
            },
            AccountEvent::OrderFilled {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                exchange_order_id: "ex-s1".to_owned(),
                market: market("BTC-USD"),
                side: Side::Buy,
                price: dec("60010"),
                size: qty("1"),
                fee_usd: usd("4.5"),
                filled_at: at("2024-03-01T09:00:02Z"),
            },
            AccountEvent::PositionOpened {
                signal_id: sid("s1"),
                market: market("BTC-USD"),
                side: Side::Buy,
                size: qty("1"),
                entry_price: dec("60010"),
            },
        ]);
}

#[tokio::test]
async fn a_fill_moves_the_signal_to_awaiting_notification() {
    let mut history = one_btc_in_flight();
    history.extend(after_state(
        &history,
        filled("s1", "60010", "1", "4.5", "2024-03-01T09:00:02Z"),
    ));
    let state = replay(&history);
    assert_eq!(
        state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    assert_eq!(state.orders_filled, 1);
    assert_eq!(state.positions[&market("BTC-USD")].size, dec("1"));
    assert_eq!(
        state.positions[&market("BTC-USD")].average_entry_price,
        dec("60010")
    );
}

#[tokio::test]
async fn a_second_report_for_a_concluded_signal_emits_nothing() {
    let mut history = one_btc_in_flight();
    history.extend(after_state(
        &history,
        filled("s1", "60010", "1", "4.5", "2024-03-01T09:00:02Z"),
    ));
    given(history.clone())
        .when_async(filled("s1", "60010", "1", "4.5", "2024-03-01T09:00:09Z"))
        .await
        .then_expect_events(vec![]);
    given(history)
        .when_async(failed("s1", "timeout", "2024-03-01T09:00:09Z"))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn a_report_naming_another_client_order_id_is_refused() {
    given(one_btc_in_flight())
        .when_async(AccountCommand::RecordExecution(ExecutionReport::Filled {
            signal_id: sid("s1"),
            client_order_id: ClientOrderId("lh-someone-else".to_owned()),
            exchange_order_id: "ex-1".to_owned(),
            fill: Fill {
                market: market("BTC-USD"),
                side: Side::Buy,
                price: dec("60000"),
                size: qty("1"),
                fee: dec("1"),
            },
            at: at("2024-03-01T09:00:02Z"),
        }))
        .await
        .then_expect_error(AccountError::ClientOrderIdMismatch {
            expected: coid("s1"),
            reported: ClientOrderId("lh-someone-else".to_owned()),
        });
}

#[tokio::test]
async fn a_report_for_an_unknown_signal_is_refused() {
    given(one_btc_in_flight())
        .when_async(filled("nope", "60000", "1", "1", "2024-03-01T09:00:02Z"))
        .await
        .then_expect_error(AccountError::NotInFlight(sid("nope")));
}

#[tokio::test]
async fn a_report_for_a_risk_rejected_signal_is_refused() {
    let history = after(
        limits("1000", "250000", "1000000", &[]),
        vec![receive(&btc_buy("s1", "1", "2024-03-01T09:00:00Z"))],
    );
    given(history)
        .when_async(filled("s1", "60000", "1", "1", "2024-03-01T09:00:02Z"))
        .await
        .then_expect_error(AccountError::NotInFlight(sid("s1")));
}

#[tokio::test]
async fn an_exchange_rejection_submits_rejects_and_releases_the_reservation() {
    given(one_btc_in_flight())
        .when_async(rejected(
            "s1",
            "insufficient margin",
            "2024-03-01T09:00:02Z",
        ))
        .await
        .then_expect_events(vec![
            AccountEvent::OrderSubmitted {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                market: market("BTC-USD"),
                side: Side::Buy,
                size: qty("1"),
                submitted_at: at("2024-03-01T09:00:02Z"),
            },
            AccountEvent::OrderRejected {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                reason: "insufficient margin".to_owned(),
                at: at("2024-03-01T09:00:02Z"),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: sid("s1"),
                notional_usd: usd("60000"),
            },
        ]);
}

#[tokio::test]
async fn a_failed_placement_fails_and_releases_without_submitting() {
    given(one_btc_in_flight())
        .when_async(failed("s1", "exchange unreachable", "2024-03-01T09:01:00Z"))
        .await
        .then_expect_events(vec![
            AccountEvent::OrderFailed {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                reason: "exchange unreachable".to_owned(),
                at: at("2024-03-01T09:01:00Z"),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: sid("s1"),
                notional_usd: usd("60000"),
            },
        ]);
}

// ----------------------------------------------------------------------------------------------
// Positions

const T0: &str = "2024-03-01T09:00:00Z";
const T1: &str = "2024-03-01T09:00:01Z";
const T2: &str = "2024-03-01T10:00:00Z";
const T3: &str = "2024-03-01T10:00:01Z";

/// An account holding `size` ETH on `side` at `price`, with signal `s2` on `side2`/`size2`
/// approved and awaiting execution.
fn eth_position_then(
    side: Side,
    size: &str,
    price: &str,
    side2: Side,
    size2: &str,
) -> Vec<AccountEvent> {
    after(
        RiskLimits::default(),
        vec![
            receive(&intent("s1", "ETH-USD", side, size, price, T0)),
            filled_in("ETH-USD", side, "s1", price, size, "0", T1),
            receive(&intent("s2", "ETH-USD", side2, size2, price, T2)),
        ],
    )
}

/// The position events of a fill (the events after OrderSubmitted and OrderFilled).
async fn position_events(history: Vec<AccountEvent>, fill: AccountCommand) -> Vec<AccountEvent> {
    let events = given(history)
        .when_async(fill)
        .await
        .inspect_result()
        .unwrap();
    assert!(matches!(events[0], AccountEvent::OrderSubmitted { .. }));
    assert!(matches!(events[1], AccountEvent::OrderFilled { .. }));
    events[2..].to_vec()
}

#[tokio::test]
async fn adding_to_a_position_averages_the_entry_price() {
    let history = eth_position_then(Side::Buy, "1", "2000", Side::Buy, "3");
    let fill = filled_in("ETH-USD", Side::Buy, "s2", "2100", "3", "0", T3);
    let events = position_events(history.clone(), fill.clone()).await;
    // (1 × 2000 + 3 × 2100) / 4 = 8300 / 4 = 2075.
    assert_eq!(
        events,
        vec![AccountEvent::PositionIncreased {
            signal_id: sid("s2"),
            market: market("ETH-USD"),
            size_delta: qty("3"),
            new_size: qty("4"),
            average_entry_price: dec("2075"),
        }]
    );
    let mut all = history;
    all.extend(after_state(&all, fill));
    let position = &replay(&all).positions[&market("ETH-USD")];
    assert_eq!(position.size, dec("4"));
    assert_eq!(position.average_entry_price, dec("2075"));
    assert_eq!(position.realized_pnl_usd, usd("0"));
}

#[tokio::test]
async fn adding_to_a_short_keeps_it_short() {
    let history = eth_position_then(Side::Sell, "2", "2000", Side::Sell, "2");
    let fill = filled_in("ETH-USD", Side::Sell, "s2", "1900", "2", "0", T3);
    let events = position_events(history.clone(), fill.clone()).await;
    // (2 × 2000 + 2 × 1900) / 4 = 1950.
    assert_eq!(
        events,
        vec![AccountEvent::PositionIncreased {
            signal_id: sid("s2"),
            market: market("ETH-USD"),
            size_delta: qty("2"),
            new_size: qty("4"),
            average_entry_price: dec("1950"),
        }]
    );
    let mut all = history;
    all.extend(after_state(&all, fill));
    assert_eq!(replay(&all).positions[&market("ETH-USD")].size, dec("-4"));
}

#[tokio::test]
async fn reducing_a_long_realizes_pnl_on_the_closed_part() {
    let history = eth_position_then(Side::Buy, "2", "2000", Side::Sell, "0.5");
    let fill = filled_in("ETH-USD", Side::Sell, "s2", "2100", "0.5", "0", T3);
    let events = position_events(history.clone(), fill.clone()).await;
    // 0.5 × (2100 − 2000) = 50.
    assert_eq!(
        events,
        vec![AccountEvent::PositionReduced {
            signal_id: sid("s2"),
            market: market("ETH-USD"),
            size_delta: qty("0.5"),
            new_size: qty("1.5"),
            realized_pnl_usd: usd("50"),
        }]
    );
    let mut all = history;
    all.extend(after_state(&all, fill));
    let position = &replay(&all).positions[&market("ETH-USD")];
    assert_eq!(position.size, dec("1.5"));
    assert_eq!(position.average_entry_price, dec("2000"));
    assert_eq!(position.realized_pnl_usd, usd("50"));
}

#[tokio::test]
async fn reducing_a_short_at_a_lower_price_is_a_gain() {
    let history = eth_position_then(Side::Sell, "2", "2000", Side::Buy, "1");
    let fill = filled_in("ETH-USD", Side::Buy, "s2", "1900", "1", "0", T3);
    let events = position_events(history.clone(), fill.clone()).await;
    // Short: 1 × (2000 − 1900) = 100.
    assert_eq!(
        events,
        vec![AccountEvent::PositionReduced {
            signal_id: sid("s2"),
            market: market("ETH-USD"),
            size_delta: qty("1"),
            new_size: qty("1"),
            realized_pnl_usd: usd("100"),
        }]
    );
    let mut all = history;
    all.extend(after_state(&all, fill));
    assert_eq!(replay(&all).positions[&market("ETH-USD")].size, dec("-1"));
}

#[tokio::test]
async fn selling_the_whole_long_closes_it() {
    let history = eth_position_then(Side::Buy, "2", "2000", Side::Sell, "2");
    let fill = filled_in("ETH-USD", Side::Sell, "s2", "1900", "2", "0", T3);
    let events = position_events(history.clone(), fill.clone()).await;
    // 2 × (1900 − 2000) = −200.
    assert_eq!(
        events,
        vec![AccountEvent::PositionClosed {
            signal_id: sid("s2"),
            market: market("ETH-USD"),
            size_delta: qty("2"),
            realized_pnl_usd: usd("-200"),
        }]
    );
    let mut all = history;
    all.extend(after_state(&all, fill));
    let position = &replay(&all).positions[&market("ETH-USD")];
    assert!(position.is_flat());
    assert_eq!(position.realized_pnl_usd, usd("-200"));
}

#[tokio::test]
async fn selling_more_than_the_long_closes_it_and_opens_a_short() {
    let history = eth_position_then(Side::Buy, "1", "2000", Side::Sell, "3");
    let fill = filled_in("ETH-USD", Side::Sell, "s2", "2100", "3", "0", T3);
    let events = position_events(history.clone(), fill.clone()).await;
    // Closes 1 at +100 each, opens short 3 − 1 = 2 at 2100.
    assert_eq!(
        events,
        vec![
            AccountEvent::PositionClosed {
                signal_id: sid("s2"),
                market: market("ETH-USD"),
                size_delta: qty("1"),
                realized_pnl_usd: usd("100"),
            },
            AccountEvent::PositionOpened {
                signal_id: sid("s2"),
                market: market("ETH-USD"),
                side: Side::Sell,
                size: qty("2"),
                entry_price: dec("2100"),
            },
        ]
    );
    let mut all = history;
    all.extend(after_state(&all, fill));
    let position = &replay(&all).positions[&market("ETH-USD")];
    assert_eq!(position.size, dec("-2"));
    assert_eq!(position.average_entry_price, dec("2100"));
    assert_eq!(position.realized_pnl_usd, usd("100"));
}

#[tokio::test]
async fn a_closed_position_reopens_fresh() {
    let mut history = eth_position_then(Side::Buy, "2", "2000", Side::Sell, "2");
    history.extend(after_state(
        &history,
        filled_in("ETH-USD", Side::Sell, "s2", "1900", "2", "0", T3),
    ));
    history.extend(after_state(
        &history,
        receive(&intent(
            "s3",
            "ETH-USD",
            Side::Sell,
            "1",
            "1800",
            "2024-03-01T11:00:00Z",
        )),
    ));
    let events = position_events(
        history,
        filled_in(
            "ETH-USD",
            Side::Sell,
            "s3",
            "1800",
            "1",
            "0",
            "2024-03-01T11:00:01Z",
        ),
    )
    .await;
    assert_eq!(
        events,
        vec![AccountEvent::PositionOpened {
            signal_id: sid("s3"),
            market: market("ETH-USD"),
            side: Side::Sell,
            size: qty("1"),
            entry_price: dec("1800"),
        }]
    );
}

// ----------------------------------------------------------------------------------------------
// Notifications

#[tokio::test]
async fn a_notification_before_the_outcome_is_refused() {
    given(one_btc_in_flight())
        .when_async(notified(
            "s1",
            NotificationOutcome::Sent,
            "2024-03-01T09:00:05Z",
        ))
        .await
        .then_expect_error(AccountError::NotConcluded(sid("s1")));
}

#[tokio::test]
async fn a_notification_for_an_unknown_signal_is_refused() {
    given(one_btc_in_flight())
        .when_async(notified(
            "s9",
            NotificationOutcome::Sent,
            "2024-03-01T09:00:05Z",
        ))
        .await
        .then_expect_error(AccountError::NotInFlight(sid("s9")));
}

#[tokio::test]
async fn a_sent_notification_finishes_the_signal() {
    let mut history = one_btc_in_flight();
    history.extend(after_state(
        &history,
        filled("s1", "60000", "1", "1", "2024-03-01T09:00:02Z"),
    ));
    let events = given(history.clone())
        .when_async(notified(
            "s1",
            NotificationOutcome::Sent,
            "2024-03-01T09:00:05Z",
        ))
        .await
        .inspect_result()
        .unwrap();
    assert_eq!(
        events,
        vec![AccountEvent::NotificationSent {
            signal_id: sid("s1"),
            channel: "telegram".to_owned(),
            at: at("2024-03-01T09:00:05Z"),
        }]
    );
    history.extend(events);
    assert!(!replay(&history).in_flight.contains_key(&sid("s1")));

    // Once finished, the signal is no longer in flight for anything.
    given(history.clone())
        .when_async(notified(
            "s1",
            NotificationOutcome::Sent,
            "2024-03-01T09:00:09Z",
        ))
        .await
        .then_expect_error(AccountError::NotInFlight(sid("s1")));
    given(history)
        .when_async(filled("s1", "60000", "1", "1", "2024-03-01T09:00:09Z"))
        .await
        .then_expect_error(AccountError::NotInFlight(sid("s1")));
}

#[tokio::test]
async fn a_failed_notification_also_finishes_the_signal() {
    let mut history = one_btc_in_flight();
    history.extend(after_state(
        &history,
        failed("s1", "exchange unreachable", "2024-03-01T09:00:02Z"),
    ));
    let outcome = NotificationOutcome::Failed {
        reason: "chat not found".to_owned(),
    };
    let events = given(history.clone())
        .when_async(notified("s1", outcome, "2024-03-01T09:00:05Z"))
        .await
        .inspect_result()
        .unwrap();
    assert_eq!(
        events,
        vec![AccountEvent::NotificationFailed {
            signal_id: sid("s1"),
            channel: "telegram".to_owned(),
            reason: "chat not found".to_owned(),
            at: at("2024-03-01T09:00:05Z"),
            retry_at: None,
        }]
    );
    history.extend(events);
    let state = replay(&history);
    assert!(state.in_flight.is_empty());
    // The released reservation stays released.
    assert_eq!(state.daily_volume.traded_usd, UsdAmount::ZERO);
}

// ----------------------------------------------------------------------------------------------
// Credential access

fn credential_access() -> aggregates::CredentialAccess {
    aggregates::CredentialAccess {
        field: "dydx_mnemonic".into(),
        purpose: "place order".into(),
        by: "execution".into(),
        key_version: 2,
        at: at("2024-03-01T09:00:00Z"),
    }
}

#[tokio::test]
async fn a_credential_access_is_recorded_with_what_why_who_and_key_version() {
    given(open_default())
        .when_async(AccountCommand::RecordCredentialAccess(credential_access()))
        .await
        .then_expect_events(vec![AccountEvent::CredentialAccessed {
            field: "dydx_mnemonic".into(),
            purpose: "place order".into(),
            by: "execution".into(),
            key_version: 2,
            at: at("2024-03-01T09:00:00Z"),
        }]);
}

#[tokio::test]
async fn a_credential_access_changes_nothing_else_and_needs_an_open_account() {
    let mut account = TradingAccount::default();
    for event in open_default() {
        cqrs_es::Aggregate::apply(&mut account, event);
    }
    let before = account.clone();
    cqrs_es::Aggregate::apply(&mut account, credential_access().into_event());
    assert_eq!(account, before);
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when_async(AccountCommand::RecordCredentialAccess(credential_access()))
        .await
        .then_expect_error(AccountError::NotOpened);
}

fn deferred(reason: &str, retry_at: &str) -> NotificationOutcome {
    NotificationOutcome::Deferred {
        reason: reason.to_owned(),
        retry_at: at(retry_at),
    }
}

#[tokio::test]
async fn a_deferred_notification_is_retried_until_the_attempts_run_out() {
    let mut history = one_btc_in_flight();
    history.extend(after_state(
        &history,
        filled("s1", "60010", "1", "4.5", "2024-03-01T09:00:02Z"),
    ));
    // Every attempt but the last plans the next one; the account keeps the signal undelivered.
    for attempt in 1..aggregates::NOTIFICATION_ATTEMPTS {
        let events = after_state(
            &history,
            notified(
                "s1",
                deferred("502", "2024-03-01T09:01:00Z"),
                "2024-03-01T09:00:05Z",
            ),
        );
        assert!(
            matches!(
                events.as_slice(),
                [AccountEvent::NotificationFailed {
                    retry_at: Some(_),
                    ..
                }]
            ),
            "attempt {attempt}: {events:?}"
        );
        history.extend(events);
        let state = replay(&history);
        assert!(state.in_flight.is_empty());
        assert_eq!(state.undelivered.get(&sid("s1")), Some(&attempt));
    }
    // The last attempt's failure is final: nothing is planned, nothing kept.
    let last = after_state(
        &history,
        notified(
            "s1",
            deferred("502", "2024-03-01T09:01:00Z"),
            "2024-03-01T09:00:09Z",
        ),
    );
    assert!(
        matches!(
            last.as_slice(),
            [AccountEvent::NotificationFailed { retry_at: None, .. }]
        ),
        "{last:?}"
    );
    history.extend(last);
    assert!(replay(&history).undelivered.is_empty());
    let refused = replay(&history).decide(notified(
        "s1",
        NotificationOutcome::Sent,
        "2024-03-01T09:00:10Z",
    ));
    assert_eq!(refused, Err(AccountError::NotInFlight(sid("s1"))));
}

#[tokio::test]
async fn a_retry_that_is_sent_ends_the_signal_for_good() {
    let mut history = one_btc_in_flight();
    history.extend(after_state(
        &history,
        failed("s1", "exchange unreachable", "2024-03-01T09:00:02Z"),
    ));
    history.extend(after_state(
        &history,
        notified(
            "s1",
            deferred("down", "2024-03-01T09:00:30Z"),
            "2024-03-01T09:00:03Z",
        ),
    ));
    let sent = after_state(
        &history,
        notified("s1", NotificationOutcome::Sent, "2024-03-01T09:00:31Z"),
    );
    assert_eq!(names(&sent), ["NotificationSent"]);
    history.extend(sent);
    let state = replay(&history);
    assert!(state.undelivered.is_empty() && state.in_flight.is_empty());
    // A second send of the same notification is refused: it is recorded once.
    let again = state.decide(notified(
        "s1",
        NotificationOutcome::Sent,
        "2024-03-01T09:00:32Z",
    ));
    assert_eq!(again, Err(AccountError::NotInFlight(sid("s1"))));
}
