//! Resting limit orders through the real binaries: `ledgerhook serve` against `fake-venues`, a
//! dYdX user with a mnemonic and a Telegram chat set through the CLI. A limit below the market
//! rests on the book and the trader is told once; when the price crosses it, it fills once
//! (position, trade, message); one that expires gives its reservation back and is told; a restart
//! while it rests loses nothing and sends nothing twice.

use serde_json::{json, Value};
use tokio::process::Child;

use aggregates::{ClientOrderId, SERVICE_OWNER_ID};
use ledgerhook::exchange::dydx::{venue_ids, Leg};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{
    cli, create_user, credentials_set, operator_cli, Options, Service, User,
};
use crate::support::stores::{Backend, TestStore};
use crate::support::{event_types, eventually};

/// The official client's published example phrase (a public testnet wallet, no funds of ours).
const TEST_MNEMONIC: &str = "mirror actor skill push coach wait confirm orchard lunch mobile \
    athlete gossip awake miracle matter bus reopen team ladder lazy list timber render wait";
const BOT_TOKEN: &str = "7000000002:AAH-resting-test-token-Qx7";
const CHAT: &str = "424242";

struct Setup {
    _fake: Child,
    indexer: String,
    node: String,
    telegram: String,
    http: reqwest::Client,
    test: TestStore,
    user: User,
}

impl Setup {
    /// A trader on dYdX.
    async fn new(backend: Backend) -> Self {
        let setup = Self::on_paper(backend).await;
        credentials_set(
            &setup.test.url,
            &setup.user.user_id,
            "dydx_mnemonic",
            TEST_MNEMONIC,
        )
        .await;
        let answer = cli(
            &setup.test.url,
            &["users", "venue", &setup.user.user_id, "dydx"],
        )
        .await;
        assert!(answer.contains("trades on dydx"), "{answer}");
        setup
    }

    /// A trader on the paper exchange (the default venue).
    async fn on_paper(backend: Backend) -> Self {
        let (child, addresses) = crate::support::fake_venues::spawn(&["--block-ms", "100"]).await;
        let test = TestStore::new(backend).await;
        let user = create_user(&test.url, "resting trader").await;
        credentials_set(&test.url, SERVICE_OWNER_ID, "telegram_bot_token", BOT_TOKEN).await;
        credentials_set(&test.url, &user.user_id, "telegram_chat_id", CHAT).await;
        Self {
            _fake: child,
            indexer: addresses.indexer,
            node: addresses.node,
            telegram: addresses.telegram,
            http: reqwest::Client::new(),
            test,
            user,
        }
    }

    /// `serve` checking resting orders every second, limit orders good for `ttl_seconds`.
    async fn serve(&self, ttl_seconds: u64) -> Service {
        self.serve_with(ttl_seconds, &[]).await
    }

    async fn serve_with(&self, ttl_seconds: u64, extra: &[&str]) -> Service {
        Service::start(&self.test.url, self.options(ttl_seconds, extra)).await
    }

    fn options(&self, ttl_seconds: u64, extra: &[&str]) -> Options {
        let args = [
            "--dydx-indexer-url",
            &self.indexer,
            "--dydx-node-url",
            &self.node,
            "--telegram-api-url",
            &self.telegram,
            "--resting-check-seconds",
            "1",
            "--limit-order-ttl-seconds",
            &ttl_seconds.to_string(),
        ];
        Options {
            args: args
                .iter()
                .chain(extra)
                .map(|arg| (*arg).to_owned())
                .collect(),
            ..Options::default()
        }
    }

    async fn set_faults(&self, faults: Value) {
        crate::support::fake_venues::set_faults(&self.http, &self.indexer, &faults).await;
    }

    /// A limit buy of 0.01 BTC at 64,000 (the fake's oracle is at 65,000); its signal id.
    async fn limit_buy(&self, service: &Service, id: &str) -> String {
        let alert = Alert::new(id)
            .size("0.01")
            .field("order_type", "limit")
            .field("price", "64000")
            .json();
        let (status, body) = service.post_signal(&self.user.webhook_token, &alert).await;
        assert_eq!(status, 200, "{body}");
        body["signal_id"]
            .as_str()
            .expect("the answer names the signal")
            .to_owned()
    }

    async fn events_once(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let store = self.test.open().await;
        eventually(what, || async {
            let types = event_types(&store, &self.user.user_id).await;
            done(&types).then_some(types)
        })
        .await
    }

    /// The messages Telegram received for the trader once there are `count`.
    async fn messages(&self, count: usize) -> Vec<String> {
        eventually(&format!("{count} message(s) at Telegram"), || async {
            let body: Value = self
                .http
                .get(format!("{}/_fake/messages", self.telegram))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let texts: Vec<String> = body["messages"]
                .as_array()?
                .iter()
                .filter(|message| message["chat_id"] == json!(CHAT))
                .filter_map(|message| message["text"].as_str().map(str::to_owned))
                .collect();
            (texts.len() >= count).then_some(texts)
        })
        .await
    }

    async fn set_price(&self, price: &str) {
        let response = self
            .http
            .post(format!("{}/_fake/prices", self.indexer))
            .json(&json!({ "BTC-USD": price }))
            .send()
            .await
            .expect("prices set");
        assert!(response.status().is_success());
    }

    /// What the venue received: (flags of each order, sends of this signal's entry).
    async fn received(&self, signal_id: &str) -> (Vec<u64>, u64) {
        let body: Value =
            crate::support::fake_venues::received_orders(&self.http, &self.indexer).await;
        let flags = body["orders"]
            .as_array()
            .map(|orders| orders.iter().filter_map(|o| o["flags"].as_u64()).collect())
            .unwrap_or_default();
        let client_id = venue_ids(&ClientOrderId(format!("lh-{signal_id}")), Leg::Entry).client_id;
        let sends = body["sends"][client_id.to_string()].as_u64().unwrap_or(0);
        (flags, sends)
    }

    async fn api(&self, service: &Service, path: &str) -> Value {
        let (status, body) = service
            .send(
                service
                    .client()
                    .get(format!("{}{path}", service.base_url))
                    .bearer_auth(&self.user.api_key),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn count(types: &[String], event: &str) -> usize {
    types.iter().filter(|t| *t == event).count()
}

/// Waits until the trader was told the order rests (the notice recorded).
async fn rests_and_is_told(setup: &Setup) -> Vec<String> {
    setup
        .events_once("the order to rest and the trader to be told", |types| {
            count(types, "OrderResting") == 1 && count(types, "NotificationSent") == 1
        })
        .await
}

async fn a_limit_below_the_market_rests_is_told_and_fills_once_when_the_price_crosses_it(
    backend: Backend,
) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(3_600).await;
    let signal = setup.limit_buy(&service, "rest-1").await;

    let types = rests_and_is_told(&setup).await;
    assert_eq!(count(&types, "OrderFilled"), 0, "{types:?}");
    let told = setup.messages(1).await;
    assert!(told[0].contains("resting on the book"), "{told:?}");
    assert!(told[0].contains("at 64000"), "{told:?}");
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    let positions = setup.api(&service, "/api/positions").await;
    assert_eq!(positions["positions"], json!([]), "nothing filled yet");
    let path = format!("/api/signals/{signal}");
    let status = eventually("the signal to show resting", || async {
        let body = setup.api(&service, &path).await;
        (body["status"] == "resting").then_some(body)
    })
    .await;
    assert_eq!(status["outcome"], "resting", "{status}");

    setup.set_price("63000").await;
    let types = setup
        .events_once("the fill to be told", |types| {
            count(types, "OrderFilled") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "OrderSubmitted"), 1, "{types:?}");
    let told = setup.messages(2).await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[1].contains("63013"), "the fill's price: {told:?}");
    let positions = eventually("the position to show", || async {
        let body = setup.api(&service, "/api/positions").await;
        let list = body["positions"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(positions[0]["size"], "0.01", "{positions:?}");
    assert_eq!(positions[0]["side"], "long", "{positions:?}");
    // The read model follows the ledger: the fill and the message told of it come in turn.
    let status = eventually("the signal to show filled and told", || async {
        let body = setup.api(&service, &path).await;
        (body["outcome"] == "filled" && body["status"] == "notified").then_some(body)
    })
    .await;
    assert_eq!(status["status"], "notified", "{status}");
    // Several more checks of the watcher: still one fill, one send, two messages.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let store = setup.test.open().await;
    let types = event_types(&store, &setup.user.user_id).await;
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    assert_eq!(setup.messages(2).await.len(), 2);
    service.stop().await;
}
on_both_stores!(a_limit_below_the_market_rests_is_told_and_fills_once_when_the_price_crosses_it);

async fn a_resting_order_that_expires_gives_its_reservation_back_and_is_told(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(2).await;
    let signal = setup.limit_buy(&service, "expire-1").await;

    rests_and_is_told(&setup).await;
    let types = setup
        .events_once("the expiry to be told", |types| {
            count(types, "OrderExpired") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "RiskReservationReleased"), 1, "{types:?}");
    assert_eq!(count(&types, "OrderFilled"), 0, "{types:?}");
    let told = setup.messages(2).await;
    assert!(told[1].contains("ended unfilled"), "{told:?}");
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    // The price crossing it now changes nothing: it left the book.
    setup.set_price("63000").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let store = setup.test.open().await;
    let types = event_types(&store, &setup.user.user_id).await;
    assert_eq!(count(&types, "OrderFilled"), 0, "{types:?}");
    service.stop().await;
}
on_both_stores!(a_resting_order_that_expires_gives_its_reservation_back_and_is_told);

async fn a_restart_while_an_order_rests_loses_nothing_and_sends_nothing_twice(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(3_600).await;
    let signal = setup.limit_buy(&service, "restart-1").await;
    rests_and_is_told(&setup).await;
    service.stop().await;

    let service = setup.serve(3_600).await;
    setup.set_price("63000").await;
    let types = setup
        .events_once("the fill after the restart to be told", |types| {
            count(types, "OrderFilled") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "OrderSubmitted"), 1, "{types:?}");
    assert_eq!(count(&types, "OrderResting"), 1, "{types:?}");
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    let told = setup.messages(2).await;
    assert_eq!(told.len(), 2, "the notice once, the fill once: {told:?}");
    service.stop().await;
}
on_both_stores!(a_restart_while_an_order_rests_loses_nothing_and_sends_nothing_twice);

async fn halting_the_account_cancels_its_resting_order_on_the_venue(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(3_600).await;
    let signal = setup.limit_buy(&service, "halt-1").await;
    rests_and_is_told(&setup).await;

    let answer = operator_cli(
        &setup.test.url,
        &["halt", &setup.user.user_id, "--reason", "drill"],
    )
    .await;
    assert!(answer.contains("halt"), "{answer}");
    let types = setup
        .events_once("the cancelled order to be told", |types| {
            count(types, "OrderExpired") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "RiskReservationReleased"), 1, "{types:?}");
    // The halt is told as a notice of its own, beside the order's end.
    let told = setup.messages(3).await;
    assert!(
        told.iter().any(|m| m.contains("Trading halted by staff:")),
        "{told:?}"
    );
    assert!(
        told.iter().any(|m| m.contains("ended unfilled")),
        "{told:?}"
    );
    // Off the book: the price crossing its limit fills nothing.
    setup.set_price("63000").await;
    let positions = setup.api(&service, "/api/positions").await;
    assert_eq!(positions["positions"], json!([]));
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    service.stop().await;
}
on_both_stores!(halting_the_account_cancels_its_resting_order_on_the_venue);

/// The paper exchange behaves the same: the limit rests (its reference price is 65,000 + 5 bp),
/// and a service started with a paper price through the limit fills it, once.
async fn a_paper_limit_rests_and_fills_once_the_paper_price_reaches_it(backend: Backend) {
    let setup = Setup::on_paper(backend).await;
    let service = setup.serve(3_600).await;
    let signal = setup.limit_buy(&service, "paper-rest-1").await;
    rests_and_is_told(&setup).await;
    let told = setup.messages(1).await;
    assert!(told[0].contains("resting on the book"), "{told:?}");
    service.stop().await;

    let service = setup
        .serve_with(3_600, &["--paper-price", "BTC-USD=63000"])
        .await;
    let types = setup
        .events_once("the paper fill to be told", |types| {
            count(types, "OrderFilled") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "OrderSubmitted"), 1, "{types:?}");
    let told = setup.messages(2).await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[1].contains("Filled"), "{told:?}");
    let store = setup.test.open().await;
    let sends = ledgerhook::exchange::PaperBook::of(&store)
        .placements()
        .await
        .expect("placements");
    assert_eq!(sends, vec![(format!("lh-{signal}"), 1)]);
    assert_eq!(
        setup.received(&signal).await,
        (vec![], 0),
        "nothing on dYdX"
    );
    let positions = eventually("the position to show", || async {
        let body = setup.api(&service, "/api/positions").await;
        let list = body["positions"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(positions[0]["size"], "0.01", "{positions:?}");
    service.stop().await;
}
on_both_stores!(a_paper_limit_rests_and_fills_once_the_paper_price_reaches_it);

async fn a_paper_limit_that_expires_gives_its_reservation_back(backend: Backend) {
    let setup = Setup::on_paper(backend).await;
    let service = setup.serve(2).await;
    setup.limit_buy(&service, "paper-expire-1").await;
    rests_and_is_told(&setup).await;
    let types = setup
        .events_once("the paper expiry to be told", |types| {
            count(types, "OrderExpired") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "RiskReservationReleased"), 1, "{types:?}");
    let told = setup.messages(2).await;
    assert!(told[1].contains("ended unfilled"), "{told:?}");
    service.stop().await;
}
on_both_stores!(a_paper_limit_that_expires_gives_its_reservation_back);

/// A halt while the node is down: the cancel cannot be sent, so the order stays resting (nothing
/// is recorded on a guess) and the service logs why; once the node answers, the watcher's next
/// check cancels it, its reservation is given back and the trader told.
async fn a_halt_while_the_node_is_down_cancels_the_resting_order_once_the_node_is_back(
    backend: Backend,
) {
    let setup = Setup::new(backend).await;
    let logs = tempfile::tempdir().expect("a directory for the log");
    let log = logs.path().join("serve.log");
    let options = Options {
        log_file: Some(log.clone()),
        ..setup.options(3_600, &[])
    };
    let service = Service::start(&setup.test.url, options).await;
    let signal = setup.limit_buy(&service, "halt-node-down-1").await;
    rests_and_is_told(&setup).await;

    setup
        .set_faults(json!({ "down": true, "scope": "node" }))
        .await;
    let answer = operator_cli(
        &setup.test.url,
        &["halt", &setup.user.user_id, "--reason", "drill"],
    )
    .await;
    assert!(answer.contains("halt"), "{answer}");
    eventually("the watcher to fail to cancel", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("resting order not cancelled").then_some(())
    })
    .await;
    let store = setup.test.open().await;
    let types = event_types(&store, &setup.user.user_id).await;
    assert_eq!(count(&types, "OrderExpired"), 0, "still resting: {types:?}");

    setup.set_faults(json!({})).await;
    let types = setup
        .events_once("the cancelled order to be told", |types| {
            count(types, "OrderExpired") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "RiskReservationReleased"), 1, "{types:?}");
    // Off the book: the price crossing its limit fills nothing.
    setup.set_price("63000").await;
    let positions = setup.api(&service, "/api/positions").await;
    assert_eq!(positions["positions"], json!([]));
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    service.stop().await;
}
on_both_stores!(a_halt_while_the_node_is_down_cancels_the_resting_order_once_the_node_is_back);

/// The trader removes their dYdX key while a limit order rests, and the service restarts (its
/// memory of the subaccount gone): the order is followed on the wallet that sent it, as its send
/// record names it, so the fill it gets meanwhile is booked, once, with no key needed to look.
async fn a_resting_order_whose_key_was_removed_is_still_followed_and_booked_once(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(3_600).await;
    let signal = setup.limit_buy(&service, "keyless-rest-1").await;
    rests_and_is_told(&setup).await;
    let (status, cleared) = service
        .send(
            service
                .client()
                .delete(format!(
                    "{}/api/settings/credentials/dydx_mnemonic",
                    service.base_url
                ))
                .bearer_auth(&setup.user.api_key),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    service.stop().await;

    let service = setup.serve(3_600).await;
    setup.set_price("63000").await;
    let types = setup
        .events_once("the fill to be booked", |types| {
            count(types, "OrderFilled") == 1
        })
        .await;
    assert_eq!(count(&types, "OrderSubmitted"), 1, "{types:?}");
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    service.stop().await;
}
on_both_stores!(a_resting_order_whose_key_was_removed_is_still_followed_and_booked_once);

/// The Indexer down while a limit order rests and the price crosses its limit: the watcher
/// cannot check it, records nothing and logs why; once the Indexer answers, the fill is found
/// and booked, once.
async fn a_resting_order_is_watched_through_an_indexer_outage_and_fills_once_it_answers(
    backend: Backend,
) {
    let setup = Setup::new(backend).await;
    let logs = tempfile::tempdir().expect("a directory for the log");
    let log = logs.path().join("serve.log");
    let options = Options {
        log_file: Some(log.clone()),
        ..setup.options(3_600, &[])
    };
    let service = Service::start(&setup.test.url, options).await;
    let signal = setup.limit_buy(&service, "indexer-down-1").await;
    rests_and_is_told(&setup).await;

    setup
        .set_faults(json!({ "down": true, "scope": "indexer" }))
        .await;
    setup.set_price("63000").await;
    eventually("the watcher to fail a check", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("resting order not checked").then_some(())
    })
    .await;
    let store = setup.test.open().await;
    let types = event_types(&store, &setup.user.user_id).await;
    assert_eq!(
        count(&types, "OrderFilled"),
        0,
        "nothing on a guess: {types:?}"
    );

    setup.set_faults(json!({})).await;
    let types = setup
        .events_once("the fill to be booked and told", |types| {
            count(types, "OrderFilled") == 1 && count(types, "NotificationSent") == 2
        })
        .await;
    assert_eq!(count(&types, "OrderSubmitted"), 1, "{types:?}");
    assert_eq!(setup.received(&signal).await, (vec![64], 1));
    service.stop().await;
}
on_both_stores!(a_resting_order_is_watched_through_an_indexer_outage_and_fills_once_it_answers);
