//! Black-box: an alert id sent again after its idempotency window is a new signal. A BTC buy with
//! id `reuse-1`, then, two days later on the service's clock, an ETH sell with the same id: each
//! gets its own signal id and client order id, trades its own market, side and size, and every
//! view of the ledger (positions, trades, `/api/signals/{id}`, `replay --signal`, the audit trail)
//! keeps the two apart. And two processes racing on one account never hand out one id twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use tokio::task::JoinSet;

use aggregates::{upcasters, AccountEvent};
use ledgerhook::emergency::EmergencySwitch;
use ledgerhook::exchange::{Exchange, PaperExchange};
use ledgerhook::ingest::{signal_id_for, Ingest, IngestError, ReceiptStatus};
use ledgerhook::ledger::{Ledger, LedgerError, LedgerOptions};
use ledgerhook::markets::MarketList;

use crate::on_both_stores;
use crate::support::service::{cli, create_user, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::{event_types, eventually};

const BTC_BUY: &str = r#"{"symbol":"BTC-USD","side":"buy","size":"0.01","id":"reuse-1"}"#;
const ETH_SELL: &str = r#"{"symbol":"ETH-USD","side":"sell","size":"0.5","id":"reuse-1"}"#;

async fn get(service: &Service, path: &str, key: &str) -> Value {
    let request = service
        .client()
        .get(format!("{}{path}", service.base_url))
        .bearer_auth(key);
    let (status, body) = service.send(request).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn wait_until_notified(test: &TestStore, account: &str, n: usize) {
    let store = test.open().await;
    eventually(&format!("{n} signals notified"), || async {
        let events = event_types(&store, account).await;
        let notified = events.iter().filter(|e| *e == "NotificationSent").count();
        (notified >= n).then_some(())
    })
    .await;
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {value}"))
}

/// The sequences `/api/signals/{id}` lists for a signal that has reached `filled` and been
/// notified, with its market.
async fn signal_story(service: &Service, key: &str, signal_id: &str) -> (String, BTreeSet<u64>) {
    let signal = eventually(&format!("signal {signal_id} notified"), || async {
        let body = get(service, &format!("/api/signals/{signal_id}"), key).await;
        (body["status"] == "notified").then_some(body)
    })
    .await;
    assert_eq!(signal["outcome"], "filled", "{signal}");
    let sequences = signal["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["sequence"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    (text(&signal, "market").to_owned(), sequences)
}

/// The sequences `replay --signal` prints for a signal.
async fn replayed(url: &str, user_id: &str, signal_id: &str) -> BTreeSet<u64> {
    cli(url, &["replay", user_id, "--json", "--signal", signal_id])
        .await
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("replay --json prints JSON lines");
            line["sequence"]
                .as_u64()
                .expect("every line has its sequence")
        })
        .collect()
}

/// The sequences of the caller's audit trail for a signal, once it holds `expected` rows.
async fn audited(service: &Service, key: &str, signal_id: &str, expected: usize) -> BTreeSet<u64> {
    eventually(&format!("the audit trail of {signal_id}"), || async {
        let body = get(service, &format!("/api/audit?signal_id={signal_id}"), key).await;
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            assert_eq!(row["signal_id"], signal_id, "{row}");
        }
        (rows.len() >= expected).then(|| {
            rows.iter()
                .filter_map(|row| row["sequence"].as_u64())
                .collect()
        })
    })
    .await
}

async fn an_id_reused_after_its_window_is_a_new_signal(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "reuser").await;
    let service = Service::start(&test.url, Options::default()).await;
    let (status, first) = service.post_signal(&user.webhook_token, BTC_BUY).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("accepted")));
    let first_id = text(&first, "signal_id").to_owned();
    wait_until_notified(&test, &user.user_id, 1).await;
    service.stop().await;

    // Two days later, past the id's 24 h window, the same id asks for something else.
    let later = Service::start(
        &test.url,
        Options {
            clock_offset: Some("+2d".to_owned()),
            ..Options::default()
        },
    )
    .await;
    let (status, second) = later.post_signal(&user.webhook_token, ETH_SELL).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (200, Some("accepted")),
        "{second}"
    );
    let second_id = text(&second, "signal_id").to_owned();
    assert_ne!(second_id, first_id, "a new signal needs a new id");
    // Inside its own window the second alert is remembered: a resend is its duplicate.
    let (status, again) = later.post_signal(&user.webhook_token, ETH_SELL).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(again["signal_id"], second_id.as_str());
    wait_until_notified(&test, &user.user_id, 2).await;

    // Each signal traded its own order.
    let trades = eventually("both trades listed", || async {
        let body = get(&later, "/api/trades", &user.api_key).await;
        let trades = body["trades"].as_array().cloned().unwrap_or_default();
        (trades.len() == 2).then_some(trades)
    })
    .await;
    let trade_of = |signal_id: &str| {
        trades
            .iter()
            .find(|trade| trade["signal_id"] == signal_id)
            .cloned()
            .unwrap_or_else(|| panic!("a trade of {signal_id} in {trades:?}"))
    };
    let (btc, eth) = (trade_of(&first_id), trade_of(&second_id));
    let order = |trade: &Value| {
        (
            text(trade, "market").to_owned(),
            text(trade, "side").to_owned(),
            text(trade, "size").to_owned(),
        )
    };
    assert_eq!(order(&btc), ("BTC-USD".into(), "buy".into(), "0.01".into()));
    assert_eq!(order(&eth), ("ETH-USD".into(), "sell".into(), "0.5".into()));
    assert_eq!(btc["client_order_id"], format!("lh-{first_id}").as_str());
    assert_eq!(eth["client_order_id"], format!("lh-{second_id}").as_str());
    assert_ne!(btc["exchange_order_id"], eth["exchange_order_id"]);
    assert_ne!(
        btc["price"], eth["price"],
        "the ETH sell filled at its own price"
    );

    let positions = get(&later, "/api/positions", &user.api_key).await;
    let mut held: Vec<(String, String, String)> = positions["positions"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    (
                        text(row, "market").to_owned(),
                        text(row, "side").to_owned(),
                        text(row, "size").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    held.sort();
    assert_eq!(
        held,
        [
            ("BTC-USD".into(), "long".into(), "0.01".into()),
            // The API's sizes are signed.
            ("ETH-USD".into(), "short".into(), "-0.5".into()),
        ]
    );

    // Every view tells each alert's own story, and the two stories share no event.
    let (btc_market, btc_story) = signal_story(&later, &user.api_key, &first_id).await;
    let (eth_market, eth_story) = signal_story(&later, &user.api_key, &second_id).await;
    assert_eq!(
        (btc_market.as_str(), eth_market.as_str()),
        ("BTC-USD", "ETH-USD")
    );
    assert!(
        btc_story.is_disjoint(&eth_story),
        "{btc_story:?} {eth_story:?}"
    );
    assert_eq!(
        replayed(&test.url, &user.user_id, &first_id).await,
        btc_story
    );
    assert_eq!(
        replayed(&test.url, &user.user_id, &second_id).await,
        eth_story
    );
    let btc_audit = audited(&later, &user.api_key, &first_id, btc_story.len()).await;
    let eth_audit = audited(&later, &user.api_key, &second_id, eth_story.len()).await;
    assert_eq!((btc_audit, eth_audit), (btc_story, eth_story));
    later.stop().await;
}
on_both_stores!(an_id_reused_after_its_window_is_a_new_signal);

/// Two ingests on their own ledgers sharing one store (two processes), alerts racing on one
/// account: every signal gets its own id, the one named by where its first event landed, even
/// when a conflict made the command be decided again.
async fn processes_racing_on_one_account_never_share_a_signal_id(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks: JoinSet<()> = JoinSet::new();
    let exchange: Arc<dyn Exchange> = Arc::new(PaperExchange::new(
        store.clone(),
        MarketList::default(),
        PaperExchange::default_prices(),
    ));
    let emergency = Arc::new(EmergencySwitch::load(store.clone()).await.expect("loads"));
    let ingest = |ledger: Ledger| {
        Arc::new(Ingest::new(
            ledger,
            MarketList::default(),
            exchange.clone(),
            emergency.clone(),
        ))
    };
    let mut start = || {
        Ledger::start(
            store.clone(),
            LedgerOptions::for_store(&store),
            upcasters(),
            &mut tasks,
        )
    };
    let (first, second) = (start(), start());
    let account = ledgerhook::users::create_user(
        &first,
        &crate::support::vault::sealing_vault(&store),
        "racer",
        "test",
        Utc::now(),
    )
    .await
    .expect("a user")
    .user_id;
    let ingests = [ingest(first.clone()), ingest(second)];
    let mut requests = JoinSet::new();
    let alerts = 40;
    for n in 0..alerts {
        let ingest = ingests[n % 2].clone();
        let account = account.clone();
        requests.spawn(async move {
            let body =
                format!(r#"{{"symbol":"BTC-USD","side":"buy","size":"0.001","id":"race-{n}"}}"#);
            loop {
                match ingest
                    .receive(&account, body.as_bytes(), Utc::now(), None)
                    .await
                {
                    // A 503: the sender sends again, as TradingView does.
                    Err(IngestError::Ledger(LedgerError::Contended)) => continue,
                    answered => break answered.expect("recorded"),
                }
            }
        });
    }
    let mut answered = BTreeSet::new();
    while let Some(receipt) = requests.join_next().await {
        let receipt = receipt.expect("request task");
        assert_eq!(receipt.status, ReceiptStatus::Accepted);
        assert!(answered.insert(receipt.signal_id.0), "an id answered twice");
    }
    assert_eq!(answered.len(), alerts);
    let recorded: BTreeSet<String> = first
        .history(&account)
        .await
        .expect("history")
        .into_iter()
        .filter_map(|record| match record.event {
            AccountEvent::SignalReceived { signal_id, .. } => {
                assert_eq!(signal_id, signal_id_for(&account, record.sequence));
                Some(signal_id.0)
            }
            _ => None,
        })
        .collect();
    assert_eq!(recorded, answered);
    drop(tasks);
}
on_both_stores!(processes_racing_on_one_account_never_share_a_signal_id);
