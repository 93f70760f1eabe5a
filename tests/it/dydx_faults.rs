//! dYdX through the real binaries: `ledgerhook serve` against the `fake-venues` binary, a user
//! whose mnemonic was set through the CLI, and every fault the fake can inject. Each approval must
//! reach the venue exactly once (never where the venue could not take it) and every signal must
//! end in a final state in the ledger.

use serde_json::{json, Value};
use tokio::process::Child;
use tokio::time::Instant;

use aggregates::{ClientOrderId, Market, OrderType, Quantity, Side};
use ledgerhook::exchange::dydx::{
    venue_ids, DydxChain, DydxConfig, DydxExchange, InMemoryCredentials, Leg,
};
use ledgerhook::exchange::{Exchange, OrderOutcome, OrderRequest};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::invariants::{check, Venue};
use crate::support::load::Acked;
use crate::support::service::{
    cli, cli_output, create_user, credentials_set, Options, Service, User,
};
use crate::support::stores::{Backend, TestStore};
use crate::support::{eventually, eventually_within};

/// The official client's published example phrase (a public testnet wallet, no funds of ours).
const TEST_MNEMONIC: &str = "mirror actor skill push coach wait confirm orchard lunch mobile \
    athlete gossip awake miracle matter bus reopen team ladder lazy list timber render wait";

/// The events that end a signal's execution.
const FINAL: [&str; 5] = [
    "OrderFilled",
    "OrderPartiallyFilled",
    "OrderRejected",
    "OrderFailed",
    "ExecutionAbandoned",
];

struct Fake {
    _child: Child,
    indexer: String,
    node: String,
    http: reqwest::Client,
}

impl Fake {
    /// A fake chain making a block every `block_ms` (a short-term order lives 10 blocks).
    async fn start(block_ms: u64) -> Self {
        let (child, addresses) =
            crate::support::fake_venues::spawn(&["--block-ms", &block_ms.to_string()]).await;
        Self {
            _child: child,
            indexer: addresses.indexer,
            node: addresses.node,
            http: reqwest::Client::new(),
        }
    }

    async fn set_faults(&self, faults: Value) {
        crate::support::fake_venues::set_faults(&self.http, &self.indexer, &faults).await;
    }

    /// Client id → how many times the node received an order with it.
    async fn sends(&self) -> serde_json::Map<String, Value> {
        let received: Value =
            crate::support::fake_venues::received_orders(&self.http, &self.indexer).await;
        received["sends"].as_object().cloned().unwrap_or_default()
    }

    /// How many times the entry order of this signal reached the node.
    async fn sends_of(&self, signal_id: &str) -> u64 {
        let client_id = venue_ids(&ClientOrderId(format!("lh-{signal_id}")), Leg::Entry).client_id;
        self.sends()
            .await
            .get(&client_id.to_string())
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// A fake venue, a store, and a user who trades on dYdX with a mnemonic set through the CLI.
struct Setup {
    fake: Fake,
    test: TestStore,
    user: User,
}

impl Setup {
    async fn new(backend: Backend) -> Self {
        Self::with_blocks_of(backend, 100).await
    }

    async fn with_blocks_of(backend: Backend, block_ms: u64) -> Self {
        let fake = Fake::start(block_ms).await;
        let test = TestStore::new(backend).await;
        let user = dydx_user(&test.url, "dydx trader").await;
        Self { fake, test, user }
    }

    async fn serve(&self, deadline_seconds: u64) -> Service {
        Service::start(&self.test.url, self.options(deadline_seconds)).await
    }

    fn options(&self, deadline_seconds: u64) -> Options {
        Options {
            args: vec![
                "--dydx-indexer-url".to_owned(),
                self.fake.indexer.clone(),
                "--dydx-node-url".to_owned(),
                self.fake.node.clone(),
                "--order-deadline-seconds".to_owned(),
                deadline_seconds.to_string(),
            ],
            ..Options::default()
        }
    }

    /// Sends a buy of 0.01 BTC and returns its signal id.
    async fn signal(&self, service: &Service, id: &str) -> String {
        let alert = Alert::new(id).size("0.01").json();
        let (status, body) = service.post_signal(&self.user.webhook_token, &alert).await;
        assert_eq!(status, 200, "{body}");
        body["signal_id"]
            .as_str()
            .expect("the answer names the signal")
            .to_owned()
    }

    /// Waits for the user's ledger to hold `count` final events and returns all its event types.
    async fn final_events(&self, count: usize) -> Vec<String> {
        let store = self.test.open().await;
        let account = self.user.user_id.clone();
        eventually("every signal to reach a final state", || async {
            let types = crate::support::event_types(&store, &account).await;
            let finals = types.iter().filter(|t| FINAL.contains(&t.as_str())).count();
            (finals >= count).then_some(types)
        })
        .await
    }

    /// The fault suite's invariants (support::invariants) after the case's signals, acknowledged
    /// at `sent`, each ended: nothing lost, nothing sent twice, read models equal to a rebuild,
    /// `audit verify` passing. Prints the suite's summary line for the case.
    async fn invariants_hold(
        &self,
        case: &str,
        faults: usize,
        signals: &[(&User, String)],
        sent: Instant,
    ) {
        let store = self.test.open().await;
        let acked: Vec<Acked> = signals
            .iter()
            .map(|(user, signal_id)| Acked {
                user_id: user.user_id.clone(),
                signal_id: signal_id.clone(),
                // Ended either way: executed, or refused (a halted account's next alert).
                status: String::new(),
                at: sent,
            })
            .collect();
        // Every account of the ledger: settling counts all their events.
        let mut accounts: Vec<String> = signals
            .iter()
            .map(|(user, _)| user.user_id.clone())
            .collect();
        accounts.push(self.user.user_id.clone());
        accounts.sort();
        accounts.dedup();
        let verdict = check(
            &self.test.url,
            &store,
            &accounts,
            &acked,
            Venue::FakeDydx(&self.fake.indexer),
        )
        .await;
        let store_name = if self.test.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        // For a venue fault, recovery is the time from the acknowledgement to every signal's end.
        println!(
            "faults case=venue_{case} store={store_name} faults_injected={faults} acknowledged={} lost={} \
             duplicated={} recovered_in_ms={}",
            verdict.acknowledged,
            verdict.lost,
            verdict.duplicated,
            sent.elapsed().as_millis()
        );
    }

    async fn positions(&self, service: &Service) -> Value {
        positions_of(service, &self.user.api_key).await
    }
}

/// An Indexer that misreports what filled (the other side, more than the order's size, a price
/// of zero, a price no market has) is not believed: each signal ends in `FillMismatch`, with no
/// position booked, the account halted (its next alert is refused as halted) and the trader
/// told; the service keeps serving. Each kind has a user of its own, since a mismatch halts.
async fn dydx_misreported_fills_are_refused_and_halt_the_account(backend: Backend) {
    let setup = Setup::new(backend).await;
    let kinds = ["side", "oversize", "zero_price", "absurd_price"];
    let mut users = Vec::new();
    for kind in kinds {
        users.push(dydx_user(&setup.test.url, kind).await);
    }
    let service = setup.serve(30).await;
    let store = setup.test.open().await;
    let sent = Instant::now();
    let mut signals = Vec::new();
    for (kind, user) in kinds.into_iter().zip(&users) {
        setup.fake.set_faults(json!({ "misreport": kind })).await;
        let alert = Alert::new(format!("{kind}-1")).size("0.01").json();
        let (status, body) = service.post_signal(&user.webhook_token, &alert).await;
        assert_eq!(status, 200, "{kind}: {body}");
        signals.push((
            user,
            body["signal_id"].as_str().unwrap_or_default().to_owned(),
        ));
        let types = eventually("the misreported fill to be refused and told", || async {
            let types = crate::support::event_types(&store, &user.user_id).await;
            let told = types.iter().any(|t| t == "NotificationSent");
            (types.iter().any(|t| t == "FillMismatch") && told).then_some(types)
        })
        .await;
        setup.fake.set_faults(json!({})).await;
        assert_eq!(count(&types, "FillMismatch"), 1, "{kind}: {types:?}");
        assert_eq!(count(&types, "TradingHalted"), 1, "{kind}: {types:?}");
        assert_eq!(count(&types, "OrderFilled"), 0, "{kind}: {types:?}");
        assert!(
            !types.iter().any(|t| t.starts_with("Position")),
            "{kind}: no position is booked: {types:?}"
        );

        let next = Alert::new(format!("{kind}-2")).size("0.01").json();
        let (status, answer) = service.post_signal(&user.webhook_token, &next).await;
        assert_eq!(status, 200, "{kind}: {answer}");
        assert_eq!(answer["status"], "rejected", "{kind}: {answer}");
        assert_eq!(answer["reason"], "halted", "{kind}: {answer}");
        signals.push((
            user,
            answer["signal_id"].as_str().unwrap_or_default().to_owned(),
        ));
        let positions = positions_of(&service, &user.api_key).await;
        assert_eq!(positions["positions"], json!([]), "{kind}: {positions}");
    }
    let (status, health) = service
        .send(
            service
                .client()
                .get(format!("{}/healthz", service.base_url)),
        )
        .await;
    assert_eq!(status, 200, "the service still serves: {health}");
    setup
        .invariants_hold("misreported_fills", kinds.len(), &signals, sent)
        .await;
    service.stop().await;
}
on_both_stores!(dydx_misreported_fills_are_refused_and_halt_the_account);

/// `GET /api/positions` as the owner of `api_key`.
async fn positions_of(service: &Service, api_key: &str) -> Value {
    let (status, body) = service
        .send(
            service
                .client()
                .get(format!("{}/api/positions", service.base_url))
                .bearer_auth(api_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Another user who trades on dYdX with the test mnemonic.
async fn dydx_user(url: &str, name: &str) -> User {
    let user = create_user(url, name).await;
    credentials_set(url, &user.user_id, "dydx_mnemonic", TEST_MNEMONIC).await;
    let answer = cli(url, &["users", "venue", &user.user_id, "dydx"]).await;
    assert!(answer.contains("trades on dydx"), "{answer}");
    user
}

fn count(types: &[String], event: &str) -> usize {
    types.iter().filter(|t| *t == event).count()
}

/// A user who set a mnemonic with `credentials set` and chose dYdX has a signal filled there
/// end to end: one send, `OrderFilled` in the ledger, the position in the read model.
async fn a_dydx_signal_is_filled_end_to_end_through_the_binary(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(30).await;

    let signal = setup.signal(&service, "e2e-1").await;
    let types = setup.final_events(1).await;

    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
    assert_eq!(setup.fake.sends_of(&signal).await, 1);
    assert_eq!(setup.fake.sends().await.len(), 1);
    let positions = eventually("the position to show", || async {
        let body = setup.positions(&service).await;
        let list = body["positions"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert_eq!(positions[0]["size"], "0.01", "{positions:?}");
    assert_eq!(positions[0]["side"], "long", "{positions:?}");
    service.stop().await;
}
on_both_stores!(a_dydx_signal_is_filled_end_to_end_through_the_binary);

/// Runs one signal under `faults` (set before it is sent) and returns the ledger's event types
/// and how many times the venue received the order.
async fn one_signal_under(
    backend: Backend,
    faults: Value,
    deadline_seconds: u64,
) -> (Vec<String>, u64) {
    under(Setup::new(backend).await, faults, deadline_seconds).await
}

async fn under(setup: Setup, faults: Value, deadline_seconds: u64) -> (Vec<String>, u64) {
    let service = setup.serve(deadline_seconds).await;
    setup.fake.set_faults(faults.clone()).await;
    let sent = Instant::now();
    let signal = setup.signal(&service, "fault-1").await;
    let types = setup.final_events(1).await;
    // A venue that is down answers no control request either.
    setup.fake.set_faults(json!({})).await;
    let case: String = faults
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    setup
        .invariants_hold(&case, 1, &[(&setup.user, signal.clone())], sent)
        .await;
    let sends = setup.fake.sends_of(&signal).await;
    assert_eq!(
        setup.fake.sends().await.len() as u64,
        sends,
        "only this signal's order reached the venue"
    );
    service.stop().await;
    (types, sends)
}

/// The venue down for longer than the order's deadline: nothing is sent, the signal is abandoned.
async fn dydx_venue_down_past_the_deadline_sends_nothing_and_abandons(backend: Backend) {
    let (types, sends) = one_signal_under(backend, json!({ "down": true }), 2).await;
    assert_eq!(sends, 0);
    assert_eq!(count(&types, "ExecutionAbandoned"), 1, "{types:?}");
    assert_eq!(count(&types, "OrderFilled"), 0, "{types:?}");
}
on_both_stores!(dydx_venue_down_past_the_deadline_sends_nothing_and_abandons);

/// A slow venue (every request 1.5 s late, within the adapter's timeout and the short-term
/// order's 10 blocks of 0.5 s): filled, once.
async fn dydx_slow_venue_fills_once(backend: Backend) {
    let setup = Setup::with_blocks_of(backend, 500).await;
    let (types, sends) = under(setup, json!({ "slow_ms": 1500 }), 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
}
on_both_stores!(dydx_slow_venue_fills_once);

/// 503 / UNAVAILABLE on the first requests: retried, filled, sent once.
async fn dydx_5xx_answers_are_retried_and_the_order_fills_once(backend: Backend) {
    let (types, sends) = one_signal_under(backend, json!({ "status_5xx": 3 }), 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
}
on_both_stores!(dydx_5xx_answers_are_retried_and_the_order_fills_once);

/// 429 / RESOURCE_EXHAUSTED on the first requests: retried, filled, sent once.
async fn dydx_429_answers_are_retried_and_the_order_fills_once(backend: Backend) {
    let (types, sends) = one_signal_under(backend, json!({ "rate_limited": 3 }), 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
}
on_both_stores!(dydx_429_answers_are_retried_and_the_order_fills_once);

/// 503 on the placement itself (the broadcast): it did not land, so it may go out once more.
async fn dydx_5xx_on_the_broadcast_is_retried_and_the_order_lands_once(backend: Backend) {
    let faults = json!({ "status_5xx": 2, "scope": "broadcast" });
    let (types, sends) = one_signal_under(backend, faults, 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
}
on_both_stores!(dydx_5xx_on_the_broadcast_is_retried_and_the_order_lands_once);

/// The venue took the order and the answer was lost: found by its client id, never sent again.
async fn dydx_lost_answer_is_found_by_client_id_and_sent_once(backend: Backend) {
    let faults = json!({ "drop_response_after_accept": 1 });
    let (types, sends) = one_signal_under(backend, faults, 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
}
on_both_stores!(dydx_lost_answer_is_found_by_client_id_and_sent_once);

/// Half filled: booked as a partial fill, sent once.
async fn dydx_partial_fill_is_booked_as_partial_and_sent_once(backend: Backend) {
    let (types, sends) = one_signal_under(backend, json!({ "partial_fill": "0.5" }), 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderPartiallyFilled"), 1, "{types:?}");
    assert_eq!(count(&types, "OrderFilled"), 0, "{types:?}");
}
on_both_stores!(dydx_partial_fill_is_booked_as_partial_and_sent_once);

/// Refused by CheckTx: rejected, sent once, not retried.
async fn dydx_rejection_is_final_and_sent_once(backend: Backend) {
    let (types, sends) = one_signal_under(backend, json!({ "reject": 1 }), 60).await;
    assert_eq!(sends, 1);
    assert_eq!(count(&types, "OrderRejected"), 1, "{types:?}");
    assert_eq!(count(&types, "OrderFilled"), 0, "{types:?}");
}
on_both_stores!(dydx_rejection_is_final_and_sent_once);

/// The venue down when the signal comes, back before the deadline: the order goes out once
/// after recovery and fills.
async fn dydx_venue_back_before_the_deadline_fills_once(backend: Backend) {
    let setup = Setup::new(backend).await;
    let logs = tempfile::tempdir().expect("a directory for the log");
    let log = logs.path().join("serve.log");
    let options = Options {
        log_file: Some(log.clone()),
        ..setup.options(60)
    };
    let service = Service::start(&setup.test.url, options).await;
    setup.fake.set_faults(json!({ "down": true })).await;
    let sent = Instant::now();
    let signal = setup.signal(&service, "recover-1").await;
    // The saga's first failed attempt, as the service logs it: recovery comes after it.
    eventually("the saga to fail an attempt", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("placement failed, retrying").then_some(())
    })
    .await;
    setup.fake.set_faults(json!({})).await;

    let types = setup.final_events(1).await;
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
    assert_eq!(setup.fake.sends_of(&signal).await, 1);
    setup
        .invariants_hold("back_before_deadline", 1, &[(&setup.user, signal)], sent)
        .await;
    service.stop().await;
}
on_both_stores!(dydx_venue_back_before_the_deadline_fills_once);

/// Two instances on one PostgreSQL database and one venue, one killed with SIGKILL mid-run: every
/// approval reaches the venue exactly once and every signal ends final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dydx_two_instances_one_killed_send_each_order_once() {
    const SIGNALS: usize = 6;
    let setup = Setup::new(Backend::Postgres).await;
    // Lost answers and a slow venue keep orders in flight when the kill lands.
    setup
        .fake
        .set_faults(json!({ "slow_ms": 200, "drop_response_after_accept": 2 }))
        .await;
    // The first instance starts alone, so it is the one executing (it holds the saga's lease)
    // when it is killed; the second stands by, takes signals, and takes the saga over.
    let first = setup.serve(60).await;
    let sent = Instant::now();
    let mut signals = Vec::new();
    for n in 0..SIGNALS / 2 {
        signals.push(setup.signal(&first, &format!("first-{n}")).await);
    }
    eventually("the venue to receive an order", || async {
        (!setup.fake.sends().await.is_empty()).then_some(())
    })
    .await;
    let second = setup.serve(60).await;
    for n in 0..SIGNALS - SIGNALS / 2 {
        signals.push(setup.signal(&second, &format!("second-{n}")).await);
    }
    first.kill_9().await;

    let types = setup.final_events(SIGNALS).await;
    let finals: usize = FINAL.iter().map(|event| count(&types, event)).sum();
    assert_eq!(finals, SIGNALS, "one final event per signal: {types:?}");
    for signal in &signals {
        assert_eq!(setup.fake.sends_of(signal).await, 1, "{signal}: {types:?}");
    }
    assert_eq!(setup.fake.sends().await.len(), SIGNALS);
    setup
        .invariants_hold(
            "two_instances_one_killed",
            1,
            &signals
                .iter()
                .map(|signal| (&setup.user, signal.clone()))
                .collect::<Vec<_>>(),
            sent,
        )
        .await;
    second.stop().await;
}

/// `size_percent` alone: the alert builder always names a size.
fn percent_alert(id: &str, percent: &str) -> String {
    json!({ "symbol": "BTC-USD", "side": "buy", "size_percent": percent, "id": id }).to_string()
}

/// A dYdX trader's alert sized as a percent of equity is sized from the subaccount's equity as
/// the Indexer reports it (100,000 USDC on a fresh fake subaccount): 1% at 65,000 is at most
/// 1,000 USD, 0.0153 BTC on the 0.0001 step, and that is what reaches the venue and fills.
async fn a_percent_of_equity_alert_is_sized_from_the_dydx_subaccounts_equity(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(30).await;

    let (status, body) = service
        .post_signal(&setup.user.webhook_token, &percent_alert("pct-1", "1"))
        .await;
    assert_eq!(status, 200, "{body}");
    let types = setup.final_events(1).await;

    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
    let received =
        crate::support::fake_venues::received_orders(&setup.fake.http, &setup.fake.indexer).await;
    let orders = received["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 1, "{received}");
    assert_eq!(orders[0]["market"], "BTC-USD");
    assert_eq!(orders[0]["size"], "0.0153", "{received}");
    service.stop().await;
}
on_both_stores!(a_percent_of_equity_alert_is_sized_from_the_dydx_subaccounts_equity);

/// When a dYdX trader's equity cannot be read (no key to find the subaccount by, the Indexer
/// down, or answering an equity beyond any decimal's range) a percent-sized alert is answered 503 EXCHANGE_UNAVAILABLE, asking for a retry, and
/// nothing is recorded; once the Indexer answers, the same alert is taken.
async fn a_percent_alert_whose_dydx_equity_cannot_be_read_is_refused_with_503(backend: Backend) {
    let setup = Setup::new(backend).await;
    let keyless = create_user(&setup.test.url, "keyless").await;
    let answer = cli(
        &setup.test.url,
        &["users", "venue", &keyless.user_id, "dydx"],
    )
    .await;
    assert!(answer.contains("trades on dydx"), "{answer}");
    let service = setup.serve(30).await;
    let store = setup.test.open().await;

    let cases = [
        (&keyless, json!({})),
        (&setup.user, json!({ "down": true, "scope": "indexer" })),
        (&setup.user, json!({ "misreport": "out_of_range" })),
    ];
    for (user, faults) in cases {
        setup.fake.set_faults(faults.clone()).await;
        let (status, body) = service
            .post_signal(&user.webhook_token, &percent_alert("pct-unread", "1"))
            .await;
        assert_eq!(status, 503, "{faults}: {body}");
        assert_eq!(body["code"], "EXCHANGE_UNAVAILABLE", "{faults}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("equity could not be read"), "{body}");
        let types = crate::support::event_types(&store, &user.user_id).await;
        assert_eq!(count(&types, "SignalReceived"), 0, "{faults}: {types:?}");
    }

    setup.fake.set_faults(json!({})).await;
    let (status, body) = service
        .post_signal(&setup.user.webhook_token, &percent_alert("pct-unread", "1"))
        .await;
    assert_eq!(status, 200, "taken once the Indexer answers: {body}");
    service.stop().await;
}
on_both_stores!(a_percent_alert_whose_dydx_equity_cannot_be_read_is_refused_with_503);

/// A trader who chose dYdX, on a service started without dYdX: the order is refused saying the
/// service is not configured for it (never placed on paper instead), and a percent-sized alert,
/// whose equity only dYdX could give, is answered 503.
async fn a_dydx_trader_on_a_service_without_dydx_is_refused_saying_why(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = Service::start(&setup.test.url, Options::default()).await;

    setup.signal(&service, "no-dydx-1").await;
    let replayed = eventually("the order to be refused", || async {
        let replayed = crate::support::service::replay(&setup.test.url, &setup.user.user_id).await;
        replayed
            .iter()
            .any(|line| line["event_type"] == "OrderRejected")
            .then_some(replayed)
    })
    .await;
    let (status, body) = service
        .post_signal(&setup.user.webhook_token, &percent_alert("no-dydx-2", "1"))
        .await;

    let rejected = replayed
        .iter()
        .find(|line| line["event_type"] == "OrderRejected")
        .expect("refused");
    let reason = rejected["payload"]["OrderRejected"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("which this service is not configured for"),
        "{rejected}"
    );
    assert!(
        !replayed
            .iter()
            .any(|line| line["event_type"] == "OrderFilled"),
        "nothing traded on paper instead: {replayed:?}"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "EXCHANGE_UNAVAILABLE", "{body}");
    service.stop().await;
}
on_both_stores!(a_dydx_trader_on_a_service_without_dydx_is_refused_saying_why);

/// A limit order the venue took while its answer was lost, and whose fate the Indexer cannot
/// confirm before the signal's deadline (it trails by minutes): the signal is abandoned saying
/// the order could not be confirmed, and the order is cancelled on the venue, so a price that
/// crosses its limit later trades nothing for a signal the trader was told is over.
async fn an_unconfirmed_limit_order_past_the_deadline_is_abandoned_and_cancelled_on_the_venue(
    backend: Backend,
) {
    let setup = Setup::new(backend).await;
    let service = setup.serve(3).await;
    setup
        .fake
        .set_faults(json!({ "drop_response_after_accept": 1, "indexer_lag_ms": 600_000 }))
        .await;
    let alert = Alert::new("unconfirmed-limit")
        .size("0.01")
        .field("order_type", "limit")
        .field("price", "64000")
        .json();
    let (status, body) = service.post_signal(&setup.user.webhook_token, &alert).await;
    assert_eq!(status, 200, "{body}");

    // Each lookup waits out the adapter's 15 s for the Indexer to show the order: the retry's,
    // then the last one's at the deadline.
    let store = setup.test.open().await;
    eventually_within(
        "the signal to be abandoned",
        std::time::Duration::from_secs(90),
        || async {
            let types = crate::support::event_types(&store, &setup.user.user_id).await;
            (count(&types, "ExecutionAbandoned") == 1).then_some(())
        },
    )
    .await;
    let replayed = crate::support::service::replay(&setup.test.url, &setup.user.user_id).await;
    let abandoned = replayed
        .iter()
        .find(|line| line["event_type"] == "ExecutionAbandoned")
        .expect("abandoned");
    let reason = abandoned["payload"]["ExecutionAbandoned"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("could not be confirmed"), "{abandoned}");
    setup.fake.set_faults(json!({})).await;
    let response = setup
        .fake
        .http
        .post(format!("{}/_fake/prices", setup.fake.indexer))
        .json(&json!({ "BTC-USD": "63000" }))
        .send()
        .await
        .expect("prices set");
    assert!(response.status().is_success());

    let received =
        crate::support::fake_venues::received_orders(&setup.fake.http, &setup.fake.indexer).await;
    assert_eq!(
        received["orders"].as_array().map(Vec::len),
        Some(1),
        "{received}"
    );
    let address = received["orders"][0]["address"]
        .as_str()
        .unwrap_or_default();
    let positions: Value = setup
        .fake
        .http
        .get(format!(
            "{}/v4/perpetualPositions?address={address}&subaccountNumber=0",
            setup.fake.indexer
        ))
        .send()
        .await
        .expect("positions read")
        .json()
        .await
        .expect("positions are JSON");
    assert_eq!(
        positions["positions"],
        json!([]),
        "cancelled, so never filled"
    );
    service.stop().await;
}
on_both_stores!(
    an_unconfirmed_limit_order_past_the_deadline_is_abandoned_and_cancelled_on_the_venue
);

/// An order on the trader's dYdX subaccount that the service never sent (the trader trading by
/// hand), placed with their key straight on the venue.
async fn trade_behind_the_service(setup: &Setup, side: Side, id: &str) {
    let config = DydxConfig::new(&setup.fake.indexer, &setup.fake.node, DydxChain::Testnet);
    let credentials = InMemoryCredentials::default().with("by-hand", TEST_MNEMONIC, 0);
    let exchange = DydxExchange::new(config, std::sync::Arc::new(credentials), None);
    let order = OrderRequest {
        account_id: "by-hand".to_owned(),
        client_order_id: ClientOrderId(format!("by-hand-{id}")),
        market: Market::parse("ETH-USD").expect("market"),
        side,
        size: Quantity::new(rust_decimal::Decimal::new(5, 1)).expect("size"),
        reduce_only: false,
        order_type: OrderType::Market,
        take_profit: None,
        stop_loss: None,
    };
    let outcome = exchange.place_order(&order).await.expect("placed by hand");
    assert!(
        matches!(outcome, OrderOutcome::Filled { .. }),
        "{outcome:?}"
    );
}

/// The service's periodic check reads a dYdX trader's positions from the Indexer: a short the
/// ledger never saw is recorded as a drift on dydx (venue -0.5, ledger 0), and cleared once the
/// trader buys it back; the ledger's own positions stay untouched.
async fn a_dydx_trade_behind_the_services_back_is_found_as_a_drift_then_cleared(backend: Backend) {
    let setup = Setup::new(backend).await;
    let mut options = setup.options(30);
    options
        .args
        .extend(["--reconcile-interval-seconds".to_owned(), "1".to_owned()]);
    let service = Service::start(&setup.test.url, options).await;
    let store = setup.test.open().await;

    trade_behind_the_service(&setup, Side::Sell, "1").await;
    eventually("the periodic check to record the drift", || async {
        let types = crate::support::event_types(&store, &setup.user.user_id).await;
        types
            .contains(&"PositionDriftDetected".to_owned())
            .then_some(())
    })
    .await;
    trade_behind_the_service(&setup, Side::Buy, "2").await;
    eventually("the periodic check to clear the drift", || async {
        let types = crate::support::event_types(&store, &setup.user.user_id).await;
        types
            .contains(&"PositionDriftCleared".to_owned())
            .then_some(())
    })
    .await;

    let replayed = crate::support::service::replay(&setup.test.url, &setup.user.user_id).await;
    let detected: Vec<&Value> = replayed
        .iter()
        .filter(|line| line["event_type"] == "PositionDriftDetected")
        .collect();
    assert_eq!(detected.len(), 1, "recorded once: {detected:?}");
    let drift = &detected[0]["payload"]["PositionDriftDetected"];
    assert_eq!(drift["venue"], "dydx", "{drift}");
    assert_eq!(drift["market"], "ETH-USD", "{drift}");
    assert_eq!(drift["venue_size"], "-0.5", "{drift}");
    assert_eq!(drift["ledger_size"], "0", "{drift}");
    let positions = setup.positions(&service).await;
    assert_eq!(positions["positions"], json!([]), "{positions}");
    service.stop().await;
}
on_both_stores!(a_dydx_trade_behind_the_services_back_is_found_as_a_drift_then_cleared);

/// A halt caught an approved order before any instance placed it, and the Indexer cannot say
/// whether an earlier run sent it: the order is cancelled all the same, nothing reaches the
/// venue, and the recorded reason says the venue could not confirm.
async fn a_halted_approval_is_cancelled_saying_the_venue_could_not_confirm_it(backend: Backend) {
    let setup = Setup::new(backend).await;
    let ingest_only = Service::start(
        &setup.test.url,
        Options {
            no_execution: true,
            ..setup.options(30)
        },
    )
    .await;
    let signal = setup.signal(&ingest_only, "halted-unconfirmed").await;
    ingest_only.stop().await;
    crate::support::service::operator_cli(
        &setup.test.url,
        &["halt", &setup.user.user_id, "--reason", "margin call"],
    )
    .await;
    setup
        .fake
        .set_faults(json!({ "down": true, "scope": "indexer" }))
        .await;

    let service = setup.serve(30).await;
    let store = setup.test.open().await;
    eventually("the approved order to be cancelled", || async {
        let types = crate::support::event_types(&store, &setup.user.user_id).await;
        (count(&types, "OrderCancelled") == 1).then_some(())
    })
    .await;
    setup.fake.set_faults(json!({})).await;

    let replayed = crate::support::service::replay(&setup.test.url, &setup.user.user_id).await;
    let cancelled = replayed
        .iter()
        .find(|line| line["event_type"] == "OrderCancelled")
        .expect("cancelled");
    let reason = cancelled["payload"]["OrderCancelled"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("margin call"), "{cancelled}");
    assert!(
        reason.contains("whether the venue took it earlier could not be confirmed"),
        "{cancelled}"
    );
    assert_eq!(setup.fake.sends_of(&signal).await, 0);
    service.stop().await;
}
on_both_stores!(a_halted_approval_is_cancelled_saying_the_venue_could_not_confirm_it);

/// A service set up for mainnet but pointed at a testnet node signs over the wrong chain id: the
/// node refuses the signature, and the trader's order is rejected with the node's words, which
/// name the chain it serves; nothing trades. A slippage outside (0, 1) stops `serve` before it
/// starts, saying so.
async fn a_service_signing_for_the_wrong_chain_has_its_order_refused_naming_the_chain(
    backend: Backend,
) {
    let setup = Setup::new(backend).await;
    let dydx = [
        "serve",
        "--dydx-indexer-url",
        &setup.fake.indexer,
        "--dydx-node-url",
        &setup.fake.node,
    ];
    let refused = cli_output(
        &setup.test.url,
        &[&dydx[..], &["--dydx-slippage", "1.5"]].concat(),
    )
    .await;
    assert!(!refused.status.success(), "serve refuses to start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--dydx-slippage must be between 0 and 1"),
        "{stderr}"
    );

    let mut options = setup.options(30);
    options
        .args
        .extend(["--dydx-chain-id".to_owned(), "mainnet".to_owned()]);
    let service = Service::start(&setup.test.url, options).await;
    let signal = setup.signal(&service, "wrong-chain-1").await;
    let types = setup.final_events(1).await;

    assert_eq!(count(&types, "OrderRejected"), 1, "{types:?}");
    let replayed = crate::support::service::replay(&setup.test.url, &setup.user.user_id).await;
    let rejected = replayed
        .iter()
        .find(|line| line["event_type"] == "OrderRejected")
        .expect("rejected");
    let reason = rejected["payload"]["OrderRejected"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("dYdX refused the order (code 4)"),
        "{reason}"
    );
    assert!(reason.contains("chain-id (dydx-testnet-4)"), "{reason}");
    assert_eq!(
        setup.fake.sends_of(&signal).await,
        1,
        "the node saw it once"
    );
    let positions = setup.positions(&service).await;
    assert_eq!(positions["positions"], json!([]), "{positions}");
    service.stop().await;
}
on_both_stores!(a_service_signing_for_the_wrong_chain_has_its_order_refused_naming_the_chain);

/// The trader removes their dYdX key while their entry is in flight (sent, not yet shown by the
/// Indexer): the entry's fill is booked all the same, but its take-profit can no longer be
/// signed and is not placed; the service logs the position as unprotected and why.
async fn a_key_removed_while_the_entry_is_in_flight_books_the_fill_without_its_take_profit(
    backend: Backend,
) {
    // Blocks of 1 s, as on dYdX: the Indexer's 3 s lag below is within the 5 blocks the adapter
    // allows it, so the entry is waited for, not taken for expired.
    let setup = Setup::with_blocks_of(backend, 1_000).await;
    let logs = tempfile::tempdir().expect("a directory for the log");
    let log = logs.path().join("serve.log");
    let service = Service::start(
        &setup.test.url,
        Options {
            log_file: Some(log.clone()),
            ..setup.options(30)
        },
    )
    .await;
    // The Indexer shows the entry 3 s after the node took it: the window to remove the key in.
    setup
        .fake
        .set_faults(json!({ "indexer_lag_ms": 3_000 }))
        .await;
    let alert = Alert::new("key-gone-1")
        .size("0.01")
        .field("take_profit", "70000")
        .json();
    let (status, body) = service.post_signal(&setup.user.webhook_token, &alert).await;
    assert_eq!(status, 200, "{body}");
    eventually("the entry to reach the venue", || async {
        (setup.fake.sends().await.len() == 1).then_some(())
    })
    .await;
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

    let types = setup.final_events(1).await;
    assert_eq!(count(&types, "OrderFilled"), 1, "{types:?}");
    eventually("the unprotected position to be logged", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains("the position is unprotected")
            && text.contains("the account's credentials are gone"))
        .then_some(())
    })
    .await;
    let received =
        crate::support::fake_venues::received_orders(&setup.fake.http, &setup.fake.indexer).await;
    assert_eq!(
        received["orders"].as_array().map(Vec::len),
        Some(1),
        "the entry only: {received}"
    );
    setup.fake.set_faults(json!({})).await;
    service.stop().await;
}
on_both_stores!(a_key_removed_while_the_entry_is_in_flight_books_the_fill_without_its_take_profit);
