//! The execution saga against exchanges and notifiers that fail the way real ones do: a response
//! lost after the order was taken, an exchange that stays down, a notification channel that is down.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Market};
use ledgerhook::exchange::PaperBook;
use ledgerhook::exchange::{Exchange, ExchangeError, OrderOutcome, OrderRequest, PaperExchange};
use ledgerhook::ingest::ReceiptStatus;
use ledgerhook::ledger::{LedgerError, LoadedAccount};
use ledgerhook::markets::MarketList;
use ledgerhook::notify::{LogNotifier, Notifier, NotifyError};
use ledgerhook::store::Store;
use ledgerhook::users::create_user;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::in_process::InProcess;
use crate::support::stores::{Backend, TestStore};

/// The paper exchange, except that the first `lost` placements reach the exchange but their
/// answer never comes back (a timeout after the order was accepted).
struct LosesResponses {
    inner: PaperExchange,
    lost: AtomicU32,
}

#[async_trait]
impl Exchange for LosesResponses {
    fn venue(&self) -> &'static str {
        "test"
    }

    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.inner.reference_price(market)
    }
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        let outcome = self.inner.place_order(order).await?;
        if self
            .lost
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ExchangeError::Unavailable(
                "timed out waiting for the answer".into(),
            ));
        }
        Ok(outcome)
    }
    async fn find_order(&self, id: &ClientOrderId) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.inner.find_order(id).await
    }
}

/// An exchange that cannot be reached at all.
struct Down {
    prices: PaperExchange,
}

#[async_trait]
impl Exchange for Down {
    fn venue(&self) -> &'static str {
        "test"
    }

    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.prices.reference_price(market)
    }
    async fn place_order(&self, _: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        Err(ExchangeError::Unavailable("connection refused".into()))
    }
    async fn find_order(&self, _: &ClientOrderId) -> Result<Option<OrderOutcome>, ExchangeError> {
        Err(ExchangeError::Unavailable("connection refused".into()))
    }
}

struct NotifierDown;

#[async_trait]
impl Notifier for NotifierDown {
    fn channel(&self) -> &'static str {
        "telegram"
    }
    async fn notify(&self, _: &str, _: &str) -> Result<(), NotifyError> {
        Err(NotifyError::Unavailable("502 Bad Gateway".into()))
    }
}

struct Harness {
    running: InProcess,
    account: String,
}

impl Harness {
    async fn start(
        backend: Backend,
        exchange: impl FnOnce(Store) -> Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        let test = TestStore::new(backend).await;
        let store = test.open().await;
        let exchange = exchange(store.clone());
        let running = InProcess::start(test, store, exchange, notifier).await;
        let account = create_user(&running.ledger, &running.vault, "t", "test", Utc::now())
            .await
            .expect("user")
            .user_id;
        Self { running, account }
    }

    async fn send(&self, body: &str) {
        let receipt = self
            .running
            .ingest
            .receive(&self.account, body.as_bytes(), Utc::now(), None)
            .await
            .expect("recorded");
        assert_eq!(receipt.status, ReceiptStatus::Accepted);
    }

    async fn event_types(&self) -> Vec<String> {
        self.running
            .store
            .events()
            .load_account(&self.account)
            .await
            .expect("load")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// The account's events once the saga has recorded a notification outcome.
    async fn when_concluded(&self) -> Vec<String> {
        eventually("the signal to be concluded", || async {
            let types = self.event_types().await;
            types
                .iter()
                .any(|t| t.starts_with("Notification"))
                .then_some(types)
        })
        .await
    }

    /// The account as the ledger holds it now.
    async fn loaded(&self) -> Result<LoadedAccount, LedgerError> {
        self.running.ledger.load(&self.account).await
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn paper(store: Store) -> PaperExchange {
    PaperExchange::new(
        store,
        MarketList::default(),
        PaperExchange::default_prices(),
    )
}

const ALERT: &str = r#"{"symbol":"ETHUSDT","side":"buy","size":"0.5","id":"s-1"}"#;

async fn a_lost_answer_is_recovered_by_asking_for_the_client_id(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(LosesResponses {
                inner: paper(store),
                lost: AtomicU32::new(2),
            })
        },
        Arc::new(LogNotifier),
    )
    .await;
    harness.send(ALERT).await;
    let types = harness.when_concluded().await;
    let filled = types.iter().filter(|t| *t == "OrderFilled").count();
    assert_eq!(filled, 1, "{types:?}");
    assert!(!types.contains(&"OrderFailed".to_owned()), "{types:?}");
    assert_eq!(
        PaperBook::of(&harness.running.store)
            .count()
            .await
            .expect("count"),
        1
    );
    harness.stop().await;
}
on_both_stores!(a_lost_answer_is_recovered_by_asking_for_the_client_id);

async fn an_exchange_that_stays_down_ends_in_failure_and_compensation(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(Down {
                prices: paper(store),
            })
        },
        Arc::new(LogNotifier),
    )
    .await;
    harness.send(ALERT).await;
    let types = harness.when_concluded().await;
    assert_eq!(
        &types[1..],
        [
            "SignalReceived",
            "RiskApproved",
            "OrderFailed",
            "RiskReservationReleased",
            "NotificationSent"
        ]
    );
    let account = harness.loaded().await.expect("load");
    assert_eq!(account.state.daily_volume.traded_usd.value(), Decimal::ZERO);
    assert!(account.state.positions.is_empty());
    assert!(account.state.in_flight.is_empty());
    harness.stop().await;
}
on_both_stores!(an_exchange_that_stays_down_ends_in_failure_and_compensation);

async fn a_failed_notification_is_recorded_and_never_undoes_the_trade(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| Arc::new(paper(store)),
        Arc::new(NotifierDown),
    )
    .await;
    harness.send(ALERT).await;
    let types = harness.when_concluded().await;
    assert_eq!(types.last().map(String::as_str), Some("NotificationFailed"));
    assert_eq!(types.iter().filter(|t| *t == "OrderFilled").count(), 1);
    let account = harness.loaded().await.expect("load");
    let eth = Market::parse("ETH-USD").expect("market");
    assert_eq!(
        account.state.positions.get(&eth).map(|p| p.size),
        Some(Decimal::new(5, 1))
    );
    assert!(account.state.in_flight.is_empty());
    harness.stop().await;
}
on_both_stores!(a_failed_notification_is_recorded_and_never_undoes_the_trade);

async fn consecutive_exchange_failures_halt_the_account(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(Down {
                prices: paper(store),
            })
        },
        Arc::new(LogNotifier),
    )
    .await;
    // The default limit halts after 3 orders in a row could not be placed.
    for id in ["f-1", "f-2", "f-3"] {
        harness
            .send(&Alert::new(id).symbol("ETH-USD").size("0.1").json())
            .await;
    }
    let halted = eventually("the automatic halt", || async {
        let account = harness.loaded().await.ok()?;
        account.state.halt.clone()
    })
    .await;
    assert_eq!(halted.by, "execution");
    let types = harness.event_types().await;
    assert_eq!(types.iter().filter(|t| *t == "OrderFailed").count(), 3);
    assert_eq!(types.iter().filter(|t| *t == "TradingHalted").count(), 1);
    let receipt = harness
        .running
        .ingest
        .receive(
            &harness.account,
            Alert::new("f-4")
                .symbol("ETH-USD")
                .size("0.1")
                .json()
                .as_bytes(),
            Utc::now(),
            None,
        )
        .await
        .expect("recorded");
    assert!(
        matches!(
            &receipt.status,
            ReceiptStatus::Rejected {
                reason: "halted",
                ..
            }
        ),
        "{receipt:?}"
    );
    harness.stop().await;
}
on_both_stores!(consecutive_exchange_failures_halt_the_account);
