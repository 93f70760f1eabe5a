//! A limit order resting on the venue's book: recorded once, held (reservation and exposure) while
//! it rests, told once, and ended once — filled, partially filled then expired, or expired with
//! nothing — whatever reports arrive again (a restarted saga, a second watcher).

use crate::common::*;
use aggregates::{
    AccountCommand, AccountEvent, ExecutionReport, Fill, NotificationOutcome, RiskLimits, Side,
    SignalStage, TradingAccount,
};
use rust_decimal::Decimal;

const RECEIVED: &str = "2024-03-01T09:00:00Z";
const RESTED: &str = "2024-03-01T09:00:01Z";
const GOOD_TIL: &str = "2024-03-02T09:00:01Z";
const ENDED: &str = "2024-03-01T11:00:00Z";

/// An open account with signal `s1`, a buy of 0.4 BTC-USD approved at 60,000 (24,000 reserved).
fn approved() -> Vec<AccountEvent> {
    history([
        open_command(RiskLimits::default()),
        receive(&intent(
            "s1",
            "BTC-USD",
            Side::Buy,
            "0.4",
            "60000",
            RECEIVED,
        )),
    ])
}

fn resting_report() -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Resting {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "x-1".to_owned(),
        good_til: at(GOOD_TIL),
        at: at(RESTED),
    })
}

fn expired_report() -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Expired {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "x-1".to_owned(),
        reason: "expired".to_owned(),
        at: at(ENDED),
    })
}

fn told(outcome: NotificationOutcome) -> AccountCommand {
    AccountCommand::RecordRestingNotice {
        signal_id: sid("s1"),
        channel: "log".to_owned(),
        outcome,
        at: at(RESTED),
    }
}

/// Runs `command` on the state `history` folds to; returns what it recorded and the state after.
fn decide(
    history: &[AccountEvent],
    command: AccountCommand,
) -> (Vec<AccountEvent>, TradingAccount, Vec<AccountEvent>) {
    let events = replay(history).decide(command).expect("recorded");
    let mut after = history.to_vec();
    after.extend(events.iter().cloned());
    (events.clone(), replay(&after), after)
}

fn names(events: &[AccountEvent]) -> Vec<&'static str> {
    events.iter().map(AccountEvent::name).collect()
}

fn resting() -> Vec<AccountEvent> {
    decide(&approved(), resting_report()).2
}

#[test]
fn a_resting_order_is_recorded_once_and_keeps_its_reservation_and_exposure() {
    let (events, state, after) = decide(&approved(), resting_report());

    assert_eq!(names(&events), ["OrderSubmitted", "OrderResting"]);
    let in_flight = &state.in_flight[&sid("s1")];
    assert_eq!(in_flight.stage, SignalStage::Resting);
    let rest = in_flight.resting.as_ref().expect("the resting order");
    assert_eq!(rest.exchange_order_id, "x-1");
    assert_eq!(rest.good_til, at(GOOD_TIL));
    assert!(!rest.told);
    assert_eq!(state.daily_volume.traded_usd.value(), dec("24000"));
    assert_eq!(state.exposure(&market("BTC-USD")), dec("0.4"));
    // Reported again (a saga reading its page again): nothing new.
    let (again, _, _) = decide(&after, resting_report());
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn the_resting_notice_is_recorded_once_and_the_signal_goes_on_resting() {
    let (events, state, after) = decide(&resting(), told(NotificationOutcome::Sent));

    assert_eq!(names(&events), ["NotificationSent"]);
    let in_flight = &state.in_flight[&sid("s1")];
    assert_eq!(in_flight.stage, SignalStage::Resting);
    assert!(in_flight.resting.as_ref().is_some_and(|rest| rest.told));
    let (again, _, _) = decide(&after, told(NotificationOutcome::Sent));
    assert!(again.is_empty(), "told once: {again:?}");
}

#[test]
fn a_resting_notice_reported_after_the_order_ended_records_nothing() {
    let history = decide(&resting(), filled("s1", "59000", "0.4", "2", ENDED)).2;
    let (events, state, _) = decide(&history, told(NotificationOutcome::Sent));

    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification,
        "the fill is still to be told"
    );
}

#[test]
fn the_outcome_notification_is_refused_while_the_order_rests() {
    let command = AccountCommand::RecordNotification {
        signal_id: sid("s1"),
        channel: "log".to_owned(),
        outcome: NotificationOutcome::Sent,
        at: at(RESTED),
    };
    assert!(replay(&resting()).decide(command).is_err());
}

#[test]
fn a_resting_notice_that_fails_is_not_retried() {
    let deferred = NotificationOutcome::Deferred {
        reason: "429".to_owned(),
        retry_at: at(ENDED),
    };
    let (events, state, _) = decide(&resting(), told(deferred));

    let [AccountEvent::NotificationFailed { retry_at, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(*retry_at, None);
    assert!(state.undelivered.is_empty());
    assert_eq!(state.in_flight[&sid("s1")].stage, SignalStage::Resting);
}

#[test]
fn a_resting_order_that_fills_is_booked_once_without_a_second_submission() {
    let history = decide(&resting(), told(NotificationOutcome::Sent)).2;
    let (events, state, after) = decide(&history, filled("s1", "59000", "0.4", "2", ENDED));

    assert_eq!(names(&events), ["OrderFilled", "PositionOpened"]);
    assert_eq!(state.positions[&market("BTC-USD")].size, dec("0.4"));
    assert_eq!(
        state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
    // A second watcher (or a restarted one) reports the same end: refused as news.
    let (again, _, _) = decide(&after, filled("s1", "59000", "0.4", "2", ENDED));
    assert!(again.is_empty(), "{again:?}");
    let (expired, _, _) = decide(&after, expired_report());
    assert!(expired.is_empty(), "{expired:?}");
}

#[test]
fn a_resting_order_that_expires_unfilled_releases_its_reservation() {
    let (events, state, _) = decide(&resting(), expired_report());

    assert_eq!(names(&events), ["OrderExpired", "RiskReservationReleased"]);
    assert_eq!(state.daily_volume.traded_usd.value(), Decimal::ZERO);
    assert_eq!(state.exposure(&market("BTC-USD")), Decimal::ZERO);
    assert_eq!(
        state.in_flight[&sid("s1")].stage,
        SignalStage::AwaitingNotification
    );
}

#[test]
fn a_resting_order_part_filled_then_expired_books_the_part_and_releases_the_rest() {
    let report = AccountCommand::RecordExecution(ExecutionReport::PartiallyFilled {
        signal_id: sid("s1"),
        client_order_id: coid("s1"),
        exchange_order_id: "x-1".to_owned(),
        fill: Fill {
            market: market("BTC-USD"),
            side: Side::Buy,
            price: dec("59000"),
            size: qty("0.1"),
            fee: dec("1"),
        },
        unfilled: qty("0.3"),
        at: at(ENDED),
    });
    let (events, state, _) = decide(&resting(), report);

    assert_eq!(
        names(&events),
        [
            "OrderPartiallyFilled",
            "PositionOpened",
            "RiskReservationReleased"
        ]
    );
    assert_eq!(state.positions[&market("BTC-USD")].size, dec("0.1"));
    assert_eq!(state.daily_volume.traded_usd.value(), dec("6000"));
}

#[test]
fn a_resting_fill_that_is_not_the_orders_is_a_mismatch_and_halts() {
    let wrong_side = filled_in("BTC-USD", Side::Sell, "s1", "59000", "0.4", "2", ENDED);
    let (events, state, _) = decide(&resting(), wrong_side);

    assert_eq!(names(&events), ["FillMismatch", "TradingHalted"]);
    assert!(state.positions.is_empty());
    assert!(state.halt.is_some());
}

#[test]
fn failures_and_cancellations_do_not_end_an_order_on_the_book() {
    for report in [
        ExecutionReport::Failed {
            signal_id: sid("s1"),
            client_order_id: coid("s1"),
            reason: "down".to_owned(),
            at: at(ENDED),
        },
        ExecutionReport::Abandoned {
            signal_id: sid("s1"),
            client_order_id: coid("s1"),
            reason: "late".to_owned(),
            at: at(ENDED),
        },
        ExecutionReport::Cancelled {
            signal_id: sid("s1"),
            client_order_id: coid("s1"),
            reason: "halt".to_owned(),
            at: at(ENDED),
        },
    ] {
        let (events, state, _) = decide(&resting(), AccountCommand::RecordExecution(report));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(state.in_flight[&sid("s1")].stage, SignalStage::Resting);
    }
}

#[test]
fn a_signal_for_the_same_market_counts_the_resting_order_in_its_position_limit() {
    let limits = RiskLimits {
        max_position_size: [(market("BTC-USD"), dec("0.5"))].into_iter().collect(),
        ..RiskLimits::default()
    };
    let history = history([
        open_command(limits),
        receive(&intent(
            "s1",
            "BTC-USD",
            Side::Buy,
            "0.4",
            "60000",
            RECEIVED,
        )),
        resting_report(),
    ]);
    let second = intent("s2", "BTC-USD", Side::Buy, "0.2", "60000", ENDED);
    let (events, _, _) = decide(&history, receive(&second));

    assert!(
        events
            .iter()
            .any(|event| matches!(event, AccountEvent::RiskRejected { .. })),
        "0.4 resting + 0.2 is over the 0.5 limit: {events:?}"
    );
}
