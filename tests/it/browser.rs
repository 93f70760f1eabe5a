//! Black-box, issue 12's "done when", in headless Chromium against the real binary:
//!
//! 1. A new trader goes from nothing to a filled paper trade using only the dashboard and one
//!    webhook call: signs in with a wallet (an injected EIP-1193 provider; the test signs with
//!    its own secp256k1 key), copies the webhook URL and message template, sends a test signal and
//!    sees the position, then fires the one webhook call TradingView would and sees that trade and
//!    its signal's story.
//! 2. A compliance officer signs in with a password, finds that trade's audit rows by filter,
//!    exports them (CSV and JSONL, through the page's own export links) and verifies the trail.
//!
//! Screenshots of every main page, desktop and phone width, are kept in `target/screenshots/`.
//! One store (SQLite): what is tested here is the pages; every endpoint they call is tested on
//! both stores in its own suite.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::support::answer::Answer;
use crate::support::browser::{Browser, DESKTOP, INJECTED_WALLET, PHONE, RECORD_CLIPBOARD};
use crate::support::eventually;
use crate::support::service::{Options, Service};
use crate::support::sign_in::{create_staff_with_login, TestWallet};
use crate::support::stores::{Backend, TestStore};

const PASSWORD: &str = "compliance officer's passphrase";
const OPERATOR_PASSWORD: &str = "operator's own passphrase";

/// What TradingView puts in place of each placeholder of the message template when the
/// strategy buys 0.01 BTCUSDT.P.
fn as_tradingview_fills(template: &str) -> String {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let values = BTreeMap::from([
        ("{{ticker}}", "BTCUSDT.P".to_owned()),
        ("{{strategy.order.action}}", "buy".to_owned()),
        ("{{strategy.order.contracts}}", "0.01".to_owned()),
        ("{{strategy.position_size}}", "0.01".to_owned()),
        ("{{strategy.order.id}}", "Long".to_owned()),
        ("{{close}}", "65000".to_owned()),
        ("{{timenow}}", now),
    ]);
    let mut message = template.to_owned();
    for (placeholder, value) in values {
        message = message.replace(placeholder, &value);
    }
    assert!(!message.contains("{{"), "a placeholder left: {message}");
    message
}

/// Signs what the page's wallet was asked to sign, once it asks.
async fn sign_for_the_page(browser: &Browser, wallet: &TestWallet) {
    let hex_message = eventually("the page to ask the wallet to sign", || async {
        let pending = browser.run("return window.__lhTest.pending;", vec![]).await;
        pending.as_str().map(str::to_owned)
    })
    .await;
    let bytes = hex::decode(hex_message.trim_start_matches("0x")).expect("hex of the message");
    let message = String::from_utf8(bytes).expect("a UTF-8 message");
    assert!(
        message.contains("wants you to sign in with your Ethereum account"),
        "{message}"
    );
    browser
        .run(
            "window.__lhTest.resolve(arguments[0]);",
            vec![json!(wallet.sign(&message))],
        )
        .await;
}

/// The values the page's "Copy" buttons copied, in order.
async fn copied(browser: &Browser) -> Vec<String> {
    let value = browser.run("return window.__lhTest.copied;", vec![]).await;
    serde_json::from_value(value).expect("a list of strings")
}

async fn screenshots(browser: &Browser, service: &Service, pages: &[(&str, &str, &str)]) {
    for (size, suffix) in [(DESKTOP, "desktop"), (PHONE, "phone")] {
        browser.resize(size).await;
        for (path, ready, name) in pages {
            browser.goto(&format!("{}{path}", service.base_url)).await;
            browser
                .text_when(ready, &format!("{path} to load"), |text| {
                    !text.is_empty() && !text.contains("Loading")
                })
                .await;
            browser.screenshot(&format!("{name}-{suffix}")).await;
        }
    }
    browser.resize(DESKTOP).await;
}

#[tokio::test]
async fn a_new_trader_reaches_a_filled_trade_and_compliance_verifies_it() {
    let test = TestStore::new(Backend::Sqlite).await;
    create_staff_with_login(&test.url, "Carol", "compliance", "carol", PASSWORD).await;
    create_staff_with_login(&test.url, "Oscar", "operator", "oscar", OPERATOR_PASSWORD).await;
    // Verified every second, so the report the page shows soon covers the trade's rows.
    let options = Options {
        args: vec!["--audit-verify-interval-seconds".into(), "1".into()],
        ..Options::default()
    };
    let service = Service::start(&test.url, options).await;
    let base = service.base_url.clone();
    let browser = Browser::start().await;

    // The landing and sign-in pages, before anyone signs in.
    browser.goto(&format!("{base}/")).await;
    browser.find("main").await;
    browser.screenshot("home-desktop").await;

    // Sign in with the wallet.
    let wallet = TestWallet::random();
    browser.goto(&format!("{base}/login")).await;
    browser.find("#wallet-sign-in").await;
    browser.screenshot("login-desktop").await;
    browser
        .run(INJECTED_WALLET, vec![json!(wallet.address)])
        .await;
    browser.click("#wallet-sign-in").await;
    sign_for_the_page(&browser, &wallet).await;
    browser.arrive("/app").await;

    // Copy the webhook URL and the message template.
    let url = browser
        .text_when("#webhook-url", "the webhook URL", |text| {
            text.contains("/api/webhook?token=")
        })
        .await;
    let template = browser
        .text_when("#message-template", "the message template", |text| {
            text.contains("{{ticker}}")
        })
        .await;
    browser.run(RECORD_CLIPBOARD, vec![]).await;
    browser
        .click("button[data-copy-from=\"webhook-url\"]")
        .await;
    browser
        .click("button[data-copy-from=\"message-template\"]")
        .await;
    browser
        .text_when(
            "[data-copy-status=\"message-template\"]",
            "the copy to be confirmed",
            |text| text == "Copied",
        )
        .await;
    assert_eq!(copied(&browser).await, [url.clone(), template.clone()]);

    // A test signal through the real path: the position appears.
    browser.click("#send-test-signal").await;
    browser
        .text_when("#positions", "the test signal's position", |text| {
            text.contains("BTC-USD")
        })
        .await;

    // The one webhook call, as TradingView makes it from the copied URL and template.
    let alert = Answer::of(
        service
            .client()
            .post(&url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(as_tradingview_fills(&template)),
    )
    .await;
    assert_eq!(
        (alert.status, &alert.json["status"]),
        (200, &json!("accepted")),
        "{}",
        alert.json
    );
    let signal_id = alert.json["signal_id"]
        .as_str()
        .expect("a signal id")
        .to_owned();
    browser.goto(&format!("{base}/app")).await;
    let trades = browser
        .text_when("#trades", "both trades on the page", |text| {
            text.matches("BTC-USD").count() >= 2
        })
        .await;
    assert!(trades.contains("0.01"), "{trades}");
    // Two trades and two signals are one page each: no "older" button is offered.
    for more in ["#trades-more", "#signals-more"] {
        let shown = browser
            .find(more)
            .await
            .is_displayed()
            .await
            .expect("the button's visibility");
        assert!(!shown, "{more} is shown with no older page");
    }

    // That signal's story: every event, through its fill.
    browser
        .goto(&format!("{base}/app/signals/{signal_id}"))
        .await;
    let story = browser
        .text_when("main", "the signal's story", |text| {
            text.contains("OrderFilled")
        })
        .await;
    for event in ["SignalReceived", "RiskApproved", "OrderFilled"] {
        assert!(story.contains(event), "{event}: {story}");
    }
    let user_id = browser
        .run(
            "return fetch('/api/auth/session').then((r) => r.json()).then((s) => s.user_id);",
            vec![],
        )
        .await;
    let user_id = user_id.as_str().expect("the trader's id").to_owned();

    // Settings: a per-market size limit and the default order size, saved from the page, are the
    // account's and in its ledger with who made them.
    browser.goto(&format!("{base}/app/settings")).await;
    browser
        .fill("#limits input[name=\"max_order_size\"]", "BTC-USD=1")
        .await;
    browser.fill("#default-order-usd", "500").await;
    browser.click("#limits-form button[type=\"submit\"]").await;
    browser
        .text_when("#limits-status", "the limits saved", |text| {
            text == "Limits saved."
        })
        .await;
    let (_, settings) = browser.fetch_text("/api/settings").await;
    let settings: Value = serde_json::from_str(&settings).expect("settings as JSON");
    assert_eq!(
        settings["limits"]["max_order_size"],
        json!({ "BTC-USD": "1" })
    );
    assert_eq!(settings["default_order_usd"], "500");
    // The audit writer follows the ledger a moment later.
    let author = format!("trader:{user_id}");
    eventually(
        "the change in the trader's audit trail, naming its author",
        || async {
            let (_, own_trail) = browser.fetch_text("/api/audit?format=jsonl").await;
            own_trail.contains(&author).then_some(())
        },
    )
    .await;
    screenshots(
        &browser,
        &service,
        &[
            ("/app", "#positions", "app"),
            (&format!("/app/signals/{signal_id}"), "main", "signal"),
            ("/app/settings", "main", "settings"),
        ],
    )
    .await;
    browser.resize(PHONE).await;
    browser.goto(&format!("{base}/login")).await;
    browser.find("#wallet-sign-in").await;
    browser.screenshot("login-phone").await;
    browser.resize(DESKTOP).await;

    // Sign out; compliance signs in with a password.
    browser.goto(&format!("{base}/app")).await;
    browser.click("#sign-out").await;
    browser.arrive("/login").await;
    browser.fill("#staff-login", "carol").await;
    browser.fill("#staff-password", PASSWORD).await;
    browser.click("#staff-sign-in").await;
    browser.arrive("/staff/audit").await;

    // Find that trade's rows: the account's fills.
    browser.fill("#filter-account", &user_id).await;
    browser.fill("#filter-event-type", "OrderFilled").await;
    browser.click("#audit-search").await;
    let rows = browser
        .text_when("#audit-rows", "the trade's audit rows", |text| {
            text.contains("OrderFilled")
        })
        .await;
    assert!(rows.contains(&user_id), "{rows}");
    assert!(rows.contains(&signal_id), "the webhook's trade: {rows}");
    browser.screenshot("audit-desktop").await;

    // Export through the page's own links: the same rows, as CSV and JSONL.
    for (link, format) in [("#export-csv", "csv"), ("#export-jsonl", "jsonl")] {
        let href = browser
            .find(link)
            .await
            .attr("href")
            .await
            .expect("an attribute")
            .expect("an export link");
        assert!(href.contains(&format!("format={format}")), "{href}");
        assert!(
            href.contains(&user_id),
            "the export keeps the filter: {href}"
        );
        let (status, body) = browser.fetch_text(&href).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&signal_id), "{format}: {body}");
        let data_lines = body
            .lines()
            .filter(|line| line.contains("OrderFilled"))
            .count();
        assert_eq!(
            data_lines, 2,
            "{format}: the test signal's and the webhook's fills: {body}"
        );
        if format == "jsonl" {
            for line in body.lines() {
                let row: Value = serde_json::from_str(line).expect("one JSON object a line");
                assert_eq!(row["account_id"], json!(user_id));
            }
        }
    }

    // Verify the trail: a report that covers the webhook trade's rows.
    let fill_position: u64 = {
        let (_, body) = browser
            .fetch_text(&format!(
                "/api/compliance/audit?format=jsonl&account_id={user_id}&signal_id={signal_id}"
            ))
            .await;
        body.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|row| row["position"].as_u64())
            .max()
            .expect("the trade's rows have positions")
    };
    let verified = eventually("a verification report covering the trade", || async {
        browser.click("#audit-verify").await;
        let status = browser
            .text_when("#verify-status", "an answer", |text| {
                !text.is_empty() && text != "Asking…"
            })
            .await;
        let summary = browser.find("#verify-summary").await.text().await.ok()?;
        let rows: u64 = summary
            .lines()
            .skip_while(|line| line.trim() != "rows")
            .nth(1)
            .and_then(|value| value.trim().replace(',', "").parse().ok())?;
        (rows >= fill_position).then_some((status, rows))
    })
    .await;
    assert!(verified.0.starts_with("Verified"), "{verified:?}");
    browser.screenshot("audit-verified-desktop").await;
    browser.resize(PHONE).await;
    browser.screenshot("audit-phone").await;
    browser.resize(DESKTOP).await;

    // An operator halts the trader's account from the operations page; the next alert is refused.
    browser.click("#sign-out").await;
    browser.arrive("/login").await;
    browser.fill("#staff-login", "oscar").await;
    browser.fill("#staff-password", OPERATOR_PASSWORD).await;
    browser.click("#staff-sign-in").await;
    browser.arrive("/staff/operations").await;
    browser.fill("#account-user", &user_id).await;
    browser.fill("#account-reason", "checking a drift").await;
    browser.click("#account-halt").await;
    eventually("the page to ask for confirmation", || async {
        browser.client.accept_alert().await.ok()
    })
    .await;
    browser
        .text_when("#account-status", "the halt confirmed", |text| {
            text.starts_with("Halted")
        })
        .await;
    browser.screenshot("operations-desktop").await;
    browser.resize(PHONE).await;
    browser.screenshot("operations-phone").await;
    let refused = Answer::of(
        service
            .client()
            .post(&url)
            .body(as_tradingview_fills(&template).replace("Long", "Long-2")),
    )
    .await;
    assert_eq!(
        (
            refused.status,
            &refused.json["status"],
            &refused.json["reason"]
        ),
        (200, &json!("rejected"), &json!("halted")),
        "{}",
        refused.json
    );

    browser.close().await;
    service.stop().await;
}
