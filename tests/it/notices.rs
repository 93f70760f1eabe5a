//! Account notices over the real binaries: an operator's halt and resume (`ledgerhook halt|resume
//! USER`) and a drift found by `ledgerhook reconcile` reach the trader's Telegram chat once each,
//! told by the running service's saga whoever recorded the event; a Telegram outage is retried
//! until the notice arrives once, and a restart between the event and the notice still tells it
//! once. The Telegram Bot API is the `fake-venues` binary.

use serde_json::Value;

use aggregates::SERVICE_OWNER_ID;
use ledgerhook::store::Store;

use crate::on_both_stores;
use crate::reconcile::trade_behind_the_ledger;
use crate::support::eventually;
use crate::support::fake_venues::FakeVenues;
use crate::support::service::{
    cli, cli_as, cli_output, cli_output_as, create_user, credentials_set, Options, Service,
};
use crate::support::stores::{Backend, TestStore};

const TOKEN: &str = "7000000002:AAH-notices-bot-token-do-not-leak-Qw3e";
const CHAT: &str = "616161";

struct Setup {
    fake: FakeVenues,
    test: TestStore,
    store: Store,
    account: String,
}

impl Setup {
    /// A trader with a Telegram chat, and the bot token in the vault (so `serve` uses Telegram).
    async fn new(backend: Backend) -> Self {
        let fake = FakeVenues::start().await;
        let test = TestStore::new(backend).await;
        let user = create_user(&test.url, "nora").await;
        credentials_set(&test.url, SERVICE_OWNER_ID, "telegram_bot_token", TOKEN).await;
        credentials_set(&test.url, &user.user_id, "telegram_chat_id", CHAT).await;
        let store = test.open().await;
        Self {
            fake,
            test,
            store,
            account: user.user_id,
        }
    }

    /// `serve` pointed at the fake, retrying a failed notice after a second.
    async fn serve(&self) -> Service {
        Service::start(&self.test.url, self.options()).await
    }

    fn options(&self) -> Options {
        Options {
            args: vec![
                "--telegram-api-url".to_owned(),
                self.fake.telegram_url.clone(),
                "--notification-retry-seconds".to_owned(),
                "1".to_owned(),
            ],
            ..Options::default()
        }
    }

    /// Runs `verb` (halt or resume) on the account as a new operator named `name`; returns who
    /// the ledger (and so the trader) names: `staff:<their id>`.
    async fn operator(&self, verb: &str, reason: &str, name: &str) -> String {
        let (staff_id, key) = crate::support::service::operator(&self.test.url, name).await;
        cli_as(
            &self.test.url,
            &key,
            &[verb, &self.account, "--reason", reason],
        )
        .await;
        format!("staff:{staff_id}")
    }

    /// The account's events as stored: (sequence, type, payload).
    async fn events(&self) -> Vec<(usize, String, Value)> {
        self.store
            .events()
            .load_account(&self.account)
            .await
            .expect("the account loads")
            .into_iter()
            .map(|event| (event.sequence, event.event_type, event.payload))
            .collect()
    }

    /// The `about_sequence` of every recorded notice of `kind` (`NoticeSent`, `NoticeFailed`).
    async fn notices(&self, kind: &str) -> Vec<u64> {
        self.events()
            .await
            .into_iter()
            .filter(|(_, name, _)| name == kind)
            .filter_map(|(_, _, payload)| payload[kind]["about_sequence"].as_u64())
            .collect()
    }

    /// Waits until `count` notices are recorded sent; returns them.
    async fn sent(&self, count: usize) -> Vec<u64> {
        eventually(&format!("{count} notice(s) recorded sent"), || async {
            let sent = self.notices("NoticeSent").await;
            (sent.len() >= count).then_some(sent)
        })
        .await
    }

    /// The sequence of the account's event of type `name` (the last one).
    async fn sequence_of(&self, name: &str) -> u64 {
        self.events()
            .await
            .into_iter()
            .rev()
            .find(|(_, event, _)| event == name)
            .map(|(sequence, _, _)| sequence as u64)
            .unwrap_or_else(|| panic!("no {name} recorded"))
    }

    /// The texts the fake accepted for the trader's chat.
    async fn texts(&self) -> Vec<String> {
        let (messages, _) = self.fake.telegram_messages().await;
        messages
            .iter()
            .inspect(|message| assert_eq!(message["chat_id"], CHAT, "{message}"))
            .map(|message| message["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn an_operators_halt_and_resume_reach_telegram_once_each(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve().await;
    let carol = setup.operator("halt", "margin call", "ops-carol").await;
    let sent = setup.sent(1).await;
    assert_eq!(sent, [setup.sequence_of("TradingHalted").await]);
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with(&format!("🛑 Trading halted by {carol} at "))
            && texts[0].contains(": margin call\n")
            && texts[0].contains("Every new signal is refused until trading is resumed")
            && texts[0].contains("Open positions stay open"),
        "{texts:?}"
    );

    let dan = setup.operator("resume", "funded again", "ops-dan").await;
    let sent = setup.sent(2).await;
    assert_eq!(sent[1], setup.sequence_of("TradingResumed").await);
    // The halt's notice was not told again before the resume's.
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].starts_with(&format!("▶️ Trading resumed by {dan}: funded again\n")),
        "{texts:?}"
    );
    assert!(setup.notices("NoticeFailed").await.is_empty());

    // Only an operator's key halts: a compliance member's is refused, and nothing is recorded.
    let (_, auditor) =
        crate::support::audit::create_staff(&setup.test.url, "carl", "compliance").await;
    let refused = cli_output_as(
        &setup.test.url,
        &auditor,
        &["halt", &setup.account, "--reason", "r"],
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("only operators"), "{stderr}");
    assert!(
        !stderr.contains(&auditor),
        "the key is never echoed: {stderr}"
    );
    assert_eq!(
        setup
            .events()
            .await
            .last()
            .map(|(_, name, _)| name.as_str()),
        Some("NoticeSent")
    );
    service.stop().await;
}
on_both_stores!(an_operators_halt_and_resume_reach_telegram_once_each);

async fn a_drift_the_cli_finds_is_told_once_by_the_running_service(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve().await;
    trade_behind_the_ledger(&setup.store, &setup.account, "sell", "0.5", "manual-n1").await;
    let found = cli_output(&setup.test.url, &["reconcile", &setup.account]).await;
    assert!(!found.status.success(), "a drift fails the command");
    let sent = setup.sent(1).await;
    assert_eq!(sent, [setup.sequence_of("PositionDriftDetected").await]);
    // The CLI only records: the text is the service's, told once.
    let texts = setup.texts().await;
    assert_eq!(
        texts,
        [
            "🔎 Position drift in ETH-USD: the ledger holds nothing but paper reports short 0.5.\n\
          Nothing was changed; check the account on paper before trading ETH-USD again."
        ]
    );
    // Unchanged, it records nothing more, so nothing more is told.
    let again = cli_output(&setup.test.url, &["reconcile", &setup.account]).await;
    assert!(!again.status.success());

    trade_behind_the_ledger(&setup.store, &setup.account, "buy", "0.5", "manual-n2").await;
    cli(&setup.test.url, &["reconcile", &setup.account]).await;
    let sent = setup.sent(2).await;
    assert_eq!(sent[1], setup.sequence_of("PositionDriftCleared").await);
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(
        texts[1],
        "✔️ Position drift in ETH-USD resolved: paper and the ledger both hold nothing."
    );
    service.stop().await;
}
on_both_stores!(a_drift_the_cli_finds_is_told_once_by_the_running_service);

async fn a_telegram_outage_is_retried_until_the_notice_arrives_once(backend: Backend) {
    let setup = Setup::new(backend).await;
    setup
        .fake
        .telegram_faults(serde_json::json!({"down": true}))
        .await;
    let service = setup.serve().await;
    setup
        .operator("halt", "exchange incident", "ops-carol")
        .await;
    let halted_at = setup.sequence_of("TradingHalted").await;
    let failed = eventually("the notice recorded failed, to be retried", || async {
        let events = setup.events().await;
        events
            .iter()
            .find(|(_, name, payload)| {
                name == "NoticeFailed" && !payload["NoticeFailed"]["retry_at"].is_null()
            })
            .map(|(_, _, payload)| payload["NoticeFailed"].clone())
    })
    .await;
    assert_eq!(failed["about_sequence"], halted_at, "{failed}");
    assert!(
        failed["reason"].as_str().is_some_and(|r| r.contains("503")),
        "{failed}"
    );
    assert!(setup.texts().await.is_empty());

    setup.fake.telegram_faults(serde_json::json!({})).await;
    assert_eq!(setup.sent(1).await, [halted_at]);
    // A later notice comes after any repeat of the halt's would have.
    setup.operator("resume", "incident over", "ops-carol").await;
    setup.sent(2).await;
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains(": exchange incident\n"), "{texts:?}");
    assert!(texts[1].starts_with("▶️ Trading resumed"), "{texts:?}");
    service.stop().await;
}
on_both_stores!(a_telegram_outage_is_retried_until_the_notice_arrives_once);

async fn a_restart_between_the_event_and_the_notice_still_tells_once(backend: Backend) {
    let setup = Setup::new(backend).await;
    // Recorded while no service runs: the next one to start tells it.
    let carol = setup.operator("halt", "margin call", "ops-carol").await;
    let service = setup.serve().await;
    setup.sent(1).await;
    assert_eq!(setup.texts().await.len(), 1);

    // Recorded, not yet told (Telegram is down), when the service dies.
    setup
        .fake
        .telegram_faults(serde_json::json!({"down": true}))
        .await;
    let dan = setup.operator("resume", "funded", "ops-dan").await;
    eventually("the resume's notice recorded failed", || async {
        (!setup.notices("NoticeFailed").await.is_empty()).then_some(())
    })
    .await;
    service.kill_9().await;
    setup.fake.telegram_faults(serde_json::json!({})).await;
    let service = setup.serve().await;
    let sent = setup.sent(2).await;
    assert_eq!(
        sent,
        [
            setup.sequence_of("TradingHalted").await,
            setup.sequence_of("TradingResumed").await
        ]
    );
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with(&format!("🛑 Trading halted by {carol}")),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with(&format!("▶️ Trading resumed by {dan}: funded")),
        "{texts:?}"
    );
    service.stop().await;
}
on_both_stores!(a_restart_between_the_event_and_the_notice_still_tells_once);

/// The global emergency stop (the CLI's `halt` without an account) and its release are told to
/// the trader as notices, once each: the saga hands each change to every account, which notes it
/// once (`EmergencyStopNoted`).
async fn the_emergency_stop_and_its_release_are_told_once_each(backend: Backend) {
    let setup = Setup::new(backend).await;
    let service = setup.serve().await;
    let (erin_id, erin) = crate::support::service::operator(&setup.test.url, "ops-erin").await;
    cli_as(
        &setup.test.url,
        &erin,
        &["halt", "--reason", "exchange incident"],
    )
    .await;
    let sent = setup.sent(1).await;
    assert_eq!(sent, [setup.sequence_of("EmergencyStopNoted").await]);
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with(&format!(
            "🚨 Emergency stop: all trading on this service halted by staff:{erin_id}"
        )) && texts[0].contains(": exchange incident\n")
            && texts[0].contains("Every new signal is refused until it is released"),
        "{texts:?}"
    );

    cli_as(
        &setup.test.url,
        &erin,
        &["resume", "--reason", "incident over"],
    )
    .await;
    let sent = setup.sent(2).await;
    assert_eq!(sent[1], setup.sequence_of("EmergencyStopNoted").await);
    let texts = setup.texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].starts_with(&format!(
            "✅ Emergency stop released by staff:{erin_id} at "
        )),
        "{texts:?}"
    );
    let noted = setup
        .events()
        .await
        .into_iter()
        .filter(|(_, name, _)| name == "EmergencyStopNoted")
        .count();
    assert_eq!(noted, 2, "one note per change");
    service.stop().await;
}
on_both_stores!(the_emergency_stop_and_its_release_are_told_once_each);

/// A notice whose retry is pending when the account's history becomes unreadable (another
/// release appended an event this one cannot read): the retry is held back and logged, never
/// sent on a guess.
async fn a_pending_notice_retry_for_an_unreadable_account_is_held_back_not_sent(backend: Backend) {
    let setup = Setup::new(backend).await;
    setup
        .fake
        .telegram_faults(serde_json::json!({"down": true}))
        .await;
    let service = setup.serve().await;
    setup
        .operator("halt", "exchange incident", "ops-carol")
        .await;
    eventually("the notice recorded failed, to be retried", || async {
        let events = setup.events().await;
        events
            .iter()
            .any(|(_, name, payload)| {
                name == "NoticeFailed" && !payload["NoticeFailed"]["retry_at"].is_null()
            })
            .then_some(())
    })
    .await;
    service.stop().await;
    let sequence = setup.events().await.len() + 1;
    let unreadable = cqrs_es::persist::SerializedEvent {
        aggregate_id: setup.account.clone(),
        sequence,
        aggregate_type: <aggregates::TradingAccount as cqrs_es::Aggregate>::TYPE.to_owned(),
        event_type: "FromTheFuture".to_owned(),
        event_version: "99".to_owned(),
        payload: serde_json::json!({ "FromTheFuture": { "shape": "unknown to this release" } }),
        metadata: serde_json::json!({ "recorded_at": chrono::Utc::now().to_rfc3339() }),
    };
    setup
        .store
        .events()
        .append(&[unreadable])
        .await
        .expect("the raw event is appended");

    setup.fake.telegram_faults(serde_json::json!({})).await;
    let logs = tempfile::tempdir().expect("a directory for the log");
    let log = logs.path().join("serve.log");
    let service = Service::start(
        &setup.test.url,
        Options {
            log_file: Some(log.clone()),
            ..setup.options()
        },
    )
    .await;
    eventually("the retry to be held back", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("notification retry not recorded")
            .then_some(())
    })
    .await;

    assert!(setup.texts().await.is_empty(), "nothing told on a guess");
    assert!(setup.notices("NoticeSent").await.is_empty());
    service.stop().await;
}
on_both_stores!(a_pending_notice_retry_for_an_unreadable_account_is_held_back_not_sent);
