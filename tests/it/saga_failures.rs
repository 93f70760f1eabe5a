//! The saga's failure handling, as the trader and the venue see it: a signal abandoned at its
//! deadline, the halt after failures in a row and its message, a partial fill booked as such, a
//! position left unprotected closed once with a reduce-only order, and two `serve` instances on
//! one PostgreSQL sending each approval to the venue exactly once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Market, Quantity};
use ledgerhook::exchange::{
    Exchange, ExchangeError, OrderOutcome, OrderRequest, PaperBook, PaperExchange,
    PAPER_UNAVAILABLE_VARIABLE,
};
use ledgerhook::execution::RetryPolicy;
use ledgerhook::ingest::ReceiptStatus;
use ledgerhook::ledger::LoadedAccount;
use ledgerhook::markets::MarketList;
use ledgerhook::notify::{Notifier, NotifyError};
use ledgerhook::store::Store;
use ledgerhook::users::create_user;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::event_types;
use crate::support::event_types_but_notices;
use crate::support::eventually;
use crate::support::in_process::{InProcess, Policies};
use crate::support::service::{self, Options, Service};
use crate::support::stores::{Backend, TestStore};

fn paper(store: Store) -> PaperExchange {
    PaperExchange::new(
        store,
        MarketList::default(),
        PaperExchange::default_prices(),
    )
}

/// Keeps every message, as the trader would read them.
#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<String>>,
}

impl Inbox {
    fn read(&self) -> Vec<String> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for Inbox {
    fn channel(&self) -> &'static str {
        "inbox"
    }
    async fn notify(&self, _: &str, message: &str) -> Result<(), NotifyError> {
        if let Ok(mut messages) = self.messages.lock() {
            messages.push(message.to_owned());
        }
        Ok(())
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

/// The paper exchange, except that every order fills only half (an IOC order meeting too little
/// liquidity), as a venue adapter reports it.
struct HalfFills {
    inner: PaperExchange,
}

fn halved(outcome: OrderOutcome) -> OrderOutcome {
    match outcome {
        OrderOutcome::Filled {
            exchange_order_id,
            mut fill,
        } => {
            let half = fill.size.value() / Decimal::TWO;
            let (Ok(filled), Ok(unfilled)) = (Quantity::new(half), Quantity::new(half)) else {
                return OrderOutcome::Rejected {
                    reason: "too small to halve".into(),
                };
            };
            fill.size = filled;
            OrderOutcome::PartiallyFilled {
                exchange_order_id,
                fill,
                unfilled,
            }
        }
        other => other,
    }
}

#[async_trait]
impl Exchange for HalfFills {
    fn venue(&self) -> &'static str {
        "test"
    }

    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.inner.reference_price(market)
    }
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        self.inner.place_order(order).await.map(halved)
    }
    async fn find_order(&self, id: &ClientOrderId) -> Result<Option<OrderOutcome>, ExchangeError> {
        Ok(self.inner.find_order(id).await?.map(halved))
    }
}

/// The paper exchange, except that the stop-loss of every entry is refused after the entry
/// filled; reduce-only closes go through.
struct NoBrackets {
    inner: PaperExchange,
}

fn unprotected(outcome: OrderOutcome) -> OrderOutcome {
    match outcome {
        OrderOutcome::Filled {
            exchange_order_id,
            fill,
        } => OrderOutcome::FilledUnprotected {
            exchange_order_id,
            fill,
            reason: "the stop-loss order was refused: trigger price too close".into(),
        },
        other => other,
    }
}

#[async_trait]
impl Exchange for NoBrackets {
    fn venue(&self) -> &'static str {
        "test"
    }

    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.inner.reference_price(market)
    }
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        let outcome = self.inner.place_order(order).await?;
        Ok(if order.reduce_only {
            outcome
        } else {
            unprotected(outcome)
        })
    }
    async fn find_order(&self, id: &ClientOrderId) -> Result<Option<OrderOutcome>, ExchangeError> {
        let found = self.inner.find_order(id).await?;
        Ok(if id.0.ends_with("-close") {
            found
        } else {
            found.map(unprotected)
        })
    }
}

struct Harness {
    running: InProcess,
    account: String,
    inbox: Arc<Inbox>,
}

impl Harness {
    async fn start(
        backend: Backend,
        exchange: impl FnOnce(Store) -> Arc<dyn Exchange>,
        retry: RetryPolicy,
    ) -> Self {
        let test = TestStore::new(backend).await;
        let store = test.open().await;
        let exchange = exchange(store.clone());
        let inbox = Arc::new(Inbox::default());
        let notifier: Arc<dyn Notifier> = inbox.clone();
        let running =
            InProcess::start_with(test, store, exchange, notifier, Policies::placement(retry))
                .await;
        let account = create_user(&running.ledger, &running.vault, "t", "test", Utc::now())
            .await
            .expect("user")
            .user_id;
        Self {
            running,
            account,
            inbox,
        }
    }

    async fn send(&self, alert: &Alert) {
        let receipt = self
            .running
            .ingest
            .receive(&self.account, alert.json().as_bytes(), Utc::now(), None)
            .await
            .expect("recorded");
        assert_eq!(receipt.status, ReceiptStatus::Accepted);
    }

    /// The account's events once `n` signals were told to the trader.
    async fn when_notified(&self, n: usize) -> Vec<String> {
        eventually(&format!("{n} notifications"), || async {
            let types = event_types(&self.running.store, &self.account).await;
            (types
                .iter()
                .filter(|t| t.starts_with("Notification"))
                .count()
                >= n)
                .then_some(types)
        })
        .await
    }

    async fn loaded(&self) -> LoadedAccount {
        self.running.ledger.load(&self.account).await.expect("load")
    }
}

fn fast(max_attempts: u32, deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        deadline,
    }
}

fn eth(size: &str, id: &str) -> Alert {
    Alert::new(id).symbol("ETH-USD").size(size)
}

async fn an_exchange_down_past_the_deadline_abandons_the_signal(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(Down {
                prices: paper(store),
            })
        },
        fast(u32::MAX, Duration::from_secs(1)),
    )
    .await;
    harness.send(&eth("0.5", "late-1")).await;
    let types = harness.when_notified(1).await;
    assert_eq!(
        &types[1..],
        [
            "SignalReceived",
            "RiskApproved",
            "ExecutionAbandoned",
            "RiskReservationReleased",
            "NotificationSent"
        ]
    );
    let account = harness.loaded().await;
    assert_eq!(account.state.daily_volume.traded_usd.value(), Decimal::ZERO);
    assert!(account.state.positions.is_empty());
    assert!(account.state.in_flight.is_empty());
    let told = harness.inbox.read();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with("⌛ Order abandoned at its deadline: BUY 0.5 ETH-USD")
            && told[0].contains("deadline of 1 s")
            && told[0].contains("given back"),
        "{told:?}"
    );
    harness.running.stop().await;
}
on_both_stores!(an_exchange_down_past_the_deadline_abandons_the_signal);

async fn failures_in_a_row_halt_the_account_and_the_trader_is_told(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(Down {
                prices: paper(store),
            })
        },
        fast(2, Duration::from_secs(60)),
    )
    .await;
    for id in ["f-1", "f-2", "f-3"] {
        harness.send(&eth("0.1", id)).await;
    }
    let types = harness.when_notified(3).await;
    assert_eq!(types.iter().filter(|t| *t == "OrderFailed").count(), 3);
    assert_eq!(types.iter().filter(|t| *t == "TradingHalted").count(), 1);
    let account = harness.loaded().await;
    assert_eq!(
        account.state.halt.map(|halt| halt.by),
        Some("execution".to_owned())
    );
    let told = harness.inbox.read();
    assert!(
        told.iter()
            .any(|m| m
                .contains("Trading halted by execution: 3 orders in a row could not be placed")),
        "{told:?}"
    );
    harness.running.stop().await;
}
on_both_stores!(failures_in_a_row_halt_the_account_and_the_trader_is_told);

async fn a_partial_fill_books_only_what_filled(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(HalfFills {
                inner: paper(store),
            })
        },
        RetryPolicy::default(),
    )
    .await;
    harness.send(&eth("0.5", "p-1")).await;
    let types = harness.when_notified(1).await;
    assert_eq!(
        &types[3..],
        [
            "OrderSubmitted",
            "OrderPartiallyFilled",
            "PositionOpened",
            "RiskReservationReleased",
            "NotificationSent"
        ]
    );
    let account = harness.loaded().await;
    let eth = Market::parse("ETH-USD").expect("market");
    assert_eq!(
        account.state.positions.get(&eth).map(|p| p.size),
        Some(Decimal::new(25, 2))
    );
    // Approved at 0.5 × 3,200; half of it given back.
    assert_eq!(
        account.state.daily_volume.traded_usd.value(),
        Decimal::from(800)
    );
    let told = harness.inbox.read();
    assert!(
        told[0].starts_with("◐ Partially filled: BUY 0.25 ETH-USD at ")
            && told[0].contains("Not filled: 0.25"),
        "{told:?}"
    );
    harness.running.stop().await;
}
on_both_stores!(a_partial_fill_books_only_what_filled);

async fn an_unprotected_position_is_closed_once_reduce_only(backend: Backend) {
    let harness = Harness::start(
        backend,
        |store| {
            Arc::new(NoBrackets {
                inner: paper(store),
            })
        },
        RetryPolicy::default(),
    )
    .await;
    harness
        .send(&eth("0.5", "u-1").field("stop_loss", "3000"))
        .await;
    let types = harness.when_notified(1).await;
    assert_eq!(
        &types[3..],
        [
            "OrderSubmitted",
            "OrderFilled",
            "PositionOpened",
            "CompensationRequired",
            "PositionCompensated",
            "PositionClosed",
            "NotificationSent"
        ]
    );
    let account = harness.loaded().await;
    let eth = Market::parse("ETH-USD").expect("market");
    assert_eq!(
        account.state.positions.get(&eth).map(|p| p.size),
        Some(Decimal::ZERO)
    );
    assert!(account.state.halt.is_none());
    // The entry and its close, each sent once.
    let sent = PaperBook::of(&harness.running.store)
        .placements()
        .await
        .expect("placements");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|(_, sends)| *sends == 1), "{sent:?}");
    assert!(
        sent.iter().any(|(id, _)| id.ends_with("-close")),
        "{sent:?}"
    );
    // Told once, about the close.
    let told = harness.inbox.read();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("Closed with a reduce-only SELL 0.5 ETH-USD")
            && told[0].contains("Position now: flat in ETH-USD"),
        "{told:?}"
    );
    harness.running.stop().await;
}
on_both_stores!(an_unprotected_position_is_closed_once_reduce_only);

/// Two `serve` processes on one PostgreSQL database: the one holding the saga's lease dies right
/// after the venue took a page of orders and before the ledger recorded them; the other takes the
/// lease over, reads the page again, and finds the orders instead of sending them again. Every
/// approval reaches the paper venue exactly once (it counts every send of a client id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_send_each_approval_to_the_venue_exactly_once() {
    let test = TestStore::new(Backend::Postgres).await;
    let user = service::create_user(&test.url, "twin").await;
    let store = test.open().await;
    let holder = Service::start(
        &test.url,
        Options {
            crash_after_placement: true,
            ..Options::default()
        },
    )
    .await;
    // The standby starts only once the first holds the saga's lease.
    eventually("the first instance to hold the saga's lease", || async {
        let probe = store.try_lease("execution").await.expect("lease");
        probe.is_none().then_some(())
    })
    .await;
    let standby = Service::start(&test.url, Options::default()).await;
    let alerts = 8;
    for n in 0..alerts {
        let (status, body) = standby
            .post_signal(
                &user.webhook_token,
                &Alert::new(format!("twin-{n}")).size("0.01").json(),
            )
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{body}"
        );
    }
    holder.wait_for_crash().await;
    let events = eventually("every signal to be told", || async {
        let events = event_types(&store, &user.user_id).await;
        (events.iter().filter(|e| *e == "NotificationSent").count() >= alerts).then_some(events)
    })
    .await;
    let count = |kind: &str| events.iter().filter(|e| *e == kind).count();
    assert_eq!(count("RiskApproved"), alerts);
    assert_eq!(count("OrderSubmitted"), alerts);
    assert_eq!(count("OrderFilled"), alerts);
    let sent = PaperBook::of(&store)
        .placements()
        .await
        .expect("placements");
    assert_eq!(sent.len(), alerts, "one order per approval: {sent:?}");
    assert!(
        sent.iter().all(|(_, sends)| *sends == 1),
        "each sent exactly once: {sent:?}"
    );
    standby.stop().await;
}

fn paper_unreachable(args: &[&str]) -> Options {
    Options {
        env: vec![(PAPER_UNAVAILABLE_VARIABLE.to_owned(), "1".to_owned())],
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..Options::default()
    }
}

async fn get(service: &Service, path: &str, key: &str) -> (u16, serde_json::Value) {
    let request = service
        .client()
        .get(format!("{}{path}", service.base_url))
        .bearer_auth(key);
    service.send(request).await
}

/// The real binary with its venue unreachable: three orders in a row that cannot be placed halt
/// the account (by `execution`), and the next alert is refused for it.
async fn an_unreachable_venue_halts_the_account_after_three_failures(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = service::create_user(&test.url, "olga").await;
    let service = Service::start(&test.url, paper_unreachable(&[])).await;
    for n in 0..3 {
        let (status, body) = service
            .post_signal(
                &user.webhook_token,
                &Alert::new(format!("down-{n}")).size("0.01").json(),
            )
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{body}"
        );
    }
    let store = test.open().await;
    let events = eventually("the three failures to be told", || async {
        let events = event_types(&store, &user.user_id).await;
        (events.iter().filter(|e| *e == "NotificationSent").count() >= 3).then_some(events)
    })
    .await;
    assert_eq!(events.iter().filter(|e| *e == "OrderFailed").count(), 3);
    assert_eq!(events.iter().filter(|e| *e == "TradingHalted").count(), 1);
    let (status, refused) = service
        .post_signal(
            &user.webhook_token,
            &Alert::new("down-4").size("0.01").json(),
        )
        .await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(
        (refused["status"].as_str(), refused["reason"].as_str()),
        (Some("rejected"), Some("halted")),
        "{refused}"
    );
    // The trader's signal status says who halted the account and why.
    let refused_id = refused["signal_id"]
        .as_str()
        .expect("a signal id")
        .to_owned();
    let signal = eventually("the refused signal's status", || async {
        let path = format!("/api/signals/{refused_id}");
        let (status, signal) = get(&service, &path, &user.api_key).await;
        (status == 200 && signal["outcome"] == "halted").then_some(signal)
    })
    .await;
    let detail = signal["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("trading halted by execution: 3 orders in a row could not be placed"),
        "{signal}"
    );
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 0);
    service.stop().await;
}
on_both_stores!(an_unreachable_venue_halts_the_account_after_three_failures);

/// The real binary with its venue unreachable and a one-second deadline: the signal is abandoned,
/// its volume given back, and the trader's signal status says so.
async fn a_signal_past_its_deadline_is_abandoned(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = service::create_user(&test.url, "pavel").await;
    let service = Service::start(
        &test.url,
        paper_unreachable(&["--order-deadline-seconds", "1"]),
    )
    .await;
    let (status, body) = service
        .post_signal(
            &user.webhook_token,
            &Alert::new("slow-1").size("0.01").json(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let signal_id = body["signal_id"].as_str().expect("a signal id").to_owned();
    let store = test.open().await;
    let events = eventually("the abandoned signal to be told", || async {
        let events = event_types(&store, &user.user_id).await;
        events
            .iter()
            .any(|e| e == "NotificationSent")
            .then_some(events)
    })
    .await;
    assert_eq!(
        &events[events.len() - 3..],
        [
            "ExecutionAbandoned",
            "RiskReservationReleased",
            "NotificationSent"
        ]
    );
    let signal = eventually("the signal's status to say abandoned", || async {
        let (status, signal) = get(
            &service,
            &format!("/api/signals/{signal_id}"),
            &user.api_key,
        )
        .await;
        (status == 200 && signal["outcome"] == "abandoned").then_some(signal)
    })
    .await;
    assert!(signal.to_string().contains("deadline of 1 s"), "{signal}");
    service.stop().await;
}
on_both_stores!(a_signal_past_its_deadline_is_abandoned);

/// The venue took the order, the process died before the ledger recorded it, and an operator
/// halted the account meanwhile. The halt must not record "cancelled before placement" for an
/// order the venue filled: the resumed saga finds it and records the fill.
async fn a_halt_after_a_lost_placement_records_the_fill_not_a_cancellation(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = service::create_user(&test.url, "quinn").await;
    let crashing = Service::start(
        &test.url,
        Options {
            crash_after_placement: true,
            ..Options::default()
        },
    )
    .await;
    let (status, _) = crashing
        .post_signal(
            &user.webhook_token,
            &Alert::new("lost-1").size("0.01").json(),
        )
        .await;
    assert_eq!(status, 200);
    crashing.wait_for_crash().await;
    service::operator_cli(
        &test.url,
        &["halt", &user.user_id, "--reason", "margin call"],
    )
    .await;
    let resumed = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    let events = eventually("the signal to be told", || async {
        let events = event_types_but_notices(&store, &user.user_id).await;
        events
            .iter()
            .any(|e| e == "NotificationSent")
            .then_some(events)
    })
    .await;
    assert_eq!(
        events,
        [
            "AccountOpened",
            "SignalReceived",
            "RiskApproved",
            "TradingHalted",
            "OrderSubmitted",
            "OrderFilled",
            "PositionOpened",
            "NotificationSent"
        ]
    );
    let sent = PaperBook::of(&store)
        .placements()
        .await
        .expect("placements");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, 1, "sent once: {sent:?}");
    resumed.stop().await;
}
on_both_stores!(a_halt_after_a_lost_placement_records_the_fill_not_a_cancellation);

/// A signal approved while no instance executed, whose deadline passed before one could: it is
/// abandoned without reaching the venue (a market order sent that late is another trade), its
/// volume given back, and the trader's signal status says why.
async fn an_approval_whose_deadline_passed_before_execution_is_abandoned_unsent(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = service::create_user(&test.url, "quentin").await;
    let ingest_only = Service::start(&test.url, Options::ingest_only()).await;
    let (status, body) = ingest_only
        .post_signal(
            &user.webhook_token,
            &Alert::new("late-1").size("0.01").json(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answered_at = Utc::now();
    let signal_id = body["signal_id"].as_str().expect("a signal id").to_owned();
    ingest_only.stop().await;
    // Approved before the answer: one second after it, the 1 s deadline has surely passed.
    eventually("the deadline to pass", || async {
        (Utc::now() > answered_at + chrono::Duration::seconds(1)).then_some(())
    })
    .await;

    let service = Service::start(
        &test.url,
        Options {
            args: vec!["--order-deadline-seconds".to_owned(), "1".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let store = test.open().await;
    let events = eventually("the abandoned signal to be told", || async {
        let events = event_types(&store, &user.user_id).await;
        events
            .iter()
            .any(|e| e == "NotificationSent")
            .then_some(events)
    })
    .await;

    assert_eq!(
        &events[events.len() - 3..],
        [
            "ExecutionAbandoned",
            "RiskReservationReleased",
            "NotificationSent"
        ]
    );
    let signal = eventually("the signal's status to say abandoned", || async {
        let path = format!("/api/signals/{signal_id}");
        let (status, signal) = get(&service, &path, &user.api_key).await;
        (status == 200 && signal["outcome"] == "abandoned").then_some(signal)
    })
    .await;
    assert!(
        signal
            .to_string()
            .contains("passed before the order was sent"),
        "{signal}"
    );
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 0);
    service.stop().await;
}
on_both_stores!(an_approval_whose_deadline_passed_before_execution_is_abandoned_unsent);
