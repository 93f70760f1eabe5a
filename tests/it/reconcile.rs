//! Reconciliation over the real binary: `ledgerhook reconcile` and `serve`'s periodic check compare
//! the ledger's positions with the venue's. A trade the ledger never saw (here: an order booked on
//! the paper venue behind the service's back) is recorded as a drift once, not again while it
//! stays the same, and cleared when the two agree again; the ledger's positions are never changed.

use chrono::Utc;
use ledgerhook::exchange::{PaperBook, PaperOrder};
use ledgerhook::store::Store;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{cli, cli_output, create_user, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::{event_types, event_types_but_notices, eventually};

/// An order placed on the venue by someone else than the service.
pub(crate) async fn trade_behind_the_ledger(
    store: &Store,
    account: &str,
    side: &str,
    size: &str,
    id: &str,
) {
    PaperBook::of(store)
        .book(&PaperOrder {
            client_order_id: id.to_owned(),
            account_id: account.to_owned(),
            market: "ETH-USD".to_owned(),
            side: side.to_owned(),
            size: size.to_owned(),
            price: "3200".to_owned(),
            fee: "0".to_owned(),
            exchange_order_id: format!("manual-{id}"),
            placed_at: Utc::now(),
            status: "filled".to_owned(),
            good_til: None,
        })
        .await
        .expect("the venue books the order");
}

async fn a_trade_the_ledger_never_saw_is_a_drift_recorded_once_then_cleared(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::default()).await;
    let (status, _) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("r-1").json())
        .await;
    assert_eq!(status, 200);
    let store = test.open().await;
    eventually("alice's order to be filled", || async {
        event_types(&store, &alice.user_id)
            .await
            .contains(&"OrderFilled".to_owned())
            .then_some(())
    })
    .await;

    let in_sync = cli(&test.url, &["reconcile", &alice.user_id]).await;
    assert!(in_sync.contains("in_sync"), "{in_sync}");

    trade_behind_the_ledger(&store, &alice.user_id, "sell", "0.5", "manual-1").await;
    let drifted = cli_output(&test.url, &["reconcile", &alice.user_id, "--json"]).await;
    assert!(!drifted.status.success(), "a drift fails the command");
    let report: serde_json::Value =
        serde_json::from_slice(&drifted.stdout).expect("one JSON report");
    assert_eq!(report["outcome"], "drift", "{report}");
    let detected = &report["recorded"][0]["PositionDriftDetected"];
    assert_eq!(detected["market"], "ETH-USD", "{report}");
    assert_eq!(detected["venue_size"], "-0.5", "{report}");
    assert_eq!(detected["ledger_size"], "0", "{report}");
    // The running service's saga tells alice and records it beside: not a change of the ledger.
    let events = event_types_but_notices(&store, &alice.user_id).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("PositionDriftDetected")
    );

    // Checked again, unchanged: nothing new to record.
    let again = cli_output(&test.url, &["reconcile", &alice.user_id]).await;
    assert!(!again.status.success(), "the drift is still there");
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.contains("ETH-USD: paper holds -0.5, the ledger 0"),
        "{again}"
    );
    assert_eq!(
        event_types_but_notices(&store, &alice.user_id).await.len(),
        events.len()
    );
    // The ledger's BTC position is what the service traded, untouched by the drift.
    let positions: serde_json::Value = service
        .send(
            service
                .client()
                .get(format!("{}/api/positions", service.base_url))
                .bearer_auth(&alice.api_key),
        )
        .await
        .1;
    assert!(!positions.to_string().contains("ETH-USD"), "{positions}");

    trade_behind_the_ledger(&store, &alice.user_id, "buy", "0.5", "manual-2").await;
    let cleared = cli(&test.url, &["reconcile", &alice.user_id]).await;
    assert!(cleared.contains("in_sync"), "{cleared}");
    let events = event_types_but_notices(&store, &alice.user_id).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("PositionDriftCleared")
    );
    service.stop().await;
}
on_both_stores!(a_trade_the_ledger_never_saw_is_a_drift_recorded_once_then_cleared);

async fn the_service_finds_a_drift_on_its_own(backend: Backend) {
    let test = TestStore::new(backend).await;
    let bob = create_user(&test.url, "bob").await;
    let carol = create_user(&test.url, "carol").await;
    let service = Service::start(
        &test.url,
        Options {
            args: vec!["--reconcile-interval-seconds".into(), "1".into()],
            ..Options::default()
        },
    )
    .await;
    let store = test.open().await;
    trade_behind_the_ledger(&store, &bob.user_id, "buy", "2", "manual-b").await;
    eventually("the periodic check to record bob's drift", || async {
        event_types(&store, &bob.user_id)
            .await
            .contains(&"PositionDriftDetected".to_owned())
            .then_some(())
    })
    .await;
    // Carol, in sync with her venue, gets no event from the check.
    assert_eq!(event_types(&store, &carol.user_id).await, ["AccountOpened"]);
    service.stop().await;
}
on_both_stores!(the_service_finds_a_drift_on_its_own);
