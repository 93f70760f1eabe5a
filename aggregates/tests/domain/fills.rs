//! What the account does with a fill the exchange reports that is not its order's, or whose
//! numbers no market produces: it records `FillMismatch`, halts, folds nothing into a position,
//! and never panics. The decision is the aggregate's, so it holds for every exchange.

use crate::common::*;
use aggregates::{
    AccountCommand, AccountEvent, ExecutionReport, Fill, NotificationOutcome, Position, Quantity,
    RejectionReason, RiskLimits, Side, SignalStage, TradingAccount, AUTOMATIC_HALT_BY,
    MAX_FILL_PRICE,
};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use rust_decimal::Decimal;

const APPROVED: &str = "2024-03-01T09:00:00Z";
const REPORTED: &str = "2024-03-01T09:00:02Z";

fn given(events: Vec<AccountEvent>) -> AggregateTestExecutor<TradingAccount> {
    TestFramework::<TradingAccount>::with(()).given(events)
}

/// An open account with signal `s1`, a buy of 1 BTC-USD, approved and awaiting execution.
fn one_btc_in_flight() -> Vec<AccountEvent> {
    history([
        open_command(RiskLimits::default()),
        receive(&intent("s1", "BTC-USD", Side::Buy, "1", "60000", APPROVED)),
    ])
}

/// The exchange's report for `s1` with a fill of its own choosing.
fn reported(fill: Fill) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Filled {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "ex-1".to_owned(),
        fill,
        at: at(REPORTED),
    })
}

fn fill(ticker: &str, side: Side, size: Decimal, price: Decimal, fee: Decimal) -> Fill {
    Fill {
        market: market(ticker),
        side,
        price,
        size: Quantity::new(size).unwrap(),
        fee,
    }
}

/// The events `command` produces on `history`, which must be a refused fill: submitted, the
/// mismatch, and the halt when the account was not halted yet. Returns the mismatch's reason.
fn refused(history: &[AccountEvent], command: AccountCommand) -> String {
    let state = replay(history);
    let events = state
        .decide(command)
        .expect("a mismatch is recorded, not an error");
    let halted_before = state.halt.is_some();
    let expected: &[&str] = if halted_before {
        &["OrderSubmitted", "FillMismatch"]
    } else {
        &["OrderSubmitted", "FillMismatch", "TradingHalted"]
    };
    assert_eq!(names(&events), expected, "{events:?}");
    let mut after = history.to_vec();
    after.extend(events.iter().cloned());
    let folded = replay(&after);
    assert_eq!(
        folded.positions, state.positions,
        "a refused fill moved a position"
    );
    assert_eq!(folded.orders_filled, state.orders_filled);
    assert!(folded.halt.is_some(), "the account must be halted");
    match &events[1] {
        AccountEvent::FillMismatch { reason, .. } => reason.clone(),
        other => panic!("expected FillMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fill_in_another_market_is_recorded_as_a_mismatch_and_halts_the_account() {
    let wrong = fill(
        "ETH-USD",
        Side::Sell,
        dec("0.01"),
        dec("65033"),
        dec("0.33"),
    );
    let reason = "market ETH-USD is not the order's BTC-USD; side sell is not the order's buy";
    given(one_btc_in_flight())
        .when_async(reported(wrong))
        .await
        .then_expect_events(vec![
            AccountEvent::OrderSubmitted {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                market: market("BTC-USD"),
                side: Side::Buy,
                size: qty("1"),
                submitted_at: at(REPORTED),
            },
            AccountEvent::FillMismatch {
                signal_id: sid("s1"),
                client_order_id: coid("s1"),
                exchange_order_id: "ex-1".to_owned(),
                expected_market: market("BTC-USD"),
                expected_side: Side::Buy,
                expected_remaining: qty("1"),
                reported_market: market("ETH-USD"),
                reported_side: Side::Sell,
                reported_size: qty("0.01"),
                reported_price: dec("65033"),
                reported_fee: dec("0.33"),
                reason: reason.to_owned(),
                at: at(REPORTED),
            },
            AccountEvent::TradingHalted {
                by: AUTOMATIC_HALT_BY.to_owned(),
                reason: format!("the exchange reported a fill that is not order lh-s1's: {reason}"),
                at: at(REPORTED),
            },
        ]);
}

#[test]
fn a_fill_on_the_other_side_is_a_mismatch() {
    let reason = refused(
        &one_btc_in_flight(),
        reported(fill(
            "BTC-USD",
            Side::Sell,
            dec("1"),
            dec("60000"),
            dec("1"),
        )),
    );
    assert_eq!(reason, "side sell is not the order's buy");
}

#[test]
fn a_fill_larger_than_what_is_left_of_the_order_is_a_mismatch() {
    let reason = refused(
        &one_btc_in_flight(),
        reported(fill(
            "BTC-USD",
            Side::Buy,
            dec("1.01"),
            dec("60000"),
            dec("1"),
        )),
    );
    assert_eq!(reason, "size 1.01 is more than the 1 left to fill");
}

#[test]
fn a_fill_of_at_most_what_is_left_is_booked() {
    let events = replay(&one_btc_in_flight())
        .decide(reported(fill(
            "BTC-USD",
            Side::Buy,
            dec("1"),
            dec("60000"),
            dec("1"),
        )))
        .unwrap();
    assert_eq!(
        names(&events),
        ["OrderSubmitted", "OrderFilled", "PositionOpened"]
    );
}

#[test]
fn a_fill_at_the_highest_plausible_price_or_with_a_fee_of_its_whole_notional_is_booked() {
    let booked = |size: &str, price: Decimal, fee: &str| {
        let events = replay(&one_btc_in_flight())
            .decide(reported(fill(
                "BTC-USD",
                Side::Buy,
                dec(size),
                price,
                dec(fee),
            )))
            .unwrap();
        names(&events)
    };
    let expected = ["OrderSubmitted", "OrderFilled", "PositionOpened"];
    // The bounds are inclusive: only a price or a fee beyond them is a mismatch.
    assert_eq!(booked("1", MAX_FILL_PRICE, "0"), expected);
    assert_eq!(booked("1", dec("60000"), "60000"), expected);
}

#[test]
fn absurd_prices_sizes_and_fees_are_refused_never_a_panic() {
    let huge_price = Decimal::from_str_exact("79000000000000000000000000000").unwrap();
    let cases = [
        // 7.9e28: the largest a Decimal holds, near enough.
        (dec("1"), huge_price, dec("1"), "price"),
        (dec("1"), Decimal::MAX, dec("1"), "price"),
        (dec("1"), Decimal::ZERO, dec("0"), "not positive"),
        (dec("1"), dec("-60000"), dec("1"), "not positive"),
        (
            dec("1"),
            dec("1000000000001"),
            dec("1"),
            "beyond any market's",
        ),
        (Decimal::MAX, dec("60000"), dec("1"), "more than the 1 left"),
        (Decimal::MAX, Decimal::MAX, Decimal::MAX, "notional"),
        (dec("1"), dec("60000"), Decimal::MAX, "fee"),
        (dec("1"), dec("60000"), Decimal::MIN, "fee"),
        (dec("1"), dec("60000"), dec("60000.01"), "fee"),
    ];
    for (size, price, fee, why) in cases {
        let reason = refused(
            &one_btc_in_flight(),
            reported(fill("BTC-USD", Side::Buy, size, price, fee)),
        );
        assert!(
            reason.contains(why),
            "{size} at {price}, fee {fee}: {reason}"
        );
    }
}

#[test]
fn a_mismatch_on_a_halted_account_does_not_halt_it_again() {
    let mut history = one_btc_in_flight();
    history.extend(
        replay(&history)
            .decide(halt("2024-03-01T09:00:01Z"))
            .unwrap(),
    );
    let reason = refused(
        &history,
        reported(fill("ETH-USD", Side::Buy, dec("1"), dec("3200"), dec("1"))),
    );
    assert!(reason.starts_with("market ETH-USD"), "{reason}");
}

#[test]
fn after_a_mismatch_the_trader_is_told_and_later_alerts_are_refused_as_halted() {
    let mut history = one_btc_in_flight();
    let wrong = reported(fill(
        "ETH-USD",
        Side::Sell,
        dec("0.01"),
        dec("65033"),
        dec("0.33"),
    ));
    history.extend(replay(&history).decide(wrong.clone()).unwrap());
    let state = replay(&history);
    assert!(state.positions.is_empty(), "{:?}", state.positions);
    assert_eq!(
        state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    // The saga's retry of the same report changes nothing.
    assert_eq!(state.decide(wrong), Ok(vec![]));
    let told = state
        .decide(notified(
            "s1",
            NotificationOutcome::Sent,
            "2024-03-01T09:00:03Z",
        ))
        .unwrap();
    assert_eq!(names(&told), ["NotificationSent"]);
    history.extend(told);
    let next = intent(
        "s2",
        "BTC-USD",
        Side::Buy,
        "1",
        "60000",
        "2024-03-01T09:01:00Z",
    );
    let answer = replay(&history).decide(receive(&next)).unwrap();
    assert!(
        matches!(
            answer.as_slice(),
            [AccountEvent::SignalRejected {
                reason: RejectionReason::Halted { .. },
                ..
            }]
        ),
        "{answer:?}"
    );
}

#[test]
fn a_fill_the_position_cannot_hold_exactly_is_refused() {
    // Limits wide enough to approve a position of 1e20 units; a fill with nine decimal places on
    // top of it needs 30 significant digits, more than a Decimal holds.
    let wide = limits(
        "1000000000000000000000",
        "1000000000000000000000",
        "1000000000000000000000",
        &["BTC-USD"],
    );
    let big = "100000000000000000000";
    let mut history = history([
        open_command(wide),
        receive(&intent(
            "s0",
            "BTC-USD",
            Side::Buy,
            big,
            "0.000001",
            APPROVED,
        )),
        filled("s0", "0.000001", big, "0", "2024-03-01T09:00:01Z"),
    ]);
    let before = replay(&history).positions;
    assert_eq!(before[&market("BTC-USD")].size, dec(big));
    let s1 = intent(
        "s1",
        "BTC-USD",
        Side::Buy,
        "0.000000001",
        "0.000001",
        "2024-03-01T09:00:03Z",
    );
    history.extend(replay(&history).decide(receive(&s1)).unwrap());
    let reason = refused(
        &history,
        filled("s1", "0.000001", "0.000000001", "0", "2024-03-01T09:00:04Z"),
    );
    assert_eq!(
        reason,
        "the position's size cannot be represented: out of range, or only rounded"
    );
}

#[test]
fn position_arithmetic_reports_overflow_instead_of_panicking() {
    let position = Position {
        size: Decimal::MAX,
        average_entry_price: Decimal::MAX,
        ..Position::default()
    };
    for (side, price) in [(Side::Buy, dec("1")), (Side::Sell, Decimal::MIN)] {
        let result =
            position.events_for_fill(&sid("s1"), &market("BTC-USD"), side, qty("1"), price);
        assert!(result.is_err(), "{side:?} at {price}: {result:?}");
    }
}
