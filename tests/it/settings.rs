//! The trader's settings API over the real binary: each change is what the trader then sees,
//! takes effect on the next alert, and is an event in their own ledger naming who made it;
//! credentials are write-only; a test signal trades on paper through the real path; operators
//! (and only operators) halt an account or everyone over HTTP, attributed to their staff id.

use serde_json::{json, Value};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::audit::create_staff;
use crate::support::fake_venues::{self, received_orders};
use crate::support::service::{
    cli, cli_as, cli_output, cli_output_as, create_user, credentials_set, replay, Options, Service,
};
use crate::support::stores::{Backend, TestStore};
use crate::support::{answer::assert_invalid_token, eventually};

/// The official client's published example phrase (a public testnet wallet, no funds of ours).
const TEST_MNEMONIC: &str = "mirror actor skill push coach wait confirm orchard lunch mobile \
    athlete gossip awake miracle matter bus reopen team ladder lazy list timber render wait";
const BOT_TOKEN: &str = "424242:settings-test-bot-token";

/// `METHOD path` with `Authorization: Bearer key` (none if empty) and a JSON body if any.
async fn call(
    service: &Service,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = service
        .client()
        .request(method, format!("{}{path}", service.base_url));
    if !key.is_empty() {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    service.send(request).await
}

async fn get(service: &Service, path: &str, key: &str) -> (u16, Value) {
    call(service, reqwest::Method::GET, path, key, None).await
}

async fn put(service: &Service, path: &str, key: &str, body: Value) -> (u16, Value) {
    call(service, reqwest::Method::PUT, path, key, Some(body)).await
}

async fn post(service: &Service, path: &str, key: &str, body: Value) -> (u16, Value) {
    call(service, reqwest::Method::POST, path, key, Some(body)).await
}

/// The payload of every event of `kind` in the account, from `ledgerhook replay`.
async fn recorded(url: &str, user_id: &str, kind: &str) -> Vec<Value> {
    replay(url, user_id)
        .await
        .into_iter()
        .filter(|line| line["event_type"] == kind)
        .map(|line| line["payload"][kind].clone())
        .collect()
}

async fn each_setting_is_seen_used_and_recorded_with_who_made_it(backend: Backend) {
    let (_venues, addresses) = fake_venues::spawn(&[]).await;
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    credentials_set(&test.url, "service", "telegram_bot_token", BOT_TOKEN).await;
    let service = Service::start(
        &test.url,
        Options {
            args: [
                "--dydx-indexer-url",
                &addresses.indexer,
                "--dydx-node-url",
                &addresses.node,
                "--telegram-api-url",
                &addresses.telegram,
            ]
            .map(str::to_owned)
            .to_vec(),
            ..Options::default()
        },
    )
    .await;
    let key = alice.api_key.as_str();
    let by = format!("trader:{}", alice.user_id);

    let (status, settings) = get(&service, "/api/settings", key).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["venue"], "paper", "{settings}");
    assert_eq!(
        settings["credentials"]["dydx_mnemonic"],
        json!({"set": false})
    );
    assert_eq!(settings["dydx_ready"], false);

    // dYdX is refused until its credentials are stored.
    let (status, refused) = put(
        &service,
        "/api/settings/venue",
        key,
        json!({"venue": "dydx"}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "DYDX_CREDENTIALS_MISSING", "{refused}");
    let (status, bad) = put(
        &service,
        "/api/settings/venue",
        key,
        json!({"venue": "ftx"}),
    )
    .await;
    assert_eq!(
        (status, bad["code"].clone()),
        (400, json!("INVALID_VENUE")),
        "{bad}"
    );

    // Write-only credentials: the answer says set, never what.
    let (status, stored) = put(
        &service,
        "/api/settings/credentials/dydx_mnemonic",
        key,
        json!({"value": TEST_MNEMONIC}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["credentials"]["dydx_mnemonic"], json!({"set": true}));
    assert_eq!(stored["dydx_ready"], true);
    assert!(!stored.to_string().contains("orchard"), "{stored}");
    // A value of the wrong shape is refused by its rule, without being quoted.
    let (status, refused) = put(
        &service,
        "/api/settings/credentials/telegram_chat_id",
        key,
        json!({"value": "not-a-chat-secret"}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        !refused.to_string().contains("not-a-chat-secret"),
        "{refused}"
    );
    let (status, unknown) = put(
        &service,
        "/api/settings/credentials/webhook_secret",
        key,
        json!({"value": "x"}),
    )
    .await;
    assert_eq!(
        (status, unknown["code"].clone()),
        (404, json!("UNKNOWN_FIELD"))
    );

    // Now dYdX: the next alert goes there, and a test signal is refused (no real money).
    let (status, chosen) = put(
        &service,
        "/api/settings/venue",
        key,
        json!({"venue": "dydx"}),
    )
    .await;
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen["venue"], "dydx", "{chosen}");
    let (status, refused) = post(
        &service,
        "/api/settings/test-signal",
        key,
        json!({"symbol": "BTC-USD", "action": "buy", "size": "0.001"}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].clone()),
        (409, json!("VENUE_NOT_PAPER")),
        "{refused}"
    );
    let (status, sent) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("to-dydx").json())
        .await;
    assert_eq!(status, 200, "{sent}");
    let http = reqwest::Client::new();
    eventually("the order to reach the dYdX venue", || async {
        let orders = received_orders(&http, &addresses.indexer).await;
        (orders["orders"].as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await;
    eventually("the dYdX fill in the positions", || async {
        let (_, positions) = get(&service, "/api/positions", key).await;
        (positions["positions"][0]["size"] == "0.001").then_some(())
    })
    .await;
    // A position open on dYdX: the venue stays until it is closed.
    let (status, busy) = put(
        &service,
        "/api/settings/venue",
        key,
        json!({"venue": "paper"}),
    )
    .await;
    assert_eq!(
        (status, busy["code"].clone()),
        (409, json!("VENUE_BUSY")),
        "{busy}"
    );
    let close = r#"{"symbol":"BTC-USD","side":"close","id":"close-dydx"}"#;
    let (_, closing) = service.post_signal(&alice.webhook_token, close).await;
    assert_eq!(closing["status"], "accepted", "{closing}");
    let back = eventually(
        "the venue to change once the position is closed",
        || async {
            let (status, back) = put(
                &service,
                "/api/settings/venue",
                key,
                json!({"venue": "paper"}),
            )
            .await;
            (status == 200).then_some(back)
        },
    )
    .await;
    assert_eq!(back["venue"], "paper", "{back}");
    // The read models follow the ledger's close a moment later.
    eventually("the closed position in the read models", || async {
        let (_, positions) = get(&service, "/api/positions", key).await;
        positions["positions"]
            .as_array()?
            .iter()
            .all(|p| p["size"] == "0")
            .then_some(())
    })
    .await;

    // Limits and the default order size: seen, and applied to the next alert without a size.
    let (status, changed) = put(
        &service,
        "/api/settings/limits",
        key,
        json!({"max_order_notional_usd": "5000", "default_order_usd": "250", "reason": "smaller"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["limits"]["max_order_notional_usd"], "5000",
        "{changed}"
    );
    assert_eq!(changed["default_order_usd"], "250", "{changed}");
    let (status, refused) = put(
        &service,
        "/api/settings/limits",
        key,
        json!({"default_order_usd": "-1"}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let (status, too_big) = service
        .post_signal(
            &alice.webhook_token,
            &Alert::btc_usd("big").size("0.1").json(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(too_big["rule"], "max_order_notional", "{too_big}");
    let without_size = r#"{"symbol":"BTC-USD","side":"buy","id":"no-size"}"#;
    let (_, accepted) = service
        .post_signal(&alice.webhook_token, without_size)
        .await;
    assert_eq!(accepted["status"], "accepted", "{accepted}");

    // The test notification goes through the trader's Telegram chat.
    let (status, stored) = put(
        &service,
        "/api/settings/credentials/telegram_chat_id",
        key,
        json!({"value": "515151"}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    let (status, told) = post(&service, "/api/settings/test-notification", key, json!({})).await;
    assert_eq!(status, 200, "{told}");
    assert_eq!(
        (told["channel"].clone(), told["delivered"].clone()),
        (json!("telegram"), json!(true))
    );
    // Telegram down: answered as not delivered (the service itself did not fail), recorded too.
    let faults = json!({"telegram": {"down": true}});
    let set = http
        .post(format!("{}/_fake/faults", addresses.telegram))
        .json(&faults)
        .send()
        .await
        .expect("faults set");
    assert!(set.status().is_success());
    let (status, lost) = post(&service, "/api/settings/test-notification", key, json!({})).await;
    assert_eq!(
        (status, lost["delivered"].clone()),
        (200, json!(false)),
        "{lost}"
    );
    assert!(lost["reason"].is_string(), "{lost}");
    assert!(!lost.to_string().contains(BOT_TOKEN), "{lost}");
    // Cleared: gone from what the trader sees.
    let (status, cleared) = call(
        &service,
        reqwest::Method::DELETE,
        "/api/settings/credentials/dydx_mnemonic",
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        cleared["credentials"]["dydx_mnemonic"],
        json!({"set": false})
    );
    // Clearing what is not set changes nothing and records nothing (the ledger check below).
    let (status, _) = call(
        &service,
        reqwest::Method::DELETE,
        "/api/settings/credentials/dydx_mnemonic",
        key,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // In the ledger, each with who made it, and no secret anywhere in the account's history.
    let venues = recorded(&test.url, &alice.user_id, "VenueChanged").await;
    let chosen: Vec<&Value> = venues.iter().map(|v| &v["venue"]).collect();
    assert_eq!(chosen, [&json!("dydx"), &json!("paper")], "{venues:?}");
    let changes = recorded(&test.url, &alice.user_id, "CredentialChanged").await;
    let fields: Vec<(&Value, &Value)> = changes
        .iter()
        .map(|c| (&c["field"], &c["cleared"]))
        .collect();
    assert_eq!(
        fields,
        [
            (&json!("dydx_mnemonic"), &json!(false)),
            (&json!("telegram_chat_id"), &json!(false)),
            (&json!("dydx_mnemonic"), &json!(true)),
        ]
    );
    let sized = recorded(&test.url, &alice.user_id, "DefaultOrderSizeChanged").await;
    assert_eq!(sized.len(), 1, "{sized:?}");
    let limits = recorded(&test.url, &alice.user_id, "RiskLimitsChanged").await;
    assert_eq!(limits.len(), 1, "{limits:?}");
    let tests = recorded(&test.url, &alice.user_id, "TestNotificationSent").await;
    let delivered: Vec<&Value> = tests.iter().map(|t| &t["delivered"]).collect();
    assert_eq!(delivered, [&json!(true), &json!(false)], "{tests:?}");
    for event in venues
        .iter()
        .chain(&changes)
        .chain(&sized)
        .chain(&limits)
        .chain(&tests)
    {
        assert_eq!(event["by"], by.as_str(), "{event}");
    }
    // The unsized alert was sized by the account's 250 USD, not the service's 100.
    let approved = recorded(&test.url, &alice.user_id, "RiskApproved").await;
    let notional: f64 = approved
        .last()
        .and_then(|a| a["notional_usd"].as_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!((200.0..=250.0).contains(&notional), "{approved:?}");
    let history = cli(&test.url, &["replay", &alice.user_id, "--json"]).await;
    assert!(
        !history.contains("orchard") && !history.contains("515151"),
        "a secret in the ledger"
    );
    service.stop().await;
}
on_both_stores!(each_setting_is_seen_used_and_recorded_with_who_made_it);

async fn a_test_signal_fills_on_paper_and_tells_its_story_to_its_owner_only(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let mallory = create_user(&test.url, "mallory").await;
    let service = Service::start(&test.url, Options::default()).await;
    let key = alice.api_key.as_str();
    let (status, sent) = post(
        &service,
        "/api/settings/test-signal",
        key,
        json!({"symbol": "BTCUSDT.P", "action": "buy", "size": "0.002"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "accepted", "{sent}");
    let signal_id = sent["signal_id"].as_str().expect("a signal id").to_owned();
    eventually("the test signal's position", || async {
        let (_, positions) = get(&service, "/api/positions", key).await;
        (positions["positions"][0]["size"] == "0.002").then_some(())
    })
    .await;
    let signals = eventually("the signal in the list, filled", || async {
        let (_, list) = get(&service, "/api/signals?limit=10", key).await;
        (list["signals"][0]["outcome"] == "filled").then_some(list)
    })
    .await;
    assert_eq!(
        signals["signals"][0]["signal_id"],
        signal_id.as_str(),
        "{signals}"
    );
    let path = format!("/api/signals/{signal_id}/story");
    let (status, story) = get(&service, &path, key).await;
    assert_eq!(status, 200, "{story}");
    let kinds: Vec<&str> = story["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"SignalReceived"), "{kinds:?}");
    assert!(
        kinds.contains(&"OrderFilled") && kinds.contains(&"PositionOpened"),
        "{kinds:?}"
    );
    assert!(story["events"][0]["changes"].is_array(), "{story}");
    // Newest first, with a cursor for older ones.
    let (_, second) = post(
        &service,
        "/api/settings/test-signal",
        key,
        json!({"symbol": "BTC-USD", "action": "sell", "size": "0.001"}),
    )
    .await;
    let page = eventually("the second signal listed first", || async {
        let (_, page) = get(&service, "/api/signals?limit=1", key).await;
        (page["signals"][0]["signal_id"] == second["signal_id"]).then_some(page)
    })
    .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a cursor to older signals");
    let (_, older) = get(
        &service,
        &format!("/api/signals?limit=1&cursor={cursor}"),
        key,
    )
    .await;
    assert_eq!(
        older["signals"][0]["signal_id"],
        signal_id.as_str(),
        "{older}"
    );
    let (status, bad) = get(&service, "/api/signals?cursor=x", key).await;
    assert_eq!(
        (status, bad["code"].clone()),
        (400, json!("INVALID_CURSOR"))
    );
    // Another trader's key: exactly the answer to an unknown signal.
    let (status, stranger) = get(&service, &path, &mallory.api_key).await;
    let (unknown_status, unknown) = get(
        &service,
        "/api/signals/00000000-0000-0000-0000-000000000000/story",
        &mallory.api_key,
    )
    .await;
    assert_eq!(
        (status, stranger["code"].clone()),
        (unknown_status, unknown["code"].clone())
    );
    assert_eq!(status, 404);
    let (status, _) = put(
        &service,
        "/api/settings/limits",
        &mallory.api_key,
        json!({"max_order_notional_usd": "1"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, own) = get(&service, "/api/settings", key).await;
    assert_ne!(own["limits"]["max_order_notional_usd"], "1", "{own}");
    let (_, theirs) = get(&service, "/api/signals", &mallory.api_key).await;
    assert_eq!(theirs["signals"], json!([]), "{theirs}");
    for (status, body) in [
        get(&service, &path, "").await,
        get(&service, "/api/settings", "lhk_not-a-key").await,
        post(&service, "/api/settings/test-signal", "", json!({})).await,
    ] {
        assert_invalid_token("no or a wrong key", status, &body);
    }

    // Rotation: shown once, the old URL stops working, the new one works, recorded.
    let (status, rotated) = post(&service, "/api/settings/webhook/rotate", key, json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let token = rotated["credentials"]["webhook_token"]
        .as_str()
        .expect("a new token");
    assert_ne!(token, alice.webhook_token);
    let (status, _) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("old-url").json())
        .await;
    assert_eq!(status, 401);
    let (status, body) = service
        .post_signal(token, &Alert::btc_usd("new-url").json())
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("accepted")),
        "{body}"
    );
    let rotations = recorded(&test.url, &alice.user_id, "WebhookRotated").await;
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["by"], format!("trader:{}", alice.user_id));
    assert!(!replay(&test.url, &alice.user_id)
        .await
        .iter()
        .any(|l| l.to_string().contains(token)));
    service.stop().await;
}
on_both_stores!(a_test_signal_fills_on_paper_and_tells_its_story_to_its_owner_only);

async fn only_operators_halt_and_their_halt_stops_the_next_alert(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let (operator_id, operator) = create_staff(&test.url, "olga", "operator").await;
    let (_, compliance) = create_staff(&test.url, "carl", "compliance").await;
    let service = Service::start(&test.url, Options::default()).await;
    let halt = json!({"user_id": alice.user_id, "reason": "suspicious activity"});
    let (status, forbidden) = post(&service, "/api/operator/halt", &compliance, halt.clone()).await;
    assert_eq!(
        (status, forbidden["code"].clone()),
        (403, json!("FORBIDDEN")),
        "{forbidden}"
    );
    let (status, body) = post(&service, "/api/operator/halt", &alice.api_key, halt.clone()).await;
    assert_eq!(
        (status, &body["code"]),
        (403, &json!("FORBIDDEN")),
        "a trader's key: {body}"
    );
    let (status, halted) = post(&service, "/api/operator/halt", &operator, halt).await;
    assert_eq!(status, 200, "{halted}");
    let (_, refused) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("h-1").json())
        .await;
    assert_eq!(refused["reason"], "halted", "{refused}");
    let by = format!("staff:{operator_id}");
    let halts = recorded(&test.url, &alice.user_id, "TradingHalted").await;
    assert_eq!(halts[0]["by"], by.as_str(), "{halts:?}");
    let resume = json!({"user_id": alice.user_id, "reason": "cleared"});
    let (status, _) = post(&service, "/api/operator/resume", &operator, resume).await;
    assert_eq!(status, 200);
    let (_, accepted) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("h-2").json())
        .await;
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    let (status, unknown) = post(
        &service,
        "/api/operator/halt",
        &operator,
        json!({"user_id": "nobody", "reason": "x"}),
    )
    .await;
    assert_eq!(
        (status, unknown["code"].clone()),
        (404, json!("NO_ACCOUNT"))
    );

    // Without a user: the emergency stop, for everyone.
    let (status, stop) = post(
        &service,
        "/api/operator/halt",
        &operator,
        json!({"reason": "incident"}),
    )
    .await;
    assert_eq!(
        (status, stop["emergency_stop"].clone()),
        (200, json!(true)),
        "{stop}"
    );
    let (_, refused) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("h-3").json())
        .await;
    assert_eq!(refused["reason"], "emergency_stop", "{refused}");
    let (status, _) = post(
        &service,
        "/api/operator/resume",
        &operator,
        json!({"reason": "over"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, accepted) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("h-4").json())
        .await;
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    let store = test.open().await;
    let stop = store.events().load_emergency_stop().await.expect("loads");
    let first: Value = stop[0].payload.clone();
    assert!(first.to_string().contains(&by), "{first}");
    service.stop().await;
}
on_both_stores!(only_operators_halt_and_their_halt_stops_the_next_alert);

async fn the_clis_operator_commands_are_attributed_to_a_staff_identity(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let (operator_id, operator) = create_staff(&test.url, "olga", "operator").await;
    let (_, compliance) = create_staff(&test.url, "carl", "compliance").await;
    let halt = ["halt", alice.user_id.as_str(), "--reason", "drill"];
    // Without a key, or with one that is not an operator's: refused, nothing recorded.
    let unnamed = cli_output(&test.url, &halt).await;
    assert!(!unnamed.status.success());
    assert!(String::from_utf8_lossy(&unnamed.stderr).contains("--staff-key"));
    for key in [compliance.as_str(), "lhs_not-a-key"] {
        let refused = cli_output_as(&test.url, key, &halt).await;
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!stderr.contains(key), "the key is never echoed: {stderr}");
    }
    let limits = [
        "users",
        "limits",
        alice.user_id.as_str(),
        "--max-order-notional-usd",
        "900",
        "--default-order-usd",
        "120",
        "--reason",
        "desk",
    ];
    let refused = cli_output(&test.url, &limits).await;
    assert!(!refused.status.success());
    assert!(recorded(&test.url, &alice.user_id, "TradingHalted")
        .await
        .is_empty());
    assert!(recorded(&test.url, &alice.user_id, "RiskLimitsChanged")
        .await
        .is_empty());

    cli_as(&test.url, &operator, &halt).await;
    let shown: Value =
        serde_json::from_str(&cli_as(&test.url, &operator, &limits).await).expect("JSON");
    assert_eq!(
        (
            &shown["max_order_notional_usd"],
            &shown["default_order_usd"]
        ),
        (&json!("900"), &json!("120")),
        "{shown}"
    );
    let by = format!("staff:{operator_id}");
    let halts = recorded(&test.url, &alice.user_id, "TradingHalted").await;
    let changes = recorded(&test.url, &alice.user_id, "RiskLimitsChanged").await;
    assert_eq!(halts.len(), 1, "{halts:?}");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(halts[0]["by"], by.as_str());
    assert_eq!(changes[0]["by"], by.as_str());
    let sized = recorded(&test.url, &alice.user_id, "DefaultOrderSizeChanged").await;
    assert_eq!(sized[0]["by"], by.as_str(), "{sized:?}");
}
on_both_stores!(the_clis_operator_commands_are_attributed_to_a_staff_identity);

/// Signed in from a browser (a wallet's session cookie, the CSRF token on changes): a new trader
/// goes from nothing to a filled paper trade through the settings alone; an operator's password
/// session halts them, recorded under the operator's staff id.
async fn a_signed_in_trader_trades_on_paper_and_an_operator_session_halts_them(backend: Backend) {
    use crate::support::sign_in::{
        create_staff_with_login, staff_sign_in, wallet_sign_in, TestWallet,
    };
    use reqwest::Method;

    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::default()).await;
    let wallet = TestWallet::random();
    let session = wallet_sign_in(&service, &wallet).await;
    let user_id = session.body["user_id"]
        .as_str()
        .expect("a user id")
        .to_owned();
    let (status, settings) = service
        .send(session.request(&service, Method::GET, "/api/settings"))
        .await;
    assert_eq!(
        (status, settings["venue"].clone()),
        (200, json!("paper")),
        "{settings}"
    );
    let order = json!({"symbol": "ETH-USD", "action": "buy", "size": "0.01"});
    // A cookie without the CSRF token changes nothing.
    let forged = service
        .client()
        .post(format!("{}/api/settings/test-signal", service.base_url))
        .header("cookie", format!("lh_session={}", session.token))
        .json(&order);
    let (status, _) = service.send(forged).await;
    assert_eq!(status, 403);
    let (status, sent) = service
        .send(
            session
                .request(&service, Method::POST, "/api/settings/test-signal")
                .json(&order),
        )
        .await;
    assert_eq!(
        (status, sent["status"].clone()),
        (200, json!("accepted")),
        "{sent}"
    );
    eventually("the position from the test signal", || async {
        let (_, positions) = service
            .send(session.request(&service, Method::GET, "/api/positions"))
            .await;
        (positions["positions"][0]["size"] == "0.01").then_some(())
    })
    .await;
    let (status, _) = service
        .send(
            session
                .request(&service, Method::PUT, "/api/settings/limits")
                .json(&json!({"default_order_usd": "150"})),
        )
        .await;
    assert_eq!(status, 200);
    let sized = recorded(&test.url, &user_id, "DefaultOrderSizeChanged").await;
    assert_eq!(sized[0]["by"], format!("trader:{user_id}"), "{sized:?}");

    let (staff_id, _) = create_staff_with_login(
        &test.url,
        "olga",
        "operator",
        "olga",
        "a long operator password",
    )
    .await;
    let operator = staff_sign_in(&service, "olga", "a long operator password").await;
    let (status, halted) = service
        .send(
            operator
                .request(&service, Method::POST, "/api/operator/halt")
                .json(&json!({"user_id": user_id, "reason": "review"})),
        )
        .await;
    assert_eq!(status, 200, "{halted}");
    let halts = recorded(&test.url, &user_id, "TradingHalted").await;
    assert_eq!(halts[0]["by"], format!("staff:{staff_id}"), "{halts:?}");
    service.stop().await;
}
on_both_stores!(a_signed_in_trader_trades_on_paper_and_an_operator_session_halts_them);
