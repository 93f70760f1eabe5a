//! The risk rules a trader meets: per-market size caps, the price-deviation circuit breaker,
//! bracket sanity, reduce-only orders shrinking risk past every size limit, the automatic halt
//! after repeated exchange failures, changing limits, and cancelling an approved order.

use std::collections::BTreeMap;

use crate::common::*;
use aggregates::{
    rule, AccountCommand, AccountError, AccountEvent, OrderType, RejectionReason, RiskLimits, Side,
    SignalIntent, SignalStage, TradingAccount, UsdAmount, AUTOMATIC_HALT_BY,
};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};

fn given(events: Vec<AccountEvent>) -> AggregateTestExecutor<TradingAccount> {
    TestFramework::<TradingAccount>::with(()).given(events)
}

fn generous() -> RiskLimits {
    limits("10000000", "10000000", "100000000", &[])
}

fn after(limits: RiskLimits, commands: Vec<AccountCommand>) -> Vec<AccountEvent> {
    history(std::iter::once(open_command(limits)).chain(commands))
}

fn decide(history: &[AccountEvent], command: AccountCommand) -> Vec<AccountEvent> {
    replay(history).decide(command).expect("decided")
}

fn btc_buy(id: &str, size: &str) -> SignalIntent {
    intent(
        id,
        "BTC-USD",
        Side::Buy,
        size,
        "60000",
        "2024-03-01T09:00:00Z",
    )
}

fn btc_sell(id: &str, size: &str) -> SignalIntent {
    intent(
        id,
        "BTC-USD",
        Side::Sell,
        size,
        "60000",
        "2024-03-01T09:00:00Z",
    )
}

/// The rule a signal was risk-rejected under, or None when it was approved.
fn rejected_rule(history: &[AccountEvent], signal: &SignalIntent) -> Option<String> {
    match decide(history, receive(signal)).as_slice() {
        [AccountEvent::SignalReceived { .. }, AccountEvent::RiskApproved { .. }] => None,
        [AccountEvent::SignalReceived { .. }, AccountEvent::RiskRejected { rule, detail, .. }] => {
            assert!(!detail.is_empty());
            Some(rule.clone())
        }
        other => panic!("expected a risk decision, got {other:?}"),
    }
}

fn with_sizes(
    mut limits: RiskLimits,
    order: &[(&str, &str)],
    position: &[(&str, &str)],
) -> RiskLimits {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<_, _> {
        pairs.iter().map(|(m, v)| (market(m), dec(v))).collect()
    };
    limits.max_order_size = map(order);
    limits.max_position_size = map(position);
    limits
}

// ----------------------------------------------------------------------------------------------
// Per-market size limits

#[test]
fn an_order_above_its_markets_size_limit_is_rejected_and_other_markets_are_not_limited() {
    let limits = with_sizes(generous(), &[("BTC-USD", "0.5")], &[]);
    let history = after(limits, vec![]);
    assert_eq!(
        rejected_rule(&history, &btc_buy("s1", "0.6")).as_deref(),
        Some(rule::MAX_ORDER_SIZE)
    );
    assert_eq!(rejected_rule(&history, &btc_buy("s2", "0.5")), None);
    let eth = intent(
        "s3",
        "ETH-USD",
        Side::Buy,
        "100",
        "3000",
        "2024-03-01T09:00:00Z",
    );
    assert_eq!(rejected_rule(&history, &eth), None);
}

#[test]
fn a_position_above_its_markets_size_limit_is_rejected_but_shrinking_it_is_not() {
    let limits = with_sizes(generous(), &[], &[("BTC-USD", "1")]);
    let history = after(
        limits.clone(),
        vec![
            receive(&btc_buy("s1", "0.8")),
            filled("s1", "60000", "0.8", "0", "2024-03-01T09:00:01Z"),
        ],
    );
    assert_eq!(
        rejected_rule(&history, &btc_buy("s2", "0.3")).as_deref(),
        Some(rule::MAX_POSITION_SIZE)
    );
    assert_eq!(rejected_rule(&history, &btc_buy("s3", "0.2")), None);
    // Held above a tightened limit, selling part of it is still allowed.
    let mut held = history;
    held[0] = opened(with_sizes(generous(), &[], &[("BTC-USD", "0.5")]));
    assert_eq!(rejected_rule(&held, &btc_sell("s4", "0.1")), None);
    // Selling 2 flips to short 1.2, larger than the limit and than now: rejected.
    assert_eq!(
        rejected_rule(&held, &btc_sell("s5", "2")).as_deref(),
        Some(rule::MAX_POSITION_SIZE)
    );
}

#[test]
fn flipping_to_the_same_size_on_the_other_side_is_not_growth_but_one_unit_more_is() {
    // Long 1 BTC, held above a position limit tightened to 0.5 after it was bought.
    let mut held = after(
        generous(),
        vec![
            receive(&btc_buy("s1", "1")),
            filled("s1", "60000", "1", "0", "2024-03-01T09:00:01Z"),
        ],
    );
    held[0] = opened(with_sizes(generous(), &[], &[("BTC-USD", "0.5")]));
    // Selling 2 leaves short 1: as large as now, not larger, so the limit does not apply.
    assert_eq!(rejected_rule(&held, &btc_sell("s2", "2")), None);
    assert_eq!(
        rejected_rule(&held, &btc_sell("s3", "2.0001")).as_deref(),
        Some(rule::MAX_POSITION_SIZE)
    );
}

#[test]
fn a_position_reaching_its_notional_limit_exactly_is_approved_and_a_unit_more_is_not() {
    let limits = limits("100000", "60000", "1000000", &[]);
    let history = after(
        limits,
        vec![
            receive(&btc_buy("s1", "0.5")),
            filled("s1", "60000", "0.5", "0", "2024-03-01T09:00:01Z"),
        ],
    );
    // 0.5 held + 0.5 bought = 1 BTC at 60000: exactly the 60000 USD limit.
    assert_eq!(rejected_rule(&history, &btc_buy("s2", "0.5")), None);
    assert_eq!(
        rejected_rule(&history, &btc_buy("s3", "0.5001")).as_deref(),
        Some(rule::MAX_POSITION_NOTIONAL)
    );
}

#[test]
fn a_rejection_tells_the_trader_the_amounts_in_usd() {
    let limits = limits("10000", "100000", "15000", &[]);
    // 0.15 BTC at 60000: 9000 USD of today's 15000.
    let history = after(
        limits,
        vec![
            receive(&btc_buy("s1", "0.15")),
            filled("s1", "60000", "0.15", "0", "2024-03-01T09:00:01Z"),
        ],
    );
    let detail = |signal: &SignalIntent| match decide(&history, receive(signal)).as_slice() {
        [_, AccountEvent::RiskRejected { detail, .. }] => detail.clone(),
        other => panic!("expected a risk rejection, got {other:?}"),
    };
    assert_eq!(
        detail(&btc_buy("s2", "0.2")),
        "order notional 12000 USD exceeds the limit of 10000 USD"
    );
    assert_eq!(
        detail(&btc_buy("s3", "0.11")),
        "today's volume would be 15600 USD, above the limit of 15000 USD"
    );
}

// ----------------------------------------------------------------------------------------------
// Price deviation circuit breaker

#[test]
fn an_alert_price_too_far_from_the_market_trips_the_circuit_breaker() {
    let history = after(generous(), vec![]);
    let mut signal = btc_buy("s1", "0.1");
    // 5% of 60000 is 3000: 63000 is at the edge, 63001 beyond it.
    signal.alert_price = Some(dec("63000"));
    assert_eq!(rejected_rule(&history, &signal), None);
    signal.alert_price = Some(dec("63001"));
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::PRICE_DEVIATION)
    );
    signal.alert_price = Some(dec("56999"));
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::PRICE_DEVIATION)
    );
}

#[test]
fn the_circuit_breaker_says_how_far_is_too_far() {
    let history = after(generous(), vec![]);
    let mut signal = btc_buy("s1", "0.1");
    signal.alert_price = Some(dec("6000"));
    let events = decide(&history, receive(&signal));
    assert_eq!(
        events[1],
        AccountEvent::RiskRejected {
            signal_id: sid("s1"),
            rule: rule::PRICE_DEVIATION.to_owned(),
            detail: "alert price 6000 is more than 5% away from the market price 60000".to_owned(),
        }
    );
}

#[test]
fn a_limit_price_too_far_from_the_market_trips_the_circuit_breaker() {
    let history = after(generous(), vec![]);
    let mut signal = btc_buy("s1", "0.1");
    signal.order_type = OrderType::Limit { price: dec("6000") };
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::PRICE_DEVIATION)
    );
    signal.order_type = OrderType::Limit {
        price: dec("59000"),
    };
    assert_eq!(rejected_rule(&history, &signal), None);
}

#[test]
fn a_limit_price_that_is_not_positive_is_rejected_even_with_the_breaker_off() {
    let mut limits = generous();
    limits.max_price_deviation_bps = 0;
    let history = after(limits, vec![]);
    let mut signal = btc_buy("s1", "0.1");
    signal.order_type = OrderType::Limit { price: dec("0") };
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::LIMIT_PRICE)
    );
}

#[test]
fn a_zero_deviation_limit_turns_the_circuit_breaker_off() {
    let mut limits = generous();
    limits.max_price_deviation_bps = 0;
    let mut signal = btc_buy("s1", "0.1");
    signal.alert_price = Some(dec("1"));
    assert_eq!(rejected_rule(&after(limits, vec![]), &signal), None);
}

#[test]
fn a_close_at_an_absurd_alert_price_is_still_stopped_by_the_circuit_breaker() {
    let history = after(
        generous(),
        vec![
            receive(&btc_buy("s1", "1")),
            filled("s1", "60000", "1", "0", "2024-03-01T09:00:01Z"),
        ],
    );
    let mut signal = close("s2", "BTC-USD", "60000", "2024-03-01T09:10:00Z");
    signal.alert_price = Some(dec("600"));
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::PRICE_DEVIATION)
    );
}

// ----------------------------------------------------------------------------------------------
// Brackets

#[test]
fn a_buys_take_profit_must_be_above_and_its_stop_loss_below_the_market() {
    let history = after(generous(), vec![]);
    let mut signal = btc_buy("s1", "0.1");
    signal.take_profit = Some(dec("66000"));
    signal.stop_loss = Some(dec("57000"));
    assert_eq!(rejected_rule(&history, &signal), None);
    signal.take_profit = Some(dec("59000"));
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::BRACKET_PRICES)
    );
    signal.take_profit = Some(dec("66000"));
    signal.stop_loss = Some(dec("61000"));
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::BRACKET_PRICES)
    );
    signal.stop_loss = Some(dec("0"));
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::BRACKET_PRICES)
    );
}

#[test]
fn a_sells_brackets_are_mirrored() {
    let history = after(generous(), vec![]);
    let mut signal = btc_sell("s1", "0.1");
    signal.take_profit = Some(dec("54000"));
    signal.stop_loss = Some(dec("63000"));
    assert_eq!(rejected_rule(&history, &signal), None);
    signal.take_profit = Some(dec("66000"));
    let events = decide(&history, receive(&signal));
    assert_eq!(
        events[1],
        AccountEvent::RiskRejected {
            signal_id: sid("s1"),
            rule: rule::BRACKET_PRICES.to_owned(),
            detail: "a sell's take-profit 66000 must be below the market price 60000".to_owned(),
        }
    );
}

#[test]
fn a_bracket_at_the_market_price_itself_is_rejected_on_either_side() {
    let history = after(generous(), vec![]);
    // The market price is 60000: a bracket there would trigger the moment the order fills.
    for (signal, take_profit, stop_loss) in [
        (btc_buy("s1", "0.1"), "60000", "57000"),
        (btc_buy("s2", "0.1"), "66000", "60000"),
        (btc_sell("s3", "0.1"), "60000", "63000"),
        (btc_sell("s4", "0.1"), "54000", "60000"),
    ] {
        let mut signal = signal;
        signal.take_profit = Some(dec(take_profit));
        signal.stop_loss = Some(dec(stop_loss));
        assert_eq!(
            rejected_rule(&history, &signal).as_deref(),
            Some(rule::BRACKET_PRICES),
            "take-profit {take_profit}, stop-loss {stop_loss}"
        );
    }
}

// ----------------------------------------------------------------------------------------------
// Reduce-only orders shrink risk past every size limit

/// Long 3 BTC (180000 USD), then held under limits it is far above.
fn long_three_btc_under(limits: RiskLimits) -> Vec<AccountEvent> {
    let mut history = after(
        generous(),
        vec![
            receive(&btc_buy("s1", "3")),
            filled("s1", "60000", "3", "0", "2024-03-01T09:00:01Z"),
        ],
    );
    history[0] = opened(limits);
    history
}

#[test]
fn a_close_is_approved_past_order_position_and_daily_limits() {
    let tight = with_sizes(
        limits("1000", "1000", "1000", &[]),
        &[("BTC-USD", "0.1")],
        &[("BTC-USD", "0.1")],
    );
    let history = long_three_btc_under(tight);
    let signal = close("s2", "BTC-USD", "60000", "2024-03-01T10:00:00Z");
    assert_eq!(
        decide(&history, receive(&signal)),
        vec![
            signal_received(&signal),
            approved_order(&signal, Side::Sell, "3", true, "180000")
        ]
    );
    // A plain sell of the same size, not reduce-only, is held to the limits.
    let sell = btc_sell("s3", "3");
    assert_eq!(
        rejected_rule(&history, &sell).as_deref(),
        Some(rule::MAX_ORDER_SIZE)
    );
}

#[test]
fn a_reduce_only_target_is_approved_past_the_limits_too() {
    let history = long_three_btc_under(limits("1000", "1000", "1000", &[]));
    let signal = target("s2", "BTC-USD", "1", "60000", "2024-03-01T10:00:00Z");
    assert_eq!(
        decide(&history, receive(&signal))[1],
        approved_order(&signal, Side::Sell, "2", true, "120000")
    );
}

#[test]
fn a_close_outside_the_allowed_markets_is_still_rejected() {
    let history = long_three_btc_under(limits("1000000", "1000000", "1000000", &["ETH-USD"]));
    let signal = close("s2", "BTC-USD", "60000", "2024-03-01T10:00:00Z");
    assert_eq!(
        rejected_rule(&history, &signal).as_deref(),
        Some(rule::ALLOWED_MARKETS)
    );
}

#[test]
fn a_close_on_a_halted_account_is_rejected_as_halted() {
    let mut history = long_three_btc_under(generous());
    history.extend(decide(&history, halt("2024-03-01T09:30:00Z")));
    let signal = close("s2", "BTC-USD", "60000", "2024-03-01T10:00:00Z");
    assert!(matches!(
        decide(&history, receive(&signal)).as_slice(),
        [AccountEvent::SignalRejected {
            reason: RejectionReason::Halted { .. },
            ..
        }]
    ));
}

// ----------------------------------------------------------------------------------------------
// Automatic halt after consecutive exchange failures

/// Signals s1..=n approved, in order, on an account whose automatic halt is at `threshold`.
fn approved_signals(threshold: u32, n: usize) -> Vec<AccountEvent> {
    let mut limits = generous();
    limits.halt_after_consecutive_failures = threshold;
    let commands = (1..=n)
        .map(|i| receive(&btc_buy(&format!("s{i}"), "0.1")))
        .collect();
    after(limits, commands)
}

fn run(history: &mut Vec<AccountEvent>, command: AccountCommand) -> Vec<AccountEvent> {
    let events = decide(history, command);
    history.extend(events.clone());
    events
}

#[tokio::test]
async fn the_third_failure_in_a_row_halts_the_account_as_risk() {
    let mut history = approved_signals(3, 3);
    run(
        &mut history,
        failed("s1", "timeout", "2024-03-01T09:01:00Z"),
    );
    run(
        &mut history,
        failed("s2", "timeout", "2024-03-01T09:02:00Z"),
    );
    given(history)
        .when_async(failed("s3", "connection refused", "2024-03-01T09:03:00Z"))
        .await
        .then_expect_events(vec![
            AccountEvent::OrderFailed {
                signal_id: sid("s3"),
                client_order_id: coid("s3"),
                reason: "connection refused".to_owned(),
                at: at("2024-03-01T09:03:00Z"),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: sid("s3"),
                notional_usd: usd("6000"),
            },
            AccountEvent::TradingHalted {
                by: AUTOMATIC_HALT_BY.to_owned(),
                reason: "3 orders in a row could not be placed; the last: connection refused"
                    .to_owned(),
                at: at("2024-03-01T09:03:00Z"),
            },
        ]);
}

#[test]
fn after_the_automatic_halt_signals_are_rejected_saying_why() {
    let mut history = approved_signals(2, 2);
    run(
        &mut history,
        failed("s1", "timeout", "2024-03-01T09:01:00Z"),
    );
    run(
        &mut history,
        failed("s2", "timeout", "2024-03-01T09:02:00Z"),
    );
    let next = intent(
        "s9",
        "BTC-USD",
        Side::Buy,
        "0.1",
        "60000",
        "2024-03-01T09:05:00Z",
    );
    match decide(&history, receive(&next)).as_slice() {
        [AccountEvent::SignalRejected {
            reason: RejectionReason::Halted { detail },
            ..
        }] => assert_eq!(
            detail,
            "trading halted by execution: 2 orders in a row could not be placed; the last: timeout"
        ),
        other => panic!("expected a halted rejection, got {other:?}"),
    }
}

#[test]
fn a_fill_or_an_exchange_rejection_between_failures_starts_the_count_again() {
    let mut history = approved_signals(2, 5);
    run(
        &mut history,
        failed("s1", "timeout", "2024-03-01T09:01:00Z"),
    );
    run(
        &mut history,
        filled("s2", "60000", "0.1", "0", "2024-03-01T09:02:00Z"),
    );
    assert_eq!(
        names(&run(
            &mut history,
            failed("s3", "timeout", "2024-03-01T09:03:00Z")
        )),
        ["OrderFailed", "RiskReservationReleased"]
    );
    run(
        &mut history,
        rejected("s4", "margin", "2024-03-01T09:04:00Z"),
    );
    assert_eq!(
        names(&run(
            &mut history,
            failed("s5", "timeout", "2024-03-01T09:05:00Z")
        )),
        ["OrderFailed", "RiskReservationReleased"]
    );
    assert_eq!(replay(&history).consecutive_failures, 1);
}

#[test]
fn a_threshold_of_zero_never_halts() {
    let mut history = approved_signals(0, 4);
    for i in 1..=4 {
        let events = run(
            &mut history,
            failed(&format!("s{i}"), "timeout", "2024-03-01T09:05:00Z"),
        );
        assert_eq!(names(&events), ["OrderFailed", "RiskReservationReleased"]);
    }
    assert!(replay(&history).halt.is_none());
}

#[test]
fn an_account_already_halted_is_not_halted_again_and_resuming_clears_the_count() {
    let mut history = approved_signals(2, 4);
    run(&mut history, halt("2024-03-01T09:00:30Z"));
    run(
        &mut history,
        failed("s1", "timeout", "2024-03-01T09:01:00Z"),
    );
    let second = run(
        &mut history,
        failed("s2", "timeout", "2024-03-01T09:02:00Z"),
    );
    assert_eq!(names(&second), ["OrderFailed", "RiskReservationReleased"]);
    assert_eq!(replay(&history).halt.map(|h| h.by), Some("ops".to_owned()));
    run(&mut history, resume("2024-03-01T09:03:00Z"));
    assert_eq!(replay(&history).consecutive_failures, 0);
    let third = run(
        &mut history,
        failed("s3", "timeout", "2024-03-01T09:04:00Z"),
    );
    assert_eq!(names(&third), ["OrderFailed", "RiskReservationReleased"]);
}

// ----------------------------------------------------------------------------------------------
// Changing limits

fn set_limits(limits: RiskLimits) -> AccountCommand {
    AccountCommand::SetRiskLimits {
        limits,
        by: "ops".to_owned(),
        reason: "trader asked for a cap".to_owned(),
        at: at("2024-03-01T08:30:00Z"),
    }
}

#[tokio::test]
async fn setting_limits_records_them_with_who_and_why_and_the_next_signal_meets_them() {
    let tighter = limits("1000", "250000", "1000000", &[]);
    let events = given(after(RiskLimits::default(), vec![]))
        .when_async(set_limits(tighter.clone()))
        .await
        .inspect_result()
        .expect("limits set");
    assert_eq!(
        events,
        vec![AccountEvent::RiskLimitsChanged {
            limits: tighter.clone(),
            by: "ops".to_owned(),
            reason: "trader asked for a cap".to_owned(),
            at: at("2024-03-01T08:30:00Z"),
        }]
    );
    let history = after(RiskLimits::default(), vec![set_limits(tighter)]);
    assert_eq!(
        rejected_rule(&history, &btc_buy("s1", "0.1")).as_deref(),
        Some(rule::MAX_ORDER_NOTIONAL)
    );
}

#[tokio::test]
async fn setting_the_same_limits_again_records_nothing() {
    given(after(RiskLimits::default(), vec![]))
        .when_async(set_limits(RiskLimits::default()))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn setting_limits_on_an_unopened_account_is_refused() {
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when_async(set_limits(RiskLimits::default()))
        .await
        .then_expect_error(AccountError::NotOpened);
}

// ----------------------------------------------------------------------------------------------
// Cancelling an approved order before placement

#[tokio::test]
async fn a_cancelled_order_releases_its_reservation_without_being_submitted() {
    let history = after(generous(), vec![receive(&btc_buy("s1", "1"))]);
    given(history)
        .when_async(cancelled(
            "s1",
            "emergency stop engaged",
            "2024-03-01T09:00:01Z",
        ))
        .await
        .then_expect_events(vec![
            AccountEvent::OrderCancelled {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                reason: "emergency stop engaged".to_owned(),
                at: at("2024-03-01T09:00:01Z"),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: sid("s1"),
                notional_usd: usd("60000"),
            },
        ]);
}

#[test]
fn a_cancelled_signal_awaits_its_notification_and_frees_its_volume() {
    let mut history = after(generous(), vec![receive(&btc_buy("s1", "1"))]);
    run(
        &mut history,
        cancelled("s1", "halted", "2024-03-01T09:00:01Z"),
    );
    let state = replay(&history);
    assert_eq!(
        state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    assert_eq!(state.daily_volume.traded_usd, UsdAmount::ZERO);
    assert_eq!(state.consecutive_failures, 0);
    // The exposure it held is gone: a target of 1 buys the whole 1 again.
    let again = target("s2", "BTC-USD", "1", "60000", "2024-03-01T09:01:00Z");
    assert_eq!(
        decide(&history, receive(&again))[1],
        approved_order(&again, Side::Buy, "1", false, "60000")
    );
    // A report after the cancellation changes nothing.
    assert_eq!(
        decide(
            &history,
            filled("s1", "60000", "1", "0", "2024-03-01T09:00:02Z")
        ),
        vec![]
    );
}

#[test]
fn a_cancellation_naming_another_order_is_refused() {
    let history = after(generous(), vec![receive(&btc_buy("s1", "1"))]);
    let report = AccountCommand::RecordExecution(aggregates::ExecutionReport::Cancelled {
        signal_id: sid("s1"),
        client_order_id: coid("s2"),
        reason: "halted".to_owned(),
        at: at("2024-03-01T09:00:01Z"),
    });
    assert_eq!(
        replay(&history).decide(report),
        Err(AccountError::ClientOrderIdMismatch {
            expected: coid("s1"),
            reported: coid("s2"),
        })
    );
}
