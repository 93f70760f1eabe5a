//! Black-box: the real binary, over HTTP, on both stores. Given an account, when TradingView sends
//! an alert, then the ledger holds the trade — including when the process is killed mid-way.

use std::collections::HashMap;

use serde_json::Value;
use tokio::task::JoinSet;

use ledgerhook::exchange::PaperBook;
use ledgerhook::store::Store;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{create_user, replay, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::{event_types, eventually};

fn count(events: &[String], event_type: &str) -> usize {
    events.iter().filter(|e| e.as_str() == event_type).count()
}

/// Waits until `n` signals of the account are notified (the last step of the saga).
async fn wait_until_notified(store: &Store, account: &str, n: usize) -> Vec<String> {
    eventually(&format!("{n} notifications for {account}"), || async {
        let events = event_types(store, account).await;
        (count(&events, "NotificationSent") >= n).then_some(events)
    })
    .await
}

async fn an_alert_becomes_a_filled_trade_visible_in_replay(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::default()).await;
    let (status, body) = service
        .post_signal(&user.webhook_token, &Alert::new("a-1").size("0.01").json())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    let signal_id = body["signal_id"].as_str().expect("a signal id").to_owned();
    let store = test.open().await;
    wait_until_notified(&store, &user.user_id, 1).await;

    let replayed = replay(&test.url, &user.user_id).await;
    let types: Vec<&str> = replayed
        .iter()
        .map(|line| line["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "AccountOpened",
            "SignalReceived",
            "RiskApproved",
            "OrderSubmitted",
            "OrderFilled",
            "PositionOpened",
            "NotificationSent"
        ]
    );
    for (index, line) in replayed.iter().enumerate() {
        assert_eq!(line["sequence"], index + 1);
        assert!(line["recorded_at"].is_string(), "{line}");
        assert!(
            line["payload"].is_object() && line["state"].is_object(),
            "{line}"
        );
    }
    let filled = &replayed[4]["payload"]["OrderFilled"];
    assert_eq!(filled["signal_id"], Value::from(signal_id.clone()));
    assert_eq!(filled["market"], "BTC-USD");
    assert_eq!(filled["size"], "0.01");
    let last_state = &replayed[6]["state"];
    assert_eq!(last_state["positions"]["BTC-USD"]["size"], "0.01");
    assert_eq!(last_state["in_flight"], serde_json::json!({}));
    service.stop().await;
}
on_both_stores!(an_alert_becomes_a_filled_trade_visible_in_replay);

async fn a_repeated_id_is_a_duplicate_even_after_a_restart(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "bob").await;
    let service = Service::start(&test.url, Options::default()).await;
    let (_, first) = service
        .post_signal(&user.webhook_token, &Alert::new("same").size("0.01").json())
        .await;
    service.stop().await;
    let service = Service::start(&test.url, Options::default()).await;
    let (status, again) = service
        .post_signal(&user.webhook_token, &Alert::new("same").size("0.01").json())
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["signal_id"], first["signal_id"]);
    // Another user's identical alert is that user's own signal.
    let carol = create_user(&test.url, "carol").await;
    let (_, theirs) = service
        .post_signal(
            &carol.webhook_token,
            &Alert::new("same").size("0.01").json(),
        )
        .await;
    assert_eq!(theirs["status"], "accepted");
    assert_ne!(theirs["signal_id"], first["signal_id"]);
    let store = test.open().await;
    wait_until_notified(&store, &carol.user_id, 1).await;
    let events = wait_until_notified(&store, &user.user_id, 1).await;
    assert_eq!(count(&events, "OrderFilled"), 1);
    assert_eq!(count(&events, "SignalRejected"), 1);
    service.stop().await;
}
on_both_stores!(a_repeated_id_is_a_duplicate_even_after_a_restart);

async fn bad_requests_get_clear_errors_and_change_nothing(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "dave").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let cases = [
        (
            "not-a-token",
            Alert::new("x").size("0.01").json(),
            401,
            "INVALID_TOKEN",
        ),
        (
            "",
            Alert::new("x").size("0.01").json(),
            401,
            "INVALID_TOKEN",
        ),
        (
            user.webhook_token.as_str(),
            "{nope".to_owned(),
            400,
            "INVALID_PAYLOAD",
        ),
        (
            user.webhook_token.as_str(),
            Alert::new("x").side("hold").size("0.01").json(),
            400,
            "INVALID_PAYLOAD",
        ),
        (
            user.webhook_token.as_str(),
            Alert::new("x").size("-1").json(),
            400,
            "INVALID_PAYLOAD",
        ),
        (
            user.webhook_token.as_str(),
            r#"{"symbol":"NOPEUSDT","side":"buy","size":"1"}"#.to_owned(),
            422,
            "INVALID_MARKET",
        ),
        (
            user.webhook_token.as_str(),
            format!(
                r#"{{"symbol":"BTCUSDT","side":"buy","size":"1","pad":"{}"}}"#,
                "x".repeat(100_000)
            ),
            413,
            "INVALID_BODY",
        ),
    ];
    for (token, body, status, code) in cases {
        let (got, json) = service.post_signal(token, &body).await;
        assert_eq!(got, status, "{body}: {json}");
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["error"].is_string() && json["timestamp"].is_string(),
            "{json}"
        );
        assert!(
            !json.to_string().contains(&user.webhook_token),
            "no secret echoed"
        );
    }
    let store = test.open().await;
    let events = event_types(&store, &user.user_id).await;
    assert_eq!(
        events,
        ["AccountOpened"],
        "bad requests leave no trace in the ledger"
    );
    service.stop().await;
}
on_both_stores!(bad_requests_get_clear_errors_and_change_nothing);

/// kill -9 after the acknowledgement but before execution: the restarted service executes the
/// acknowledged signal, once.
async fn a_signal_acknowledged_before_a_crash_is_executed_after_it(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "erin").await;
    let ingest_only = Service::start(&test.url, Options::ingest_only()).await;
    let (status, body) = ingest_only
        .post_signal(
            &user.webhook_token,
            &Alert::new("k9-1").side("sell").size("0.02").json(),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    ingest_only.kill_9().await;
    let store = test.open().await;
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 0);

    let service = Service::start(&test.url, Options::default()).await;
    let events = wait_until_notified(&store, &user.user_id, 1).await;
    assert_eq!(count(&events, "OrderSubmitted"), 1);
    assert_eq!(count(&events, "PositionOpened"), 1);
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 1);
    service.stop().await;
}
on_both_stores!(a_signal_acknowledged_before_a_crash_is_executed_after_it);

/// The process dies right after the exchange took the order and before the ledger recorded it —
/// the window where a careless saga orders twice — and again after everything was recorded.
async fn a_crash_after_placement_never_places_the_order_twice(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "frank").await;
    let crashing = Service::start(
        &test.url,
        Options {
            crash_after_placement: true,
            ..Options::default()
        },
    )
    .await;
    let (status, _) = crashing
        .post_signal(&user.webhook_token, &Alert::new("k9-2").size("0.03").json())
        .await;
    assert_eq!(status, 200);
    crashing.wait_for_crash().await;
    let store = test.open().await;
    assert_eq!(
        PaperBook::of(&store).count().await.expect("count"),
        1,
        "the order was placed"
    );
    let before = event_types(&store, &user.user_id).await;
    assert_eq!(count(&before, "OrderSubmitted"), 0, "but not recorded");

    let service = Service::start(&test.url, Options::default()).await;
    let events = wait_until_notified(&store, &user.user_id, 1).await;
    assert_eq!(count(&events, "OrderSubmitted"), 1);
    assert_eq!(count(&events, "OrderFilled"), 1);
    assert_eq!(
        PaperBook::of(&store).count().await.expect("count"),
        1,
        "never placed twice"
    );
    // kill -9 after execution, restart: nothing is done again.
    service.kill_9().await;
    let service = Service::start(&test.url, Options::default()).await;
    let (_, body) = service
        .post_signal(
            &user.webhook_token,
            &Alert::new("after").size("0.01").json(),
        )
        .await;
    assert_eq!(body["status"], "accepted");
    let events = wait_until_notified(&store, &user.user_id, 2).await;
    assert_eq!(count(&events, "OrderFilled"), 2);
    assert_eq!(count(&events, "NotificationSent"), 2);
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 2);
    service.stop().await;
}
on_both_stores!(a_crash_after_placement_never_places_the_order_twice);

/// Many simultaneous alerts, for one account and across accounts: each is acknowledged, recorded
/// once and executed once.
async fn simultaneous_signals_are_each_processed_exactly_once(backend: Backend) {
    let test = TestStore::new(backend).await;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(create_user(&test.url, &format!("u{i}")).await);
    }
    let service = std::sync::Arc::new(Service::start(&test.url, Options::default()).await);
    let per_user = 30;
    let mut requests = JoinSet::new();
    for user in &users {
        for n in 0..per_user {
            let service = service.clone();
            let token = user.webhook_token.clone();
            requests.spawn(async move {
                // Each alert twice, at once: one is accepted, the other a duplicate.
                let body = Alert::new(format!("c-{n}")).json();
                let (first, second) = tokio::join!(
                    service.post_signal(&token, &body),
                    service.post_signal(&token, &body)
                );
                (first, second)
            });
        }
    }
    let mut statuses = HashMap::<String, usize>::new();
    while let Some(result) = requests.join_next().await {
        let ((s1, b1), (s2, b2)) = result.expect("request task");
        assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
        assert_eq!(b1["signal_id"], b2["signal_id"]);
        for body in [b1, b2] {
            *statuses
                .entry(body["status"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
    }
    let total = users.len() * per_user;
    assert_eq!(statuses.get("accepted"), Some(&total), "{statuses:?}");
    assert_eq!(statuses.get("duplicate"), Some(&total), "{statuses:?}");
    let store = test.open().await;
    for user in &users {
        let events = wait_until_notified(&store, &user.user_id, per_user).await;
        assert_eq!(count(&events, "RiskApproved"), per_user);
        assert_eq!(count(&events, "OrderSubmitted"), per_user);
        assert_eq!(count(&events, "NotificationSent"), per_user);
    }
    assert_eq!(
        PaperBook::of(&store).count().await.expect("count"),
        i64::try_from(total).expect("small")
    );
    if let Ok(service) = std::sync::Arc::try_unwrap(service) {
        service.stop().await;
    }
}
on_both_stores!(simultaneous_signals_are_each_processed_exactly_once);

/// SIGTERM while alerts are arriving: requests in flight are finished, and every alert that was
/// acknowledged is in the ledger and gets executed after the restart.
async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "gina").await;
    let service = Service::start(&test.url, Options::default()).await;
    let base_url = service.base_url.clone();
    let mut requests = JoinSet::new();
    for n in 0..60 {
        let url = format!("{base_url}/api/webhook?token={}", user.webhook_token);
        requests.spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .body(Alert::new(format!("g-{n}")).json())
                .send()
                .await
                .ok()?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.ok()?;
            Some((status, body))
        });
    }
    let first = requests
        .join_next()
        .await
        .expect("a request")
        .expect("task");
    service.stop().await;
    let mut acknowledged: Vec<String> = Vec::new();
    for (status, body) in first
        .into_iter()
        .chain(requests.join_all().await.into_iter().flatten())
    {
        assert_eq!(status, 200, "{body}");
        if status == 200 {
            acknowledged.push(body["signal_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(!acknowledged.is_empty());
    let service = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    wait_until_notified(&store, &user.user_id, acknowledged.len()).await;
    let history = replay(&test.url, &user.user_id).await;
    for signal_id in &acknowledged {
        let filled = history.iter().any(|line| {
            line["payload"]["OrderFilled"]["signal_id"].as_str() == Some(signal_id.as_str())
        });
        assert!(filled, "acknowledged signal {signal_id} was executed");
    }
    service.stop().await;
}
on_both_stores!(graceful_shutdown_finishes_in_flight_requests);

/// A paper trader's alert sized as a percent of equity is sized from the equity the service was
/// started with (`--paper-equity-usd`): 5% of 20,000 USD at the paper price of 65,000 is at most
/// 1,000 USD, 0.0153 BTC on the 0.0001 step, and that is what fills and shows as the position.
async fn a_paper_percent_of_equity_alert_is_sized_from_the_configured_equity(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "paula").await;
    let service = Service::start(
        &test.url,
        Options {
            args: vec!["--paper-equity-usd".to_owned(), "20000".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let alert = r#"{"symbol":"BTC-USD","side":"buy","size_percent":"5","id":"pct-paper-1"}"#;

    let (status, body) = service.post_signal(&user.webhook_token, alert).await;

    assert_eq!(status, 200, "{body}");
    let store = test.open().await;
    let events = wait_until_notified(&store, &user.user_id, 1).await;
    assert_eq!(count(&events, "OrderFilled"), 1, "{events:?}");
    // The read model follows the ledger.
    let positions = eventually("the position to show", || async {
        let (status, body) = service
            .send(
                service
                    .client()
                    .get(format!("{}/api/positions", service.base_url))
                    .bearer_auth(&user.api_key),
            )
            .await;
        let list = body["positions"].as_array().cloned().unwrap_or_default();
        (status == 200 && !list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(positions[0]["size"], "0.0153", "{positions:?}");
    service.stop().await;
}
on_both_stores!(a_paper_percent_of_equity_alert_is_sized_from_the_configured_equity);
