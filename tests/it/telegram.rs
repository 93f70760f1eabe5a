//! Trade notifications through the real Telegram notifier to the `fake-venues` binary: what the
//! trader receives, 429 and 5xx handled, a Telegram outage that changes no trade and is made
//! good by a retry that sends the message once, and `serve` turning Telegram on from the vault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use aggregates::{AccountEvent, Market, SignalId, SERVICE_OWNER_ID};
use ledgerhook::exchange::PaperExchange;
use ledgerhook::execution::NotificationRetryPolicy;
use ledgerhook::ingest::ReceiptStatus;
use ledgerhook::markets::MarketList;
use ledgerhook::notify::{
    CredentialsError, TelegramCredentials, TelegramNotifier, TelegramOptions,
};
use ledgerhook::users::create_user;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::fake_venues::FakeVenues;
use crate::support::in_process::{InProcess, Policies};
use crate::support::service::{self, credentials_set, Options, Service};
use crate::support::stores::{Backend, TestStore};

const TOKEN: &str = "7000000001:AAH-test-bot-token-do-not-leak-Zq9x";
const ALERT: &str = r#"{"symbol":"ETHUSDT","side":"buy","size":"0.5","id":"t-1"}"#;
/// The events a filled buy records, Telegram or not.
const TRADE: [&str; 6] = [
    "AccountOpened",
    "SignalReceived",
    "RiskApproved",
    "OrderSubmitted",
    "OrderFilled",
    "PositionOpened",
];

const QUICK_RETRIES: NotificationRetryPolicy = NotificationRetryPolicy {
    first: Duration::from_millis(300),
    max: Duration::from_secs(1),
};

/// The vault's part, with fixed values: one bot token, chat ids by account.
#[derive(Default)]
struct FixedCredentials {
    chats: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl TelegramCredentials for FixedCredentials {
    async fn bot_token(&self) -> Result<Option<Zeroizing<String>>, CredentialsError> {
        Ok(Some(Zeroizing::new(TOKEN.to_owned())))
    }

    async fn chat_id(
        &self,
        account_id: &str,
    ) -> Result<Option<Zeroizing<String>>, CredentialsError> {
        let chats = self
            .chats
            .lock()
            .map_err(|_| CredentialsError("poisoned".into()))?;
        Ok(chats.get(account_id).cloned().map(Zeroizing::new))
    }
}

struct Harness {
    running: InProcess,
    fake: FakeVenues,
    account: String,
    chat_id: String,
    notifier: Arc<TelegramNotifier>,
}

impl Harness {
    /// The saga with the Telegram notifier pointed at a fresh fake; `chat` is the account's
    /// chat id, if it has one.
    async fn start(backend: Backend, api_url: Option<String>, chat: Option<&str>) -> Self {
        let fake = FakeVenues::start().await;
        let credentials = Arc::new(FixedCredentials::default());
        let options = TelegramOptions {
            api_url: api_url.unwrap_or_else(|| fake.telegram_url.clone()),
            deadline: Duration::from_secs(3),
            ..TelegramOptions::default()
        };
        let notifier =
            Arc::new(TelegramNotifier::new(credentials.clone(), options).expect("client"));
        let test = TestStore::new(backend).await;
        let store = test.open().await;
        let exchange = Arc::new(PaperExchange::new(
            store.clone(),
            MarketList::default(),
            PaperExchange::default_prices(),
        ));
        let policies = Policies::notification(QUICK_RETRIES);
        let running =
            InProcess::start_with(test, store, exchange, notifier.clone(), policies).await;
        let account = create_user(&running.ledger, &running.vault, "t", "test", Utc::now())
            .await
            .expect("user")
            .user_id;
        let chat_id = chat.unwrap_or("none").to_owned();
        if let Some(chat) = chat {
            credentials
                .chats
                .lock()
                .expect("lock")
                .insert(account.clone(), chat.to_owned());
        }
        Self {
            running,
            fake,
            account,
            chat_id,
            notifier,
        }
    }

    async fn send(&self, body: &str) -> SignalId {
        let receipt = self
            .running
            .ingest
            .receive(&self.account, body.as_bytes(), Utc::now(), None)
            .await
            .expect("recorded");
        assert_eq!(receipt.status, ReceiptStatus::Accepted);
        receipt.signal_id
    }

    async fn events(&self) -> Vec<AccountEvent> {
        self.running
            .ledger
            .history(&self.account)
            .await
            .expect("history")
            .into_iter()
            .map(|recorded| recorded.event)
            .collect()
    }

    async fn event_types(&self) -> Vec<&'static str> {
        self.events().await.iter().map(AccountEvent::name).collect()
    }

    /// The account's events once one matching `done` is recorded.
    async fn when(&self, what: &str, done: impl Fn(&AccountEvent) -> bool) -> Vec<AccountEvent> {
        eventually(what, || async {
            let events = self.events().await;
            events.iter().any(&done).then_some(events)
        })
        .await
    }

    /// The fake's messages for this test's chat once there are `count` of them.
    async fn messages(&self, count: usize) -> Vec<Value> {
        eventually(&format!("{count} message(s) at the fake"), || async {
            let (messages, _) = self.fake.telegram_messages().await;
            (messages.len() >= count).then_some(messages)
        })
        .await
    }

    /// The saga has handled every event in the log.
    async fn caught_up(&self) {
        eventually("the saga to catch up", || async {
            let events = self.running.store.events();
            let at = events.checkpoint("execution").await.ok()?;
            events.read_log(at, 1).await.ok()?.is_empty().then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn sent(event: &AccountEvent) -> bool {
    matches!(event, AccountEvent::NotificationSent { .. })
}

fn trade_events(types: &[&'static str]) -> Vec<&'static str> {
    types
        .iter()
        .copied()
        .filter(|name| !name.starts_with("Notification"))
        .collect()
}

async fn a_fill_reaches_the_traders_chat(backend: Backend) {
    let harness = Harness::start(backend, None, Some("424242")).await;
    let signal_id = harness.send(ALERT).await;
    harness.when("the notification recorded sent", sent).await;
    let messages = harness.messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["chat_id"], json!(harness.chat_id));
    let text = message["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("✅ Filled: BUY 0.5 ETH-USD at "), "{text}");
    assert!(text.contains("Position now: long 0.5 ETH-USD"), "{text}");
    assert!(text.ends_with(&format!("Signal: {signal_id}")), "{text}");
    assert_eq!(message["token_last4"], json!(&TOKEN[TOKEN.len() - 4..]));
    // The fake shows which bot sent it, never the token itself.
    let shown = harness.fake.telegram_messages_text().await;
    assert!(!shown.contains(TOKEN), "{shown}");
    let types = harness.event_types().await;
    assert_eq!(trade_events(&types), TRADE);
    assert_eq!(types.last(), Some(&"NotificationSent"));
    harness.stop().await;
}
on_both_stores!(a_fill_reaches_the_traders_chat);

async fn a_429_is_waited_out_and_the_message_arrives_once(backend: Backend) {
    let harness = Harness::start(backend, None, Some("424243")).await;
    harness
        .fake
        .telegram_faults(json!({"rate_limited": 1, "retry_after": 1}))
        .await;
    let asked = Utc::now();
    harness.send(ALERT).await;
    let events = harness.when("the notification recorded sent", sent).await;
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, AccountEvent::NotificationFailed { .. })),
        "a 429 within the deadline is waited out, not a failure: {events:?}"
    );
    let messages = harness.messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (_, requests) = harness.fake.telegram_messages().await;
    assert_eq!(requests, 2, "one 429, then the message");
    let at: chrono::DateTime<Utc> =
        serde_json::from_value(messages[0]["at"].clone()).expect("a time");
    assert!(
        at - asked >= chrono::Duration::seconds(1),
        "sent {} after the signal, before retry_after passed",
        at - asked
    );
    harness.stop().await;
}
on_both_stores!(a_429_is_waited_out_and_the_message_arrives_once);

async fn server_errors_are_retried_until_telegram_recovers(backend: Backend) {
    let harness = Harness::start(backend, None, Some("424244")).await;
    harness.fake.telegram_faults(json!({"status_5xx": 2})).await;
    harness.send(ALERT).await;
    harness.when("the notification recorded sent", sent).await;
    let messages = harness.messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (_, requests) = harness.fake.telegram_messages().await;
    assert_eq!(requests, 3, "a 500, a 502, then the message");
    harness.stop().await;
}
on_both_stores!(server_errors_are_retried_until_telegram_recovers);

async fn telegram_down_changes_no_trade_and_the_retry_delivers_once(backend: Backend) {
    let harness = Harness::start(backend, None, Some("424245")).await;
    harness.fake.telegram_faults(json!({"down": true})).await;
    let first = harness.send(ALERT).await;
    let events = harness
        .when("the notification recorded failed", |event| {
            matches!(
                event,
                AccountEvent::NotificationFailed {
                    retry_at: Some(_),
                    ..
                }
            )
        })
        .await;
    // The trade is filled and recorded exactly as it is when Telegram works.
    let types: Vec<_> = events.iter().map(AccountEvent::name).collect();
    assert_eq!(trade_events(&types), TRADE);
    let account = harness
        .running
        .ledger
        .load(&harness.account)
        .await
        .expect("load");
    let eth = Market::parse("ETH-USD").expect("market");
    assert_eq!(
        account.state.positions.get(&eth).map(|p| p.size),
        Some(Decimal::new(5, 1))
    );
    assert!(account.state.in_flight.is_empty());
    let (messages, _) = harness.fake.telegram_messages().await;
    assert!(messages.is_empty(), "{messages:?}");

    harness.fake.telegram_faults(json!({})).await;
    harness.when("the retry recorded sent", sent).await;
    // A second signal's message comes after any repeat of the first's would have.
    harness
        .send(r#"{"symbol":"ETHUSDT","side":"buy","size":"0.1","id":"t-2"}"#)
        .await;
    let messages = harness.messages(2).await;
    let first_id = format!("Signal: {first}");
    let of_first = messages
        .iter()
        .filter(|m| m["text"].as_str().is_some_and(|t| t.ends_with(&first_id)))
        .count();
    assert_eq!(of_first, 1, "{messages:?}");
    let account = harness
        .running
        .ledger
        .load(&harness.account)
        .await
        .expect("load");
    assert!(account.state.undelivered.is_empty());
    let sent_count = harness
        .events()
        .await
        .iter()
        .filter(|event| {
            matches!(event, AccountEvent::NotificationSent { signal_id, .. } if *signal_id == first)
        })
        .count();
    assert_eq!(sent_count, 1);
    harness.stop().await;
}
on_both_stores!(telegram_down_changes_no_trade_and_the_retry_delivers_once);

async fn a_missing_chat_is_final_and_says_why(backend: Backend) {
    let harness = Harness::start(backend, None, None).await;
    harness.send(ALERT).await;
    let events = harness
        .when("the notification recorded failed", |event| {
            matches!(event, AccountEvent::NotificationFailed { .. })
        })
        .await;
    let failure = events.iter().find_map(|event| match event {
        AccountEvent::NotificationFailed {
            reason, retry_at, ..
        } => Some((reason.clone(), *retry_at)),
        _ => None,
    });
    let (reason, retry_at) = failure.expect("a failure");
    assert!(reason.contains("no Telegram chat id"), "{reason}");
    assert_eq!(retry_at, None, "nothing to retry without a chat");
    let (_, requests) = harness.fake.telegram_messages().await;
    assert_eq!(requests, 0);
    harness.stop().await;
}
on_both_stores!(a_missing_chat_is_final_and_says_why);

async fn a_chat_telegram_does_not_know_is_final(backend: Backend) {
    let harness = Harness::start(backend, None, Some("-100999")).await;
    harness
        .fake
        .telegram_faults(json!({"reject_chat_ids": ["-100999"]}))
        .await;
    harness.send(ALERT).await;
    let events = harness
        .when("the notification recorded failed", |event| {
            matches!(event, AccountEvent::NotificationFailed { .. })
        })
        .await;
    let failures: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            AccountEvent::NotificationFailed {
                reason, retry_at, ..
            } => Some((reason.clone(), *retry_at)),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].0.contains("chat not found"), "{failures:?}");
    assert_eq!(failures[0].1, None, "a refusal is not retried");
    let (_, requests) = harness.fake.telegram_messages().await;
    assert_eq!(requests, 1, "asked once, never again");
    let account = harness
        .running
        .ledger
        .load(&harness.account)
        .await
        .expect("load");
    assert!(account.state.undelivered.is_empty());
    harness.stop().await;
}
on_both_stores!(a_chat_telegram_does_not_know_is_final);

async fn an_unreachable_telegram_leaves_no_token_in_the_ledger(backend: Backend) {
    // A port nobody listens on: every attempt is a connection error, whose text names the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let harness = Harness::start(backend, Some(url), Some("424246")).await;
    harness.send(ALERT).await;
    let events = harness
        .when("the notification recorded failed", |event| {
            matches!(event, AccountEvent::NotificationFailed { .. })
        })
        .await;
    let reason = events
        .iter()
        .find_map(|event| match event {
            AccountEvent::NotificationFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("a failure");
    assert!(reason.contains("could not connect to Telegram"), "{reason}");
    let stored = harness
        .running
        .store
        .events()
        .load_account(&harness.account)
        .await
        .expect("load");
    for event in stored {
        let payload = event.payload.to_string();
        assert!(
            !payload.contains(TOKEN) && !payload.contains("/bot"),
            "{payload}"
        );
    }
    harness.stop().await;
}
on_both_stores!(an_unreachable_telegram_leaves_no_token_in_the_ledger);

async fn a_retry_pending_at_a_restart_is_sent_once_after_it(backend: Backend) {
    let mut harness = Harness::start(backend, None, Some("424247")).await;
    harness.fake.telegram_faults(json!({"down": true})).await;
    let signal = harness.send(ALERT).await;
    harness
        .when("the notification recorded failed", |event| {
            matches!(
                event,
                AccountEvent::NotificationFailed {
                    retry_at: Some(_),
                    ..
                }
            )
        })
        .await;
    // The failure is behind the saga's checkpoint: the new process's saga never reads it again,
    // only the retries' low-water mark brings it back.
    harness.caught_up().await;
    let exchange = Arc::new(PaperExchange::new(
        harness.running.store.clone(),
        MarketList::default(),
        PaperExchange::default_prices(),
    ));
    harness.running = harness
        .running
        .restart(
            exchange,
            harness.notifier.clone(),
            Policies::notification(QUICK_RETRIES),
        )
        .await;
    harness.fake.telegram_faults(json!({})).await;
    harness.when("the retry recorded sent", sent).await;
    let messages = harness.messages(1).await;
    let of_signal = messages
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!("Signal: {signal}")))
        })
        .count();
    assert_eq!(of_signal, 1, "{messages:?}");
    harness.stop().await;
}
on_both_stores!(a_retry_pending_at_a_restart_is_sent_once_after_it);

/// The fake answers as the Bot API does: form bodies too, `ok`/`result`, 404 without a token,
/// and the 429 shape with `parameters.retry_after`.
#[tokio::test]
async fn the_fake_answers_like_the_bot_api() {
    let fake = FakeVenues::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/bot{TOKEN}/sendMessage", fake.telegram_url);
    let form: Value = http
        .post(&url)
        .form(&[("chat_id", "55"), ("text", "hello")])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(form["ok"], json!(true), "{form}");
    assert_eq!(form["result"]["chat"]["id"], json!(55), "{form}");
    assert_eq!(form["result"]["text"], json!("hello"), "{form}");

    let no_token = http
        .post(format!("{}/bot/sendMessage", fake.telegram_url))
        .json(&json!({"chat_id": 55, "text": "x"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(no_token.status(), 404);

    fake.telegram_faults(json!({"rate_limited": 1, "retry_after": 7}))
        .await;
    let limited = http
        .post(&url)
        .json(&json!({"chat_id": 55, "text": "again"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let body: Value = limited.json().await.expect("json");
    assert_eq!(
        body,
        json!({
            "ok": false,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7}
        })
    );
    let (messages, requests) = fake.telegram_messages().await;
    assert_eq!((messages.len(), requests), (1, 2), "{messages:?}");
    assert!(!fake.telegram_messages_text().await.contains(TOKEN));
}

async fn a_burst_to_one_chat_is_paced_instead_of_refused(backend: Backend) {
    let harness = Harness::start(backend, None, Some("424248")).await;
    // The fake enforces Telegram's flood control: one message a second to a chat.
    harness
        .fake
        .telegram_faults(json!({"chat_min_interval_ms": 900}))
        .await;
    for id in ["b-1", "b-2", "b-3"] {
        harness
            .send(&format!(
                r#"{{"symbol":"ETHUSDT","side":"buy","size":"0.1","id":"{id}"}}"#
            ))
            .await;
    }
    let messages = harness.messages(3).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    let (_, requests) = harness.fake.telegram_messages().await;
    assert_eq!(requests, 3, "paced: no request was answered 429");
    harness.stop().await;
}
on_both_stores!(a_burst_to_one_chat_is_paced_instead_of_refused);

/// The `CredentialAccessed` events of a stream (an account's, or the service's), as
/// (field, purpose, by).
async fn accesses(store: &ledgerhook::store::Store, owner: &str) -> Vec<(String, String, String)> {
    let events = if owner == SERVICE_OWNER_ID {
        store.events().load_service_credentials_after(0).await
    } else {
        store.events().load_account(owner).await
    };
    events
        .expect("the stream loads")
        .into_iter()
        .filter(|event| event.event_type == "CredentialAccessed")
        .map(|event| {
            let access = &event.payload["CredentialAccessed"];
            let text = |name: &str| access[name].as_str().unwrap_or_default().to_owned();
            (text("field"), text("purpose"), text("by"))
        })
        .collect()
}

/// The real binary: a bot token and the trader's chat id set with `credentials set` turn
/// Telegram on at `serve`; the fill's message reaches the fake once, and each message costs one
/// recorded reveal of the chat id (the trader's stream) and one of the bot token (the service's).
async fn serve_sends_to_telegram_with_the_vaults_credentials(backend: Backend) {
    let fake = FakeVenues::start().await;
    let test = TestStore::new(backend).await;
    let user = service::create_user(&test.url, "tess").await;
    credentials_set(&test.url, SERVICE_OWNER_ID, "telegram_bot_token", TOKEN).await;
    credentials_set(&test.url, &user.user_id, "telegram_chat_id", "515151").await;
    let options = Options {
        args: vec!["--telegram-api-url".to_owned(), fake.telegram_url.clone()],
        ..Options::default()
    };
    let service = Service::start(&test.url, options).await;
    let alert = Alert::new("tg-e2e").symbol("ETH-USD").size("0.5").json();
    let (status, body) = service.post_signal(&user.webhook_token, &alert).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    let signal_id = body["signal_id"].as_str().expect("a signal id").to_owned();
    let store = test.open().await;
    eventually("the notification recorded sent", || async {
        let types = crate::support::event_types(&store, &user.user_id).await;
        types.iter().any(|t| t == "NotificationSent").then_some(())
    })
    .await;
    let (messages, requests) = fake.telegram_messages().await;
    assert_eq!((messages.len(), requests), (1, 1), "{messages:?}");
    assert_eq!(messages[0]["chat_id"], json!("515151"));
    assert_eq!(messages[0]["token_last4"], json!(&TOKEN[TOKEN.len() - 4..]));
    let text = messages[0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("✅ Filled: BUY 0.5 ETH-USD at "), "{text}");
    assert!(text.ends_with(&format!("Signal: {signal_id}")), "{text}");
    let reveal = |field: &str| {
        (
            field.to_owned(),
            "send notification".to_owned(),
            "execution".to_owned(),
        )
    };
    assert_eq!(
        accesses(&store, &user.user_id).await,
        [reveal("telegram_chat_id")]
    );
    assert_eq!(
        accesses(&store, SERVICE_OWNER_ID).await,
        [reveal("telegram_bot_token")]
    );
    // Neither value reaches a stream.
    let mut stored = store
        .events()
        .load_account(&user.user_id)
        .await
        .expect("load");
    stored.extend(
        store
            .events()
            .load_service_credentials_after(0)
            .await
            .expect("load"),
    );
    for event in stored {
        let payload = event.payload.to_string();
        assert!(
            !payload.contains(TOKEN) && !payload.contains("515151"),
            "{payload}"
        );
    }
    service.stop().await;
}
on_both_stores!(serve_sends_to_telegram_with_the_vaults_credentials);
