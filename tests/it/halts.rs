//! Halts over the real binary: an operator's `ledgerhook halt` (one account, or everyone) refuses
//! new alerts with a recorded rejection naming who and why (the caller gets only a code), and
//! cancels approved orders that were not yet placed; `ledgerhook resume` lets trading go on.

use ledgerhook::exchange::PaperBook;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{create_user, operator_cli, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::{event_types_but_notices, eventually};

async fn the_emergency_stop_refuses_every_account_until_released(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let service = Service::start(&test.url, Options::default()).await;
    operator_cli(&test.url, &["halt", "--reason", "exchange incident"]).await;
    // Running instances pick the stop up from the ledger within a quarter second.
    let refused = eventually("the running service to see the emergency stop", || async {
        let (status, body) = service
            .post_signal(&alice.webhook_token, &Alert::btc_usd(uuid()).json())
            .await;
        (status == 200 && body["status"] == "rejected").then_some(body)
    })
    .await;
    // A code only: who stopped trading and why is the operators' business, kept in the ledger.
    assert_eq!(refused["reason"], "emergency_stop", "{refused}");
    let answer = refused.to_string();
    assert!(
        !answer.contains("ops-carol") && !answer.contains("exchange incident"),
        "{refused}"
    );
    let (_, for_bob) = service
        .post_signal(&bob.webhook_token, &Alert::btc_usd("b-1").json())
        .await;
    assert_eq!(
        for_bob["status"], "rejected",
        "the stop is global: {for_bob}"
    );

    operator_cli(&test.url, &["resume", "--reason", "incident over"]).await;
    eventually("the running service to see the stop released", || async {
        let (_, body) = service
            .post_signal(&bob.webhook_token, &Alert::btc_usd(uuid()).json())
            .await;
        (body["status"] == "accepted").then_some(())
    })
    .await;
    let store = test.open().await;
    let stop: Vec<String> = store
        .events()
        .load_emergency_stop()
        .await
        .expect("loads")
        .into_iter()
        .map(|event| event.event_type)
        .collect();
    assert_eq!(stop, ["EmergencyStopEngaged", "EmergencyStopReleased"]);
    // The stop and its release are also noted in each account, to be told (`notices.rs`).
    let bobs = event_types_but_notices(&store, &bob.user_id).await;
    assert_eq!(
        bobs[1], "SignalRejected",
        "the refusal is recorded: {bobs:?}"
    );
    service.stop().await;
}
on_both_stores!(the_emergency_stop_refuses_every_account_until_released);

async fn a_halt_cancels_approved_orders_not_yet_placed(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let ingest_only = Service::start(&test.url, Options::ingest_only()).await;
    let (_, accepted) = ingest_only
        .post_signal(&alice.webhook_token, &Alert::btc_usd("a-1").json())
        .await;
    assert_eq!(accepted["status"], "accepted");
    ingest_only.stop().await;

    operator_cli(
        &test.url,
        &["halt", &alice.user_id, "--reason", "margin call"],
    )
    .await;
    let service = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    let events = eventually(
        "the approved order to be cancelled and notified",
        || async {
            let events = event_types_but_notices(&store, &alice.user_id).await;
            events
                .contains(&"NotificationSent".to_owned())
                .then_some(events)
        },
    )
    .await;
    assert_eq!(
        events,
        [
            "AccountOpened",
            "SignalReceived",
            "RiskApproved",
            "TradingHalted",
            "OrderCancelled",
            "RiskReservationReleased",
            "NotificationSent"
        ]
    );
    assert_eq!(PaperBook::of(&store).count().await.expect("counts"), 0);
    let (_, refused) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("a-2").json())
        .await;
    assert_eq!(refused["status"], "rejected", "{refused}");
    operator_cli(&test.url, &["resume", &alice.user_id, "--reason", "funded"]).await;
    let (_, accepted) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("a-3").json())
        .await;
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    service.stop().await;
}
on_both_stores!(a_halt_cancels_approved_orders_not_yet_placed);

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
