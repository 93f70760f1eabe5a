//! The catch-up readers under supervision, on both stores, through the real binary: a reader that
//! panics is restarted and signals keep filling; an event no reader can decode is parked (listed,
//! decided by an operator) while other accounts keep trading; `/readyz` names a reader that is down.

use chrono::Utc;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use serde_json::{json, Value};

use aggregates::TradingAccount;

use crate::on_both_stores;
use crate::support::eventually;
use crate::support::service::{cli, create_user, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

fn alert(id: &str) -> String {
    format!(r#"{{"symbol":"BINANCE:BTCUSDT.P","side":"buy","size":"0.01","id":"{id}"}}"#)
}

fn serve_with(args: &[&str]) -> Options {
    Options {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..Options::default()
    }
}

/// Sends an alert and waits until the trader's API shows its signal filled.
async fn assert_an_alert_fills(service: &Service, user: &User, id: &str) {
    let (status, body) = service.post_signal(&user.webhook_token, &alert(id)).await;
    assert_eq!(status, 200, "{body}");
    let signal_id = body["signal_id"].as_str().expect("a signal id").to_owned();
    let url = format!("{}/api/signals/{signal_id}", service.base_url);
    eventually("the signal to be filled", || async {
        let request = service.client().get(&url).bearer_auth(&user.api_key);
        let (status, signal) = service.send(request).await;
        (status == 200 && signal["outcome"] == "filled").then_some(())
    })
    .await;
}

async fn status_json(url: &str) -> Vec<Value> {
    let out = cli(url, &["projections", "status", "--json"]).await;
    serde_json::from_str(out.trim()).expect("projections status --json prints JSON")
}

async fn open_parked(url: &str) -> Vec<Value> {
    let out = cli(url, &["projections", "parked", "--json"]).await;
    serde_json::from_str(out.trim()).expect("projections parked --json prints JSON")
}

async fn a_panicking_reader_is_restarted_and_signals_still_fill(backend: Backend) {
    for reader in ["execution", "projections", "audit"] {
        let test = TestStore::new(backend).await;
        let user = create_user(&test.url, "alice").await;
        let service =
            Service::start(&test.url, serve_with(&["--fault-panic-reader", reader])).await;
        assert_an_alert_fills(&service, &user, &format!("{reader}-1")).await;
        eventually(
            &format!("status to show the {reader} reader restarted"),
            || async {
                let statuses = status_json(&test.url).await;
                statuses
                    .iter()
                    .any(|status| {
                        status["reader"] == reader
                            && status["run"]["restarts"].as_i64() >= Some(1)
                            && status["run"]["state"] == "running"
                    })
                    .then_some(())
            },
        )
        .await;
        service.stop().await;
    }
}
on_both_stores!(a_panicking_reader_is_restarted_and_signals_still_fill);

/// An event of a version from the future, written as another release would write it.
async fn write_undecodable_event(test: &TestStore, account_id: &str) {
    let store = test.open().await;
    let sequence = store
        .events()
        .load_account(account_id)
        .await
        .expect("the account loads")
        .len()
        + 1;
    let event = SerializedEvent {
        aggregate_id: account_id.to_owned(),
        sequence,
        aggregate_type: TradingAccount::TYPE.to_owned(),
        event_type: "FromTheFuture".to_owned(),
        event_version: "99".to_owned(),
        payload: json!({ "FromTheFuture": { "shape": "unknown to this release" } }),
        metadata: json!({ "recorded_at": Utc::now().to_rfc3339(), "actor": "test" }),
    };
    store
        .events()
        .append(&[event])
        .await
        .expect("the raw event is appended");
}

async fn an_undecodable_event_is_parked_and_other_accounts_still_trade(backend: Backend) {
    let test = TestStore::new(backend).await;
    let victim = create_user(&test.url, "victim").await;
    let bystander = create_user(&test.url, "bystander").await;
    write_undecodable_event(&test, &victim.user_id).await;
    let service = Service::start(&test.url, Options::default()).await;

    assert_an_alert_fills(&service, &bystander, "b-1").await;
    let parked = eventually("both readers to park the event", || async {
        let parked = open_parked(&test.url).await;
        (parked.len() == 2).then_some(parked)
    })
    .await;
    let mut readers: Vec<&str> = parked.iter().filter_map(|p| p["reader"].as_str()).collect();
    readers.sort_unstable();
    assert_eq!(readers, ["execution", "projections"], "{parked:?}");
    for event in &parked {
        assert_eq!(event["account_id"], victim.user_id.as_str());
        assert_eq!(event["event_type"], "FromTheFuture");
        assert_eq!(event["event_version"], "99");
        assert_eq!(event["decision"], "open");
    }
    let statuses = status_json(&test.url).await;
    let execution = statuses
        .iter()
        .find(|status| status["name"] == "execution")
        .expect("status lists the execution saga");
    assert_eq!(execution["parked"], 1, "{statuses:?}");
    // What an operator reads without --json says the same.
    let text = cli(&test.url, &["projections", "status"]).await;
    let saga = text
        .lines()
        .find(|line| line.starts_with("execution "))
        .expect("a line for the saga");
    assert!(saga.contains("  1 parked  running"), "{text}");
    let text = cli(&test.url, &["projections", "parked"]).await;
    let account = format!(" {}#", victim.user_id);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().all(|line| line.contains(&account)
            && line.contains(" FromTheFuture v99 parked ")
            && line.contains("[open]")),
        "{text}"
    );

    // Parked is visible, not a fault: the instance stays ready.
    let (status, ready) = service
        .send(service.client().get(format!("{}/readyz", service.base_url)))
        .await;
    assert_eq!(status, 200, "{ready}");

    let position = |reader: &str| {
        parked
            .iter()
            .find(|p| p["reader"] == reader)
            .and_then(|p| p["position"].as_str())
            .expect("a parked position")
            .to_owned()
    };
    let skipped = position("execution");
    cli(
        &test.url,
        &[
            "projections",
            "skip",
            "execution",
            &skipped,
            "--reason",
            "not ours",
            "--by",
            "ops",
        ],
    )
    .await;
    let open = open_parked(&test.url).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["reader"], "projections");
    let all = cli(&test.url, &["projections", "parked", "--all", "--json"]).await;
    let all: Vec<Value> = serde_json::from_str(all.trim()).expect("JSON");
    let decided = all
        .iter()
        .find(|p| p["reader"] == "execution")
        .expect("the skipped event is kept");
    assert_eq!(
        (
            &decided["decision"],
            &decided["decided_by"],
            &decided["decision_reason"]
        ),
        (&json!("skipped"), &json!("ops"), &json!("not ours"))
    );

    // Released, the read models try it again and, still unable to decode it, park it again.
    let first_parked_at = open[0]["parked_at"].clone();
    cli(
        &test.url,
        &[
            "projections",
            "release",
            "projections",
            &position("projections"),
        ],
    )
    .await;
    eventually(
        "the released event to be retried and parked again",
        || async {
            let open = open_parked(&test.url).await;
            (open.len() == 1
                && open[0]["decision"] == "open"
                && open[0]["parked_at"] != first_parked_at)
                .then_some(())
        },
    )
    .await;
    assert_an_alert_fills(&service, &bystander, "b-2").await;
    service.stop().await;
}
on_both_stores!(an_undecodable_event_is_parked_and_other_accounts_still_trade);

async fn readyz_names_a_reader_that_is_down(backend: Backend) {
    let test = TestStore::new(backend).await;
    create_user(&test.url, "alice").await;
    let service = Service::start(
        &test.url,
        serve_with(&[
            "--fault-panic-reader",
            "audit",
            "--reader-restart-backoff-ms",
            "600000",
        ]),
    )
    .await;
    let url = format!("{}/readyz", service.base_url);
    let body = eventually("/readyz to report the audit writer down", || async {
        let (status, body) = service.send(service.client().get(&url)).await;
        (status == 503 && body["reader"] == "audit").then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("down: panicked")),
        "{body}"
    );
    service.stop().await;
}
on_both_stores!(readyz_names_a_reader_that_is_down);

/// A signal approved before its account's history became unreadable cannot be executed: the saga
/// parks it (listed for an operator, never dropped silently) and goes on with every other account.
async fn an_approved_signal_of_an_unreadable_account_is_parked_not_dropped(backend: Backend) {
    let test = TestStore::new(backend).await;
    let victim = create_user(&test.url, "victim").await;
    let bystander = create_user(&test.url, "bystander").await;
    let ingest_only = Service::start(&test.url, Options::ingest_only()).await;
    let (status, body) = ingest_only
        .post_signal(&victim.webhook_token, &alert("v-1"))
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("accepted")),
        "{body}"
    );
    ingest_only.stop().await;
    write_undecodable_event(&test, &victim.user_id).await;

    let service = Service::start(&test.url, Options::default()).await;
    assert_an_alert_fills(&service, &bystander, "b-1").await;
    let parked = eventually("the saga to park the approval", || async {
        let parked = open_parked(&test.url).await;
        let approval = parked
            .iter()
            .find(|p| p["reader"] == "execution" && p["event_type"] == "RiskApproved")?
            .clone();
        Some(approval)
    })
    .await;
    assert_eq!(parked["account_id"], victim.user_id.as_str());
    assert!(
        parked["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("FromTheFuture")),
        "{parked}"
    );
    service.stop().await;
}
on_both_stores!(an_approved_signal_of_an_unreadable_account_is_parked_not_dropped);

/// The rows of `pg_locks` for the three readers' leases in the test's database: session advisory
/// locks on `hashtextextended('ledgerhook:<reader>', 0)` (`PostgresStore::try_lease`).
const LEASE_HOLDERS: &str = "FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((l.classid::bigint << 32) | l.objid::bigint) IN (
           SELECT hashtextextended('ledgerhook:' || reader, 0)
             FROM unnest(ARRAY['execution', 'projections', 'audit']) AS reader)";

/// Neighbours: someone on the server ends the connections holding the readers' leases (an
/// operator's `pg_terminate_backend`, a pooler dropping idle sessions). Each reader notices, takes
/// its lease again and carries on: the next alert fills and reaches the trader's read model.
#[tokio::test]
async fn readers_whose_lease_connections_are_ended_take_them_again() {
    let test = TestStore::new(Backend::Postgres).await;
    let user = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::default()).await;
    assert_an_alert_fills(&service, &user, "before-1").await;

    let admin = sqlx::PgPool::connect(&test.url)
        .await
        .expect("PostgreSQL connects");
    let ended: Vec<bool> = sqlx::query_scalar(&format!(
        "SELECT pg_terminate_backend(l.pid) {LEASE_HOLDERS}"
    ))
    .fetch_all(&admin)
    .await
    .expect("the lease holders are found");
    assert_eq!(ended, [true, true, true], "one lease per reader");

    assert_an_alert_fills(&service, &user, "after-1").await;
    let signals_url = format!("{}/api/signals", service.base_url);
    eventually("the read model to show both signals", || async {
        let request = service
            .client()
            .get(&signals_url)
            .bearer_auth(&user.api_key);
        let (status, signals) = service.send(request).await;
        let count = signals["signals"].as_array().map(Vec::len);
        (status == 200 && count == Some(2)).then_some(())
    })
    .await;
    eventually("every reader to hold its lease again", || async {
        let held: i64 = sqlx::query_scalar(&format!("SELECT count(*) {LEASE_HOLDERS}"))
            .fetch_one(&admin)
            .await
            .expect("the locks are read");
        (held == 3).then_some(())
    })
    .await;
    service.stop().await;
}

/// An operator releases what the saga parked for an account whose history is still unreadable
/// (its approval, the notice of a halt, and the undecodable event itself): the saga tries each
/// again, cannot execute, tell or read them, and parks them again, listed anew. Nothing is
/// executed or told on a guess, and other accounts keep trading.
async fn released_saga_events_of_a_still_unreadable_account_are_parked_again(backend: Backend) {
    let test = TestStore::new(backend).await;
    let victim = create_user(&test.url, "victim").await;
    let bystander = create_user(&test.url, "bystander").await;
    let ingest_only = Service::start(&test.url, Options::ingest_only()).await;
    let (status, body) = ingest_only
        .post_signal(&victim.webhook_token, &alert("v-1"))
        .await;
    assert_eq!(status, 200, "{body}");
    ingest_only.stop().await;
    crate::support::service::operator_cli(
        &test.url,
        &["halt", &victim.user_id, "--reason", "margin call"],
    )
    .await;
    write_undecodable_event(&test, &victim.user_id).await;
    let service = Service::start(&test.url, Options::default()).await;
    let parked = eventually(
        "the saga to park the approval, the notice and the event",
        || async {
            let parked: Vec<Value> = open_parked(&test.url)
                .await
                .into_iter()
                .filter(|p| p["reader"] == "execution")
                .collect();
            (parked.len() == 3).then_some(parked)
        },
    )
    .await;

    for event in &parked {
        let position = event["position"].as_str().expect("a parked position");
        cli(
            &test.url,
            &["projections", "release", "execution", position],
        )
        .await;
    }
    eventually("each to be tried again and parked again", || async {
        let again: Vec<Value> = open_parked(&test.url)
            .await
            .into_iter()
            .filter(|p| p["reader"] == "execution")
            .collect();
        let anew = parked.iter().all(|before| {
            again.iter().any(|after| {
                after["position"] == before["position"]
                    && after["decision"] == "open"
                    && after["parked_at"] != before["parked_at"]
            })
        });
        anew.then_some(())
    })
    .await;

    let mut types: Vec<String> = parked
        .iter()
        .filter_map(|p| p["event_type"].as_str().map(str::to_owned))
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["FromTheFuture", "RiskApproved", "TradingHalted"],
        "{parked:?}"
    );
    let store = test.open().await;
    let victims = crate::support::event_types(&store, &victim.user_id).await;
    assert!(
        !victims
            .iter()
            .any(|t| t.starts_with("Order") || t == "NoticeSent"),
        "nothing executed or told for the victim: {victims:?}"
    );
    assert_an_alert_fills(&service, &bystander, "b-1").await;
    // Still listed once the saga has moved on past them: parked, not settled.
    let still: Vec<Value> = open_parked(&test.url)
        .await
        .into_iter()
        .filter(|p| p["reader"] == "execution")
        .collect();
    assert_eq!(still.len(), 3, "{still:?}");
    service.stop().await;
}
on_both_stores!(released_saga_events_of_a_still_unreadable_account_are_parked_again);

/// An event both readers parked because this release cannot read its version, then repaired in
/// the store by an operator (as a release that reads it would) and released for each: the read
/// models apply it late (the trader's position shows), the saga finds nothing to do for it, and
/// nothing is left parked.
async fn a_repaired_and_released_event_is_applied_late_and_nothing_stays_parked(backend: Backend) {
    use crate::support::tamper::{tamper, AppendOnly, Bind};

    let test = TestStore::new(backend).await;
    let trader = create_user(&test.url, "trader").await;
    let store = test.open().await;
    let sequence = store
        .events()
        .load_account(&trader.user_id)
        .await
        .expect("the account loads")
        .len()
        + 1;
    let opened = aggregates::AccountEvent::PositionOpened {
        signal_id: aggregates::SignalId("by-hand-1".to_owned()),
        market: aggregates::Market::parse("ETH-USD").expect("market"),
        side: aggregates::Side::Buy,
        size: aggregates::Quantity::new(rust_decimal::Decimal::new(5, 1)).expect("size"),
        entry_price: rust_decimal::Decimal::from(3_200),
    };
    let event = SerializedEvent {
        aggregate_id: trader.user_id.clone(),
        sequence,
        aggregate_type: TradingAccount::TYPE.to_owned(),
        event_type: "PositionOpened".to_owned(),
        event_version: "99".to_owned(),
        payload: serde_json::to_value(&opened).expect("the event serializes"),
        metadata: json!({ "recorded_at": Utc::now().to_rfc3339(), "actor": "test" }),
    };
    store
        .events()
        .append(&[event])
        .await
        .expect("the raw event is appended");
    let service = Service::start(&test.url, Options::default()).await;
    let parked = eventually("both readers to park the event", || async {
        let parked = open_parked(&test.url).await;
        (parked.len() == 2).then_some(parked)
    })
    .await;

    tamper(
        &store,
        AppendOnly::Events,
        "UPDATE events SET event_version = $1 WHERE aggregate_id = $2 AND sequence = $3",
        &[
            Bind::Text(aggregates::EVENT_VERSION),
            Bind::Text(&trader.user_id),
            Bind::Integer(i64::try_from(sequence).expect("a small sequence")),
        ],
    )
    .await;
    for event in &parked {
        let reader = event["reader"].as_str().expect("a reader");
        let position = event["position"].as_str().expect("a parked position");
        cli(&test.url, &["projections", "release", reader, position]).await;
    }

    let positions = eventually("the position to show", || async {
        let request = service
            .client()
            .get(format!("{}/api/positions", service.base_url))
            .bearer_auth(&trader.api_key);
        let (status, body) = service.send(request).await;
        let list = body["positions"].as_array().cloned().unwrap_or_default();
        (status == 200 && !list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(positions[0]["market"], "ETH-USD", "{positions:?}");
    assert_eq!(positions[0]["size"], "0.5", "{positions:?}");
    eventually("nothing to stay parked", || async {
        open_parked(&test.url).await.is_empty().then_some(())
    })
    .await;
    service.stop().await;
}
on_both_stores!(a_repaired_and_released_event_is_applied_late_and_nothing_stays_parked);
