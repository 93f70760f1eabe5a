//! What the account records when execution goes wrong: a signal abandoned at its deadline, a
//! partial fill, the automatic halt after repeated failures and its reset, and the compensating
//! close of a position a fill left unprotected. Each is the aggregate's decision, so it holds for
//! every exchange, and each is checked by replaying what it recorded.

use crate::common::*;
use aggregates::{
    AccountCommand, AccountEvent, ClientOrderId, CompensationReport, ExecutionReport, Fill,
    NotificationOutcome, Quantity, RiskLimits, Side, SignalStage, TradingAccount,
    AUTOMATIC_HALT_BY,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

const RECEIVED: &str = "2024-03-01T09:00:00Z";
const REPORTED: &str = "2024-03-01T09:00:02Z";
const LATE: &str = "2024-03-01T09:03:00Z";

/// An open account with signal `s1`, a buy of `size` BTC-USD approved at 60,000 (notional
/// `size` × 60,000), awaiting execution.
fn buy_in_flight(size: &str) -> Vec<AccountEvent> {
    history([
        open_command(RiskLimits::default()),
        receive(&intent("s1", "BTC-USD", Side::Buy, size, "60000", RECEIVED)),
    ])
}

fn btc_fill(side: Side, size: &str, price: &str) -> Fill {
    Fill {
        market: market("BTC-USD"),
        side,
        price: dec(price),
        size: qty(size),
        fee: dec("1"),
    }
}

fn decide(
    history: &[AccountEvent],
    command: AccountCommand,
) -> (Vec<AccountEvent>, TradingAccount) {
    let state = replay(history);
    let events = state.decide(command).expect("recorded");
    let mut after = history.to_vec();
    after.extend(events.iter().cloned());
    (events, replay(&after))
}

fn abandoned(id: &str, when: &str) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Abandoned {
        signal_id: sid(id),
        client_order_id: coid(id),
        reason: "its deadline of 120 s from approval passed before the order was sent".to_owned(),
        at: at(when),
    })
}

// ---------------------------------------------------------------------------------------------
// The deadline

#[test]
fn the_approval_time_is_remembered_for_the_deadline() {
    let state = replay(&buy_in_flight("1"));
    assert_eq!(state.in_flight[&sid("s1")].approved_at, Some(at(RECEIVED)));
}

#[test]
fn a_signal_abandoned_at_its_deadline_releases_its_reservation_and_awaits_the_trader() {
    let history = buy_in_flight("1");
    let before = replay(&history);
    let (events, after) = decide(&history, abandoned("s1", LATE));
    assert_eq!(
        names(&events),
        ["ExecutionAbandoned", "RiskReservationReleased"],
        "nothing was sent, so nothing is submitted: {events:?}"
    );
    assert_eq!(
        before.daily_volume.traded_usd.value(),
        dec("60000"),
        "approval reserved the volume"
    );
    assert_eq!(after.daily_volume.traded_usd.value(), Decimal::ZERO);
    assert!(after.positions.is_empty());
    assert_eq!(
        after.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    assert_eq!(after.consecutive_failures, 1);
    // A report for an abandoned signal again (a page read twice) records nothing.
    assert_eq!(after.decide(abandoned("s1", LATE)).expect("ok"), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Partial fills

#[test]
fn a_partial_fill_books_only_what_filled_and_releases_the_rest() {
    let history = buy_in_flight("1");
    let report = AccountCommand::RecordExecution(ExecutionReport::PartiallyFilled {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "ex-1".to_owned(),
        fill: btc_fill(Side::Buy, "0.4", "60010"),
        unfilled: qty("0.6"),
        at: at(REPORTED),
    });
    let (events, after) = decide(&history, report);
    assert_eq!(
        names(&events),
        [
            "OrderSubmitted",
            "OrderPartiallyFilled",
            "PositionOpened",
            "RiskReservationReleased"
        ]
    );
    assert_eq!(after.positions[&market("BTC-USD")].size, dec("0.4"));
    // 60,000 reserved; the unfilled 0.6 of it goes back.
    assert_eq!(after.daily_volume.traded_usd.value(), dec("24000"));
    assert_eq!(
        after.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    assert_eq!(after.orders_filled, 1);
}

#[test]
fn a_filled_report_of_less_than_the_order_is_recorded_as_partial() {
    let (events, after) = decide(
        &buy_in_flight("1"),
        filled("s1", "60010", "0.25", "1", REPORTED),
    );
    assert_eq!(
        names(&events),
        [
            "OrderSubmitted",
            "OrderPartiallyFilled",
            "PositionOpened",
            "RiskReservationReleased"
        ]
    );
    assert!(matches!(
        &events[1],
        AccountEvent::OrderPartiallyFilled { unfilled, .. } if *unfilled == qty("0.75")
    ));
    assert_eq!(after.positions[&market("BTC-USD")].size, dec("0.25"));
}

#[test]
fn a_partial_fill_whose_parts_do_not_add_up_is_a_mismatch() {
    let report = AccountCommand::RecordExecution(ExecutionReport::PartiallyFilled {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "ex-1".to_owned(),
        fill: btc_fill(Side::Buy, "0.4", "60010"),
        unfilled: qty("0.5"),
        at: at(REPORTED),
    });
    let (events, after) = decide(&buy_in_flight("1"), report);
    assert_eq!(
        names(&events),
        ["OrderSubmitted", "FillMismatch", "TradingHalted"]
    );
    assert!(after.positions.is_empty());
    assert!(after.halt.is_some());
}

proptest! {
    /// Whatever part of the order fills: the position holds exactly that part, and the volume
    /// counted for the day is exactly the filled part's share of the reservation.
    #[test]
    fn a_partial_fill_books_exactly_its_part(filled_thousandths in 1u32..1000) {
        let filled = Decimal::new(i64::from(filled_thousandths), 3);
        let unfilled = Decimal::ONE - filled;
        let report = AccountCommand::RecordExecution(ExecutionReport::PartiallyFilled {
            signal_id: sid("s1"),
            client_order_id: coid("s1"),
            exchange_order_id: "ex-1".to_owned(),
            fill: Fill {
                market: market("BTC-USD"),
                side: Side::Buy,
                price: dec("60000"),
                size: Quantity::new(filled).unwrap(),
                fee: dec("0"),
            },
            unfilled: Quantity::new(unfilled).unwrap(),
            at: at(REPORTED),
        });
        let (_, after) = decide(&buy_in_flight("1"), report);
        prop_assert_eq!(after.positions[&market("BTC-USD")].size, filled);
        prop_assert_eq!(
            after.daily_volume.traded_usd.value(),
            (filled * dec("60000")).normalize()
        );
    }

    /// The failure streak: N failures in a row halt (once), any answer from the exchange in
    /// between starts the count again.
    #[test]
    fn consecutive_failures_halt_exactly_at_the_threshold(
        threshold in 1u32..5,
        outcomes in proptest::collection::vec(0u8..3, 1..12),
    ) {
        let limits = RiskLimits {
            halt_after_consecutive_failures: threshold,
            ..RiskLimits::default()
        };
        let mut state = replay(&history([open_command(limits)]));
        let mut streak = 0;
        let mut halted_at = None;
        for (n, outcome) in outcomes.iter().enumerate() {
            if state.halt.is_some() {
                break;
            }
            let id = format!("s{n}");
            let when = format!("2024-03-01T09:{:02}:00Z", n);
            let events = state
                .decide(receive(&intent(&id, "BTC-USD", Side::Buy, "0.01", "60000", &when)))
                .expect("received");
            for event in events { cqrs_es::Aggregate::apply(&mut state, event); }
            let command = match outcome {
                0 => failed(&id, "connection refused", &when),
                1 => abandoned(&id, &when),
                _ => rejected(&id, "post-only would cross", &when),
            };
            let events = state.decide(command).expect("recorded");
            let halts = events.iter().filter(|e| matches!(e,
                AccountEvent::TradingHalted { by, .. } if by == AUTOMATIC_HALT_BY)).count();
            for event in events { cqrs_es::Aggregate::apply(&mut state, event); }
            streak = if *outcome == 2 { 0 } else { streak + 1 };
            prop_assert_eq!(state.consecutive_failures, streak);
            if streak == threshold {
                prop_assert_eq!(halts, 1);
                halted_at = Some(n);
            } else {
                prop_assert_eq!(halts, 0);
            }
        }
        prop_assert_eq!(state.halt.is_some(), halted_at.is_some());
    }
}

#[test]
fn resuming_resets_the_streak() {
    let limits = RiskLimits {
        halt_after_consecutive_failures: 1,
        ..RiskLimits::default()
    };
    let history = history([
        open_command(limits),
        receive(&intent(
            "s1",
            "BTC-USD",
            Side::Buy,
            "0.01",
            "60000",
            RECEIVED,
        )),
        failed("s1", "down", REPORTED),
    ]);
    let halted = replay(&history);
    assert_eq!(
        halted.halt.as_ref().map(|h| h.by.as_str()),
        Some(AUTOMATIC_HALT_BY)
    );
    assert_eq!(AUTOMATIC_HALT_BY, "execution");
    let (_, resumed) = decide(&history, resume(LATE));
    assert_eq!(resumed.consecutive_failures, 0);
    assert!(resumed.halt.is_none());
}

// ---------------------------------------------------------------------------------------------
// Compensation

fn unprotected(size: &str) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::FilledUnprotected {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "ex-1".to_owned(),
        fill: btc_fill(Side::Buy, size, "60000"),
        reason: "the stop-loss order was refused: insufficient margin".to_owned(),
        at: at(REPORTED),
    })
}

fn closed(size: &str, price: &str) -> AccountCommand {
    AccountCommand::RecordCompensation(CompensationReport::Closed {
        signal_id: sid("s1"),
        client_order_id: ClientOrderId::compensation_for(&sid("s1")),
        exchange_order_id: "ex-close".to_owned(),
        fill: btc_fill(Side::Sell, size, price),
        at: at(LATE),
    })
}

#[test]
fn an_unprotected_fill_is_booked_and_then_closed_reduce_only() {
    let history = buy_in_flight("1");
    let (events, required) = decide(&history, unprotected("1"));
    assert_eq!(
        names(&events),
        [
            "OrderSubmitted",
            "OrderFilled",
            "PositionOpened",
            "CompensationRequired"
        ],
        "the fill is booked first: the position exists on the exchange"
    );
    let AccountEvent::CompensationRequired {
        client_order_id,
        side,
        size,
        ..
    } = &events[3]
    else {
        panic!("{events:?}");
    };
    assert_eq!(client_order_id.0, "lh-s1-close");
    assert_eq!((*side, *size), (Side::Sell, qty("1")));
    let in_flight = &required.in_flight[&sid("s1")];
    assert_eq!(in_flight.stage, SignalStage::AwaitingCompensation);
    // A page read again reports the entry again: nothing new.
    assert_eq!(required.decide(unprotected("1")).expect("ok"), vec![]);
    // Not told yet: the trader hears the compensation's outcome.
    assert!(required
        .decide(notified("s1", NotificationOutcome::Sent, LATE))
        .is_err());
    // A close for the whole position would now see nothing left to close.
    assert_eq!(required.exposure(&market("BTC-USD")), Decimal::ZERO);

    let mut after = history.clone();
    after.extend(events);
    let (events, closed_state) = decide(&after, closed("1", "59900"));
    assert_eq!(names(&events), ["PositionCompensated", "PositionClosed"]);
    assert!(closed_state.positions[&market("BTC-USD")].is_flat());
    assert_eq!(
        closed_state.positions[&market("BTC-USD")]
            .realized_pnl_usd
            .value(),
        dec("-100")
    );
    assert!(closed_state.halt.is_none());
    assert_eq!(
        closed_state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    // Recorded once: the close reported again changes nothing.
    assert_eq!(
        closed_state.decide(closed("1", "59900")).expect("ok"),
        vec![]
    );
}

#[test]
fn only_what_the_signal_opened_is_closed() {
    // Long 1 already; this signal adds 0.5 and cannot be protected: only the 0.5 is closed.
    let mut history = history([
        open_command(RiskLimits::default()),
        receive(&intent("s0", "BTC-USD", Side::Buy, "1", "60000", RECEIVED)),
        filled("s0", "60000", "1", "1", REPORTED),
        receive(&intent(
            "s1",
            "BTC-USD",
            Side::Buy,
            "0.5",
            "60000",
            REPORTED,
        )),
    ]);
    let (events, _) = decide(&history, unprotected("0.5"));
    history.extend(events.iter().cloned());
    assert!(matches!(
        events.last(),
        Some(AccountEvent::CompensationRequired { size, side: Side::Sell, .. }) if *size == qty("0.5")
    ));
    let (events, after) = decide(&history, closed("0.5", "60000"));
    assert_eq!(names(&events), ["PositionCompensated", "PositionReduced"]);
    assert_eq!(after.positions[&market("BTC-USD")].size, dec("1"));
}

/// Short 1 BTC, then signal `s1` buying `size` at 10,000 approved.
fn short_one_then_buying(size: &str) -> Vec<AccountEvent> {
    history([
        open_command(RiskLimits::default()),
        receive(&intent("s0", "BTC-USD", Side::Sell, "1", "10000", RECEIVED)),
        filled_in("BTC-USD", Side::Sell, "s0", "10000", "1", "1", REPORTED),
        receive(&intent("s1", "BTC-USD", Side::Buy, size, "10000", REPORTED)),
    ])
}

#[test]
fn an_unprotected_fill_that_flips_a_short_closes_only_the_long_it_opened() {
    // Short 1, bought 3: long 2 is what this signal opened and left unprotected.
    let (events, _) = decide(&short_one_then_buying("3"), unprotected("3"));
    assert!(
        matches!(
            events.last(),
            Some(AccountEvent::CompensationRequired { size, side: Side::Sell, .. }) if *size == qty("2")
        ),
        "{events:?}"
    );
}

#[test]
fn an_unprotected_fill_that_only_closes_a_short_leaves_nothing_to_close() {
    let (events, after) = decide(&short_one_then_buying("1"), unprotected("1"));
    assert_eq!(
        names(&events),
        ["OrderSubmitted", "OrderFilled", "PositionClosed"]
    );
    assert!(after.positions[&market("BTC-USD")].is_flat());
    assert_eq!(
        after.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
}

#[test]
fn a_close_reported_after_the_position_went_flat_is_not_booked() {
    let mut history = buy_in_flight("1");
    let (events, _) = decide(&history, unprotected("1"));
    history.extend(events);
    // Another signal sells the long before the compensating close is reported.
    for command in [
        receive(&intent("s2", "BTC-USD", Side::Sell, "1", "60000", REPORTED)),
        filled_in("BTC-USD", Side::Sell, "s2", "60000", "1", "1", REPORTED),
    ] {
        let (events, _) = decide(&history, command);
        history.extend(events);
    }
    assert!(replay(&history).positions[&market("BTC-USD")].is_flat());
    let (events, after) = decide(&history, closed("1", "60000"));
    assert_eq!(names(&events), ["CompensationFailed", "TradingHalted"]);
    assert!(after.positions[&market("BTC-USD")].is_flat());
}

#[test]
fn a_failed_close_halts_the_account_and_leaves_the_position_as_booked() {
    let mut history = buy_in_flight("1");
    let (events, _) = decide(&history, unprotected("1"));
    history.extend(events);
    let report = AccountCommand::RecordCompensation(CompensationReport::Failed {
        signal_id: sid("s1"),
        client_order_id: ClientOrderId::compensation_for(&sid("s1")),
        reason: "exchange unavailable: connection refused".to_owned(),
        at: at(LATE),
    });
    let (events, after) = decide(&history, report);
    assert_eq!(names(&events), ["CompensationFailed", "TradingHalted"]);
    assert_eq!(after.positions[&market("BTC-USD")].size, dec("1"));
    assert_eq!(
        after
            .halt
            .as_ref()
            .map(|h| (h.by.as_str(), h.reason.as_str())),
        Some((
            AUTOMATIC_HALT_BY,
            "the 1 BTC-USD position signal s1 opened could not be closed: \
             exchange unavailable: connection refused"
        ))
    );
    assert_eq!(
        after.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
}

#[test]
fn a_close_that_is_not_the_close_is_a_failed_compensation() {
    let mut history = buy_in_flight("1");
    let (events, _) = decide(&history, unprotected("1"));
    history.extend(events);
    // A buy "close" would add to the position; more than the close is not the close either.
    for wrong in [
        AccountCommand::RecordCompensation(CompensationReport::Closed {
            signal_id: sid("s1"),
            client_order_id: ClientOrderId::compensation_for(&sid("s1")),
            exchange_order_id: "ex-close".to_owned(),
            fill: btc_fill(Side::Buy, "1", "60000"),
            at: at(LATE),
        }),
        closed("2", "60000"),
    ] {
        let (events, after) = decide(&history, wrong);
        assert_eq!(names(&events), ["CompensationFailed", "TradingHalted"]);
        assert_eq!(after.positions[&market("BTC-USD")].size, dec("1"));
    }
}

#[test]
fn a_close_after_the_position_turned_around_is_a_failed_compensation() {
    let mut history = buy_in_flight("0.1");
    let (events, _) = decide(&history, unprotected("0.1"));
    history.extend(events);
    // Meanwhile another signal sells more than the position: it is now short 0.2.
    for command in [
        receive(&intent(
            "s2",
            "BTC-USD",
            Side::Sell,
            "0.3",
            "60000",
            REPORTED,
        )),
        filled_in("BTC-USD", Side::Sell, "s2", "60000", "0.3", "1", REPORTED),
    ] {
        let (events, _) = decide(&history, command);
        history.extend(events);
    }
    assert_eq!(
        replay(&history).positions[&market("BTC-USD")].size,
        dec("-0.2")
    );
    // Selling now, even less than the close asked, would add to the short: not reduce-only.
    let (events, after) = decide(&history, closed("0.05", "60000"));
    assert_eq!(names(&events), ["CompensationFailed", "TradingHalted"]);
    assert_eq!(after.positions[&market("BTC-USD")].size, dec("-0.2"));
}

#[test]
fn a_partial_close_is_booked_and_halts_the_account() {
    let mut history = buy_in_flight("1");
    let (events, _) = decide(&history, unprotected("1"));
    history.extend(events);
    let (events, after) = decide(&history, closed("0.6", "60000"));
    assert_eq!(
        names(&events),
        ["PositionCompensated", "PositionReduced", "TradingHalted"]
    );
    assert_eq!(after.positions[&market("BTC-USD")].size, dec("0.4"));
    assert_eq!(
        after.halt.map(|h| h.reason),
        Some("only 0.6 of the 1 BTC-USD position signal s1 opened could be closed".to_owned())
    );
}

#[test]
fn a_close_under_another_client_id_is_refused() {
    let mut history = buy_in_flight("1");
    let (events, _) = decide(&history, unprotected("1"));
    history.extend(events);
    let report = AccountCommand::RecordCompensation(CompensationReport::Closed {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "ex-close".to_owned(),
        fill: btc_fill(Side::Sell, "1", "60000"),
        at: at(LATE),
    });
    assert!(replay(&history).decide(report).is_err());
}
