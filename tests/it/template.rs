//! The message template `GET /api/config/webhook` hands out, filled in the way TradingView fills it
//! for a strategy's orders — a long entry, a close, a short entry and a flip — produces exactly
//! the intended trades, through both authentication schemes and the target-position variant.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::on_both_stores;
use crate::support::eventually;
use crate::support::service::{create_user, replay, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

/// One order of a TradingView strategy, as its placeholders render.
struct StrategyOrder {
    order_id: &'static str,
    action: &'static str,
    contracts: &'static str,
    /// `{{strategy.position_size}}`: the signed position after the order.
    position_size: &'static str,
}

/// Long 0.01, close it, short 0.02, flip to long 0.01 (one order of 0.03).
const ORDERS: [StrategyOrder; 4] = [
    StrategyOrder {
        order_id: "Long",
        action: "buy",
        contracts: "0.01",
        position_size: "0.01",
    },
    StrategyOrder {
        order_id: "Close entry(s) order Long",
        action: "sell",
        contracts: "0.01",
        position_size: "0",
    },
    StrategyOrder {
        order_id: "Short",
        action: "sell",
        contracts: "0.02",
        position_size: "-0.02",
    },
    StrategyOrder {
        order_id: "Long",
        action: "buy",
        contracts: "0.03",
        position_size: "0.01",
    },
];

/// The positions the account must hold after each order.
const EXPECTED_POSITIONS: [&str; 4] = ["0.01", "0", "-0.02", "0.01"];

fn render(template: &str, order: &StrategyOrder, secret: &str) -> String {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let placeholders: HashMap<&str, &str> = HashMap::from([
        ("{{ticker}}", "BTCUSDT.P"),
        ("{{exchange}}", "BINANCE"),
        ("{{close}}", "65010.5"),
        ("{{timenow}}", now.as_str()),
        ("{{strategy.order.action}}", order.action),
        ("{{strategy.order.contracts}}", order.contracts),
        ("{{strategy.order.id}}", order.order_id),
        ("{{strategy.position_size}}", order.position_size),
        ("<webhook_secret>", secret),
    ]);
    let mut message = template.to_owned();
    for (placeholder, value) in placeholders {
        message = message.replace(placeholder, value);
    }
    assert!(
        !message.contains("{{"),
        "every placeholder is rendered: {message}"
    );
    message
}

/// The account's signed BTC-USD position, as replay shows it after the last event.
async fn position(database_url: &str, user_id: &str) -> Decimal {
    let lines = replay(database_url, user_id).await;
    let state = &lines.last().expect("events")["state"];
    // Signed; a closed position may be dropped from the map (flat).
    state["positions"]["BTC-USD"]["size"]
        .as_str()
        .map_or(Decimal::ZERO, |size| size.parse().expect("a decimal size"))
}

async fn config(service: &Service, user: &User) -> Value {
    let (status, body) = service
        .send(
            service
                .client()
                .get(format!("{}/api/config/webhook", service.base_url))
                .bearer_auth(&user.api_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Token,
    TwoFactor,
    TargetPosition,
}

async fn run_strategy(backend: Backend, variant: Variant) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "trader").await;
    let service = Service::start(&test.url, Options::default()).await;
    let setup = &config(&service, &user).await["tradingview_setup"];
    let template = match variant {
        Variant::Token => setup["message_template"].as_str(),
        Variant::TwoFactor => setup["two_factor"]["message_template"].as_str(),
        Variant::TargetPosition => setup["target_position_template"].as_str(),
    }
    .expect("a template")
    .to_owned();
    for (index, order) in ORDERS.iter().enumerate() {
        let message = render(&template, order, &user.webhook_secret);
        let (status, body) = match variant {
            Variant::TwoFactor => service.post_two_factor(&user.webhook_uuid, &message).await,
            _ => service.post_signal(&user.webhook_token, &message).await,
        };
        assert_eq!(status, 200, "{variant:?} order {index}: {body}");
        assert_eq!(
            body["status"], "accepted",
            "{variant:?} order {index}: {body}"
        );
        // TradingView resends on 5xx only, but a resend of the same message is a duplicate.
        let (_, again) = match variant {
            Variant::TwoFactor => service.post_two_factor(&user.webhook_uuid, &message).await,
            _ => service.post_signal(&user.webhook_token, &message).await,
        };
        assert_eq!(again["status"], "duplicate", "{again}");
        let expected: Decimal = EXPECTED_POSITIONS[index].parse().expect("a decimal");
        eventually(
            &format!("{variant:?}: position {expected} after order {index}"),
            || async { (position(&test.url, &user.user_id).await == expected).then_some(()) },
        )
        .await;
    }
    let fills: Vec<String> = replay(&test.url, &user.user_id)
        .await
        .iter()
        .filter(|line| line["event_type"] == "OrderFilled")
        .map(|line| {
            let fill = &line["payload"]["OrderFilled"];
            format!(
                "{} {}",
                fill["side"].as_str().unwrap_or("?"),
                fill["size"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        fills,
        ["buy 0.01", "sell 0.01", "sell 0.02", "buy 0.03"],
        "exactly the intended trades, once each"
    );
    service.stop().await;
}

async fn the_token_template_trades_exactly_the_strategy(backend: Backend) {
    run_strategy(backend, Variant::Token).await;
}
on_both_stores!(the_token_template_trades_exactly_the_strategy);

async fn the_two_factor_template_trades_exactly_the_strategy(backend: Backend) {
    run_strategy(backend, Variant::TwoFactor).await;
}
on_both_stores!(the_two_factor_template_trades_exactly_the_strategy);

async fn the_target_position_template_trades_exactly_the_strategy(backend: Backend) {
    run_strategy(backend, Variant::TargetPosition).await;
}
on_both_stores!(the_target_position_template_trades_exactly_the_strategy);
