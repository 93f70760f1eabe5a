//! The trader's settings as account events: who made each change is recorded, a change to what
//! already holds records nothing, and settings never touch positions, signals or reservations.

use crate::common::*;
use aggregates::{
    AccountCommand, AccountError, AccountEvent, RiskLimits, SettingsChange, TradingAccount, Venue,
};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use rust_decimal::Decimal;

const BY: &str = "trader:alice";

fn choose(venue: Venue) -> AccountCommand {
    AccountCommand::ChooseVenue {
        venue,
        by: BY.to_owned(),
        at: at("2024-03-01T09:00:00Z"),
    }
}

/// Sets the three notional limits to `limits`' and the default order size.
fn settings(limits: RiskLimits, default_order_usd: Option<&str>) -> AccountCommand {
    AccountCommand::ChangeSettings {
        change: SettingsChange {
            max_order_notional_usd: Some(limits.max_order_notional_usd),
            max_position_notional_usd: Some(limits.max_position_notional_usd),
            max_daily_volume_usd: Some(limits.max_daily_volume_usd),
            default_order_usd: Some(default_order_usd.map(dec)),
            ..SettingsChange::default()
        },
        by: BY.to_owned(),
        reason: "desk".to_owned(),
        at: at("2024-03-01T09:00:00Z"),
    }
}

#[test]
fn a_first_venue_choice_is_recorded_even_when_it_is_paper() {
    TestFramework::<TradingAccount>::with(())
        .given(vec![opened(RiskLimits::default())])
        .when(choose(Venue::Paper))
        .then_expect_events(vec![AccountEvent::VenueChanged {
            venue: Venue::Paper,
            by: BY.to_owned(),
            at: at("2024-03-01T09:00:00Z"),
        }]);
}

#[test]
fn choosing_the_venue_already_chosen_records_nothing() {
    let chosen = history([open_command(RiskLimits::default()), choose(Venue::Dydx)]);
    TestFramework::<TradingAccount>::with(())
        .given(chosen)
        .when(choose(Venue::Dydx))
        .then_expect_events(vec![]);
}

#[test]
fn the_venue_stays_while_an_order_is_in_flight_or_a_position_open() {
    let approved = history([
        open_command(RiskLimits::default()),
        AccountCommand::ReceiveSignal(intent(
            "s-1",
            "BTC-USD",
            aggregates::Side::Buy,
            "0.01",
            "60000",
            "2024-03-01T09:00:00Z",
        )),
    ]);
    let mut account = TradingAccount::default();
    for event in approved {
        account.apply(event);
    }
    assert!(matches!(
        account.decide(choose(Venue::Dydx)),
        Err(AccountError::VenueBusy(_))
    ));
    let mut filled = TradingAccount::default();
    for event in history([open_command(RiskLimits::default())]) {
        filled.apply(event);
    }
    filled.apply(AccountEvent::PositionOpened {
        signal_id: sid("s-1"),
        market: market("BTC-USD"),
        side: aggregates::Side::Buy,
        size: qty("0.01"),
        entry_price: dec("60000"),
    });
    let refused = filled.decide(choose(Venue::Dydx));
    assert!(
        matches!(&refused, Err(AccountError::VenueBusy(why)) if why.contains("BTC-USD")),
        "{refused:?}"
    );
}

#[test]
fn a_test_signal_is_refused_unless_the_account_trades_on_paper() {
    let trial = |id: &str| {
        let mut intent = intent(
            id,
            "BTC-USD",
            aggregates::Side::Buy,
            "0.01",
            "60000",
            "2024-03-01T09:30:00Z",
        );
        intent.paper_only = true;
        AccountCommand::ReceiveSignal(intent)
    };
    let mut account = TradingAccount::default();
    for event in history([open_command(RiskLimits::default())]) {
        account.apply(event);
    }
    // Never chosen in the ledger (the caller checks the user row), or paper: taken.
    assert!(account.decide(trial("t-1")).is_ok());
    for event in account
        .decide(choose(Venue::Dydx))
        .expect("no business open")
    {
        account.apply(event);
    }
    assert_eq!(
        account.decide(trial("t-2")),
        Err(AccountError::NotOnPaper(Venue::Dydx))
    );
    for event in account
        .decide(choose(Venue::Paper))
        .expect("no business open")
    {
        account.apply(event);
    }
    assert!(account.decide(trial("t-3")).is_ok());
}

#[test]
fn settings_of_an_unopened_account_are_refused() {
    TestFramework::<TradingAccount>::with(())
        .given_no_previous_events()
        .when(choose(Venue::Dydx))
        .then_expect_error(AccountError::NotOpened);
}

#[test]
fn limits_and_default_size_change_in_one_decision_each_with_who() {
    let tighter = limits("5000", "10000", "50000", &[]);
    TestFramework::<TradingAccount>::with(())
        .given(vec![opened(RiskLimits::default())])
        .when(settings(tighter.clone(), Some("250")))
        .then_expect_events(vec![
            AccountEvent::RiskLimitsChanged {
                limits: tighter,
                by: BY.to_owned(),
                reason: "desk".to_owned(),
                at: at("2024-03-01T09:00:00Z"),
            },
            AccountEvent::DefaultOrderSizeChanged {
                default_order_usd: Some(dec("250")),
                by: BY.to_owned(),
                at: at("2024-03-01T09:00:00Z"),
            },
        ]);
}

#[test]
fn each_change_keeps_what_it_does_not_name() {
    let mut account = TradingAccount::default();
    for event in history([open_command(RiskLimits::default())]) {
        account.apply(event);
    }
    let change = |change: SettingsChange| AccountCommand::ChangeSettings {
        change,
        by: BY.to_owned(),
        reason: "desk".to_owned(),
        at: at("2024-03-01T09:00:00Z"),
    };
    // Two changes made from the same view of the settings: neither undoes the other.
    for command in [
        change(SettingsChange {
            max_order_notional_usd: Some(dec("700")),
            ..SettingsChange::default()
        }),
        change(SettingsChange {
            default_order_usd: Some(Some(dec("40"))),
            max_order_size: [(market("ETH-USD"), Some(dec("2")))].into(),
            ..SettingsChange::default()
        }),
    ] {
        for event in account.decide(command).expect("valid") {
            account.apply(event);
        }
    }
    let settings = account.settings().expect("open");
    assert_eq!(settings.limits.max_order_notional_usd, dec("700"));
    assert_eq!(
        settings.limits.max_order_size.get(&market("ETH-USD")),
        Some(&dec("2"))
    );
    assert_eq!(settings.default_order_usd, Some(dec("40")));
    // Lifting a market's size and going back to the service's default size.
    let lifted = change(SettingsChange {
        default_order_usd: Some(None),
        max_order_size: [(market("ETH-USD"), None)].into(),
        ..SettingsChange::default()
    });
    for event in account.decide(lifted).expect("valid") {
        account.apply(event);
    }
    let settings = account.settings().expect("open");
    assert!(settings.limits.max_order_size.is_empty());
    assert_eq!(settings.default_order_usd, None);
    assert_eq!(settings.limits.max_order_notional_usd, dec("700"));
}

#[test]
fn a_default_size_of_zero_or_less_is_refused() {
    for size in ["0", "-5"] {
        TestFramework::<TradingAccount>::with(())
            .given(vec![opened(RiskLimits::default())])
            .when(settings(RiskLimits::default(), Some(size)))
            .then_expect_error(AccountError::InvalidSetting(
                "default_order_usd must be greater than zero".to_owned(),
            ));
    }
}

#[test]
fn credential_changes_name_the_field_and_change_no_state() {
    let before = TradingAccount::default();
    let mut account = before.clone();
    for event in history([open_command(RiskLimits::default())]) {
        account.apply(event);
    }
    let opened_state = account.clone();
    let events = account
        .decide(AccountCommand::RecordCredentialChange {
            field: "dydx_mnemonic".to_owned(),
            cleared: false,
            by: BY.to_owned(),
            at: at("2024-03-01T09:00:00Z"),
        })
        .expect("recorded");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].signal_id(), None);
    for event in events {
        account.apply(event);
    }
    assert_eq!(account, opened_state);
}

/// One settings command, drawn at random.
fn command() -> impl Strategy<Value = AccountCommand> {
    prop_oneof![
        any::<bool>().prop_map(|dydx| choose(if dydx { Venue::Dydx } else { Venue::Paper })),
        (1u32..100_000, proptest::option::of(1u32..10_000)).prop_map(|(order, size)| {
            let limits = RiskLimits {
                max_order_notional_usd: Decimal::from(order),
                ..RiskLimits::default()
            };
            settings(limits, size.map(|s| s.to_string()).as_deref())
        }),
        any::<bool>().prop_map(|cleared| AccountCommand::RecordCredentialChange {
            field: "telegram_chat_id".to_owned(),
            cleared,
            by: BY.to_owned(),
            at: at("2024-03-01T09:00:00Z"),
        }),
        Just(AccountCommand::RecordWebhookRotation {
            by: BY.to_owned(),
            at: at("2024-03-01T09:00:00Z"),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever settings are changed and in whatever order: the state shows the last of each,
    /// every event names who made it, nothing of trading (positions, signals, volume) moves, and
    /// the state read back from its events equals the state decided on.
    #[test]
    fn settings_keep_their_last_value_and_touch_no_trading_state(
        commands in proptest::collection::vec(command(), 0..24)
    ) {
        let mut account = TradingAccount::default();
        for event in history([open_command(RiskLimits::default())]) {
            account.apply(event);
        }
        let mut replayed = account.clone();
        let mut venue = None;
        let mut settings_now = account.settings().expect("open");
        for command in commands {
            match &command {
                AccountCommand::ChooseVenue { venue: chosen, .. } => venue = Some(*chosen),
                AccountCommand::ChangeSettings { change, .. } => {
                    if let Some(order) = change.max_order_notional_usd {
                        settings_now.limits.max_order_notional_usd = order;
                    }
                    if let Some(size) = change.default_order_usd {
                        settings_now.default_order_usd = size;
                    }
                }
                _ => {}
            }
            let events = account.decide(command).expect("settings of an open account");
            for event in events {
                let by = match &event {
                    AccountEvent::VenueChanged { by, .. }
                    | AccountEvent::RiskLimitsChanged { by, .. }
                    | AccountEvent::DefaultOrderSizeChanged { by, .. }
                    | AccountEvent::CredentialChanged { by, .. }
                    | AccountEvent::WebhookRotated { by, .. } => by.clone(),
                    other => panic!("not a settings event: {other:?}"),
                };
                prop_assert_eq!(by, BY);
                let stored = serde_json::to_value(&event).expect("serializes");
                let read: AccountEvent = serde_json::from_value(stored).expect("reads back");
                replayed.apply(read);
                account.apply(event);
            }
        }
        let settings = account.settings().expect("open");
        prop_assert_eq!(settings.venue, venue);
        prop_assert_eq!(&settings.limits, &settings_now.limits);
        prop_assert_eq!(settings.default_order_usd, settings_now.default_order_usd);
        prop_assert!(account.positions.is_empty() && account.in_flight.is_empty());
        prop_assert_eq!(account.signals_received, 0);
        prop_assert_eq!(&account, &replayed);
    }
}

#[test]
fn the_account_answers_with_the_venue_and_default_size_it_chose() {
    let fresh = replay(&history([open_command(RiskLimits::default())]));
    assert_eq!((fresh.venue(), fresh.default_order_usd()), (None, None));
    let chosen = replay(&history([
        open_command(RiskLimits::default()),
        choose(Venue::Dydx),
        settings(RiskLimits::default(), Some("250")),
    ]));
    assert_eq!(chosen.venue(), Some(Venue::Dydx));
    assert_eq!(chosen.default_order_usd(), Some(dec("250")));
}

#[test]
fn a_venue_is_named_and_read_back_by_its_stored_name() {
    for (venue, name) in [(Venue::Paper, "paper"), (Venue::Dydx, "dydx")] {
        assert_eq!(venue.as_str(), name);
        assert_eq!(venue.to_string(), name);
        assert_eq!(Venue::parse(name), Some(venue));
    }
    assert_eq!(Venue::parse("binance"), None);
    assert_eq!(Venue::parse("Paper"), None);
}
