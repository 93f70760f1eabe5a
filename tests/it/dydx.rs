//! The dYdX adapter (production code, the official client inside) against the fake venues binary:
//! what the fake's node received and what the adapter reported, fault by fault. Each test starts
//! its own fake on free ports.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::process::Child;

use aggregates::{ClientOrderId, Market, OrderType, Quantity, Side};
use async_trait::async_trait;
use chrono::Utc;

use ledgerhook::exchange::dydx::{
    venue_ids, CredentialError, DydxChain, DydxConfig, DydxCredentials, DydxExchange, DydxKey,
    InMemoryCredentials, Leg,
};
use ledgerhook::exchange::{
    Exchange, ExchangeError, OrderOutcome, OrderRequest, PaperBook, PaperExchange, StoredVenues,
    VenueRouter,
};
use ledgerhook::ingest::ReceiptStatus;
use ledgerhook::markets::MarketList;
use ledgerhook::notify::LogNotifier;
use ledgerhook::store::Store;
use ledgerhook::users::create_user;
use ledgerhook::vault::Field;

use crate::on_both_stores;
use crate::support::eventually;
use crate::support::in_process::InProcess;
use crate::support::stores::{Backend, TestStore};

/// The official client's published example phrase (a public testnet wallet, no funds of ours).
const TEST_MNEMONIC: &str = "mirror actor skill push coach wait confirm orchard lunch mobile \
    athlete gossip awake miracle matter bus reopen team ladder lazy list timber render wait";
const ACCOUNT: &str = "trader-1";

struct FakeVenues {
    _child: Child,
    indexer: String,
    node: String,
    http: reqwest::Client,
}

impl FakeVenues {
    async fn start() -> Self {
        let (child, addresses) = crate::support::fake_venues::spawn(&["--block-ms", "100"]).await;
        Self {
            _child: child,
            indexer: addresses.indexer,
            node: addresses.node,
            http: reqwest::Client::new(),
        }
    }

    fn exchange(&self) -> DydxExchange {
        let credentials = InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0);
        self.exchange_with(Arc::new(credentials))
    }

    fn exchange_with(&self, credentials: Arc<dyn DydxCredentials>) -> DydxExchange {
        self.exchange_recording(credentials, None)
    }

    fn exchange_recording(
        &self,
        credentials: Arc<dyn DydxCredentials>,
        sends: Option<Store>,
    ) -> DydxExchange {
        let mut config = DydxConfig::new(&self.indexer, &self.node, DydxChain::Testnet);
        config.request_timeout = Duration::from_millis(1_000);
        config.outcome_wait = Duration::from_secs(5);
        config.requests_per_second = std::num::NonZeroU32::new(200).expect("non-zero");
        DydxExchange::new(config, credentials, sends)
    }

    async fn set_faults(&self, faults: Value) {
        crate::support::fake_venues::set_faults(&self.http, &self.indexer, &faults).await;
    }

    async fn set_price(&self, market: &str, price: &str) {
        let response = self
            .http
            .post(format!("{}/_fake/prices", self.indexer))
            .json(&json!({ market: price }))
            .send()
            .await
            .expect("prices set");
        assert!(response.status().is_success());
    }

    async fn received(&self) -> Value {
        crate::support::fake_venues::received_orders(&self.http, &self.indexer).await
    }

    /// How many times the node received the order with this client order id.
    async fn sends(&self, order: &OrderRequest) -> u64 {
        let client_id = venue_ids(&order.client_order_id, Leg::Entry).client_id;
        self.received().await["sends"][client_id.to_string()]
            .as_u64()
            .unwrap_or(0)
    }
}

fn order(id: &str, market: &str, side: Side, size: &str) -> OrderRequest {
    OrderRequest {
        account_id: ACCOUNT.to_owned(),
        client_order_id: ClientOrderId(format!("lh-{id}")),
        market: Market::parse(market).expect("market"),
        side,
        size: Quantity::new(Decimal::from_str(size).expect("size")).expect("positive size"),
        reduce_only: false,
        order_type: OrderType::Market,
        take_profit: None,
        stop_loss: None,
    }
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

#[tokio::test]
async fn dydx_market_order_fills_once_at_the_fakes_price_and_moves_the_position() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("market-fills", "BTC-USD", Side::Buy, "0.01");

    let outcome = exchange.place_order(&buy).await.expect("placed");

    // 65,000 oracle, filled 2 bp above on the 1-dollar tick; taker fee 5 bp of the notional.
    let OrderOutcome::Filled { fill, .. } = outcome else {
        panic!("expected a fill, got {outcome:?}");
    };
    assert_eq!(fill.market.as_str(), "BTC-USD");
    assert_eq!(fill.side, Side::Buy);
    assert_eq!(fill.size.value(), decimal("0.01"));
    assert_eq!(fill.price, decimal("65013"));
    assert_eq!(fill.fee, decimal("0.325065"));

    let received = fake.received().await;
    let sent = &received["orders"][0];
    assert_eq!(sent["market"], "BTC-USD");
    assert_eq!(sent["side"], "BUY");
    assert_eq!(sent["size"], "0.01");
    // The slippage cap: the oracle price plus 1%, on the tick grid.
    assert_eq!(sent["price"], "65650");
    assert_eq!(sent["flags"], 0, "a short-term order");
    assert_eq!(sent["time_in_force"], "IOC");
    assert_eq!(fake.sends(&buy).await, 1);

    let positions = exchange.positions(ACCOUNT).await.expect("positions");
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].market.as_str(), "BTC-USD");
    assert_eq!(positions[0].size, decimal("0.01"));
    let fills = exchange.fills(ACCOUNT, None).await.expect("fills");
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].price, decimal("65013"));
    assert_eq!(
        exchange.reference_price(&buy.market),
        Some(decimal("65000")),
        "the oracle price is cached"
    );

    // Placing the same order again (a saga that crashed after placing) finds it: no second send.
    let again = exchange.place_order(&buy).await.expect("placed again");
    assert!(matches!(again, OrderOutcome::Filled { .. }), "{again:?}");
    assert_eq!(fake.sends(&buy).await, 1);
}

#[tokio::test]
async fn dydx_order_whose_answer_was_lost_is_found_by_its_client_id_and_not_sent_again() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let sell = order("lost-answer", "ETH-USD", Side::Sell, "0.5");
    fake.set_faults(json!({ "drop_response_after_accept": 1 }))
        .await;

    let first = exchange.place_order(&sell).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );

    // What the saga does before a retry.
    let found = exchange.find_placed(&sell).await.expect("looked up");
    let Some(OrderOutcome::Filled { fill, .. }) = found else {
        panic!("expected the accepted order, found {found:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.5"));
    assert_eq!(fill.side, Side::Sell);
    assert_eq!(fake.sends(&sell).await, 1);
    let retried = exchange.place_order(&sell).await.expect("placed");
    assert!(
        matches!(retried, OrderOutcome::Filled { .. }),
        "{retried:?}"
    );
    assert_eq!(fake.sends(&sell).await, 1);
}

#[tokio::test]
async fn dydx_partial_fill_is_reported_with_the_filled_size() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("partial", "SOL-USD", Side::Buy, "10");
    fake.set_faults(json!({ "partial_fill": "0.3" })).await;

    let outcome = exchange.place_order(&buy).await.expect("placed");

    let OrderOutcome::Filled { fill, .. } = outcome else {
        panic!("expected a partial fill, got {outcome:?}");
    };
    assert_eq!(fill.size.value(), decimal("3"), "3 of the 10 ordered");
    assert_eq!(fake.sends(&buy).await, 1);
}

#[tokio::test]
async fn dydx_rejection_is_reported_with_the_chains_code_and_log() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("rejected", "BTC-USD", Side::Buy, "0.01");
    fake.set_faults(json!({ "reject": 1 })).await;

    let outcome = exchange.place_order(&buy).await.expect("answered");

    let OrderOutcome::Rejected { reason } = outcome else {
        panic!("expected a rejection, got {outcome:?}");
    };
    assert!(reason.contains("10001"), "{reason}");
    assert!(reason.contains("equity tier limit"), "{reason}");
    assert_eq!(fake.sends(&buy).await, 1);
}

#[tokio::test]
async fn dydx_unreachable_or_refusing_venue_is_unavailable_and_the_order_goes_out_once() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let faults = [
        ("5xx", json!({ "status_5xx": 1, "scope": "broadcast" })),
        ("429", json!({ "rate_limited": 1, "scope": "broadcast" })),
        ("node down", json!({ "down": true, "scope": "node" })),
        ("down", json!({ "down": true })),
        (
            "indexer 5xx",
            json!({ "status_5xx": 5, "scope": "indexer" }),
        ),
    ];
    for (name, faults) in faults {
        let buy = order(&format!("unavailable-{name}"), "ETH-USD", Side::Buy, "0.1");
        fake.set_faults(faults).await;
        let first = exchange.place_order(&buy).await;
        assert!(
            matches!(first, Err(ExchangeError::Unavailable(_))),
            "{name}: {first:?}"
        );
        assert_eq!(
            fake.sends(&buy).await,
            0,
            "{name}: refused before the chain saw it"
        );

        // The saga's retry: ask, then place; the order goes out exactly once.
        fake.set_faults(json!({})).await;
        let found = exchange.find_placed(&buy).await.expect("looked up");
        assert_eq!(found, None, "{name}");
        let placed = exchange.place_order(&buy).await.expect("placed");
        assert!(
            matches!(placed, OrderOutcome::Filled { .. }),
            "{name}: {placed:?}"
        );
        assert_eq!(fake.sends(&buy).await, 1, "{name}");
    }
}

#[tokio::test]
async fn dydx_slow_node_is_unavailable_and_never_trades_twice() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("slow", "BTC-USD", Side::Buy, "0.002");
    // Slower than the adapter's 1 s request timeout.
    fake.set_faults(json!({ "slow_ms": 1_500, "scope": "broadcast" }))
        .await;

    let first = exchange.place_order(&buy).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );
    fake.set_faults(json!({})).await;
    let outcome = match exchange.find_placed(&buy).await.expect("looked up") {
        Some(found) => found,
        None => exchange.place_order(&buy).await.expect("placed"),
    };
    assert!(
        matches!(outcome, OrderOutcome::Filled { .. }),
        "{outcome:?}"
    );
    // The timed-out request was dropped with its stream: the order went out once, on the retry.
    assert_eq!(fake.sends(&buy).await, 1, "{}", fake.received().await);
    let positions = exchange.positions(ACCOUNT).await.expect("positions");
    assert_eq!(positions[0].size, decimal("0.002"), "traded exactly once");
}

#[tokio::test]
async fn dydx_take_profit_and_stop_loss_follow_the_fill_as_reduce_only_conditional_orders() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let mut buy = order("brackets", "ETH-USD", Side::Buy, "1");
    buy.take_profit = Some(decimal("3500"));
    buy.stop_loss = Some(decimal("3000"));

    let outcome = exchange.place_order(&buy).await.expect("placed");
    assert!(
        matches!(outcome, OrderOutcome::Filled { .. }),
        "{outcome:?}"
    );

    let received = fake.received().await;
    let orders = received["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 3, "{received}");
    for (leg, trigger, condition) in [(1, "3500", 2), (2, "3000", 1)] {
        let bracket = &orders[leg];
        assert_eq!(bracket["flags"], 32, "conditional");
        assert_eq!(bracket["side"], "SELL");
        assert_eq!(bracket["size"], "1");
        assert_eq!(bracket["reduce_only"], true);
        assert_eq!(bracket["trigger_price"], trigger);
        assert_eq!(bracket["condition_type"], condition);
    }
}

/// Every account holds the test wallet (the vault's place in the service).
struct EveryAccount;

#[async_trait]
impl DydxCredentials for EveryAccount {
    async fn wallet_for(&self, _: &str) -> Result<Option<DydxKey>, CredentialError> {
        Ok(Some(DydxKey::mnemonic(TEST_MNEMONIC, 0)))
    }
}

async fn event_types(running: &InProcess, account: &str) -> Vec<String> {
    running
        .store
        .events()
        .load_account(account)
        .await
        .expect("load")
        .into_iter()
        .map(|event| event.event_type)
        .collect()
}

/// The saga, the venue router and the dYdX adapter together: a user who chose dYdX has the signal
/// filled there, once; a user who did not stays on paper.
async fn a_signal_is_filled_on_dydx_and_a_paper_users_stays_on_paper(backend: Backend) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let dydx = fake.exchange_with(Arc::new(EveryAccount));
    dydx.refresh_markets().await.expect("markets read");
    let paper = PaperExchange::new(
        store.clone(),
        MarketList::default(),
        PaperExchange::default_prices(),
    );
    let router = VenueRouter::new(
        Arc::new(paper),
        Some(Arc::new(dydx)),
        Arc::new(StoredVenues(store.clone())),
    );
    let running = InProcess::start(test, store, Arc::new(router), Arc::new(LogNotifier)).await;
    let on_dydx = create_user(&running.ledger, &running.vault, "d", "test", Utc::now())
        .await
        .expect("user")
        .user_id;
    let on_paper = create_user(&running.ledger, &running.vault, "p", "test", Utc::now())
        .await
        .expect("user")
        .user_id;
    assert!(running
        .store
        .credentials()
        .set_venue(&on_dydx, "dydx")
        .await
        .expect("venue set"));

    let alert = r#"{"symbol":"ETHUSDT","side":"buy","size":"0.5","id":"s-1"}"#;
    for account in [&on_dydx, &on_paper] {
        let receipt = running
            .ingest
            .receive(account, alert.as_bytes(), Utc::now(), None)
            .await
            .expect("recorded");
        assert_eq!(receipt.status, ReceiptStatus::Accepted);
    }
    for account in [&on_dydx, &on_paper] {
        let types = eventually("the signal to be filled", || async {
            let types = event_types(&running, account).await;
            types
                .iter()
                .any(|t| t.starts_with("Notification"))
                .then_some(types)
        })
        .await;
        assert_eq!(
            types.iter().filter(|t| *t == "OrderFilled").count(),
            1,
            "{types:?}"
        );
    }

    let received = fake.received().await;
    let orders = received["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 1, "only the dYdX user's order: {received}");
    assert_eq!(orders[0]["market"], "ETH-USD");
    assert_eq!(orders[0]["size"], "0.5");
    assert_eq!(received["sends"].as_object().map(|s| s.len()), Some(1));
    assert_eq!(
        PaperBook::of(&running.store).count().await.expect("count"),
        1,
        "only the paper user's order"
    );
    running.stop().await;
}
on_both_stores!(a_signal_is_filled_on_dydx_and_a_paper_users_stays_on_paper);

/// A service restarted while its order was in flight (sent, the answer lost, the Indexer not
/// showing it yet) finds the send recorded and waits for the order instead of sending it again.
async fn a_restarted_service_waits_for_its_order_in_flight_instead_of_sending_it_again(
    backend: Backend,
) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let credentials = Arc::new(InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0));
    let buy = order("restarted", "BTC-USD", Side::Buy, "0.01");
    fake.set_faults(json!({ "drop_response_after_accept": 1, "indexer_lag_ms": 900 }))
        .await;

    let before = fake.exchange_recording(credentials.clone(), Some(store.clone()));
    let first = before.place_order(&buy).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );
    drop(before);

    let after = fake.exchange_recording(credentials, Some(store));
    let outcome = after.place_order(&buy).await.expect("placed");
    assert!(
        matches!(outcome, OrderOutcome::Filled { .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.sends(&buy).await, 1);
}
on_both_stores!(a_restarted_service_waits_for_its_order_in_flight_instead_of_sending_it_again);

/// The same for a resting (long-term) order: its send is recorded with its good-til time, and a
/// restarted service finds it resting instead of sending it again.
async fn a_restarted_service_finds_its_resting_order_instead_of_sending_it_again(backend: Backend) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let credentials = Arc::new(InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0));
    let mut buy = order("restarted-resting", "BTC-USD", Side::Buy, "0.01");
    buy.order_type = OrderType::Limit {
        price: decimal("60000"),
    };
    fake.set_faults(json!({ "drop_response_after_accept": 1, "indexer_lag_ms": 900 }))
        .await;

    let before = fake.exchange_recording(credentials.clone(), Some(store.clone()));
    let first = before.place_order(&buy).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );
    drop(before);
    let send = store
        .dydx_sends()
        .find(&buy.client_order_id.0)
        .await
        .expect("read")
        .expect("the send was recorded before it left");
    assert!(send.good_til_time.is_some_and(|until| until > Utc::now()));

    let after = fake.exchange_recording(credentials, Some(store));
    let outcome = after.place_order(&buy).await.expect("placed");
    assert!(
        matches!(outcome, OrderOutcome::Resting { .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.sends(&buy).await, 1);
}
on_both_stores!(a_restarted_service_finds_its_resting_order_instead_of_sending_it_again);

/// Another valid phrase (BIP-39's all-zero test vector): the wallet a trader changes to.
const OTHER_MNEMONIC: &str = "abandon abandon abandon abandon abandon abandon abandon abandon \
    abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
    abandon abandon abandon abandon art";

/// The account's position in `market` as the venue holds it for this wallet.
async fn position_on(fake: &FakeVenues, mnemonic: &str, market: &str) -> Decimal {
    let wallet = Arc::new(InMemoryCredentials::default().with(ACCOUNT, mnemonic, 0));
    let positions = fake
        .exchange_with(wallet)
        .positions(ACCOUNT)
        .await
        .expect("positions");
    positions
        .into_iter()
        .find(|position| position.market.to_string() == market)
        .map_or(Decimal::ZERO, |position| position.size)
}

/// The order reached the venue once, and its 0.01 BTC is on the wallet that sent it only.
async fn sent_once_and_held_by_the_old_wallet(fake: &FakeVenues, order: &OrderRequest) {
    assert_eq!(fake.sends(order).await, 1, "sent once, from the old wallet");
    assert_eq!(
        position_on(fake, TEST_MNEMONIC, "BTC-USD").await,
        decimal("0.01")
    );
    assert_eq!(
        position_on(fake, OTHER_MNEMONIC, "BTC-USD").await,
        Decimal::ZERO
    );
}

/// The order's answer is lost, the trader then changes their dYdX wallet, and the service
/// restarts: the order is looked up on the wallet that sent it, found filled there, and not sent
/// again from the new one.
async fn a_wallet_changed_after_a_lost_answer_does_not_send_the_order_again(backend: Backend) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let buy = order("wallet-changed", "BTC-USD", Side::Buy, "0.01");
    fake.set_faults(json!({ "drop_response_after_accept": 1, "indexer_lag_ms": 900 }))
        .await;
    let old_wallet = Arc::new(InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0));
    let before = fake.exchange_recording(old_wallet, Some(store.clone()));
    let first = before.place_order(&buy).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );
    drop(before);

    let new_wallet = Arc::new(InMemoryCredentials::default().with(ACCOUNT, OTHER_MNEMONIC, 0));
    let after = fake.exchange_recording(new_wallet, Some(store));
    let outcome = after.place_order(&buy).await.expect("placed");

    let OrderOutcome::Filled { fill, .. } = outcome else {
        panic!("the first send's fill, found where it was sent: {outcome:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.01"));
    sent_once_and_held_by_the_old_wallet(&fake, &buy).await;
}
on_both_stores!(a_wallet_changed_after_a_lost_answer_does_not_send_the_order_again);

/// A limit order rests on the book from the old wallet when the trader changes wallets: the
/// service still follows it there (its fill is learnt from the old wallet), and a cancel, which
/// only the old wallet's key could sign, is refused with the reason instead of cancelling an
/// order of the same id on the new wallet.
async fn a_resting_order_is_followed_on_the_wallet_that_sent_it(backend: Backend) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut buy = order("wallet-resting", "BTC-USD", Side::Buy, "0.01");
    buy.order_type = OrderType::Limit {
        price: decimal("60000"),
    };
    let old_wallet = Arc::new(InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0));
    let before = fake.exchange_recording(old_wallet, Some(store.clone()));
    let OrderOutcome::Resting {
        exchange_order_id, ..
    } = before.place_order(&buy).await.expect("placed")
    else {
        panic!("a limit under the price rests");
    };
    drop(before);

    let new_wallet = Arc::new(InMemoryCredentials::default().with(ACCOUNT, OTHER_MNEMONIC, 0));
    let after = fake.exchange_recording(new_wallet, Some(store));
    let cancel = after.cancel_resting(&buy).await;
    let Err(ExchangeError::Unavailable(reason)) = cancel else {
        panic!("the new key cannot cancel the old wallet's order: {cancel:?}");
    };
    assert!(
        reason.contains("does not sign for"),
        "the reason names why: {reason}"
    );
    let status = after
        .order_status(&buy, &exchange_order_id)
        .await
        .expect("status");
    assert!(
        matches!(status, Some(OrderOutcome::Resting { .. })),
        "still resting on the old wallet: {status:?}"
    );

    // The price falls through the limit: the order fills, on the old wallet.
    fake.set_price("BTC-USD", "59000").await;
    let filled = after
        .order_status(&buy, &exchange_order_id)
        .await
        .expect("status");
    let Some(OrderOutcome::Filled { fill, .. }) = filled else {
        panic!("the crossed order filled, learnt from the old wallet: {filled:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.01"));
    sent_once_and_held_by_the_old_wallet(&fake, &buy).await;
}
on_both_stores!(a_resting_order_is_followed_on_the_wallet_that_sent_it);

/// The trader replaces their dYdX wallet in the vault after the adapter has used the old one:
/// from the next lookup on, equity (what percent-sized alerts are sized from) and positions (what
/// reconciliation compares) are the new wallet's. Asking whether the wallet changed reads only
/// the vault's nonces: no reveal is recorded for it.
async fn a_wallet_replaced_in_the_vault_is_the_one_read_from_then_on(backend: Backend) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let paper = PaperExchange::new(
        store.clone(),
        MarketList::default(),
        PaperExchange::default_prices(),
    );
    let running =
        InProcess::start(test, store.clone(), Arc::new(paper), Arc::new(LogNotifier)).await;
    let trader = create_user(&running.ledger, &running.vault, "w", "test", Utc::now())
        .await
        .expect("user")
        .user_id;
    let vault = running.vault.clone();
    vault
        .seal(&trader, Field::DydxMnemonic, TEST_MNEMONIC)
        .await
        .expect("sealed");
    let exchange = fake.exchange_recording(Arc::new(vault.clone()), Some(store.clone()));
    let mut buy = order("vault-wallet", "BTC-USD", Side::Buy, "1");
    buy.account_id = trader.clone();
    let placed = exchange.place_order(&buy).await.expect("placed");
    assert!(matches!(placed, OrderOutcome::Filled { .. }), "{placed:?}");
    fake.set_price("BTC-USD", "75000").await;
    let first_equity = exchange.account_equity(&trader).await.expect("equity");
    assert!(
        first_equity > decimal("109000"),
        "1 BTC bought near 65,000 marked at 75,000: {first_equity}"
    );
    let reveals_before = reveals(&store, &trader).await;

    vault
        .seal(&trader, Field::DydxMnemonic, OTHER_MNEMONIC)
        .await
        .expect("sealed");
    let equity = exchange.account_equity(&trader).await.expect("equity");
    let positions = exchange.positions(&trader).await.expect("positions");
    assert_eq!(
        equity,
        decimal("100000"),
        "the new wallet's untouched collateral"
    );
    assert!(
        positions.is_empty(),
        "the new wallet holds nothing: {positions:?}"
    );
    assert_eq!(
        reveals(&store, &trader).await,
        reveals_before + 1,
        "one reveal to derive the new subaccount, none to notice the change"
    );
    // Unchanged since: the subaccount is remembered, nothing more is revealed.
    exchange.account_equity(&trader).await.expect("equity");
    assert_eq!(reveals(&store, &trader).await, reveals_before + 1);
    running.stop().await;
}
on_both_stores!(a_wallet_replaced_in_the_vault_is_the_one_read_from_then_on);

/// How many secret reveals the account's ledger records.
async fn reveals(store: &Store, account: &str) -> usize {
    crate::support::event_types(store, account)
        .await
        .iter()
        .filter(|kind| kind.as_str() == "CredentialAccessed")
        .count()
}

#[tokio::test]
async fn dydx_brackets_follow_a_fill_learnt_from_a_lookup_after_a_lost_answer() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let mut sell = order("brackets-lost", "SOL-USD", Side::Sell, "2");
    sell.stop_loss = Some(decimal("160"));
    fake.set_faults(json!({ "drop_response_after_accept": 1 }))
        .await;

    let first = exchange.place_order(&sell).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );
    let found = exchange.find_placed(&sell).await.expect("looked up");
    assert!(
        matches!(found, Some(OrderOutcome::Filled { .. })),
        "{found:?}"
    );
    // Asked again (a second retry): the stop-loss is not placed twice.
    exchange.find_placed(&sell).await.expect("looked up again");

    let received = fake.received().await;
    let orders = received["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 2, "the entry and one stop-loss: {received}");
    assert_eq!(orders[1]["flags"], 32);
    assert_eq!(orders[1]["side"], "BUY");
    assert_eq!(orders[1]["reduce_only"], true);
    assert_eq!(orders[1]["trigger_price"], "160");
}

#[tokio::test]
async fn dydx_a_burst_of_orders_is_paced_under_the_venues_rate_limit() {
    let fake = FakeVenues::start().await;
    let mut config = DydxConfig::new(&fake.indexer, &fake.node, DydxChain::Testnet);
    config.outcome_wait = Duration::from_secs(20);
    config.requests_per_second = std::num::NonZeroU32::new(5).expect("non-zero");
    let credentials = InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0);
    let exchange = DydxExchange::new(config, Arc::new(credentials), None);
    // Twice the adapter's two buckets (Indexer, node) at their fullest, with room to spare.
    fake.set_faults(json!({ "max_requests_per_second": 25 }))
        .await;
    let burst: Vec<OrderRequest> = (0..8)
        .map(|n| order(&format!("burst-{n}"), "ETH-USD", Side::Buy, "0.01"))
        .collect();

    let outcomes = exchange.place_orders(&burst).await;

    for outcome in &outcomes {
        assert!(
            matches!(outcome, Ok(OrderOutcome::Filled { .. })),
            "{outcome:?}"
        );
    }
    let received = fake.received().await;
    assert_eq!(received["rate_limited_answers"], 0, "{received}");
    assert_eq!(received["orders"].as_array().map(Vec::len), Some(8));
}

/// Through the binary: `serve --dydx-*` and `users venue` send a dYdX user's signal to the dYdX
/// adapter while a paper user's fills on paper. This dYdX user has no mnemonic in the vault, so
/// their order is refused before anything reaches the venue (the filled path, with a mnemonic set
/// through `credentials set`, is in dydx_faults.rs).
async fn serve_routes_each_user_to_the_venue_they_chose(backend: Backend) {
    use crate::support::alerts::Alert;
    use crate::support::service::{cli, create_user, replay, Options, Service};

    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let on_dydx = create_user(&test.url, "dydx trader").await;
    let on_paper = create_user(&test.url, "paper trader").await;
    let answer = cli(&test.url, &["users", "venue", &on_dydx.user_id, "dydx"]).await;
    assert!(answer.contains("trades on dydx"), "{answer}");
    let options = Options {
        args: vec![
            "--dydx-indexer-url".to_owned(),
            fake.indexer.clone(),
            "--dydx-node-url".to_owned(),
            fake.node.clone(),
        ],
        ..Options::default()
    };
    let service = Service::start(&test.url, options).await;
    for user in [&on_dydx, &on_paper] {
        let (status, body) = service
            .post_signal(&user.webhook_token, &Alert::new("v-1").size("0.01").json())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let concluded = |user_id: String| {
        let url = test.url.clone();
        async move {
            eventually("the signal to conclude", || async {
                let replayed = replay(&url, &user_id).await;
                replayed
                    .iter()
                    .any(|line| line["event_type"] == "NotificationSent")
                    .then_some(replayed)
            })
            .await
        }
    };
    let paper = concluded(on_paper.user_id.clone()).await;
    assert!(paper.iter().any(|line| line["event_type"] == "OrderFilled"));
    let dydx = concluded(on_dydx.user_id.clone()).await;
    let rejected = dydx
        .iter()
        .find(|line| line["event_type"] == "OrderRejected")
        .expect("the dYdX user's order is refused without keys");
    let reason = rejected["payload"]["OrderRejected"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("no dYdX credentials"), "{rejected}");
    assert_eq!(fake.received().await["orders"], json!([]));
    service.stop().await;
}
on_both_stores!(serve_routes_each_user_to_the_venue_they_chose);

#[tokio::test]
async fn dydx_limit_orders_fill_at_their_limit_or_rest_on_the_book_until_the_price_crosses() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let mut far = order("limit-far", "BTC-USD", Side::Buy, "0.01");
    far.order_type = OrderType::Limit {
        price: decimal("60000.7"),
    };
    let mut near = order("limit-near", "BTC-USD", Side::Buy, "0.01");
    near.order_type = OrderType::Limit {
        price: decimal("65100"),
    };

    let placed_at = Utc::now();
    let resting = exchange.place_order(&far).await.expect("answered");
    let filled = exchange.place_order(&near).await.expect("answered");

    let OrderOutcome::Resting {
        exchange_order_id,
        good_til,
        filled_so_far,
    } = resting
    else {
        panic!("a limit below the market rests: {resting:?}");
    };
    assert_eq!(filled_so_far, Decimal::ZERO);
    // The default lifetime: a day, to the second.
    let lifetime = good_til - placed_at;
    assert!(
        (chrono::Duration::hours(23)..=chrono::Duration::hours(25)).contains(&lifetime),
        "{good_til}"
    );
    let OrderOutcome::Filled { fill, .. } = filled else {
        panic!("a marketable limit fills: {filled:?}");
    };
    assert_eq!(fill.price, decimal("65013"));
    let received = fake.received().await;
    // The limit on the tick grid, rounded down for a buy: never above what was asked.
    assert_eq!(received["orders"][0]["price"], "60000");
    assert_eq!(received["orders"][0]["flags"], 64, "a long-term order");
    assert_eq!(received["orders"][0]["time_in_force"], "GTT");
    assert_eq!(
        received["orders"][0]["good_til_block_time"],
        good_til.timestamp()
    );
    assert_eq!(received["orders"][1]["price"], "65100");
    assert_eq!(received["orders"][1]["flags"], 0);
    assert_eq!(received["orders"][1]["time_in_force"], "IOC");

    // Asked again (a saga after a restart): it is found resting, not sent again.
    let again = exchange.place_order(&far).await.expect("answered");
    assert!(matches!(again, OrderOutcome::Resting { .. }), "{again:?}");
    let status = exchange
        .order_status(&far, &exchange_order_id)
        .await
        .expect("answered");
    assert!(
        matches!(status, Some(OrderOutcome::Resting { .. })),
        "{status:?}"
    );

    // The price falls through the limit: the order fills at the taker price, once.
    fake.set_price("BTC-USD", "59000").await;
    let status = exchange
        .order_status(&far, &exchange_order_id)
        .await
        .expect("answered");
    let Some(OrderOutcome::Filled { fill, .. }) = status else {
        panic!("the crossed order filled: {status:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.01"));
    assert_eq!(fill.price, decimal("59012"), "59,000 + 2 bp, on the tick");
    assert_eq!(fake.sends(&far).await, 1);
}

#[tokio::test]
async fn dydx_a_resting_order_that_expires_unfilled_says_so() {
    let fake = FakeVenues::start().await;
    let credentials = InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0);
    let mut config = DydxConfig::new(&fake.indexer, &fake.node, DydxChain::Testnet);
    config.request_timeout = Duration::from_millis(1_000);
    config.limit_order_lifetime = chrono::Duration::seconds(2);
    let exchange = DydxExchange::new(config, Arc::new(credentials), None);
    let mut sell = order("limit-expires", "ETH-USD", Side::Sell, "0.5");
    sell.order_type = OrderType::Limit {
        price: decimal("3500"),
    };

    let resting = exchange.place_order(&sell).await.expect("answered");
    let OrderOutcome::Resting {
        exchange_order_id, ..
    } = resting
    else {
        panic!("a sell above the market rests: {resting:?}");
    };

    let ended = eventually("the order to expire", || async {
        match exchange.order_status(&sell, &exchange_order_id).await {
            Ok(Some(OrderOutcome::Resting { .. })) => None,
            other => Some(other),
        }
    })
    .await;
    let Ok(Some(OrderOutcome::Expired { reason, .. })) = ended else {
        panic!("an unfilled order ends expired: {ended:?}");
    };
    assert!(reason.contains("unfilled"), "{reason}");
    assert_eq!(fake.sends(&sell).await, 1);
}

#[tokio::test]
async fn dydx_a_reduce_only_close_never_trades_past_flat() {
    let fake = FakeVenues::start().await;
    fake.set_price("ETH-USD", "3000").await;
    let exchange = fake.exchange();
    let buy = order("open", "ETH-USD", Side::Buy, "1");
    let mut close = order("close", "ETH-USD", Side::Sell, "2");
    close.reduce_only = true;

    let opened = exchange.place_order(&buy).await.expect("placed");
    let closed = exchange.place_order(&close).await.expect("placed");

    let OrderOutcome::Filled { fill, .. } = opened else {
        panic!("{opened:?}");
    };
    assert_eq!(
        fill.price,
        decimal("3000.6"),
        "the oracle price set through the fake"
    );
    let OrderOutcome::Filled { fill, .. } = closed else {
        panic!("{closed:?}");
    };
    assert_eq!(
        fill.size.value(),
        decimal("1"),
        "only the 1 held, of the 2 asked"
    );
    assert_eq!(fill.price, decimal("2999.4"));
    assert_eq!(fake.received().await["orders"][1]["reduce_only"], true);
    let positions = exchange.positions(ACCOUNT).await.expect("positions");
    assert!(positions.is_empty(), "flat: {positions:?}");
}

/// A market dYdX does not list is refused with a reason the trader can read, before anything is
/// signed or sent.
#[tokio::test]
async fn dydx_an_order_in_a_market_dydx_does_not_list_is_rejected_unsent() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("unlisted", "PEPE-USD", Side::Buy, "1000");

    let outcome = exchange.place_order(&buy).await.expect("answered");

    assert_eq!(
        outcome,
        OrderOutcome::Rejected {
            reason: "PEPE-USD is not listed on dYdX".to_owned()
        }
    );
    // A halt's cancel of it has no order id to name on the chain either.
    let cancel = exchange.cancel_resting(&buy).await;
    assert!(
        matches!(&cancel, Err(ExchangeError::Unavailable(m)) if m.contains("the market is not listed")),
        "{cancel:?}"
    );
    assert_eq!(fake.received().await["orders"], json!([]));
}

/// What the market's grid cannot express (a size under one step, a limit under one tick) is
/// refused saying why; the node never sees it, since the chain would refuse it anyway.
#[tokio::test]
async fn dydx_a_size_under_one_step_or_a_limit_under_one_tick_is_rejected_unsent() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let tiny = order("tiny", "BTC-USD", Side::Buy, "0.00005");
    let mut penny = order("penny", "BTC-USD", Side::Buy, "0.01");
    penny.order_type = OrderType::Limit {
        price: decimal("0.5"),
    };

    let tiny = exchange.place_order(&tiny).await.expect("answered");
    let penny = exchange.place_order(&penny).await.expect("answered");

    let OrderOutcome::Rejected { reason } = tiny else {
        panic!("a size under the step is refused: {tiny:?}");
    };
    assert!(
        reason.contains("below BTC-USD's step of 0.0001"),
        "{reason}"
    );
    assert_eq!(
        penny,
        OrderOutcome::Rejected {
            reason: "no valid price for BTC-USD on dYdX".to_owned()
        }
    );
    assert_eq!(fake.received().await["orders"], json!([]));
}

/// A limit at the oracle price is sent immediate-or-cancel (the price has reached it), but the
/// book fills buys 2 bp above the oracle: nothing fills, and the trader reads that no liquidity
/// was within the limit. A final answer, not a failure to retry.
#[tokio::test]
async fn dydx_an_ioc_limit_the_book_does_not_reach_is_rejected_as_nothing_filled() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let mut buy = order("ioc-unfilled", "BTC-USD", Side::Buy, "0.01");
    buy.order_type = OrderType::Limit {
        price: decimal("65000"),
    };

    let outcome = exchange.place_order(&buy).await.expect("answered");

    let OrderOutcome::Rejected { reason } = outcome else {
        panic!("an unfilled IOC order is refused: {outcome:?}");
    };
    assert!(reason.contains("nothing filled"), "{reason}");
    assert!(reason.contains("price limit 65000"), "{reason}");
    let received = fake.received().await;
    assert_eq!(received["orders"][0]["time_in_force"], "IOC", "{received}");
    assert_eq!(fake.sends(&buy).await, 1);
    let positions = exchange.positions(ACCOUNT).await.expect("positions");
    assert!(positions.is_empty(), "nothing traded: {positions:?}");
}

/// An account with no dYdX key: its order is refused saying so, and lookups answer as for an
/// account that holds nothing there; its equity, which sizes orders, is an error (never zero),
/// and a cancel cannot be signed.
#[tokio::test]
async fn dydx_an_account_without_a_key_is_refused_and_holds_nothing_there() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange_with(Arc::new(InMemoryCredentials::default()));
    let buy = order("keyless", "ETH-USD", Side::Buy, "0.1");

    let placed = exchange.place_order(&buy).await.expect("answered");

    assert_eq!(
        placed,
        OrderOutcome::Rejected {
            reason: "this account has no dYdX credentials".to_owned()
        }
    );
    assert_eq!(exchange.find_placed(&buy).await, Ok(None));
    assert_eq!(exchange.order_status(&buy, "an-order-id").await, Ok(None));
    assert_eq!(exchange.positions(ACCOUNT).await, Ok(Vec::new()));
    assert_eq!(exchange.fills(ACCOUNT, None).await, Ok(Vec::new()));
    let equity = exchange.account_equity(ACCOUNT).await;
    assert!(
        matches!(&equity, Err(ExchangeError::Unavailable(m)) if m.contains("no dYdX credentials")),
        "{equity:?}"
    );
    let cancel = exchange.cancel_resting(&buy).await;
    assert!(
        matches!(&cancel, Err(ExchangeError::Unavailable(m)) if m.contains("no usable dYdX credentials")),
        "{cancel:?}"
    );
    assert_eq!(fake.received().await["orders"], json!([]));
}

/// A stored phrase that is not 24 valid words, or a permissioned key whose owner is not a dYdX
/// address: nothing is sent, the error names the field to fix, and never quotes the phrase.
#[tokio::test]
async fn dydx_an_unreadable_stored_key_names_the_field_and_never_quotes_it() {
    let fake = FakeVenues::start().await;
    let credentials = InMemoryCredentials::default()
        .with("garbled", "correct horse battery staple zebra", 0)
        .with_permissioned("ownerless", "not-an-address", TEST_MNEMONIC, 1, 0);
    let exchange = fake.exchange_with(Arc::new(credentials));
    let mut garbled = order("garbled", "ETH-USD", Side::Buy, "0.1");
    garbled.account_id = "garbled".to_owned();
    let mut ownerless = order("ownerless", "ETH-USD", Side::Buy, "0.1");
    ownerless.account_id = "ownerless".to_owned();

    let garbled = exchange.place_order(&garbled).await;
    let ownerless = exchange.place_order(&ownerless).await;

    let Err(ExchangeError::Unavailable(message)) = garbled else {
        panic!("an unreadable phrase cannot sign: {garbled:?}");
    };
    assert!(
        message.contains("the stored dydx_mnemonic is not a valid 24-word phrase"),
        "{message}"
    );
    assert!(
        !message.contains("zebra"),
        "the phrase is never quoted: {message}"
    );
    let Err(ExchangeError::Unavailable(message)) = ownerless else {
        panic!("an owner that is no address cannot be traded for: {ownerless:?}");
    };
    assert!(
        message.contains("the stored dydx_owner_address is not a dYdX address"),
        "{message}"
    );
    assert_eq!(fake.received().await["orders"], json!([]));
}

/// A node slower than the adapter's deadline on every request, not only the broadcast: the
/// order fails as unavailable before it is sent, and the retry once the node answers again
/// sends it once.
#[tokio::test]
async fn dydx_a_node_that_never_answers_in_time_fails_the_order_unsent_and_the_retry_fills_once() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("node-slow", "ETH-USD", Side::Buy, "0.1");
    // Slower than the adapter's 1 s request timeout.
    fake.set_faults(json!({ "slow_ms": 1_500, "scope": "node" }))
        .await;

    let first = exchange.place_order(&buy).await;

    let Err(ExchangeError::Unavailable(message)) = first else {
        panic!("a silent node fails the attempt: {first:?}");
    };
    // The client's deadline and the adapter's are the same request timeout: either may end the
    // first node request.
    assert!(message.contains("dYdX node (latest block)"), "{message}");
    assert!(
        message.contains("timed out") || message.contains("no answer in time"),
        "{message}"
    );
    assert_eq!(fake.sends(&buy).await, 0, "{}", fake.received().await);
    fake.set_faults(json!({})).await;
    assert_eq!(exchange.find_placed(&buy).await, Ok(None));
    let placed = exchange.place_order(&buy).await.expect("placed");
    assert!(matches!(placed, OrderOutcome::Filled { .. }), "{placed:?}");
    assert_eq!(fake.sends(&buy).await, 1);
}

/// The node took the order (CheckTx passed) but no block included it: once its last block and
/// the Indexer's lag have passed it can never trade, so the adapter says so instead of waiting,
/// and sending it again is safe. It fills once; the position is the one order's.
#[tokio::test]
async fn dydx_an_order_no_block_included_is_reported_expired_and_the_resend_fills_once() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("never-included", "ETH-USD", Side::Buy, "0.1");
    fake.set_faults(json!({ "never_included": 1 })).await;

    let first = exchange.place_order(&buy).await;

    let Err(ExchangeError::Unavailable(message)) = first else {
        panic!("an order that never traded is not an outcome: {first:?}");
    };
    assert!(
        message.contains("the node took the order but it expired without being executed"),
        "{message}"
    );
    assert_eq!(fake.sends(&buy).await, 1);
    assert_eq!(exchange.find_placed(&buy).await, Ok(None));
    let placed = exchange.place_order(&buy).await.expect("placed");
    let OrderOutcome::Filled { fill, .. } = placed else {
        panic!("the resend fills: {placed:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.1"));
    assert_eq!(fake.sends(&buy).await, 2);
    let positions = exchange.positions(ACCOUNT).await.expect("positions");
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert_eq!(positions[0].size, decimal("0.1"), "traded exactly once");
}

/// The resting watcher asks by the venue's order id, which the ledger recorded: an answer about
/// another order (a record gone wrong) is refused rather than booked as this order's end, and an
/// id the Indexer does not know is unavailable, not "gone".
#[tokio::test]
async fn dydx_order_status_refuses_an_answer_about_another_order() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let first = order("status-first", "ETH-USD", Side::Buy, "0.1");
    let second = order("status-second", "ETH-USD", Side::Buy, "0.2");
    let first_id = match exchange.place_order(&first).await.expect("placed") {
        OrderOutcome::Filled {
            exchange_order_id, ..
        } => exchange_order_id,
        other => panic!("{other:?}"),
    };
    let second_id = match exchange.place_order(&second).await.expect("placed") {
        OrderOutcome::Filled {
            exchange_order_id, ..
        } => exchange_order_id,
        other => panic!("{other:?}"),
    };

    let crossed = exchange.order_status(&second, &first_id).await;
    let unknown = exchange.order_status(&second, "no-such-order").await;
    let own = exchange.order_status(&second, &second_id).await;

    assert!(
        matches!(&crossed, Err(ExchangeError::Unavailable(m))
            if m.contains("the Indexer answered with another order than the one asked")),
        "{crossed:?}"
    );
    assert!(
        matches!(&unknown, Err(ExchangeError::Unavailable(m)) if m.contains("Indexer (order)")),
        "{unknown:?}"
    );
    let Ok(Some(OrderOutcome::Filled { fill, .. })) = own else {
        panic!("its own id answers with its fill: {own:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.2"));
}

/// Asked by client id alone (the router's `find_order`), dYdX can only look up an order this
/// process sent: one whose answer was lost is found filled; any other is an error saying why,
/// never "not placed", which would let it be sent again.
#[tokio::test]
async fn dydx_a_lookup_by_client_id_alone_finds_only_an_order_this_process_sent() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let sell = order("by-client-id", "ETH-USD", Side::Sell, "0.5");
    fake.set_faults(json!({ "drop_response_after_accept": 1 }))
        .await;
    let first = exchange.place_order(&sell).await;
    assert!(
        matches!(first, Err(ExchangeError::Unavailable(_))),
        "{first:?}"
    );

    let found = exchange.find_order(&sell.client_order_id).await;
    let stranger = exchange
        .find_order(&ClientOrderId("lh-never-sent".to_owned()))
        .await;

    let Ok(Some(OrderOutcome::Filled { fill, .. })) = found else {
        panic!("the order in flight is found: {found:?}");
    };
    assert_eq!(fill.side, Side::Sell);
    assert_eq!(fill.size.value(), decimal("0.5"));
    assert!(
        matches!(&stranger, Err(ExchangeError::Unavailable(m))
            if m.contains("not one this process sent")),
        "{stranger:?}"
    );
    assert_eq!(fake.sends(&sell).await, 1);
}

/// A take-profit under one tick cannot be placed: the entry stands and is reported filled, the
/// stop-loss beside it is still placed, and nothing off the grid reaches the venue.
#[tokio::test]
async fn dydx_a_bracket_off_the_tick_grid_is_skipped_and_the_entry_and_other_bracket_stand() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let mut sell = order("bracket-off-grid", "BTC-USD", Side::Sell, "0.01");
    sell.take_profit = Some(decimal("0.4"));
    sell.stop_loss = Some(decimal("70000"));

    let outcome = exchange.place_order(&sell).await.expect("placed");

    assert!(
        matches!(outcome, OrderOutcome::Filled { .. }),
        "{outcome:?}"
    );
    let received = fake.received().await;
    let orders = received["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 2, "the entry and the stop-loss: {received}");
    assert_eq!(orders[1]["flags"], 32, "conditional");
    assert_eq!(orders[1]["condition_type"], 1, "a stop-loss");
    assert_eq!(orders[1]["side"], "BUY");
    assert_eq!(orders[1]["trigger_price"], "70000");
}

/// A short reads as a negative size (what reconciliation compares), and fills can be read for
/// one market.
#[tokio::test]
async fn dydx_a_short_reads_as_a_negative_position_and_fills_filter_by_market() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let eth = order("short-eth", "ETH-USD", Side::Sell, "0.5");
    let sol = order("long-sol", "SOL-USD", Side::Buy, "1");
    for placed in [&eth, &sol] {
        let outcome = exchange.place_order(placed).await.expect("placed");
        assert!(
            matches!(outcome, OrderOutcome::Filled { .. }),
            "{outcome:?}"
        );
    }

    let held = Exchange::positions(&exchange, ACCOUNT)
        .await
        .expect("positions");
    let eth_fills = exchange
        .fills(ACCOUNT, Some(&eth.market))
        .await
        .expect("fills");

    let expected: std::collections::BTreeMap<Market, Decimal> = [
        (eth.market.clone(), decimal("-0.5")),
        (sol.market.clone(), decimal("1")),
    ]
    .into_iter()
    .collect();
    assert_eq!(held, expected);
    assert_eq!(eth_fills.len(), 1, "{eth_fills:?}");
    assert_eq!(eth_fills[0].market, eth.market);
    assert_eq!(eth_fills[0].side, Side::Sell);
    assert_eq!(eth_fills[0].size, decimal("0.5"));
}

/// An Indexer answering numbers beyond any decimal's range (a corrupted answer): each read that
/// meets one is an error naming what was out of range, never a number the service would book,
/// size an order with, or take for "not placed". Once the answers are sound again, so are the
/// reads.
#[tokio::test]
async fn dydx_numbers_beyond_any_decimals_range_from_the_indexer_are_errors_not_values() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("out-of-range", "ETH-USD", Side::Buy, "0.5");
    let placed = exchange.place_order(&buy).await.expect("placed");
    assert!(matches!(placed, OrderOutcome::Filled { .. }), "{placed:?}");
    fake.set_faults(json!({ "misreport": "out_of_range" }))
        .await;

    let positions = exchange.positions(ACCOUNT).await;
    let equity = exchange.account_equity(ACCOUNT).await;
    let fills = exchange.fills(ACCOUNT, None).await;
    let found = exchange.find_placed(&buy).await;

    let unavailable = |answer: Result<(), ExchangeError>, what: &str| {
        assert!(
            matches!(&answer, Err(ExchangeError::Unavailable(m)) if m.contains(what)),
            "{what}: {answer:?}"
        );
    };
    unavailable(positions.map(drop), "position: size out of range");
    unavailable(equity.map(drop), "subaccount: equity out of range");
    unavailable(fills.map(drop), "fill: size out of range");
    unavailable(found.map(drop), "order: filled size out of range");
    fake.set_faults(json!({})).await;
    let positions = exchange.positions(ACCOUNT).await.expect("positions");
    assert_eq!(positions[0].size, decimal("0.5"));
    assert_eq!(
        exchange
            .account_equity(ACCOUNT)
            .await
            .map(|equity| equity > Decimal::ZERO),
        Ok(true)
    );
}

/// The Indexer shows an order's filled total before its fills: the adapter waits for the fills
/// instead of reporting a fill it cannot price, and reports the fill at the book's price, once.
#[tokio::test]
async fn dydx_a_filled_total_shown_before_its_fills_is_waited_for_and_priced_right() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let buy = order("fills-lag", "ETH-USD", Side::Buy, "0.5");
    fake.set_faults(json!({ "fills_lag_ms": 1_000 })).await;

    let outcome = exchange.place_order(&buy).await.expect("placed");

    let OrderOutcome::Filled { fill, .. } = outcome else {
        panic!("the fill, once its fills show: {outcome:?}");
    };
    assert_eq!(fill.size.value(), decimal("0.5"));
    assert_eq!(fill.price, decimal("3200.7"), "3,200 + 2 bp, on the tick");
    assert_eq!(fake.sends(&buy).await, 1);
}

/// The same for a resting order that fills when the price crosses it: until its fills show, the
/// watcher's question is answered "not indexed yet" (nothing recorded on a guess), then filled.
#[tokio::test]
async fn dydx_a_resting_order_filled_before_its_fills_show_is_not_indexed_yet_then_filled() {
    let fake = FakeVenues::start().await;
    let exchange = fake.exchange();
    let mut buy = order("rest-fills-lag", "BTC-USD", Side::Buy, "0.01");
    buy.order_type = OrderType::Limit {
        price: decimal("60000"),
    };
    let resting = exchange.place_order(&buy).await.expect("placed");
    let OrderOutcome::Resting {
        exchange_order_id, ..
    } = resting
    else {
        panic!("a limit below the market rests: {resting:?}");
    };
    // Long enough that the first question surely comes before the fills show.
    fake.set_faults(json!({ "fills_lag_ms": 5_000 })).await;
    fake.set_price("BTC-USD", "59000").await;

    let early = exchange.order_status(&buy, &exchange_order_id).await;
    assert!(
        matches!(&early, Err(ExchangeError::Unavailable(m)) if m.contains("not indexed yet")),
        "{early:?}"
    );
    let ended = eventually("the fills to show", || async {
        match exchange.order_status(&buy, &exchange_order_id).await {
            Ok(Some(OrderOutcome::Filled { fill, .. })) => Some(fill),
            _ => None,
        }
    })
    .await;
    assert_eq!(ended.size.value(), decimal("0.01"));
    assert_eq!(ended.price, decimal("59012"));
    assert_eq!(fake.sends(&buy).await, 1);
}

/// A send record this release cannot read (written by another release: a market it cannot
/// parse, a side it does not know, a block out of range) stops the order with an error naming
/// what is unreadable, rather than risk sending again an order that may still trade.
async fn an_unreadable_send_record_stops_the_order_instead_of_risking_a_second_send(
    backend: Backend,
) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let credentials = Arc::new(InMemoryCredentials::default().with(ACCOUNT, TEST_MNEMONIC, 0));
    let exchange = fake.exchange_recording(credentials, Some(store.clone()));
    let records = [
        ("btc/usd", "buy", 1_000_000, "market"),
        ("BTC-USD", "long-ish", 1_000_000, "side"),
        ("BTC-USD", "buy", -1, "block"),
    ];
    for (n, (market, side, block, unreadable)) in records.into_iter().enumerate() {
        let buy = order(&format!("unreadable-{n}"), "BTC-USD", Side::Buy, "0.01");
        store
            .dydx_sends()
            .record(&ledgerhook::store::DydxSend {
                client_order_id: buy.client_order_id.0.clone(),
                account_id: ACCOUNT.to_owned(),
                market: market.to_owned(),
                side: side.to_owned(),
                good_til_block: block,
                good_til_time: None,
                sent_at: Utc::now(),
                address: None,
                subaccount_number: None,
            })
            .await
            .expect("recorded");

        let placed = exchange.place_order(&buy).await;

        assert!(
            matches!(&placed, Err(ExchangeError::Unavailable(m))
                if m.contains(&format!("send record: unreadable {unreadable}"))),
            "{unreadable}: {placed:?}"
        );
    }
    assert_eq!(fake.received().await["orders"], json!([]));
}
on_both_stores!(an_unreadable_send_record_stops_the_order_instead_of_risking_a_second_send);
