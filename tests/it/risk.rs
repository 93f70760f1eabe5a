//! Every risk rule over the real binary, on both stores: an operator sets an account's limits with
//! `ledgerhook users limits`, TradingView sends alerts, and each alert beyond a limit is answered
//! 200 "rejected" (never retried by TradingView) and recorded as `RiskRejected` naming its rule,
//! while alerts inside the limits trade.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::Value;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{create_user, operator_cli, replay, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

/// One rule: the limits set, then alerts with the verdict each must get (`None`: accepted,
/// `Some(rule)`: refused by that rule).
struct RuleCase {
    rule: &'static str,
    limits: &'static [&'static str],
    alerts: Vec<(String, Option<&'static str>)>,
}

fn cases() -> Vec<RuleCase> {
    vec![
        RuleCase {
            rule: "max_order_notional",
            limits: &["--max-order-notional-usd", "100"],
            alerts: vec![
                (
                    Alert::btc_usd("n-1").size("0.01").json(),
                    Some("max_order_notional"),
                ),
                (Alert::btc_usd("n-2").json(), None),
            ],
        },
        RuleCase {
            rule: "max_order_size",
            limits: &["--max-order-size", "BTC-USD=0.005"],
            alerts: vec![
                (
                    Alert::btc_usd("s-1").size("0.01").json(),
                    Some("max_order_size"),
                ),
                (Alert::btc_usd("s-2").size("0.005").json(), None),
            ],
        },
        RuleCase {
            rule: "max_position_size",
            limits: &["--max-position-size", "BTC-USD=0.015"],
            alerts: vec![
                (Alert::btc_usd("p-1").size("0.01").json(), None),
                (
                    Alert::btc_usd("p-2").size("0.01").json(),
                    Some("max_position_size"),
                ),
                // Reducing is always allowed.
                (Alert::btc_usd("p-3").side("sell").size("0.01").json(), None),
            ],
        },
        RuleCase {
            rule: "max_position_notional",
            limits: &["--max-position-notional-usd", "1000"],
            alerts: vec![
                (
                    Alert::btc_usd("pn-1").side("sell").size("0.01").json(),
                    None,
                ),
                (
                    Alert::btc_usd("pn-2").side("sell").size("0.01").json(),
                    Some("max_position_notional"),
                ),
            ],
        },
        RuleCase {
            rule: "max_daily_volume",
            limits: &["--max-daily-volume-usd", "1000"],
            alerts: vec![
                (Alert::btc_usd("v-1").size("0.01").json(), None),
                (
                    Alert::btc_usd("v-2").size("0.01").json(),
                    Some("max_daily_volume"),
                ),
            ],
        },
        RuleCase {
            rule: "allowed_markets",
            limits: &["--allowed-markets", "ETH-USD"],
            alerts: vec![
                (Alert::btc_usd("m-1").json(), Some("allowed_markets")),
                (
                    Alert::new("m-2").symbol("ETHUSDT.P").size("0.01").json(),
                    None,
                ),
            ],
        },
        RuleCase {
            rule: "price_deviation",
            limits: &["--max-price-deviation-bps", "200"],
            alerts: vec![
                (
                    Alert::btc_usd("d-1").field("price", "70000").json(),
                    Some("price_deviation"),
                ),
                (Alert::btc_usd("d-2").field("price", "65500").json(), None),
            ],
        },
        RuleCase {
            rule: "bracket_prices",
            limits: &[],
            alerts: vec![
                (
                    Alert::btc_usd("b-1")
                        .field("take_profit", "60000")
                        .field("stop_loss", "63000")
                        .json(),
                    Some("bracket_prices"),
                ),
                (
                    Alert::btc_usd("b-2")
                        .field("take_profit", "70000")
                        .field("stop_loss", "63000")
                        .json(),
                    None,
                ),
            ],
        },
    ]
}

/// The rule each refused signal was refused by, in order; `None` for approved ones.
async fn verdicts(database_url: &str, user: &User) -> Vec<Option<String>> {
    replay(database_url, &user.user_id)
        .await
        .iter()
        .filter_map(|line| match line["event_type"].as_str() {
            Some("RiskApproved") => Some(None),
            Some("RiskRejected") => Some(Some(
                line["payload"]["RiskRejected"]["rule"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => None,
        })
        .collect()
}

async fn every_risk_rule_refuses_what_exceeds_it_and_records_why(backend: Backend) {
    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::default()).await;
    for case in cases() {
        let user = create_user(&test.url, case.rule).await;
        if !case.limits.is_empty() {
            let mut args = vec!["users", "limits", user.user_id.as_str()];
            args.extend_from_slice(case.limits);
            args.extend_from_slice(&["--reason", "test limits"]);
            let shown: Value = serde_json::from_str(&operator_cli(&test.url, &args).await)
                .expect("users limits prints the limits as JSON");
            assert!(shown.is_object(), "{shown}");
        }
        for (alert, refused_by) in &case.alerts {
            let (status, body) = service.post_signal(&user.webhook_token, alert).await;
            assert_eq!(status, 200, "{}: {alert}: {body}", case.rule);
            let expected = if refused_by.is_some() {
                "rejected"
            } else {
                "accepted"
            };
            assert_eq!(body["status"], expected, "{}: {alert}: {body}", case.rule);
        }
        let expected: Vec<Option<String>> = case
            .alerts
            .iter()
            .map(|(_, rule)| rule.map(str::to_owned))
            .collect();
        assert_eq!(verdicts(&test.url, &user).await, expected, "{}", case.rule);
        if !case.limits.is_empty() {
            let events: Vec<String> = replay(&test.url, &user.user_id)
                .await
                .iter()
                .map(|line| line["event_type"].as_str().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(events[1], "RiskLimitsChanged", "{}: {events:?}", case.rule);
        }
    }
    service.stop().await;
}
on_both_stores!(every_risk_rule_refuses_what_exceeds_it_and_records_why);

async fn stale_alerts_are_recorded_and_refused(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "late").await;
    let service = Service::start(&test.url, Options::default()).await;
    let at = |age: Duration| (Utc::now() - age).to_rfc3339_opts(SecondsFormat::Secs, true);
    let cases = [
        (
            Alert::btc_usd("t-1")
                .field("timestamp", at(Duration::minutes(10)))
                .json(),
            "rejected",
        ),
        (
            Alert::btc_usd("t-2")
                .field("timestamp", at(Duration::seconds(5)))
                .json(),
            "accepted",
        ),
        // The alert may allow itself more lag.
        (
            Alert::btc_usd("t-3")
                .field("timestamp", at(Duration::minutes(10)))
                .field("max_lag", 900)
                .json(),
            "accepted",
        ),
        // From the future beyond the lag: a wrong clock or a forgery.
        (
            Alert::btc_usd("t-4")
                .field("timestamp", at(-Duration::minutes(10)))
                .json(),
            "rejected",
        ),
    ];
    for (alert, expected) in &cases {
        let (status, body) = service.post_signal(&user.webhook_token, alert).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(*expected)),
            "{alert}: {body}"
        );
    }
    let stale: Vec<String> = replay(&test.url, &user.user_id)
        .await
        .iter()
        .filter(|line| line["event_type"] == "SignalRejected")
        .map(|line| line["payload"]["SignalRejected"]["reason"]["kind"].to_string())
        .collect();
    assert_eq!(stale, ["\"stale\"", "\"stale\""]);
    service.stop().await;
}
on_both_stores!(stale_alerts_are_recorded_and_refused);
