//! The idempotency keys the ledger keeps beside the events (`src/store/signal_keys.rs`), on both
//! stores: written by the append that uses them, found by a ledger that never saw them (a restart,
//! another instance), per account, forgotten after their window, and rebuilt from the events by
//! the migration that created them.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use tokio::task::JoinSet;

use aggregates::{
    upcasters, AccountCommand, AccountEvent, Market, OrderType, Quantity, RejectionReason, SeenKey,
    Side, SignalId, SignalIntent, TradeInstruction,
};
use ledgerhook::ledger::{encode, Ledger, LedgerOptions};
use ledgerhook::store::upkeep::forget_expired_keys;
use ledgerhook::store::{SignalKey, Store, FORGET_BATCH};

use crate::on_both_stores;
use crate::store::{context, open_account, start_ledger};
use crate::support::stores::{Backend, TestStore};

pub(crate) fn signal(
    signal_id: &str,
    key: &str,
    received_at: DateTime<Utc>,
    window: Duration,
) -> AccountCommand {
    AccountCommand::ReceiveSignal(SignalIntent {
        signal_id: SignalId(signal_id.to_owned()),
        idempotency_key: key.to_owned(),
        key_expires_at: received_at + window,
        market: Market::parse("BTC-USD").expect("a market"),
        instruction: TradeInstruction::Order {
            side: Side::Buy,
            size: Quantity::new(Decimal::new(1, 3)).expect("a size"),
        },
        order_type: OrderType::Market,
        take_profit: None,
        stop_loss: None,
        alert_price: None,
        reference_price: Decimal::from(65_000),
        sent_at: None,
        max_lag_seconds: 60,
        emergency_stop: None,
        paper_only: false,
        quota: None,
        received_at,
        earlier_use: None,
    })
}

/// How the account took the signal: `received`, or the rejection's kind.
async fn outcome(ledger: &Ledger, account: &str, command: AccountCommand) -> String {
    let committed = ledger
        .execute(account, command, &context())
        .await
        .expect("recorded");
    match committed.events.first() {
        Some(AccountEvent::SignalReceived { .. }) => "received".to_owned(),
        Some(AccountEvent::SignalRejected {
            reason: RejectionReason::Duplicate { original_signal_id },
            ..
        }) => format!("duplicate of {original_signal_id}"),
        Some(AccountEvent::SignalRejected {
            reason: RejectionReason::Stale { .. },
            ..
        }) => "stale".to_owned(),
        other => format!("{other:?}"),
    }
}

async fn recall(store: &Store, account: &str, key: &str) -> Option<SeenKey> {
    store
        .signal_keys()
        .recall(account, &[key.to_owned()])
        .await
        .expect("recalled")
        .remove(key)
}

async fn a_keys_use_lands_with_its_events_and_is_forgotten_an_hour_after_its_window(
    backend: Backend,
) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(&store, &mut tasks);
    open_account(&ledger, "acct").await;
    open_account(&ledger, "stranger").await;
    let t0 = Utc::now();
    let window = Duration::hours(1);

    assert_eq!(
        outcome(&ledger, "acct", signal("s1", "k1", t0, window)).await,
        "received"
    );
    assert_eq!(
        recall(&store, "acct", "k1").await,
        Some(SeenKey {
            signal_id: SignalId("s1".into()),
            expires_at: t0 + window,
        }),
        "stored to the nanosecond with its events"
    );
    // Strangers: the same key on another account is that account's own first use.
    assert_eq!(recall(&store, "stranger", "k1").await, None);
    assert_eq!(
        outcome(&ledger, "stranger", signal("x1", "k1", t0, window)).await,
        "received"
    );

    // A ledger that never saw the key (a restart, another instance) finds it in the store.
    let restarted = start_ledger(&store, &mut tasks);
    let resend = signal("s2", "k1", t0 + Duration::minutes(59), window);
    assert_eq!(outcome(&restarted, "acct", resend).await, "duplicate of s1");

    // Time: kept an hour past its window, for a signal still deciding; then forgotten.
    let expiry = t0 + window;
    let forgotten = forget_expired_keys(&store, expiry + Duration::minutes(59))
        .await
        .expect("a pass");
    assert_eq!(forgotten, 0);
    let forgotten = forget_expired_keys(&store, expiry + Duration::minutes(61))
        .await
        .expect("a pass");
    assert_eq!(forgotten, 2, "acct's and the stranger's k1");
    assert_eq!(recall(&store, "acct", "k1").await, None);

    // After its window the key is a new signal's, and is remembered for it.
    let later = signal("s3", "k1", expiry + Duration::minutes(61), window);
    assert_eq!(outcome(&restarted, "acct", later).await, "received");
    assert_eq!(
        recall(&store, "acct", "k1")
            .await
            .map(|seen| seen.signal_id),
        Some(SignalId("s3".into()))
    );
}
on_both_stores!(a_keys_use_lands_with_its_events_and_is_forgotten_an_hour_after_its_window);

/// Scale: a busy account used more keys than its ledger keeps in memory (two here, 16,384 in
/// the service). Every resend is still refused as the duplicate it is (the keys past the room
/// are asked of the store), by this ledger and by one that loads the account afresh, and a new
/// key is still received.
async fn keys_past_the_memorys_room_are_still_refused_when_sent_again(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let options = LedgerOptions {
        known_keys_kept: 2,
        ..LedgerOptions::for_store(&store)
    };
    let ledger = Ledger::start(store.clone(), options.clone(), upcasters(), &mut tasks);
    open_account(&ledger, "busy").await;
    let t0 = Utc::now();
    let window = Duration::hours(24);
    let used = 6;
    for n in 0..used {
        let first = signal(&format!("s{n}"), &format!("k{n}"), t0, window);
        assert_eq!(outcome(&ledger, "busy", first).await, "received", "k{n}");
    }
    let reloaded = Ledger::start(store.clone(), options, upcasters(), &mut tasks);
    for (n, ledger) in (0..used).flat_map(|n| [(n, &ledger), (n, &reloaded)]) {
        let resend = signal(&format!("r{n}"), &format!("k{n}"), t0, window);
        assert_eq!(
            outcome(ledger, "busy", resend).await,
            format!("duplicate of s{n}")
        );
    }
    let new = signal("s-new", "k-new", t0, window);
    assert_eq!(outcome(&ledger, "busy", new).await, "received");
}
on_both_stores!(keys_past_the_memorys_room_are_still_refused_when_sent_again);

/// Scale: a backlog of expired keys (a service stopped for a day) is forgotten in batches, and
/// the live keys stay.
async fn a_backlog_of_expired_keys_is_forgotten_in_batches(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let now = Utc::now();
    let backlog = 2 * FORGET_BATCH + 7;
    let keys: Vec<SignalKey> = (0..backlog + 3)
        .map(|n| SignalKey {
            account_id: format!("acct-{}", n % 50),
            key: format!("key-{n}"),
            signal_id: format!("s-{n}"),
            // The last three are live.
            expires_at: if n < backlog {
                now - Duration::days(1) + Duration::seconds(n)
            } else {
                now + Duration::hours(1)
            },
        })
        .collect();
    let opened = AccountEvent::AccountOpened {
        display_name: "t".into(),
        limits: Default::default(),
        opened_at: now,
    };
    let events = encode("acct-0", 1, &[opened], &context()).expect("encoded");
    store
        .events()
        .append_remembering(&events, &keys)
        .await
        .expect("appended with its keys");
    assert_eq!(
        store.signal_keys().count().await.expect("counted"),
        backlog + 3
    );
    let forgotten = forget_expired_keys(&store, now).await.expect("a pass");
    assert_eq!(forgotten, u64::try_from(backlog).expect("positive"));
    assert_eq!(store.signal_keys().count().await.expect("counted"), 3);
}
on_both_stores!(a_backlog_of_expired_keys_is_forgotten_in_batches);

/// The statement of the migration that fills the table from the events already in the ledger.
fn backfill_sql(backend: Backend) -> String {
    let migration = match backend {
        Backend::Postgres => include_str!("../../migrations/postgres/0020_signal_keys.sql"),
        Backend::Sqlite => include_str!("../../migrations/sqlite/0019_signal_keys.sql"),
    };
    let (_, backfill) = migration
        .split_once("-- backfill")
        .expect("the migration marks its backfill");
    // From the line after the marker's.
    let (_, backfill) = backfill
        .split_once('\n')
        .expect("a statement after the marker");
    backfill
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn execute_sql(store: &Store, sql: &str) {
    match store {
        Store::Postgres(pg) => sqlx::raw_sql(sql).execute(pg.pool()).await.map(drop),
        Store::Sqlite(lite) => sqlx::raw_sql(sql).execute(lite.pool()).await.map(drop),
    }
    .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// A ledger written before the key table (an upgrade): the migration finds every key that still
/// counts in the events, with its latest use, so no resend slips through the upgrade.
async fn an_upgrade_remembers_the_keys_the_ledger_already_used(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(&store, &mut tasks);
    open_account(&ledger, "acct").await;
    let now = Utc::now();
    let day = Duration::hours(24);
    ledger_story(&ledger, now, day).await;
    let before: Vec<Option<SeenKey>> = recall_all(&store).await;

    // As the ledger stood before the migration: no keys beside its events.
    execute_sql(&store, "DELETE FROM signal_keys").await;
    assert_eq!(store.signal_keys().count().await.expect("counted"), 0);
    execute_sql(&store, &backfill_sql(backend)).await;

    let after = recall_all(&store).await;
    assert_eq!(
        after[0].as_ref().map(|seen| &seen.signal_id),
        Some(&SignalId("s2".into()))
    );
    assert_eq!(after[1], None, "a key past its window is not brought back");
    assert_eq!(
        after[2].as_ref().map(|seen| &seen.signal_id),
        Some(&SignalId("s4".into()))
    );
    // SQLite reads times to the millisecond, PostgreSQL to the microsecond.
    for (rebuilt, written) in after.iter().zip(&before) {
        let (Some(rebuilt), Some(written)) = (rebuilt, written) else {
            continue;
        };
        let drift = (rebuilt.expires_at - written.expires_at).num_microseconds();
        assert!(
            drift.is_some_and(|us| us.abs() <= 1_000),
            "{rebuilt:?} vs {written:?}"
        );
    }
    // And the restarted service refuses a resend of a key the events used.
    let restarted = start_ledger(&store, &mut tasks);
    let resend = signal("s9", "live", now + Duration::minutes(1), day);
    assert_eq!(outcome(&restarted, "acct", resend).await, "duplicate of s2");
}
on_both_stores!(an_upgrade_remembers_the_keys_the_ledger_already_used);

/// `live`: used by s1, then again by s2 after s1's short window ran out, and resent (a duplicate,
/// which uses no key of its own); `gone`: expired a minute ago; `kept`: a rejected signal's key.
async fn ledger_story(ledger: &Ledger, now: DateTime<Utc>, day: Duration) {
    let long_ago = now - Duration::hours(2);
    let steps = [
        (
            signal("s1", "live", long_ago, Duration::minutes(1)),
            "received",
        ),
        (
            signal("s2", "live", now - Duration::minutes(30), day),
            "received",
        ),
        (
            signal("s3", "live", now - Duration::minutes(29), day),
            "duplicate of s2",
        ),
        (
            signal("g1", "gone", long_ago, Duration::minutes(119)),
            "received",
        ),
        (
            stale("s4", "kept", now - Duration::minutes(10), day),
            "stale",
        ),
    ];
    for (command, expected) in steps {
        let taken = outcome(ledger, "acct", command).await;
        assert!(taken.starts_with(expected), "{taken} is not {expected}");
    }
}

/// A signal refused as stale: refused, but its key is used.
fn stale(
    signal_id: &str,
    key: &str,
    received_at: DateTime<Utc>,
    window: Duration,
) -> AccountCommand {
    let mut command = signal(signal_id, key, received_at, window);
    if let AccountCommand::ReceiveSignal(intent) = &mut command {
        intent.sent_at = Some(received_at - Duration::hours(1));
    }
    command
}

async fn recall_all(store: &Store) -> Vec<Option<SeenKey>> {
    let mut recalled = Vec::new();
    for key in ["live", "gone", "kept"] {
        recalled.push(recall(store, "acct", key).await);
    }
    recalled
}
