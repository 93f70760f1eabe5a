//! The folds against the aggregate they follow, and the signal story per outcome.

use std::str::FromStr;

use aggregates::{
    AccountEvent, ClientOrderId, Market, Position, Quantity, RejectionReason, Side, SignalId,
    TradingAccount, UsdAmount,
};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::Aggregate;
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::{Envelope, Projection, ReadModels};

fn at(hour: u32) -> DateTime<Utc> {
    let start = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    start + chrono::Duration::hours(i64::from(hour))
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_default()
}

fn qty(text: &str) -> Quantity {
    Quantity::new(dec(text)).unwrap_or_else(|_| panic!("{text} is a quantity"))
}

fn market() -> Market {
    Market::parse("BTC-USD").unwrap_or_else(|_| panic!("a market"))
}

/// Numbers events from 1 as one account's stream.
fn stream(account: &str, events: Vec<AccountEvent>) -> Vec<Envelope> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| Envelope {
            account_id: account.to_owned(),
            sequence: index + 1,
            recorded_at: Some(at(1)),
            event,
        })
        .collect()
}

fn filled(signal: &str, side: Side, size: &str, price: &str, fee: &str, hour: u32) -> AccountEvent {
    AccountEvent::OrderFilled {
        signal_id: SignalId(signal.into()),
        client_order_id: ClientOrderId(format!("lh-{signal}")),
        exchange_order_id: format!("x-{signal}"),
        market: market(),
        side,
        price: dec(price),
        size: qty(size),
        fee_usd: UsdAmount::new(dec(fee)),
        filled_at: at(hour),
    }
}

/// A fill as the aggregate records it: the fill and the position events it decides.
fn fill_with_position(
    account: &TradingAccount,
    signal: &str,
    side: Side,
    size: &str,
    price: &str,
) -> Vec<AccountEvent> {
    let position = account
        .positions
        .get(&market())
        .cloned()
        .unwrap_or_default();
    let mut events = vec![filled(signal, side, size, price, "0.1", 1)];
    events.extend(
        position
            .events_for_fill(
                &SignalId(signal.into()),
                &market(),
                side,
                qty(size),
                dec(price),
            )
            .expect("an ordinary fill"),
    );
    events
}

#[test]
fn a_position_opens_grows_shrinks_closes_and_flips() {
    let mut account = TradingAccount::default();
    let mut events = Vec::new();
    for (signal, side, size, price) in [
        ("s1", Side::Buy, "1", "100"),
        ("s2", Side::Buy, "1", "110"),
        ("s3", Side::Sell, "0.5", "120"),
        ("s4", Side::Sell, "2", "90"),
    ] {
        for event in fill_with_position(&account, signal, side, size, price) {
            account.apply(event.clone());
            events.push(event);
        }
    }
    let models = ReadModels::fold(&stream("a", events));
    let row = &models.positions[&("a".to_owned(), "BTC-USD".to_owned())];
    // Long 2 @ 105, sold 0.5 @ 120 (+7.5), then sold 2 @ 90: closes 1.5 (-22.5), short 0.5 @ 90.
    assert_eq!(row.size, dec("-0.5"));
    assert_eq!(row.side(), "short");
    assert_eq!(row.average_entry_price, dec("90"));
    assert_eq!(row.realized_pnl_usd, dec("-15"));
    assert_eq!(models.trades.len(), 4);
}

fn side_strategy() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

proptest! {
    /// Whatever the fills, the projected position is the account's own.
    #[test]
    fn positions_follow_the_aggregate(
        fills in proptest::collection::vec((side_strategy(), 1u32..500, 1u32..100_000), 1..40)
    ) {
        let mut account = TradingAccount::default();
        let mut events = Vec::new();
        for (index, (side, size, price)) in fills.into_iter().enumerate() {
            let size = (Decimal::from(size) / Decimal::from(100)).to_string();
            let price = (Decimal::from(price) / Decimal::from(10)).to_string();
            let signal = format!("s{index}");
            for event in fill_with_position(&account, &signal, side, &size, &price) {
                account.apply(event.clone());
                events.push(event);
            }
        }
        let models = ReadModels::fold(&stream("a", events));
        let expected: Position = account.positions.get(&market()).cloned().unwrap_or_default();
        let row = &models.positions[&("a".to_owned(), "BTC-USD".to_owned())];
        prop_assert_eq!(row.size, expected.size);
        prop_assert_eq!(row.average_entry_price, expected.average_entry_price.normalize());
        prop_assert_eq!(row.realized_pnl_usd, expected.realized_pnl_usd.value());
    }

    /// Folding a stream page by page, each page onto the rows the previous ones left, is folding
    /// it whole: what the catch-up runner relies on.
    #[test]
    fn folding_in_pages_equals_folding_whole(
        fills in proptest::collection::vec((side_strategy(), 1u32..500), 1..30),
        page in 1usize..7,
    ) {
        let mut account = TradingAccount::default();
        let mut events = Vec::new();
        for (index, (side, size)) in fills.into_iter().enumerate() {
            let size = (Decimal::from(size) / Decimal::from(100)).to_string();
            for event in fill_with_position(&account, &format!("s{index}"), side, &size, "100") {
                account.apply(event.clone());
                events.push(event);
            }
        }
        let envelopes = stream("a", events);
        let whole = ReadModels::fold(&envelopes);
        let mut paged = ReadModels::default();
        for chunk in envelopes.chunks(page) {
            for projection in Projection::ALL {
                for envelope in chunk {
                    paged.apply(projection, envelope);
                }
            }
        }
        prop_assert_eq!(paged, whole);
    }
}

#[test]
fn daily_volume_sums_fills_per_utc_day() {
    let events = vec![
        filled("s1", Side::Buy, "0.5", "100", "0.1", 1),
        filled("s2", Side::Sell, "0.25", "200", "0.1", 23),
        filled("s3", Side::Buy, "1", "10", "0.1", 24), // the next day, 00:00 UTC
    ];
    let models = ReadModels::fold(&stream("a", events));
    let days: Vec<_> = models
        .daily_volume
        .iter()
        .map(|((_, day), row)| (day.to_string(), row.traded_usd, row.fills))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-01".to_owned(), dec("100"), 2),
            ("2026-03-02".to_owned(), dec("10"), 1)
        ]
    );
}

#[test]
fn trades_keep_each_fill_with_its_fee() {
    let models = ReadModels::fold(&stream(
        "a",
        vec![filled("s1", Side::Sell, "0.5", "100.50", "0.025", 2)],
    ));
    let trade = &models.trades[&("a".to_owned(), 1)];
    assert_eq!(trade.side, "sell");
    assert_eq!(trade.price, dec("100.5"));
    assert_eq!(trade.fee_usd, dec("0.025"));
    assert_eq!(trade.client_order_id, "lh-s1");
    assert_eq!(trade.filled_at, at(2));
}

fn received(signal: &str) -> AccountEvent {
    AccountEvent::SignalReceived {
        signal_id: SignalId(signal.into()),
        idempotency_key: format!("k-{signal}"),
        key_expires_at: at(5),
        market: market(),
        instruction: aggregates::TradeInstruction::Order {
            side: Side::Buy,
            size: qty("1"),
        },
        order_type: aggregates::OrderType::Market,
        take_profit: None,
        stop_loss: None,
        alert_price: None,
        reference_price: dec("100"),
        sent_at: None,
        received_at: at(1),
    }
}

fn rejected(signal: &str, reason: RejectionReason) -> AccountEvent {
    AccountEvent::SignalRejected {
        signal_id: SignalId(signal.into()),
        idempotency_key: format!("k-{signal}"),
        key_expires_at: at(5),
        reason,
        received_at: at(1),
    }
}

#[test]
fn every_signal_has_its_outcome_and_its_events() {
    let id = |s: &str| SignalId(s.into());
    let events = vec![
        received("ok"),
        AccountEvent::RiskApproved {
            signal_id: id("ok"),
            client_order_id: ClientOrderId("lh-ok".into()),
            market: market(),
            side: Side::Buy,
            size: qty("1"),
            reduce_only: false,
            order_type: aggregates::OrderType::Market,
            take_profit: None,
            stop_loss: None,
            notional_usd: UsdAmount::new(dec("100")),
        },
        filled("ok", Side::Buy, "1", "100", "0.1", 1),
        AccountEvent::NotificationSent {
            signal_id: id("ok"),
            channel: "log".into(),
            at: at(1),
        },
        received("risky"),
        AccountEvent::RiskRejected {
            signal_id: id("risky"),
            rule: "max_order_usd".into(),
            detail: "too big".into(),
        },
        rejected(
            "ok",
            RejectionReason::Duplicate {
                original_signal_id: id("ok"),
            },
        ),
        rejected(
            "late",
            RejectionReason::Stale {
                detail: "old".into(),
            },
        ),
        rejected(
            "stop",
            RejectionReason::Halted {
                detail: "halted".into(),
            },
        ),
        AccountEvent::OrderFailed {
            signal_id: id("risky2"),
            client_order_id: ClientOrderId("lh-risky2".into()),
            reason: "exchange down".into(),
            at: at(1),
        },
    ];
    let models = ReadModels::fold(&stream("a", events));
    let signal = |s: &str| &models.signals[&("a".to_owned(), s.to_owned())];
    let ok = signal("ok");
    assert_eq!(
        (ok.status.as_str(), ok.outcome.as_str()),
        ("notified", "filled")
    );
    assert_eq!(ok.duplicates, 1);
    let sequences: Vec<usize> = ok.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 7]);
    assert_eq!(ok.market.as_deref(), Some("BTC-USD"));
    assert_eq!(signal("risky").outcome, "rejected");
    assert_eq!(
        signal("risky").detail.as_deref(),
        Some("max_order_usd: too big")
    );
    assert_eq!(signal("late").outcome, "stale");
    assert_eq!(signal("stop").outcome, "halted");
    assert_eq!(signal("risky2").outcome, "failed");
    assert_eq!(models.signals.len(), 5);
}

#[test]
fn a_duplicate_of_an_unknown_signal_is_its_own_row() {
    let models = ReadModels::fold(&stream(
        "a",
        vec![rejected(
            "d",
            RejectionReason::Duplicate {
                original_signal_id: SignalId("older".into()),
            },
        )],
    ));
    let row = &models.signals[&("a".to_owned(), "d".to_owned())];
    assert_eq!(row.status, "duplicate");
    assert_eq!(row.detail.as_deref(), Some("duplicate of signal older"));
}

#[test]
fn a_fill_mismatch_is_the_signals_outcome_and_moves_no_position_or_volume() {
    let signal_id = SignalId("odd".into());
    let events = vec![
        received("odd"),
        AccountEvent::FillMismatch {
            signal_id: signal_id.clone(),
            client_order_id: ClientOrderId("lh-odd".into()),
            exchange_order_id: "x-odd".into(),
            expected_market: market(),
            expected_side: Side::Buy,
            expected_remaining: qty("1"),
            reported_market: Market::parse("ETH-USD").unwrap_or_else(|_| panic!("a market")),
            reported_side: Side::Sell,
            reported_size: qty("0.01"),
            reported_price: Decimal::MAX,
            reported_fee: Decimal::MIN,
            reason: "market ETH-USD is not the order's BTC-USD".into(),
            at: at(1),
        },
        AccountEvent::NotificationSent {
            signal_id,
            channel: "log".into(),
            at: at(1),
        },
    ];
    let models = ReadModels::fold(&stream("a", events));
    let row = &models.signals[&("a".to_owned(), "odd".to_owned())];
    assert_eq!(
        (row.status.as_str(), row.outcome.as_str()),
        ("notified", "mismatch")
    );
    assert_eq!(
        row.detail.as_deref(),
        Some("market ETH-USD is not the order's BTC-USD")
    );
    assert!(models.positions.is_empty());
    assert!(models.trades.is_empty());
    assert!(models.daily_volume.is_empty());
}

#[test]
fn projections_are_named_like_their_tables() {
    for projection in Projection::ALL {
        assert_eq!(Projection::parse(projection.name()), Some(projection));
    }
    assert_eq!(Projection::parse("audit"), None);
}

/// The saga's failure outcomes, as the trader's tables show them: a partial fill is a trade of
/// the filled part, an abandoned signal is no trade, and a compensated signal shows its entry and
/// the close that undid it.
#[test]
fn partial_abandoned_and_compensated_signals_show_what_happened() {
    let id = |s: &str| SignalId(s.into());
    let events = vec![
        received("part"),
        AccountEvent::OrderPartiallyFilled {
            signal_id: id("part"),
            client_order_id: ClientOrderId("lh-part".into()),
            exchange_order_id: "x-part".into(),
            market: market(),
            side: Side::Buy,
            price: dec("100"),
            size: qty("0.4"),
            unfilled: qty("0.6"),
            fee_usd: UsdAmount::new(dec("0.1")),
            filled_at: at(1),
        },
        received("late"),
        AccountEvent::ExecutionAbandoned {
            signal_id: id("late"),
            client_order_id: ClientOrderId("lh-late".into()),
            reason: "its deadline of 120 s from approval passed before the order was sent".into(),
            at: at(1),
        },
        received("bare"),
        filled("bare", Side::Buy, "1", "100", "0.1", 1),
        AccountEvent::CompensationRequired {
            signal_id: id("bare"),
            client_order_id: ClientOrderId("lh-bare-close".into()),
            market: market(),
            side: Side::Sell,
            size: qty("1"),
            reason: "the stop-loss order was refused".into(),
            at: at(1),
        },
        AccountEvent::PositionCompensated {
            signal_id: id("bare"),
            client_order_id: ClientOrderId("lh-bare-close".into()),
            exchange_order_id: "x-bare-close".into(),
            market: market(),
            side: Side::Sell,
            price: dec("99"),
            size: qty("1"),
            fee_usd: UsdAmount::new(dec("0.1")),
            at: at(2),
        },
    ];
    let models = ReadModels::fold(&stream("a", events));
    let outcome = |signal: &str| {
        let row = &models.signals[&("a".to_owned(), signal.to_owned())];
        (row.outcome.clone(), row.detail.clone().unwrap_or_default())
    };
    let (part, detail) = outcome("part");
    assert_eq!(part, "partially_filled");
    assert_eq!(detail, "0.4 filled; the exchange cancelled the other 0.6");
    let (late, detail) = outcome("late");
    assert_eq!(late, "abandoned");
    assert!(detail.contains("deadline"), "{detail}");
    let (bare, detail) = outcome("bare");
    assert_eq!(bare, "compensated");
    assert_eq!(detail, "the position it opened was closed: 1 at 99");
    let trades: Vec<_> = models
        .trades
        .values()
        .map(|t| (t.client_order_id.as_str(), t.side.as_str(), t.size))
        .collect();
    assert_eq!(
        trades,
        [
            ("lh-part", "buy", dec("0.4")),
            ("lh-bare", "buy", dec("1")),
            ("lh-bare-close", "sell", dec("1"))
        ]
    );
    let volume: Decimal = models.daily_volume.values().map(|d| d.traded_usd).sum();
    assert_eq!(volume, dec("239"));
}

/// Where a signal stands after each of its events, as the trader's signal list shows it.
fn stages(events: Vec<AccountEvent>) -> Vec<(String, String, Option<String>)> {
    let envelopes = stream("a", events);
    let mut rows = std::collections::BTreeMap::new();
    envelopes
        .iter()
        .map(|envelope| {
            crate::signals::apply(&mut rows, envelope);
            let row: &crate::SignalRow = &rows[&("a".to_owned(), "s".to_owned())];
            (row.status.clone(), row.outcome.clone(), row.detail.clone())
        })
        .collect()
}

fn approved(signal: &str) -> AccountEvent {
    AccountEvent::RiskApproved {
        signal_id: SignalId(signal.into()),
        client_order_id: ClientOrderId(format!("lh-{signal}")),
        market: market(),
        side: Side::Buy,
        size: qty("1"),
        reduce_only: false,
        order_type: aggregates::OrderType::Limit { price: dec("99") },
        take_profit: None,
        stop_loss: None,
        notional_usd: UsdAmount::new(dec("100")),
    }
}

fn submitted(signal: &str) -> AccountEvent {
    AccountEvent::OrderSubmitted {
        signal_id: SignalId(signal.into()),
        client_order_id: ClientOrderId(format!("lh-{signal}")),
        market: market(),
        side: Side::Buy,
        size: qty("1"),
        submitted_at: at(1),
    }
}

fn status(status: &str, outcome: &str, detail: Option<&str>) -> (String, String, Option<String>) {
    (status.into(), outcome.into(), detail.map(str::to_owned))
}

#[test]
fn a_resting_order_shows_each_stage_until_it_expires() {
    let id = || SignalId("s".into());
    let coid = || ClientOrderId("lh-s".into());
    let stages = stages(vec![
        received("s"),
        approved("s"),
        submitted("s"),
        AccountEvent::OrderResting {
            signal_id: id(),
            client_order_id: coid(),
            exchange_order_id: "x-s".into(),
            good_til: at(3),
            at: at(1),
        },
        // The notice that it rests leaves it resting.
        AccountEvent::NotificationSent {
            signal_id: id(),
            channel: "log".into(),
            at: at(1),
        },
        AccountEvent::OrderExpired {
            signal_id: id(),
            client_order_id: coid(),
            exchange_order_id: "x-s".into(),
            reason: "nothing filled by its good-til time".into(),
            at: at(3),
        },
        AccountEvent::NotificationSent {
            signal_id: id(),
            channel: "log".into(),
            at: at(3),
        },
    ]);
    let resting = Some("on the book until 2026-03-01T03:00:00+00:00");
    let expired = Some("nothing filled by its good-til time");
    assert_eq!(
        stages,
        [
            status("received", "received", None),
            status("accepted", "accepted", None),
            status("submitted", "accepted", None),
            status("resting", "resting", resting),
            status("resting", "resting", resting),
            status("expired", "expired", expired),
            status("notified", "expired", expired),
        ]
    );
}

#[test]
fn a_cancelled_order_and_a_failed_compensation_show_why() {
    let id = || SignalId("s".into());
    let coid = || ClientOrderId("lh-s".into());
    let cancelled = stages(vec![
        received("s"),
        approved("s"),
        AccountEvent::OrderCancelled {
            signal_id: id(),
            client_order_id: coid(),
            reason: "emergency stop engaged".into(),
            at: at(1),
        },
    ]);
    assert_eq!(
        cancelled.last(),
        Some(&status(
            "cancelled",
            "cancelled",
            Some("emergency stop engaged")
        ))
    );
    let compensation = stages(vec![
        received("s"),
        approved("s"),
        submitted("s"),
        filled("s", Side::Buy, "1", "100", "0.1", 1),
        AccountEvent::CompensationRequired {
            signal_id: id(),
            client_order_id: ClientOrderId("lh-s-close".into()),
            market: market(),
            side: Side::Sell,
            size: qty("1"),
            reason: "the stop-loss was refused".into(),
            at: at(1),
        },
        AccountEvent::CompensationFailed {
            signal_id: id(),
            client_order_id: ClientOrderId("lh-s-close".into()),
            reason: "exchange down".into(),
            at: at(2),
        },
    ]);
    assert_eq!(
        compensation[3..],
        [
            status("filled", "filled", None),
            // The fill stands as the outcome while the close is under way.
            status("compensating", "filled", Some("the stop-loss was refused")),
            status(
                "compensation_failed",
                "compensation_failed",
                Some("exchange down")
            ),
        ]
    );
}

#[test]
fn a_signal_row_says_where_and_when_it_was_received() {
    let models = ReadModels::fold(&stream("a", vec![received("s")]));
    let row = &models.signals[&("a".to_owned(), "s".to_owned())];
    assert_eq!(row.market.as_deref(), Some("BTC-USD"));
    assert_eq!(row.received_at, Some(at(1)));
    // A signal first seen at its approval (its receipt before the log's start) has its market.
    let models = ReadModels::fold(&stream("a", vec![approved("s")]));
    let row = &models.signals[&("a".to_owned(), "s".to_owned())];
    assert_eq!(row.market.as_deref(), Some("BTC-USD"));
    assert_eq!(row.received_at, None);
    let models = ReadModels::fold(&stream("a", vec![submitted("s")]));
    let row = &models.signals[&("a".to_owned(), "s".to_owned())];
    assert_eq!(
        (row.market.as_deref(), row.status.as_str()),
        (Some("BTC-USD"), "submitted")
    );
}

/// The catch-up runner loads only the rows a page's events read, and skips a projection a page
/// does not touch; a rebuild compares one projection at a time.
#[test]
fn a_page_touches_and_reads_exactly_the_rows_its_events_fold_into() {
    let events = stream(
        "a",
        vec![
            received("s1"),
            filled("s1", Side::Buy, "1", "100", "0.1", 1),
            filled("s2", Side::Buy, "1", "101", "0.1", 1),
            AccountEvent::PositionOpened {
                signal_id: SignalId("s1".into()),
                market: market(),
                side: Side::Buy,
                size: qty("2"),
                entry_price: dec("100.5"),
            },
        ],
    );
    let touched = |envelope: &Envelope| {
        Projection::ALL
            .into_iter()
            .filter(|p| ReadModels::touches(*p, envelope))
            .collect::<Vec<_>>()
    };
    assert_eq!(touched(&events[0]), [Projection::Signals]);
    assert_eq!(
        touched(&events[1]),
        [
            Projection::Trades,
            Projection::DailyVolume,
            Projection::Signals
        ]
    );
    assert_eq!(
        touched(&events[3]),
        [Projection::Positions, Projection::Signals]
    );

    let account_market = ("a".to_owned(), "BTC-USD".to_owned());
    let day = (String::from("a"), at(1).date_naive());
    let signal = |s: &str| ("a".to_owned(), s.to_owned());
    let read = |projection| ReadModels::keys_read(projection, &events);
    assert_eq!(read(Projection::Positions).positions, [account_market]);
    assert_eq!(read(Projection::DailyVolume).daily_volume, [day]);
    assert_eq!(
        read(Projection::Signals).signals,
        [signal("s1"), signal("s2")]
    );
    assert_eq!(read(Projection::Trades), crate::TouchedKeys::default());

    let models = ReadModels::fold(&events);
    for projection in Projection::ALL {
        let only = models.only(projection);
        let mut expected = ReadModels::default();
        for envelope in &events {
            expected.apply(projection, envelope);
        }
        assert_eq!(only, expected, "{}", projection.name());
    }
    assert_eq!(models.only(Projection::Trades).trades.len(), 2);
}
