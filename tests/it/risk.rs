//! Every risk rule over the real binary, on both stores: an operator sets an account's limits with
//! `ledgerhook users limits`, TradingView sends alerts, and each alert beyond a limit is answered
//! 200 "rejected" (never retried by TradingView) and recorded as `RiskRejected` naming its rule,
//! while alerts inside the limits trade.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::Value;

use crate::on_both_stores;
use crate::support::service::{cli, create_user, replay, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

/// One rule: the limits set, then alerts with the verdict each must get (`None`: accepted,
/// `Some(rule)`: refused by that rule).
struct RuleCase {
    rule: &'static str,
    limits: &'static [&'static str],
    alerts: Vec<(String, Option<&'static str>)>,
}

/// A BTC-USD alert (the paper reference price is 65,000) with extra fields.
fn btc(id: &str, side: &str, size: &str, extra: &str) -> String {
    format!(r#"{{"symbol":"BTC-USD","side":"{side}","size":"{size}","id":"{id}"{extra}}}"#)
}

fn cases() -> Vec<RuleCase> {
    vec![
        RuleCase {
            rule: "max_order_notional",
            limits: &["--max-order-notional-usd", "100"],
            alerts: vec![
                (btc("n-1", "buy", "0.01", ""), Some("max_order_notional")),
                (btc("n-2", "buy", "0.001", ""), None),
            ],
        },
        RuleCase {
            rule: "max_order_size",
            limits: &["--max-order-size", "BTC-USD=0.005"],
            alerts: vec![
                (btc("s-1", "buy", "0.01", ""), Some("max_order_size")),
                (btc("s-2", "buy", "0.005", ""), None),
            ],
        },
        RuleCase {
            rule: "max_position_size",
            limits: &["--max-position-size", "BTC-USD=0.015"],
            alerts: vec![
                (btc("p-1", "buy", "0.01", ""), None),
                (btc("p-2", "buy", "0.01", ""), Some("max_position_size")),
                // Reducing is always allowed.
                (btc("p-3", "sell", "0.01", ""), None),
            ],
        },
        RuleCase {
            rule: "max_position_notional",
            limits: &["--max-position-notional-usd", "1000"],
            alerts: vec![
                (btc("pn-1", "sell", "0.01", ""), None),
                (
                    btc("pn-2", "sell", "0.01", ""),
                    Some("max_position_notional"),
                ),
            ],
        },
        RuleCase {
            rule: "max_daily_volume",
            limits: &["--max-daily-volume-usd", "1000"],
            alerts: vec![
                (btc("v-1", "buy", "0.01", ""), None),
                (btc("v-2", "buy", "0.01", ""), Some("max_daily_volume")),
            ],
        },
        RuleCase {
            rule: "allowed_markets",
            limits: &["--allowed-markets", "ETH-USD"],
            alerts: vec![
                (btc("m-1", "buy", "0.001", ""), Some("allowed_markets")),
                (
                    r#"{"symbol":"ETHUSDT.P","side":"buy","size":"0.01","id":"m-2"}"#.to_owned(),
                    None,
                ),
            ],
        },
        RuleCase {
            rule: "price_deviation",
            limits: &["--max-price-deviation-bps", "200"],
            alerts: vec![
                (
                    btc("d-1", "buy", "0.001", r#","price":"70000""#),
                    Some("price_deviation"),
                ),
                (btc("d-2", "buy", "0.001", r#","price":"65500""#), None),
            ],
        },
        RuleCase {
            rule: "bracket_prices",
            limits: &[],
            alerts: vec![
                (
                    btc(
                        "b-1",
                        "buy",
                        "0.001",
                        r#","take_profit":"60000","stop_loss":"63000""#,
                    ),
                    Some("bracket_prices"),
                ),
                (
                    btc(
                        "b-2",
                        "buy",
                        "0.001",
                        r#","take_profit":"70000","stop_loss":"63000""#,
                    ),
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
            args.extend_from_slice(&["--reason", "test limits", "--by", "risk-officer"]);
            let shown: Value = serde_json::from_str(&cli(&test.url, &args).await)
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
            btc(
                "t-1",
                "buy",
                "0.001",
                &format!(r#","timestamp":"{}""#, at(Duration::minutes(10))),
            ),
            "rejected",
        ),
        (
            btc(
                "t-2",
                "buy",
                "0.001",
                &format!(r#","timestamp":"{}""#, at(Duration::seconds(5))),
            ),
            "accepted",
        ),
        // The alert may allow itself more lag.
        (
            btc(
                "t-3",
                "buy",
                "0.001",
                &format!(
                    r#","timestamp":"{}","max_lag":900"#,
                    at(Duration::minutes(10))
                ),
            ),
            "accepted",
        ),
        // From the future beyond the lag: a wrong clock or a forgery.
        (
            btc(
                "t-4",
                "buy",
                "0.001",
                &format!(r#","timestamp":"{}""#, at(-Duration::minutes(10))),
            ),
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
