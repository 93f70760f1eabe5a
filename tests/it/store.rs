//! One conformance suite, run against SQLite and PostgreSQL alike: what the ledger needs of a store.

use std::collections::{BTreeSet, HashMap};

use chrono::{TimeZone, Utc};
use cqrs_es::persist::{SemanticVersionEventUpcaster, SerializedEvent};
use serde_json::json;
use tokio::task::JoinSet;

use aggregates::{upcasters, AccountCommand, AccountEvent, RiskLimits};
use ledgerhook::emergency::EmergencySwitch;
use ledgerhook::exchange::{PaperBook, PaperOrder};
use ledgerhook::ledger::{encode, EventContext, Ledger, LedgerError, LedgerOptions};
use ledgerhook::store::upkeep::{UpkeepPass, TURN};
use ledgerhook::store::{LogPosition, Store, StoreError};

use crate::on_both_stores;
use crate::support::eventually;
use crate::support::log::whole_log;
use crate::support::stores::{Backend, TestStore};

pub(crate) fn context() -> EventContext {
    EventContext::new("test", Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap())
}

fn opened() -> AccountEvent {
    AccountEvent::AccountOpened {
        display_name: "t".into(),
        limits: RiskLimits::default(),
        opened_at: Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap(),
    }
}

fn halted(by: &str) -> AccountEvent {
    AccountEvent::TradingHalted {
        by: by.into(),
        reason: "test".into(),
        at: Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap(),
    }
}

fn rows(account: &str, first: usize, events: &[AccountEvent]) -> Vec<SerializedEvent> {
    encode(account, first, events, &context()).expect("events encode")
}

/// A buy signal keyed `id:<key>`, received 2026-01-05 12:00 with a day's window.
fn signal(key: &str) -> AccountCommand {
    crate::signal_keys::signal(
        &format!("sig-{key}"),
        &format!("id:{key}"),
        Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap(),
        chrono::Duration::hours(24),
    )
}

async fn read_all(store: &Store) -> Vec<(String, usize)> {
    whole_log(store, 100)
        .await
        .into_iter()
        .map(|logged| (logged.event.aggregate_id.clone(), logged.event.sequence))
        .collect()
}

/// The whole log once it holds `expected` events. On PostgreSQL an event becomes readable only
/// when every transaction that started before it has ended, anywhere on the server — other
/// tests' included — so the reader may have to wait a moment.
async fn all_logged(store: &Store, expected: usize) -> Vec<(String, usize)> {
    eventually(
        &format!("{expected} events in the global order"),
        || async {
            let seen = read_all(store).await;
            (seen.len() >= expected).then_some(seen)
        },
    )
    .await
}

/// Raw SQL, as someone with the service's database credentials could run it.
async fn execute_sql(store: &Store, sql: &str) -> Result<u64, sqlx::Error> {
    let done = match store {
        Store::Postgres(pg) => sqlx::query(sql).execute(pg.pool()).await?.rows_affected(),
        Store::Sqlite(lite) => sqlx::query(sql).execute(lite.pool()).await?.rows_affected(),
    };
    Ok(done)
}

pub(crate) async fn open_account(ledger: &Ledger, account: &str) {
    let open = AccountCommand::OpenAccount {
        display_name: "t".into(),
        limits: RiskLimits::default(),
        opened_at: Utc::now(),
    };
    ledger
        .execute(account, open, &context())
        .await
        .expect("open");
}

pub(crate) fn start_ledger(store: &Store, tasks: &mut JoinSet<()>) -> Ledger {
    Ledger::start(
        store.clone(),
        LedgerOptions::for_store(store),
        upcasters(),
        tasks,
    )
}

async fn appended_events_load_back_in_order(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    store
        .events()
        .append(&rows("a", 1, &[opened(), halted("x"), halted("y")]))
        .await
        .expect("first append");
    let loaded = store.events().load_account("a").await.expect("load");
    let sequences: Vec<usize> = loaded.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3]);
    assert_eq!(loaded[1].payload["TradingHalted"]["by"], json!("x"));
    let tail = store
        .events()
        .load_account_after("a", 2)
        .await
        .expect("tail");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].sequence, 3);
    assert!(store
        .events()
        .load_account("nobody")
        .await
        .expect("load")
        .is_empty());
}
on_both_stores!(appended_events_load_back_in_order);

async fn a_clashing_append_is_a_conflict_and_writes_nothing(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    store
        .events()
        .append(&rows("a", 1, &[opened()]))
        .await
        .expect("first");
    // One batch: a new account's event and a clash on account a. All or nothing.
    let mut batch = rows("b", 1, &[opened()]);
    batch.extend(rows("a", 1, &[halted("late")]));
    let result = store.events().append(&batch).await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert!(store
        .events()
        .load_account("b")
        .await
        .expect("load")
        .is_empty());
    assert_eq!(
        store.events().load_account("a").await.expect("load").len(),
        1
    );
    assert_eq!(all_logged(&store, 1).await, vec![("a".to_owned(), 1)]);
}
on_both_stores!(a_clashing_append_is_a_conflict_and_writes_nothing);

async fn history_cannot_be_edited_or_deleted(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    store
        .events()
        .append(&rows("a", 1, &[opened()]))
        .await
        .expect("append");
    let update = execute_sql(&store, "UPDATE events SET event_type = 'Forged'").await;
    let delete = execute_sql(&store, "DELETE FROM events").await;
    assert!(update.is_err_and(|e| e.to_string().contains("append-only")));
    assert!(delete.is_err_and(|e| e.to_string().contains("append-only")));
    let loaded = store.events().load_account("a").await.expect("load");
    assert_eq!(loaded[0].event_type, "AccountOpened");
}
on_both_stores!(history_cannot_be_edited_or_deleted);

async fn the_global_order_is_commit_order_and_pages_resume_exactly(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    store
        .events()
        .append(&rows("a", 1, &[opened()]))
        .await
        .expect("a1");
    store
        .events()
        .append(&rows("b", 1, &[opened()]))
        .await
        .expect("b1");
    store
        .events()
        .append(&rows("a", 2, &[halted("1"), halted("2")]))
        .await
        .expect("a2");
    store
        .events()
        .append(&rows("c", 1, &[opened()]))
        .await
        .expect("c1");
    let expected: Vec<(String, usize)> = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1)]
        .iter()
        .map(|(id, seq)| (id.to_string(), *seq))
        .collect();
    assert_eq!(all_logged(&store, expected.len()).await, expected);
    // Resuming from a saved checkpoint reads exactly the rest.
    let first_two = store
        .events()
        .read_log(LogPosition::default(), 2)
        .await
        .expect("page");
    store
        .events()
        .save_checkpoint("reader", first_two[1].position)
        .await
        .expect("save");
    let resumed = store
        .events()
        .read_log(
            store.events().checkpoint("reader").await.expect("load"),
            100,
        )
        .await
        .expect("rest");
    let rest: Vec<(String, usize)> = resumed
        .into_iter()
        .map(|l| (l.event.aggregate_id.clone(), l.event.sequence))
        .collect();
    assert_eq!(rest, expected[2..].to_vec());
    assert_eq!(
        store
            .events()
            .checkpoint("never-saved")
            .await
            .expect("load"),
        LogPosition::default()
    );
}
on_both_stores!(the_global_order_is_commit_order_and_pages_resume_exactly);

/// A reader tailing the log while many writers append concurrently sees every event exactly once:
/// the global order has no gaps a slow transaction could fall into.
async fn a_tailing_reader_misses_nothing_under_concurrent_writers(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let writers = 8;
    let per_writer = 40;
    let mut tasks = JoinSet::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.spawn(async move {
            let account = format!("w{writer}");
            store
                .events()
                .append(&rows(&account, 1, &[opened()]))
                .await
                .expect("open");
            for sequence in 2..=per_writer {
                store
                    .events()
                    .append(&rows(&account, sequence, &[halted("w")]))
                    .await
                    .expect("append");
            }
        });
    }
    let mut seen = Vec::new();
    let mut position = LogPosition::default();
    let total = writers * per_writer;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reader stalled at {}",
            seen.len()
        );
        let page = store.events().read_log(position, 50).await.expect("page");
        if let Some(last) = page.last() {
            assert!(last.position > position, "positions only move forward");
            position = last.position;
        }
        seen.extend(
            page.into_iter()
                .map(|l| (l.event.aggregate_id.clone(), l.event.sequence)),
        );
        tokio::task::yield_now().await;
    }
    while tasks.join_next().await.is_some() {}
    let distinct: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), total, "every event seen exactly once");
    assert_eq!(seen.len(), total);
    // Per account, the global order keeps sequence order.
    let mut last: HashMap<String, usize> = HashMap::new();
    for (account, sequence) in seen {
        let previous = last.insert(account, sequence).unwrap_or(0);
        assert_eq!(sequence, previous + 1);
    }
}
on_both_stores!(a_tailing_reader_misses_nothing_under_concurrent_writers);

async fn stored_old_versions_are_upcast_on_load(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut old = rows("a", 1, &[opened(), halted("ignored")]);
    // Version 0.9 of TradingHalted called the operator `operator`.
    old[1].event_version = "0.9".into();
    old[1].payload = json!({"TradingHalted": {"operator": "alice", "reason": "r", "at": "2026-01-05T12:00:00Z"}});
    store.events().append(&old).await.expect("append");
    let rename = SemanticVersionEventUpcaster::new(
        "TradingHalted",
        "1.0",
        Box::new(|mut payload| {
            if let Some(body) = payload
                .get_mut("TradingHalted")
                .and_then(|b| b.as_object_mut())
            {
                if let Some(operator) = body.remove("operator") {
                    body.insert("by".into(), operator);
                }
            }
            payload
        }),
    );
    let mut tasks = JoinSet::new();
    let ledger = Ledger::start(
        store.clone(),
        LedgerOptions::for_store(&store),
        vec![Box::new(rename)],
        &mut tasks,
    );
    let account = ledger
        .load("a")
        .await
        .expect("the old event upcasts and loads");
    assert_eq!(account.state.halt.map(|h| h.by), Some("alice".to_owned()));
    let history = ledger.history("a").await.expect("history");
    assert_eq!(history[1].stored_version, "0.9");
    // Without the upcaster the same row cannot be read: the path is really exercised.
    let plain = start_ledger(&store, &mut tasks);
    assert!(plain.load("a").await.is_err());
}
on_both_stores!(stored_old_versions_are_upcast_on_load);

/// Commands on one account from many tasks at once, and from two ledgers sharing the store (two
/// processes): each signal is recorded exactly once, and the version counts every event.
async fn concurrent_commands_are_each_recorded_once(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let first = start_ledger(&store, &mut tasks);
    let second = start_ledger(&store, &mut tasks);
    open_account(&first, "acct").await;
    let mut commands = JoinSet::new();
    for i in 0..40 {
        let ledger = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        commands.spawn(async move {
            // Every signal sent twice: the second is a duplicate whichever ledger runs it.
            let key = format!("k{}", i / 2);
            loop {
                match ledger.execute("acct", signal(&key), &context()).await {
                    // Answered 503 and recorded nothing: the sender sends again, as TradingView
                    // does on a 5xx. Only a busy machine gets here (the loser of 8 jittered
                    // retries against the other process's stream of commands).
                    Err(LedgerError::Contended) => continue,
                    recorded => break recorded,
                }
            }
        });
    }
    while let Some(result) = commands.join_next().await {
        result.expect("task").expect("every command is recorded");
    }
    let history = first.history("acct").await.expect("history");
    let approved = history
        .iter()
        .filter(|r| matches!(r.event, AccountEvent::RiskApproved { .. }))
        .count();
    let duplicates = history
        .iter()
        .filter(|r| matches!(r.event, AccountEvent::SignalRejected { .. }))
        .count();
    assert_eq!(approved, 20);
    assert_eq!(duplicates, 20);
    let sequences: Vec<usize> = history.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, (1..=history.len()).collect::<Vec<_>>());
}
on_both_stores!(concurrent_commands_are_each_recorded_once);

/// A caller that goes away before its answer (a cancelled HTTP request, a client that timed out)
/// still has its command recorded whole, and once: the ledger runs it in a task of its own.
async fn a_command_whose_caller_went_away_is_still_recorded_once(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(&store, &mut tasks);
    open_account(&ledger, "acct").await;
    // Polled once (the command queued, its task started), then dropped. (Not a zero timeout:
    // that polls again when its timer fires, by which time a fast store may have answered.)
    let by_test = context();
    let mut command = Box::pin(ledger.execute("acct", signal("k1"), &by_test));
    let first_poll = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(command.as_mut(), cx))
    })
    .await;
    assert!(first_poll.is_pending(), "the caller left before the answer");
    drop(command);
    let received = eventually("the abandoned caller's signal to be recorded", || async {
        let history = ledger.history("acct").await.expect("history");
        let received = history
            .iter()
            .filter(|r| matches!(r.event, AccountEvent::SignalReceived { .. }))
            .count();
        (received > 0).then_some(received)
    })
    .await;
    assert_eq!(received, 1);
    let resend = ledger
        .execute("acct", signal("k1"), &context())
        .await
        .expect("recorded");
    assert!(matches!(
        resend.events.as_slice(),
        [AccountEvent::SignalRejected { .. }]
    ));
}
on_both_stores!(a_command_whose_caller_went_away_is_still_recorded_once);

/// A hundred signals for one account at once: each is recorded once, under its own sequence, and
/// those that queued while the account was busy share a commit instead of taking one each.
async fn commands_queued_for_one_account_share_a_commit(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(&store, &mut tasks);
    open_account(&ledger, "busy").await;
    let mut commits = ledger.committed();
    let mut commands = JoinSet::new();
    for i in 0..100 {
        let ledger = ledger.clone();
        commands.spawn(async move {
            ledger
                .execute("busy", signal(&format!("q{i}")), &context())
                .await
        });
    }
    let mut versions = Vec::new();
    while let Some(result) = commands.join_next().await {
        let committed = result.expect("task").expect("every command is recorded");
        assert!(matches!(
            committed.events.as_slice(),
            [
                AccountEvent::SignalReceived { .. },
                AccountEvent::RiskApproved { .. }
            ]
        ));
        versions.push(committed.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=100).map(|n| 1 + 2 * n).collect::<Vec<_>>());
    let mut batches = 0;
    let mut events = 0;
    while events < 200 {
        let batch = commits.recv().await.expect("every commit is published");
        batches += 1;
        events += batch.len();
    }
    assert!(batches <= 25, "{batches} commits for 100 queued commands");
}
on_both_stores!(commands_queued_for_one_account_share_a_commit);

async fn the_paper_book_keeps_one_order_per_client_id(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let order = PaperOrder {
        client_order_id: "lh-1".into(),
        account_id: "a".into(),
        market: "BTC-USD".into(),
        side: "buy".into(),
        size: "0.01".into(),
        price: "65032".into(),
        fee: "0.325".into(),
        exchange_order_id: "paper-lh-1".into(),
        placed_at: Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap(),
        status: "filled".into(),
        good_til: None,
    };
    let first = PaperBook::of(&store).book(&order).await.expect("book");
    let again = PaperBook::of(&store)
        .book(&PaperOrder {
            price: "99999".into(),
            ..order.clone()
        })
        .await
        .expect("book again");
    assert_eq!(first, order);
    assert_eq!(again, order, "the second booking returns the first order");
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 1);

    // A batch mixing new and known client ids answers each, in order, as booked.
    let new_one = PaperOrder {
        client_order_id: "lh-2".into(),
        exchange_order_id: "paper-lh-2".into(),
        ..order.clone()
    };
    let repriced_known = PaperOrder {
        price: "1".into(),
        ..order.clone()
    };
    let batch = PaperBook::of(&store)
        .book_all(&[new_one.clone(), repriced_known])
        .await
        .expect("book a batch");
    assert_eq!(batch, [new_one, order]);
    assert_eq!(PaperBook::of(&store).count().await.expect("count"), 2);
}
on_both_stores!(the_paper_book_keeps_one_order_per_client_id);

/// One execution saga at a time among processes sharing a PostgreSQL store; when the holder dies
/// (its connection closes), another takes over. An embedded store has a single process.
async fn the_saga_lease_has_one_holder_at_a_time(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let other_process = test.open().await;
    let mut first = store
        .try_lease("execution")
        .await
        .expect("lease")
        .expect("free");
    assert!(first.is_held().await);
    let second = other_process.try_lease("execution").await.expect("lease");
    match backend {
        Backend::Postgres => assert!(second.is_none(), "a second holder while the first lives"),
        Backend::Sqlite => assert!(second.is_some()),
    }
    drop(second);
    drop(first);
    eventually("the lease to pass to the other process", || async {
        other_process.try_lease("execution").await.expect("lease")
    })
    .await;
}
on_both_stores!(the_saga_lease_has_one_holder_at_a_time);

/// A long history is snapshotted, and a fresh process loads snapshot + tail to exactly the state
/// a full replay gives; snapshots it may not trust are ignored, never half-used.
async fn snapshots_load_to_the_same_state_as_a_full_replay(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let writer = start_ledger(&store, &mut tasks);
    open_account(&writer, "long").await;
    // Two events a signal, each leaving its receipt and its order in flight in the state.
    let signals = ledgerhook::ledger::SNAPSHOT_INTERVAL_EVENTS / 2;
    for n in 0..signals {
        writer
            .execute("long", signal(&format!("s{n}")), &context())
            .await
            .expect("signal");
    }
    // A snapshot waits for twice the state's entries in events (and at least the account's
    // interval): events that leave the state as it is carry the history past both.
    let changes = ledgerhook::ledger::SNAPSHOT_INTERVAL_EVENTS * 2;
    for _ in 0..changes {
        let change = AccountCommand::RecordCredentialChange {
            field: "telegram_chat_id".to_owned(),
            cleared: false,
            by: "test".to_owned(),
            at: Utc::now(),
        };
        writer
            .execute("long", change, &context())
            .await
            .expect("change");
    }
    let snapshot = eventually("a snapshot to be stored", || async {
        store.events().snapshot("long").await.expect("read")
    })
    .await;
    assert!(snapshot.version >= 2 * ledgerhook::ledger::SNAPSHOT_INTERVAL_EVENTS);

    let fresh = start_ledger(&store, &mut tasks);
    let from_snapshot = fresh.load("long").await.expect("load");
    let replayed = fresh.load_from_events("long").await.expect("replay");
    assert_eq!(from_snapshot.version, 1 + 2 * signals + changes);
    assert_eq!(from_snapshot.version, replayed.version);
    assert_eq!(from_snapshot.state, replayed.state);

    // Written by other code, or unreadable: ignored, and the full replay decides.
    for (state_version, state) in [
        ("0/old-release", snapshot.state.clone()),
        (
            snapshot.state_version.as_str(),
            json!({"not": "an account"}),
        ),
    ] {
        let untrusted = ledgerhook::store::Snapshot {
            version: snapshot.version + 1,
            state_version: state_version.to_owned(),
            state,
        };
        store
            .events()
            .save_snapshot("long", &untrusted)
            .await
            .expect("save");
        let loaded = fresh.load("long").await.expect("load");
        assert_eq!(loaded.state, replayed.state);
        assert_eq!(loaded.version, replayed.version);
    }
}
on_both_stores!(snapshots_load_to_the_same_state_as_a_full_replay);

async fn the_emergency_stop_is_its_own_stream_seen_by_every_process(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let operator = EmergencySwitch::load(store.clone()).await.expect("loads");
    // Another process's view of the same store.
    let other = EmergencySwitch::load(test.open().await)
        .await
        .expect("loads");
    let at = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
    assert!(operator
        .engage("ops", "exchange outage", at)
        .await
        .expect("engages"));
    assert!(!operator.engage("ops", "again", at).await.expect("no-op"));
    assert_eq!(other.engaged(), None, "not refreshed yet");
    other.refresh().await.expect("refreshes");
    assert_eq!(
        other.engaged().map(|stop| (stop.by, stop.reason)),
        Some(("ops".to_owned(), "exchange outage".to_owned()))
    );
    // The other process releases it on its (refreshed) view; the first sees that too.
    assert!(other
        .release("ops2", "resolved", at)
        .await
        .expect("releases"));
    operator.refresh().await.expect("refreshes");
    assert_eq!(operator.engaged(), None);
    let types: Vec<(String, String, usize)> = store
        .events()
        .load_emergency_stop()
        .await
        .expect("loads")
        .into_iter()
        .map(|e| (e.aggregate_type, e.event_type, e.sequence))
        .collect();
    assert_eq!(
        types,
        [
            (
                "EmergencyStop".to_owned(),
                "EmergencyStopEngaged".to_owned(),
                1
            ),
            (
                "EmergencyStop".to_owned(),
                "EmergencyStopReleased".to_owned(),
                2
            )
        ]
    );
}
on_both_stores!(the_emergency_stop_is_its_own_stream_seen_by_every_process);

/// A corrupt or out-of-range stored value is an error naming it, never read as 0 or a maximum.
async fn corrupt_values_are_errors_not_defaults(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let positions = store.read_models();
    for (row, what) in [
        (
            "'acct', 'BTC-USD', '1', 'long', '100', '0', -1",
            "a position's sequence",
        ),
        ("'acct', 'ETH-USD', 'lots', 'long', '100', '0', 1", "size"),
    ] {
        let insert = format!(
            "INSERT INTO positions (account_id, market, size, side, average_entry_price, \
             realized_pnl_usd, last_sequence) VALUES ({row})"
        );
        execute_sql(&store, &insert).await.expect("a raw row");
        let read = positions.account_positions("acct").await;
        assert!(
            matches!(&read, Err(StoreError::Decode { what: named, .. }) if *named == what),
            "{read:?}"
        );
        execute_sql(&store, "DELETE FROM positions")
            .await
            .expect("cleared");
    }
}
on_both_stores!(corrupt_values_are_errors_not_defaults);

fn paper_order(n: usize) -> PaperOrder {
    PaperOrder {
        client_order_id: format!("lh-{n}"),
        account_id: format!("acct-{}", n % 20),
        market: "BTC-USD".into(),
        side: "buy".into(),
        size: "0.01".into(),
        price: "65032".into(),
        fee: "0.325".into(),
        exchange_order_id: format!("paper-lh-{n}"),
        placed_at: Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap(),
        status: "filled".into(),
        good_til: None,
    }
}

/// Tables that grow get statistics whether or not the server's autovacuum runs (it is off on the
/// machine the soak found this on): without them each connection keeps the plans it made while
/// the tables were empty, and reads the paper book whole for every lookup. Instances sharing the
/// store take turns, and a pass with nothing due does nothing.
async fn table_upkeep_gives_growing_tables_statistics(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let book = PaperBook::of(&store);
    let orders: Vec<PaperOrder> = (0..3_000).map(paper_order).collect();
    for chunk in orders.chunks(500) {
        book.book_all(chunk).await.expect("books");
    }
    let Store::Postgres(postgres) = &store else {
        let pass = store.upkeep().pass().await.expect("a pass");
        assert_eq!(pass, UpkeepPass::default(), "SQLite keeps no statistics");
        one_accounts_orders_are_read_by_their_index(&store).await;
        return;
    };
    let estimated_rows = || async {
        let rows: f32 = sqlx::query_scalar(
            "SELECT reltuples FROM pg_class WHERE oid = 'paper_orders'::regclass",
        )
        .fetch_one(postgres.pool())
        .await
        .expect("pg_class");
        rows
    };

    // Another instance's pass holds the turn: this one waits for the next.
    let mut other = postgres.pool().acquire().await.expect("a connection");
    sqlx::query("SELECT pg_advisory_lock(hashtext($1 || current_schema()))")
        .bind(TURN)
        .execute(&mut *other)
        .await
        .expect("the turn");
    let pass = store.upkeep().pass().await.expect("a pass");
    assert!(pass.skipped && pass.analyzed.is_empty(), "{pass:?}");
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1 || current_schema()))")
        .bind(TURN)
        .execute(&mut *other)
        .await
        .expect("the turn back");
    drop(other);

    // The writers' counts reach the statistics views within a second or so (and a server whose
    // autovacuum runs may get there first).
    eventually("a pass to analyze the paper book", || async {
        store.upkeep().pass().await.expect("a pass");
        (estimated_rows().await >= 0.0).then_some(())
    })
    .await;
    assert_eq!(estimated_rows().await, 3_000.0);
    // Once the counts are in (a writer's may arrive after the analysis), nothing is due.
    eventually("a pass with nothing due", || async {
        let pass = store.upkeep().pass().await.expect("a pass");
        (!pass.analyzed.contains(&"paper_orders".to_owned())).then_some(())
    })
    .await;
    let found = book
        .find_all(&["lh-7", "lh-2999", "lh-missing"])
        .await
        .expect("found");
    assert_eq!(found.len(), 2);
    one_accounts_orders_are_read_by_their_index(&store).await;
}
on_both_stores!(table_upkeep_gives_growing_tables_statistics);

/// The paper venue's positions (reconciliation, for every account) read one account's orders,
/// not the whole book: its cost must not grow with the other accounts' orders.
async fn one_accounts_orders_are_read_by_their_index(store: &Store) {
    let query = "SELECT * FROM paper_orders WHERE account_id = 'acct-1'
                  ORDER BY placed_at, client_order_id";
    let plan: Vec<String> = match store {
        Store::Postgres(postgres) => sqlx::query_scalar(&format!("EXPLAIN {query}"))
            .fetch_all(postgres.pool())
            .await
            .expect("a plan"),
        Store::Sqlite(sqlite) => {
            sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {query}"))
                .fetch_all(sqlite.pool())
                .await
                .expect("a plan")
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect()
        }
    };
    assert!(
        plan.iter()
            .any(|step| step.contains("paper_orders_by_account")),
        "{plan:?}"
    );
    let orders = PaperBook::of(store)
        .of_account("acct-1")
        .await
        .expect("the account's orders");
    assert_eq!(orders.len(), 150);
}

/// The venue of every account of a saga's page is read at once, the same on both stores: each
/// user's stored choice, in the order asked (repeats included), and paper for an account that
/// has no user row.
async fn a_pages_venues_are_read_at_once_in_the_order_asked(backend: Backend) {
    use ledgerhook::exchange::{StoredVenues, Venue, VenueChoice};
    let test = TestStore::new(backend).await;
    let on_dydx = crate::support::service::create_user(&test.url, "on dydx").await;
    let on_paper = crate::support::service::create_user(&test.url, "on paper").await;
    let store = test.open().await;
    assert!(store
        .credentials()
        .set_venue(&on_dydx.user_id, "dydx")
        .await
        .expect("set"));
    let asked = [
        on_dydx.user_id.as_str(),
        on_paper.user_id.as_str(),
        "no-such-user",
        on_dydx.user_id.as_str(),
    ];
    let venues = StoredVenues(store.clone())
        .venues_of(&asked)
        .await
        .expect("read");
    assert_eq!(
        venues,
        [Venue::Dydx, Venue::Paper, Venue::Paper, Venue::Dydx]
    );
    assert_eq!(
        StoredVenues(store).venue_of(&on_dydx.user_id).await,
        Ok(Venue::Dydx)
    );
}
on_both_stores!(a_pages_venues_are_read_at_once_in_the_order_asked);
