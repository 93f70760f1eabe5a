//! Permissioned trading keys through the real binaries: an owner registers an authenticator on
//! the fake chain (`/_fake/authenticators`, what `MsgAddAuthenticator` does), the trader sets the
//! owner's address, a separate trading wallet and the authenticator's id with `credentials set`,
//! and `serve` trades for the owner's subaccount with the trading key. The fake node
//! authenticates every transaction as CheckTx does, so a removed, wrong or too narrow
//! authenticator is the chain's refusal, told to the trader, with nothing booked.

use serde_json::{json, Value};
use tokio::process::Child;

use dydx::node::Wallet;
use ledgerhook::store::Store;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::service::{
    cli, create_user, credentials_set, operator_cli, Options, Service, User,
};
use crate::support::stores::{Backend, TestStore};

/// The owner: the official client's published example wallet (public testnet, no funds of ours).
const OWNER_MNEMONIC: &str = "mirror actor skill push coach wait confirm orchard lunch mobile \
    athlete gossip awake miracle matter bus reopen team ladder lazy list timber render wait";
/// The separate trading wallet, made for these tests (valid checksum, never funded anywhere).
const TRADING_MNEMONIC: &str = "buzz satoshi wage elegant trip armor tumble movie palm history \
    slide panic slot nose soccer glow come unaware future ripple lens jelly crumble cotton";
/// Words of the trading phrase no log line or event would hold by chance.
const TRADING_MARKERS: [&str; 5] = ["satoshi", "elegant", "tumble", "unaware", "crumble"];

const PLACE_ORDER: &str = "/dydxprotocol.clob.MsgPlaceOrder";
const CANCEL_ORDER: &str = "/dydxprotocol.clob.MsgCancelOrder";

/// The events that end a signal's execution.
const FINAL: [&str; 5] = [
    "OrderFilled",
    "OrderPartiallyFilled",
    "OrderRejected",
    "OrderFailed",
    "ExecutionAbandoned",
];

/// An account's address and public key (compressed, hex), as the owner shares them.
fn account_of(mnemonic: &str) -> (String, String) {
    let account = Wallet::from_mnemonic(mnemonic)
        .and_then(|wallet| wallet.account_offline(0))
        .expect("a valid test phrase");
    (
        account.address().to_string(),
        hex::encode(account.public_key().to_bytes()),
    )
}

struct Fake {
    _child: Child,
    indexer: String,
    node: String,
    http: reqwest::Client,
}

impl Fake {
    async fn start() -> Self {
        let (child, addresses) = crate::support::fake_venues::spawn(&["--block-ms", "100"]).await;
        Self {
            _child: child,
            indexer: addresses.indexer,
            node: addresses.node,
            http: reqwest::Client::new(),
        }
    }

    /// The owner lets the trading key do what `allows` says; returns the authenticator's id.
    async fn add_authenticator(&self, owner: &str, allows: Value) -> u64 {
        let (_, trading_key) = account_of(TRADING_MNEMONIC);
        let mut spec = json!({ "owner": owner, "public_key": trading_key });
        if let (Some(spec), Some(allows)) = (spec.as_object_mut(), allows.as_object()) {
            spec.extend(allows.clone());
        }
        let response = self
            .http
            .post(format!("{}/_fake/authenticators", self.indexer))
            .json(&spec)
            .send()
            .await
            .expect("authenticator added");
        assert!(response.status().is_success(), "refused: {spec}");
        let body: Value = response.json().await.expect("JSON");
        body["id"].as_u64().expect("the id")
    }

    async fn remove_authenticator(&self, owner: &str, id: u64) {
        let response = self
            .http
            .delete(format!(
                "{}/_fake/authenticators/{owner}/{id}",
                self.indexer
            ))
            .send()
            .await
            .expect("authenticator removed");
        assert!(response.status().is_success());
    }

    async fn orders(&self) -> Vec<Value> {
        let received: Value =
            crate::support::fake_venues::received_orders(&self.http, &self.indexer).await;
        received["orders"].as_array().cloned().unwrap_or_default()
    }
}

/// A fake chain, a store, the owner's address, and a trader on dYdX holding only a permissioned
/// key (no `dydx_mnemonic`) for the authenticator that `allows`.
struct Setup {
    fake: Fake,
    test: TestStore,
    user: User,
    owner: String,
    authenticator: u64,
}

impl Setup {
    async fn new(backend: Backend, allows: Value) -> Self {
        let fake = Fake::start().await;
        let test = TestStore::new(backend).await;
        let (owner, _) = account_of(OWNER_MNEMONIC);
        let authenticator = fake.add_authenticator(&owner, allows).await;
        let user = create_user(&test.url, "permissioned trader").await;
        let id = user.user_id.clone();
        credentials_set(&test.url, &id, "dydx_owner_address", &owner).await;
        credentials_set(&test.url, &id, "dydx_trading_mnemonic", TRADING_MNEMONIC).await;
        let number = authenticator.to_string();
        credentials_set(&test.url, &id, "dydx_authenticator_id", &number).await;
        let answer = cli(&test.url, &["users", "venue", &id, "dydx"]).await;
        assert!(answer.contains("trades on dydx"), "{answer}");
        Self {
            fake,
            test,
            user,
            owner,
            authenticator,
        }
    }

    async fn serve(&self, log_file: Option<std::path::PathBuf>) -> Service {
        self.serve_with(log_file, &[]).await
    }

    async fn serve_with(&self, log_file: Option<std::path::PathBuf>, extra: &[&str]) -> Service {
        let mut args = vec![
            "--dydx-indexer-url".to_owned(),
            self.fake.indexer.clone(),
            "--dydx-node-url".to_owned(),
            self.fake.node.clone(),
            "--order-deadline-seconds".to_owned(),
            "30".to_owned(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let options = Options {
            args,
            log_file,
            ..Options::default()
        };
        Service::start(&self.test.url, options).await
    }

    async fn set(&self, field: &str, value: &str) {
        credentials_set(&self.test.url, &self.user.user_id, field, value).await;
    }

    /// Sends an alert and returns the service's answer.
    async fn signal(&self, service: &Service, alert: Alert) -> Value {
        let (status, body) = service
            .post_signal(&self.user.webhook_token, &alert.json())
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `count` signals have ended and the trader was told of each; returns the
    /// account's events (type, payload).
    async fn concluded(&self, store: &Store, count: usize) -> Vec<(String, Value)> {
        let account = self.user.user_id.clone();
        eventually("every signal to end and be told", || async {
            let events: Vec<(String, Value)> = store
                .events()
                .load_account(&account)
                .await
                .expect("the account loads")
                .into_iter()
                .map(|event| (event.event_type, event.payload))
                .collect();
            let ended = events
                .iter()
                .filter(|(kind, _)| FINAL.contains(&kind.as_str()))
                .count();
            let told = events
                .iter()
                .filter(|(kind, _)| kind == "NotificationSent")
                .count();
            (ended >= count && told >= count).then_some(events)
        })
        .await
    }

    async fn positions(&self, service: &Service) -> Vec<Value> {
        let (status, body) = service
            .send(
                service
                    .client()
                    .get(format!("{}/api/positions", service.base_url))
                    .bearer_auth(&self.user.api_key),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["positions"].as_array().cloned().unwrap_or_default()
    }
}

fn count(events: &[(String, Value)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

fn rejections(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(kind, _)| kind == "OrderRejected")
        .map(|(_, payload)| {
            payload["OrderRejected"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The fields each `CredentialAccessed` of the account names.
fn revealed(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(kind, _)| kind == "CredentialAccessed")
        .map(|(_, payload)| {
            payload["CredentialAccessed"]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A trader with only a permissioned key has a signal filled on the owner's subaccount: the
/// transaction is signed by the trading key with the owner's authenticator selected, the fill is
/// booked, and each key use is recorded.
async fn a_permissioned_key_trades_for_the_owners_subaccount(backend: Backend) {
    let setup = Setup::new(
        backend,
        json!({ "message_filter": [PLACE_ORDER], "subaccount_filter": [0] }),
    )
    .await;
    let service = setup.serve(None).await;
    let store = setup.test.open().await;

    setup.signal(&service, Alert::new("p-1").size("0.01")).await;
    let events = setup.concluded(&store, 1).await;

    assert_eq!(count(&events, "OrderFilled"), 1, "{events:?}");
    let orders = setup.fake.orders().await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let (trading_address, _) = account_of(TRADING_MNEMONIC);
    assert_eq!(
        orders[0]["address"],
        setup.owner.as_str(),
        "the owner's order"
    );
    assert_eq!(orders[0]["subaccount"], 0);
    assert_eq!(orders[0]["signer"], trading_address.as_str());
    assert_eq!(orders[0]["authenticators"], json!([setup.authenticator]));
    let positions = eventually("the position to show", || async {
        let list = setup.positions(&service).await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert_eq!(positions[0]["size"], "0.01", "{positions:?}");
    let fields = revealed(&events);
    assert!(
        fields.iter().any(|f| f == "dydx_trading_mnemonic"),
        "{fields:?}"
    );
    assert!(!fields.iter().any(|f| f == "dydx_mnemonic"), "{fields:?}");
    service.stop().await;
}
on_both_stores!(a_permissioned_key_trades_for_the_owners_subaccount);

/// The owner removes the authenticator, or the trader names one that is not the owner's: the
/// chain refuses the order, the trader is told why, nothing more is booked.
async fn a_removed_or_unknown_authenticator_refuses_the_order(backend: Backend) {
    let setup = Setup::new(backend, json!({ "message_filter": [PLACE_ORDER] })).await;
    let service = setup.serve(None).await;
    let store = setup.test.open().await;
    setup.signal(&service, Alert::new("r-1").size("0.01")).await;
    setup.concluded(&store, 1).await;

    setup
        .fake
        .remove_authenticator(&setup.owner, setup.authenticator)
        .await;
    setup.signal(&service, Alert::new("r-2").size("0.02")).await;
    setup.concluded(&store, 2).await;
    setup.set("dydx_authenticator_id", "4242").await;
    setup.signal(&service, Alert::new("r-3").size("0.03")).await;
    let events = setup.concluded(&store, 3).await;

    assert_eq!(count(&events, "OrderFilled"), 1, "{events:?}");
    let reasons = rejections(&events);
    assert_eq!(reasons.len(), 2, "{events:?}");
    for (reason, id) in reasons.iter().zip([setup.authenticator, 4242]) {
        assert!(reason.contains("dYdX refused the order"), "{reason}");
        assert!(reason.contains("Authenticator is not found"), "{reason}");
        assert!(reason.contains(&format!(", {id})")), "{reason}");
    }
    let positions = setup.positions(&service).await;
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert_eq!(positions[0]["size"], "0.01", "only the first signal's");
    service.stop().await;
}
on_both_stores!(a_removed_or_unknown_authenticator_refuses_the_order);

/// An authenticator that allows another market, another subaccount or other messages refuses
/// the order as the chain does; the trader learns which rule it broke.
async fn an_authenticator_whose_filters_forbid_the_order_refuses_it(backend: Backend) {
    // ETH-USD (clob pair 1) on subaccount 0 only.
    let setup = Setup::new(
        backend,
        json!({
            "message_filter": [PLACE_ORDER],
            "subaccount_filter": [0],
            "clob_pair_filter": [1],
        }),
    )
    .await;
    let cancels_only = setup
        .fake
        .add_authenticator(&setup.owner, json!({ "message_filter": [CANCEL_ORDER] }))
        .await;
    let service = setup.serve(None).await;
    let store = setup.test.open().await;

    setup
        .signal(
            &service,
            Alert::new("f-btc").symbol("BTCUSDT.P").size("0.01"),
        )
        .await;
    setup.concluded(&store, 1).await;
    setup.set("dydx_subaccount", "1").await;
    setup
        .signal(
            &service,
            Alert::new("f-sub").symbol("ETHUSDT.P").size("0.1"),
        )
        .await;
    setup.concluded(&store, 2).await;
    setup.set("dydx_subaccount", "0").await;
    setup
        .set("dydx_authenticator_id", &cancels_only.to_string())
        .await;
    setup
        .signal(
            &service,
            Alert::new("f-msg").symbol("ETHUSDT.P").size("0.1"),
        )
        .await;
    let events = setup.concluded(&store, 3).await;

    assert_eq!(count(&events, "OrderFilled"), 0, "{events:?}");
    let reasons = rejections(&events);
    assert_eq!(reasons.len(), 3, "{events:?}");
    assert!(
        reasons[0].contains("clob pair id 0 not in whitelist [1]"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("subaccount number 1 not in allowed list [0]"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("message types do not match"),
        "{}",
        reasons[2]
    );
    for reason in &reasons {
        assert!(reason.contains("code 4"), "unauthorized: {reason}");
    }
    assert!(setup.positions(&service).await.is_empty());
    service.stop().await;
}
on_both_stores!(an_authenticator_whose_filters_forbid_the_order_refuses_it);

/// The trading key reaches no log line (at debug), no event, no answer: through a fill, a
/// refusal, and `credentials set` refusing malformed values.
async fn the_trading_key_reaches_no_log_event_or_answer(backend: Backend) {
    let setup = Setup::new(backend, json!({ "message_filter": [PLACE_ORDER] })).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_file = dir.path().join("service.log");
    let service = setup.serve(Some(log_file.clone())).await;
    let store = setup.test.open().await;
    let mut answers = Vec::new();

    answers.push(setup.signal(&service, Alert::new("s-1").size("0.01")).await);
    setup.concluded(&store, 1).await;
    setup
        .fake
        .remove_authenticator(&setup.owner, setup.authenticator)
        .await;
    answers.push(setup.signal(&service, Alert::new("s-2").size("0.01")).await);
    let events = setup.concluded(&store, 2).await;
    assert_eq!(count(&events, "OrderFilled"), 1, "{events:?}");
    assert_eq!(rejections(&events).len(), 1, "{events:?}");
    let id = setup.user.user_id.as_str();
    let short: Vec<&str> = TRADING_MNEMONIC.split_whitespace().take(23).collect();
    let mut swapped: Vec<&str> = TRADING_MNEMONIC.split_whitespace().collect();
    swapped.swap(0, 1);
    let refused = [
        ("dydx_trading_mnemonic", short.join(" ")),
        ("dydx_trading_mnemonic", swapped.join(" ")),
        ("dydx_owner_address", format!("dydx1{}", TRADING_MARKERS[0])),
        ("dydx_authenticator_id", TRADING_MARKERS[1].to_owned()),
    ];
    let mut cli_answers = String::new();
    for (field, value) in refused {
        let output = cli_stdin(&setup.test.url, id, field, &value).await;
        assert!(!output.status.success(), "{field} accepted a bad value");
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(stderr.contains(field), "names the field: {stderr}");
        cli_answers.push_str(&stderr);
        cli_answers.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    service.stop().await;

    let log = std::fs::read_to_string(&log_file).expect("the log is readable");
    assert!(log.contains("dydx"), "the log is the service's");
    let ledger: String = store
        .events()
        .load_account(id)
        .await
        .expect("the account loads")
        .iter()
        .map(|event| event.payload.to_string())
        .collect();
    assert!(
        ledger.contains("dydx_trading_mnemonic"),
        "accesses recorded"
    );
    let answers: String = answers.iter().map(Value::to_string).collect();
    for (place, text) in [
        ("log", &log),
        ("ledger", &ledger),
        ("answers", &answers),
        ("credentials set", &cli_answers),
    ] {
        for marker in TRADING_MARKERS {
            assert!(!text.contains(marker), "{marker} in the {place}");
        }
    }
}
on_both_stores!(the_trading_key_reaches_no_log_event_or_answer);

/// `ledgerhook credentials set USER FIELD` with `value` on standard input, whatever it answers.
async fn cli_stdin(url: &str, owner: &str, field: &str, value: &str) -> std::process::Output {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(crate::support::service::BINARY)
        .args(["credentials", "set", owner, field])
        .env("DATABASE_URL", url)
        .env(
            crate::support::vault::KEY_FILE_ENV,
            crate::support::vault::key_file(),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the ledgerhook binary runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A command refusing its arguments exits before reading: the write may meet a closed pipe,
    // and the refusal is what the caller checks.
    let _ = stdin.write_all(value.as_bytes()).await;
    drop(stdin);
    child
        .wait_with_output()
        .await
        .expect("the command finishes")
}

/// The adapter alone: a permissioned key's take-profit and stop-loss (conditional orders, which
/// the official client does not route through an authenticator itself) are signed for the owner
/// too, and the chain takes them; positions are read from the owner's subaccount.
#[tokio::test]
async fn dydx_a_permissioned_keys_brackets_are_signed_for_the_owner_too() {
    use std::str::FromStr;
    use std::sync::Arc;

    use aggregates::{ClientOrderId, Market, OrderType, Quantity, Side};
    use ledgerhook::exchange::dydx::{DydxChain, DydxConfig, DydxExchange, InMemoryCredentials};
    use ledgerhook::exchange::{Exchange, OrderOutcome, OrderRequest};
    use rust_decimal::Decimal;

    let fake = Fake::start().await;
    let (owner, _) = account_of(OWNER_MNEMONIC);
    let id = fake
        .add_authenticator(&owner, json!({ "message_filter": [PLACE_ORDER] }))
        .await;
    let credentials =
        InMemoryCredentials::default().with_permissioned("trader", &owner, TRADING_MNEMONIC, id, 0);
    let mut config = DydxConfig::new(&fake.indexer, &fake.node, DydxChain::Testnet);
    config.request_timeout = std::time::Duration::from_secs(1);
    config.outcome_wait = std::time::Duration::from_secs(5);
    let exchange = DydxExchange::new(config, Arc::new(credentials), None);
    let decimal = |text: &str| Decimal::from_str(text).expect("decimal");
    let buy = OrderRequest {
        account_id: "trader".to_owned(),
        client_order_id: ClientOrderId("lh-permissioned-brackets".to_owned()),
        market: Market::parse("ETH-USD").expect("market"),
        side: Side::Buy,
        size: Quantity::new(decimal("1")).expect("positive"),
        reduce_only: false,
        order_type: OrderType::Market,
        take_profit: Some(decimal("3500")),
        stop_loss: Some(decimal("3000")),
    };

    let outcome = exchange.place_order(&buy).await.expect("placed");

    assert!(
        matches!(outcome, OrderOutcome::Filled { .. }),
        "{outcome:?}"
    );
    let (trading_address, _) = account_of(TRADING_MNEMONIC);
    let received = fake.orders().await;
    assert_eq!(
        received.len(),
        3,
        "the entry and two brackets: {received:?}"
    );
    for order in &received {
        assert_eq!(order["address"], owner.as_str(), "{order}");
        assert_eq!(order["signer"], trading_address.as_str(), "{order}");
        assert_eq!(order["authenticators"], json!([id]), "{order}");
    }
    let held: Vec<Value> = fake
        .http
        .get(format!(
            "{}/v4/orders?address={owner}&subaccountNumber=0",
            fake.indexer
        ))
        .send()
        .await
        .expect("orders read")
        .json()
        .await
        .expect("orders are JSON");
    let untriggered = held
        .iter()
        .filter(|order| order["status"] == "UNTRIGGERED")
        .count();
    assert_eq!(untriggered, 2, "both brackets taken by the chain: {held:?}");
    let positions = Exchange::positions(&exchange, "trader")
        .await
        .expect("positions");
    assert_eq!(positions.get(&buy.market), Some(&decimal("1")));

    // What a trader's client reads back of the owner's authenticators (x/accountplus).
    let config = dydx::node::NodeConfig {
        endpoint: fake.node.clone(),
        timeout: 1_000,
        chain_id: dydx::node::ChainId::Testnet4,
        fee_denom: dydx::indexer::Denom::Usdc,
        manage_sequencing: true,
    };
    let mut client = dydx::node::NodeClient::connect(config)
        .await
        .expect("the node connects");
    let listed = client
        .authenticators()
        .get_authenticators(owner.parse().expect("an address"))
        .await
        .expect("authenticators listed");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].id, listed[0].r#type.as_str()), (id, "AllOf"));
    let parts: Vec<Value> = serde_json::from_slice(&listed[0].config).expect("a JSON list");
    let kinds: Vec<&str> = parts
        .iter()
        .filter_map(|part| part["type"].as_str())
        .collect();
    assert_eq!(kinds, ["SignatureVerification", "MessageFilter"]);
}

/// The documented rule when a trader holds both: the permissioned key signs and the mnemonic is
/// never revealed; and a permissioned key missing a field refuses orders, saying which, without
/// decrypting the trading key (nor falling back to the mnemonic).
async fn a_permissioned_key_wins_over_a_mnemonic_and_an_incomplete_one_refuses(backend: Backend) {
    let setup = Setup::new(backend, json!({ "message_filter": [PLACE_ORDER] })).await;
    setup.set("dydx_mnemonic", OWNER_MNEMONIC).await;
    let incomplete = create_user(&setup.test.url, "half-configured trader").await;
    for (field, value) in [
        ("dydx_mnemonic", OWNER_MNEMONIC),
        ("dydx_trading_mnemonic", TRADING_MNEMONIC),
        ("dydx_authenticator_id", &setup.authenticator.to_string()),
    ] {
        credentials_set(&setup.test.url, &incomplete.user_id, field, value).await;
    }
    let answer = cli(
        &setup.test.url,
        &["users", "venue", &incomplete.user_id, "dydx"],
    )
    .await;
    assert!(answer.contains("trades on dydx"), "{answer}");
    let service = setup.serve(None).await;
    let store = setup.test.open().await;

    setup
        .signal(&service, Alert::new("both-1").size("0.01"))
        .await;
    let (status, body) = service
        .post_signal(
            &incomplete.webhook_token,
            &Alert::new("half-1").size("0.01").json(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events = setup.concluded(&store, 1).await;
    let half = Setup {
        user: incomplete,
        ..setup
    };
    let half_events = half.concluded(&store, 1).await;

    assert_eq!(count(&events, "OrderFilled"), 1, "{events:?}");
    let (trading_address, _) = account_of(TRADING_MNEMONIC);
    let orders = half.fake.orders().await;
    assert_eq!(orders.len(), 1, "only the complete key's order: {orders:?}");
    assert_eq!(orders[0]["signer"], trading_address.as_str());
    let fields = revealed(&events);
    assert!(!fields.iter().any(|f| f == "dydx_mnemonic"), "{fields:?}");
    let reasons = rejections(&half_events);
    assert_eq!(reasons.len(), 1, "{half_events:?}");
    assert!(
        reasons[0].contains("incomplete: dydx_owner_address is not set"),
        "{}",
        reasons[0]
    );
    let fields = revealed(&half_events);
    assert!(
        !fields
            .iter()
            .any(|f| f == "dydx_mnemonic" || f == "dydx_trading_mnemonic"),
        "no secret decrypted for an order that cannot be signed: {fields:?}"
    );
    service.stop().await;
}
on_both_stores!(a_permissioned_key_wins_over_a_mnemonic_and_an_incomplete_one_refuses);

/// A resting limit order and its cancel are stateful messages, for which the client selects no
/// authenticator by itself: both must still be the owner's, signed by the trading key with the
/// authenticator selected, or the chain refuses them (the order would not rest; the cancel of a
/// halt would leave it on the book).
async fn a_permissioned_keys_resting_order_rests_and_a_halt_cancels_it(backend: Backend) {
    let setup = Setup::new(
        backend,
        json!({ "message_filter": [PLACE_ORDER, CANCEL_ORDER], "subaccount_filter": [0] }),
    )
    .await;
    let service = setup
        .serve_with(
            None,
            &[
                "--resting-check-seconds",
                "1",
                "--limit-order-ttl-seconds",
                "3600",
            ],
        )
        .await;
    let store = setup.test.open().await;
    // The fake's oracle is at 65,000: a buy limited to 64,000 rests.
    let alert = Alert::new("rest-p-1")
        .size("0.01")
        .field("order_type", "limit")
        .field("price", "64000");
    setup.signal(&service, alert).await;
    let account = setup.user.user_id.clone();
    let kinds = |store: &Store| {
        let account = account.clone();
        let store = store.clone();
        async move {
            store
                .events()
                .load_account(&account)
                .await
                .expect("the account loads")
                .into_iter()
                .map(|event| event.event_type)
                .collect::<Vec<String>>()
        }
    };
    eventually("the order to rest", || async {
        let types = kinds(&store).await;
        types
            .iter()
            .any(|kind| kind == "OrderResting")
            .then_some(())
    })
    .await;
    let orders = setup.fake.orders().await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let (trading_address, _) = account_of(TRADING_MNEMONIC);
    assert_eq!(orders[0]["flags"], 64, "a long-term order: {orders:?}");
    assert_eq!(orders[0]["address"], setup.owner.as_str());
    assert_eq!(orders[0]["signer"], trading_address.as_str());
    assert_eq!(orders[0]["authenticators"], json!([setup.authenticator]));

    let answer = operator_cli(&setup.test.url, &["halt", &account, "--reason", "drill"]).await;
    assert!(answer.contains("halt"), "{answer}");
    eventually("the halt's cancel to end the order", || async {
        let types = kinds(&store).await;
        types
            .iter()
            .any(|kind| kind == "OrderExpired")
            .then_some(())
    })
    .await;
    let types = kinds(&store).await;
    assert!(!types.iter().any(|kind| kind == "OrderFilled"), "{types:?}");
    service.stop().await;
}
on_both_stores!(a_permissioned_keys_resting_order_rests_and_a_halt_cancels_it);
