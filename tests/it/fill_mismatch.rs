//! The real execution saga against an exchange whose fill reports cannot be trusted: another
//! market (the paper book handing back an older order under a reused client id), the other side,
//! more than was ordered, a price or size at the edge of `Decimal`. Each is recorded as a
//! `FillMismatch`, the account is halted and its trader told, its position is left as it was, and
//! the saga goes on working every other account without a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;

use aggregates::{AccountEvent, ClientOrderId, Fill, Market, RejectionReason, Side};
use ledgerhook::exchange::{Exchange, ExchangeError, OrderOutcome, OrderRequest, PaperExchange};
use ledgerhook::ingest::ReceiptStatus;
use ledgerhook::markets::MarketList;
use ledgerhook::notify::{Notifier, NotifyError};
use ledgerhook::users::create_user;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::in_process::InProcess;
use crate::support::stores::{Backend, TestStore};

/// Orders of this size are the ones the exchange misreports; every other order fills honestly.
const TAMPERED_SIZE: &str = "0.3";

/// How the exchange misreports a fill.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// The fill of another order: BTC-USD, 0.01 at 65033 (what the paper book handed back for a
    /// reused client order id).
    OtherMarket,
    OtherSide,
    /// Twice the order's size.
    Oversize,
    /// 7.9e28, about the largest price a Decimal holds.
    EdgePrice,
    ZeroPrice,
    /// `Decimal::MAX` base units.
    MaxSize,
}

impl Tamper {
    const ALL: [Tamper; 6] = [
        Tamper::OtherMarket,
        Tamper::OtherSide,
        Tamper::Oversize,
        Tamper::EdgePrice,
        Tamper::ZeroPrice,
        Tamper::MaxSize,
    ];

    fn apply(self, fill: &mut Fill) {
        match self {
            Tamper::OtherMarket => {
                fill.market = Market::parse("BTC-USD").expect("market");
                fill.price = Decimal::from(65033);
                fill.size = aggregates::Quantity::new(Decimal::new(1, 2)).expect("positive");
            }
            Tamper::OtherSide => {
                fill.side = match fill.side {
                    Side::Buy => Side::Sell,
                    Side::Sell => Side::Buy,
                }
            }
            Tamper::Oversize => {
                fill.size =
                    aggregates::Quantity::new(fill.size.value() * Decimal::TWO).expect("positive");
            }
            Tamper::EdgePrice => {
                fill.price =
                    Decimal::from_str_exact("79000000000000000000000000000").expect("decimal");
            }
            Tamper::ZeroPrice => fill.price = Decimal::ZERO,
            Tamper::MaxSize => {
                fill.size = aggregates::Quantity::new(Decimal::MAX).expect("positive");
            }
        }
    }
}

/// The paper exchange, except that it misreports the fills of `TAMPERED_SIZE` orders of the
/// accounts listed, each in its own way.
struct Misreporting {
    inner: PaperExchange,
    tampered: Mutex<HashMap<String, Tamper>>,
}

impl Misreporting {
    fn misreport(
        &self,
        order: &OrderRequest,
        mut outcome: Result<OrderOutcome, ExchangeError>,
    ) -> Result<OrderOutcome, ExchangeError> {
        let tamper = self
            .tampered
            .lock()
            .expect("not poisoned")
            .get(&order.account_id)
            .copied();
        if let (Some(tamper), Ok(OrderOutcome::Filled { fill, .. })) = (tamper, &mut outcome) {
            if order.size.to_string() == TAMPERED_SIZE {
                tamper.apply(fill);
            }
        }
        outcome
    }
}

#[async_trait]
impl Exchange for Misreporting {
    fn venue(&self) -> &'static str {
        "test"
    }

    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.inner.reference_price(market)
    }
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        let outcome = self.inner.place_order(order).await;
        self.misreport(order, outcome)
    }
    async fn place_orders(
        &self,
        orders: &[OrderRequest],
    ) -> Vec<Result<OrderOutcome, ExchangeError>> {
        let outcomes = self.inner.place_orders(orders).await;
        orders
            .iter()
            .zip(outcomes)
            .map(|(order, outcome)| self.misreport(order, outcome))
            .collect()
    }
    async fn find_order(&self, id: &ClientOrderId) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.inner.find_order(id).await
    }
}

/// Remembers what each trader was told.
#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Notifier for Inbox {
    fn channel(&self) -> &'static str {
        "inbox"
    }
    async fn notify(&self, account_id: &str, message: &str) -> Result<(), NotifyError> {
        self.messages
            .lock()
            .expect("not poisoned")
            .push((account_id.to_owned(), message.to_owned()));
        Ok(())
    }
}

impl Inbox {
    fn told(&self, account_id: &str) -> Vec<String> {
        self.messages
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(to, _)| to == account_id)
            .map(|(_, message)| message.clone())
            .collect()
    }
}

struct Harness {
    running: InProcess,
    exchange: Arc<Misreporting>,
    inbox: Arc<Inbox>,
}

impl Harness {
    async fn start(backend: Backend) -> Self {
        let test = TestStore::new(backend).await;
        let store = test.open().await;
        let exchange = Arc::new(Misreporting {
            inner: PaperExchange::new(
                store.clone(),
                MarketList::default(),
                PaperExchange::default_prices(),
            ),
            tampered: Mutex::new(HashMap::new()),
        });
        let inbox = Arc::new(Inbox::default());
        let running = InProcess::start(test, store, exchange.clone(), inbox.clone()).await;
        Self {
            running,
            exchange,
            inbox,
        }
    }

    async fn account(&self, name: &str) -> String {
        create_user(
            &self.running.ledger,
            &self.running.vault,
            name,
            "test",
            Utc::now(),
        )
        .await
        .expect("user")
        .user_id
    }

    async fn send(&self, account: &str, body: &str) -> ReceiptStatus {
        self.running
            .ingest
            .receive(account, body.as_bytes(), Utc::now(), None)
            .await
            .expect("recorded")
            .status
    }

    async fn events(&self, account: &str) -> Vec<AccountEvent> {
        self.running
            .store
            .events()
            .load_account(account)
            .await
            .expect("load")
            .into_iter()
            .map(|stored| serde_json::from_value(stored.payload).expect("an account event"))
            .collect()
    }

    /// The account's events once `count` notifications are recorded.
    async fn when_notified(&self, account: &str, count: usize) -> Vec<AccountEvent> {
        eventually("the trader to be told", || async {
            let events = self.events(account).await;
            let notified = events
                .iter()
                .filter(|e| matches!(e, AccountEvent::NotificationSent { .. }))
                .count();
            (notified >= count).then_some(events)
        })
        .await
    }

    async fn eth_position(&self, account: &str) -> Option<Decimal> {
        let eth = Market::parse("ETH-USD").expect("market");
        let loaded = self.running.ledger.load(account).await.expect("load");
        loaded.state.positions.get(&eth).map(|p| p.size)
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

async fn a_fill_that_is_not_the_orders_halts_the_account_and_books_nothing(backend: Backend) {
    let harness = Harness::start(backend).await;
    let honest = harness.account("honest").await;
    let mut victims = Vec::new();
    for tamper in Tamper::ALL {
        let account = harness.account(&format!("{tamper:?}")).await;
        harness
            .exchange
            .tampered
            .lock()
            .expect("not poisoned")
            .insert(account.clone(), tamper);
        victims.push((tamper, account));
    }
    // Each victim first trades honestly, so there is a position a bad fill could corrupt.
    for (_, account) in &victims {
        assert_eq!(
            harness
                .send(
                    account,
                    &Alert::new("first").symbol("ETH-USD").size("0.5").json()
                )
                .await,
            ReceiptStatus::Accepted
        );
    }
    for (_, account) in &victims {
        harness.when_notified(account, 1).await;
        assert_eq!(
            harness.eth_position(account).await,
            Some(Decimal::new(5, 1))
        );
    }
    // Then the exchange misreports: all in the saga's same pages, beside an honest account's.
    for (_, account) in &victims {
        assert_eq!(
            harness
                .send(
                    account,
                    &Alert::new("second")
                        .symbol("ETH-USD")
                        .size(TAMPERED_SIZE)
                        .json()
                )
                .await,
            ReceiptStatus::Accepted
        );
    }
    assert_eq!(
        harness
            .send(
                &honest,
                &Alert::new("h-1").symbol("ETH-USD").size("0.5").json()
            )
            .await,
        ReceiptStatus::Accepted
    );

    for (tamper, account) in &victims {
        let events = harness.when_notified(account, 2).await;
        let mismatch = events
            .iter()
            .find_map(|e| match e {
                AccountEvent::FillMismatch {
                    expected_market,
                    reported_market,
                    reason,
                    ..
                } => Some((expected_market.clone(), reported_market.clone(), reason)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{tamper:?}: no FillMismatch in {events:?}"));
        assert_eq!(mismatch.0.as_str(), "ETH-USD", "{tamper:?}");
        if matches!(tamper, Tamper::OtherMarket) {
            assert_eq!(mismatch.1.as_str(), "BTC-USD");
        }
        // Only the honest first order was booked.
        let fills = events
            .iter()
            .filter(|e| matches!(e, AccountEvent::OrderFilled { .. }))
            .count();
        assert_eq!(fills, 1, "{tamper:?}: {events:?}");
        assert!(
            events.iter().any(|e| matches!(
                e,
                AccountEvent::TradingHalted { by, .. } if by == "execution"
            )),
            "{tamper:?}: not halted: {events:?}"
        );
        assert_eq!(
            harness.eth_position(account).await,
            Some(Decimal::new(5, 1)),
            "{tamper:?}: the position moved"
        );
        let told = harness.inbox.told(account);
        assert!(
            told.iter()
                .any(|m| m.contains("not order") && m.contains("halted")),
            "{tamper:?}: the trader was told {told:?}"
        );
        // The next alert is answered as refused: the account is halted.
        let status = harness
            .send(
                account,
                &Alert::new("third").symbol("ETH-USD").size("0.5").json(),
            )
            .await;
        assert!(
            matches!(status, ReceiptStatus::Rejected { .. }),
            "{tamper:?}: {status:?}"
        );
        let last = harness.events(account).await.pop();
        assert!(
            matches!(
                last,
                Some(AccountEvent::SignalRejected {
                    reason: RejectionReason::Halted { .. },
                    ..
                })
            ),
            "{tamper:?}: {last:?}"
        );
    }

    // The saga kept working for everyone else, before and after the mismatches.
    harness.when_notified(&honest, 1).await;
    assert_eq!(
        harness
            .send(
                &honest,
                &Alert::new("h-2").symbol("ETH-USD").size("0.5").json()
            )
            .await,
        ReceiptStatus::Accepted
    );
    harness.when_notified(&honest, 2).await;
    assert_eq!(harness.eth_position(&honest).await, Some(Decimal::ONE));
    harness.stop().await;
}
on_both_stores!(a_fill_that_is_not_the_orders_halts_the_account_and_books_nothing);

/// What defect 1 saw: a client order id placed again for another order gets the first order's
/// fill back. The paper book must say which order that fill was (its market and side), so the
/// account can refuse it instead of booking it as the second order's.
async fn the_paper_book_reports_the_order_it_booked_not_the_one_asked(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let paper = PaperExchange::new(
        store,
        MarketList::default(),
        PaperExchange::default_prices(),
    );
    let order = |ticker: &str, side: Side, size: &str| OrderRequest {
        account_id: "a".to_owned(),
        client_order_id: ClientOrderId("lh-reused".to_owned()),
        market: Market::parse(ticker).expect("market"),
        side,
        size: aggregates::Quantity::new(Decimal::from_str_exact(size).expect("decimal"))
            .expect("positive"),
        reduce_only: false,
        order_type: aggregates::OrderType::Market,
        take_profit: None,
        stop_loss: None,
    };
    let first = paper
        .place_order(&order("BTC-USD", Side::Buy, "0.01"))
        .await
        .expect("placed");
    let again = paper
        .place_order(&order("ETH-USD", Side::Sell, "0.5"))
        .await
        .expect("placed");
    assert_eq!(again, first, "the book hands back the first order");
    let OrderOutcome::Filled { fill, .. } = again else {
        panic!("a fill, not {again:?}");
    };
    assert_eq!(fill.market.as_str(), "BTC-USD");
    assert_eq!(fill.side, Side::Buy);
    assert_eq!(fill.size.to_string(), "0.01");
}
on_both_stores!(the_paper_book_reports_the_order_it_booked_not_the_one_asked);
