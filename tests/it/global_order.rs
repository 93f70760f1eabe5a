//! The global order the catch-up readers follow: no event skipped or seen twice whatever the
//! commit timing, and nothing outside the ledger's own appends holds the readers back.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};
use tokio::task::JoinSet;

use ledgerhook::catchup::feed::Feed;
use ledgerhook::ledger::CommittedBatch;
use ledgerhook::store::{LogPosition, LoggedEvent, Store};

use crate::on_both_stores;
use crate::support::eventually;
use crate::support::postgres::TestDatabase;
use crate::support::service::{create_user, Options, Service};
use crate::support::stores::{Backend, TestStore};

const WRITERS: usize = 8;
const TRANSACTIONS_PER_WRITER: usize = 25;
const READERS: usize = 3;

/// The seed of a randomised test: `LEDGERHOOK_TEST_SEED` replays a failure; printed either way.
fn seed() -> u64 {
    let seed = std::env::var("LEDGERHOOK_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed={seed} (LEDGERHOOK_TEST_SEED={seed} replays this run)");
    seed
}

/// A raw connection to the test's database that can hold a transaction open as long as it likes:
/// the slow, failing or stuck writer a reader must neither skip nor wait for.
#[derive(Clone)]
enum RawDatabase {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl RawDatabase {
    async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .expect("a SQLite URL")
                .busy_timeout(Duration::from_secs(60));
            Self::Sqlite(
                SqlitePool::connect_with(options)
                    .await
                    .expect("SQLite opens"),
            )
        } else {
            Self::Postgres(PgPool::connect(url).await.expect("PostgreSQL connects"))
        }
    }

    /// Appends events `first..first + count` of `account` in one transaction that waits `delay`
    /// before it ends, and commits it unless `roll_back`.
    async fn append_slowly(
        &self,
        account: &str,
        first: usize,
        count: usize,
        delay: Duration,
        roll_back: bool,
    ) {
        const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
                              event_type, event_version, payload, metadata) \
                              VALUES ('TradingAccount', $1, $2, 'Probe', '1.0', $3, '{}')";
        macro_rules! run {
            ($pool:expr, $payload:expr) => {{
                let mut tx = $pool.begin().await.expect("begin");
                for sequence in first..first + count {
                    sqlx::query(INSERT)
                        .bind(account)
                        .bind(i64::try_from(sequence).expect("small"))
                        .bind($payload)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                }
                tokio::time::sleep(delay).await;
                if roll_back {
                    tx.rollback().await.expect("rollback");
                } else {
                    tx.commit().await.expect("commit");
                }
            }};
        }
        match self {
            Self::Postgres(pool) => run!(pool, serde_json::json!({"Probe": {}})),
            Self::Sqlite(pool) => run!(pool, r#"{"Probe":{}}"#),
        }
    }
}

/// Where a tailing reader takes its pages from.
enum PageSource {
    /// The store, in pages of random sizes.
    Store(Box<StdRng>),
    /// What a committer hands over in process, the store otherwise: it must read exactly the
    /// pages the store would give.
    Feed(Feed),
}

/// Tails the log from the start until `done` and caught up; returns (account, sequence,
/// position) in the order read, and how many pages came straight from a feed.
async fn tail(
    store: Store,
    done: Arc<AtomicBool>,
    mut source: PageSource,
) -> (Vec<(String, usize, LogPosition)>, u64) {
    let mut seen = Vec::new();
    let mut position = LogPosition::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reader stalled at {position:?}"
        );
        let finished = done.load(Ordering::SeqCst);
        let page = match &mut source {
            PageSource::Store(rng) => {
                let size = rng.random_range(1..=40);
                store.events().read_log(position, size).await
            }
            PageSource::Feed(feed) => feed.next_page(&store, position, 40).await,
        }
        .expect("a page");
        if page.is_empty() {
            if finished {
                let handed_over = match &source {
                    PageSource::Feed(feed) => feed.handed_over,
                    PageSource::Store(_) => 0,
                };
                return (seen, handed_over);
            }
            match &mut source {
                PageSource::Store(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                PageSource::Feed(feed) => {
                    feed.wait(Duration::from_millis(2), std::future::pending())
                        .await
                }
            }
            continue;
        }
        for logged in page {
            assert!(logged.position > position, "positions only move forward");
            position = logged.position;
            seen.push((
                logged.event.aggregate_id.clone(),
                logged.event.sequence,
                logged.position,
            ));
        }
    }
}

/// Many writers commit and roll back after random delays, some through the service's own append
/// and some in raw transactions held open meanwhile; several readers tail the log at once. Each
/// reader sees every committed event exactly once, none that rolled back, in one order that all
/// readers share and that keeps each account's sequence.
async fn every_reader_sees_every_committed_event_once_in_one_order(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let raw = RawDatabase::connect(&test.url).await;
    let mut rng = StdRng::seed_from_u64(seed());
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = JoinSet::new();
    for _ in 0..READERS {
        readers.spawn(tail(
            store.clone(),
            done.clone(),
            PageSource::Store(Box::new(StdRng::seed_from_u64(rng.random()))),
        ));
    }
    // What a committer would publish: the service-path appends with their positions.
    let (published, _) = tokio::sync::broadcast::channel::<CommittedBatch>(1024);
    let feed_reader = tokio::spawn(tail(
        store.clone(),
        done.clone(),
        PageSource::Feed(Feed::new(Some(published.subscribe()))),
    ));
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let (store, raw, published) = (store.clone(), raw.clone(), published.clone());
        let mut rng = StdRng::seed_from_u64(rng.random());
        writers.spawn(async move {
            let account = format!("w{writer}");
            let mut committed = Vec::new();
            let mut next = 1;
            for _ in 0..TRANSACTIONS_PER_WRITER {
                let count = rng.random_range(1..=3);
                let through_service = writer % 2 == 0 && rng.random_bool(0.5);
                let roll_back = !through_service && rng.random_bool(0.15);
                if through_service {
                    append_and_publish(&store, &published, probe_events(&account, next, count))
                        .await;
                } else {
                    let delay = Duration::from_millis(rng.random_range(0..15));
                    raw.append_slowly(&account, next, count, delay, roll_back)
                        .await;
                }
                if !roll_back {
                    committed
                        .extend((next..next + count).map(|sequence| (account.clone(), sequence)));
                    next += count;
                }
            }
            committed
        });
    }
    let mut committed = BTreeSet::new();
    while let Some(written) = writers.join_next().await {
        committed.extend(written.expect("a writer finishes"));
    }
    done.store(true, Ordering::SeqCst);
    let mut orders = Vec::new();
    while let Some(read) = readers.join_next().await {
        orders.push(read.expect("a reader finishes").0);
    }
    let (through_feed, _) = feed_reader.await.expect("the feed reader finishes");
    orders.push(through_feed);
    for seen in &orders {
        let keys: Vec<_> = seen.iter().map(|(a, s, _)| (a.clone(), *s)).collect();
        let distinct: BTreeSet<_> = keys.iter().cloned().collect();
        assert_eq!(distinct.len(), keys.len(), "no event is seen twice");
        assert_eq!(distinct, committed, "every committed event, and only those");
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (account, sequence, _) in seen {
            let previous = last.insert(account, *sequence).unwrap_or(0);
            assert_eq!(
                *sequence,
                previous + 1,
                "an account's events keep their order"
            );
        }
        assert_eq!(seen, &orders[0], "every reader sees the same order");
    }
}
on_both_stores!(every_reader_sees_every_committed_event_once_in_one_order);

/// A feed hands a reader what this process committed when it continues exactly where the reader
/// stands, and sends it to the store for anything else (another process's append).
async fn a_feed_hands_over_what_continues_the_reader(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let (published, _) = tokio::sync::broadcast::channel::<CommittedBatch>(16);
    let mut feed = Feed::new(Some(published.subscribe()));
    // Another process's append: not published here.
    store
        .events()
        .append(&probe_events("other", 1, 2))
        .await
        .expect("appends");
    append_and_publish(&store, &published, probe_events("ours", 1, 2)).await;
    let first = feed
        .next_page(&store, LogPosition::default(), 40)
        .await
        .expect("a page");
    let read: Vec<_> = first
        .iter()
        .map(|l| l.event.aggregate_id.as_str())
        .collect();
    assert_eq!(read, ["other", "other", "ours", "ours"]);
    assert_eq!((feed.handed_over, feed.read_from_store), (0, 1));

    append_and_publish(&store, &published, probe_events("ours", 3, 2)).await;
    let after = first.last().expect("events").position;
    let second = feed.next_page(&store, after, 40).await.expect("a page");
    let sequences: Vec<_> = second.iter().map(|l| l.event.sequence).collect();
    assert_eq!(sequences, [3, 4]);
    assert_eq!(
        (feed.handed_over, feed.read_from_store),
        (1, 1),
        "the second page came from the committer, without a query"
    );
}
on_both_stores!(a_feed_hands_over_what_continues_the_reader);

/// Appends `events` and publishes them with their positions, as the ledger's committer does.
async fn append_and_publish(
    store: &Store,
    published: &tokio::sync::broadcast::Sender<CommittedBatch>,
    events: Vec<cqrs_es::persist::SerializedEvent>,
) {
    let positions = store.events().append(&events).await.expect("appends");
    let batch: CommittedBatch = positions
        .into_iter()
        .zip(events)
        .map(|(position, event)| LoggedEvent {
            position,
            event: event.into(),
        })
        .collect();
    let _ = published.send(batch);
}

fn probe_events(
    account: &str,
    first: usize,
    count: usize,
) -> Vec<cqrs_es::persist::SerializedEvent> {
    (first..first + count)
        .map(|sequence| cqrs_es::persist::SerializedEvent {
            aggregate_id: account.to_owned(),
            sequence,
            aggregate_type: "TradingAccount".to_owned(),
            event_type: "Probe".to_owned(),
            event_version: "1.0".to_owned(),
            payload: serde_json::json!({"Probe": {}}),
            metadata: serde_json::json!({}),
        })
        .collect()
}

/// Opens a transaction that has a transaction id (as `pg_dump`, an analyst's session or a client
/// idle in transaction would) and leaves it open; returns the connection and its backend pid.
async fn hold_transaction_open(url: &str) -> (PgConnection, i32) {
    let mut connection = PgConnection::connect(url).await.expect("connects");
    sqlx::query("BEGIN")
        .execute(&mut connection)
        .await
        .expect("begin");
    sqlx::query("SELECT txid_current()")
        .execute(&mut connection)
        .await
        .expect("takes a transaction id");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .expect("its pid");
    (connection, pid)
}

async fn still_in_transaction(url: &str, pid: i32) -> bool {
    let mut observer = PgConnection::connect(url).await.expect("connects");
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_optional(&mut observer)
            .await
            .expect("pg_stat_activity");
    state.as_deref() == Some("idle in transaction")
}

/// Issue 10: a transaction left open elsewhere on the server (another database, or the ledger's
/// own) held every catch-up reader back until it ended, so an acknowledged signal was placed only
/// then. Now the signal is filled and its trader notified while both stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_elsewhere_on_the_server_does_not_delay_execution() {
    let test = TestStore::new(Backend::Postgres).await;
    let neighbour = TestDatabase::create().await;
    let user = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::default()).await;
    let (elsewhere, elsewhere_pid) = hold_transaction_open(&neighbour.url).await;
    let (here, here_pid) = hold_transaction_open(&test.url).await;

    let (status, body) = service
        .post_signal(
            &user.webhook_token,
            r#"{"symbol":"BTC-USD","side":"buy","size":"0.01","id":"open-tx-1"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let store = test.open().await;
    eventually("the signal filled and its trader notified", || async {
        let events = crate::support::event_types(&store, &user.user_id).await;
        (events.iter().any(|e| e == "OrderFilled")
            && events.iter().any(|e| e == "NotificationSent"))
        .then_some(())
    })
    .await;
    assert!(
        still_in_transaction(&neighbour.url, elsewhere_pid).await
            && still_in_transaction(&test.url, here_pid).await,
        "both transactions were open all along"
    );
    drop((elsewhere, here));
    service.stop().await;
}

/// A history written before migration 0007, where commit order and insertion order differ, keeps
/// the order its readers saw, and a reader's checkpoint still points after the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_before_migration_0007_keeps_its_order_and_checkpoints() {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.expect("connects");
    let mut before = sqlx::migrate!("./migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|migration| migration.version < 7)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.expect("migrations 0001-0006");

    // `first` takes its transaction id before `second`, but `second` inserts first.
    const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                          event_version, payload, metadata) \
                          VALUES ('TradingAccount', $1, 1, 'Probe', '1.0', '{}', '{}')";
    let mut first = pool.begin().await.expect("begin");
    let first_tx: i64 = sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&mut *first)
        .await
        .expect("an id");
    let mut second = pool.begin().await.expect("begin");
    sqlx::query("SELECT txid_current()")
        .execute(&mut *second)
        .await
        .expect("an id");
    sqlx::query(INSERT)
        .bind("second")
        .execute(&mut *second)
        .await
        .expect("insert");
    second.commit().await.expect("commit");
    sqlx::query(INSERT)
        .bind("first")
        .execute(&mut *first)
        .await
        .expect("insert");
    first.commit().await.expect("commit");
    let first_seq: i64 =
        sqlx::query_scalar("SELECT global_seq FROM events WHERE aggregate_id = 'first'")
            .fetch_one(&pool)
            .await
            .expect("its insertion number");
    // A reader that had read only `first` (the older transaction).
    sqlx::query("INSERT INTO checkpoints (name, tx_id, global_seq) VALUES ('execution', $1, $2)")
        .bind(first_tx)
        .bind(first_seq)
        .execute(&pool)
        .await
        .expect("a checkpoint");

    let store = ledgerhook::app::open_store(&database.url)
        .await
        .expect("migrates to the current schema");
    let log = store
        .events()
        .read_log(LogPosition::default(), 10)
        .await
        .expect("reads");
    let order: Vec<_> = log
        .iter()
        .map(|l| (l.event.aggregate_id.as_str(), l.position.global_seq))
        .collect();
    assert_eq!(
        order,
        [("first", 1), ("second", 2)],
        "the order readers saw"
    );
    let checkpoint = store.events().checkpoint("execution").await.expect("reads");
    assert_eq!(checkpoint.global_seq, 1, "still after `first` only");
    let appended = store
        .events()
        .append(&probe_events("third", 1, 2))
        .await
        .expect("appends");
    let after: Vec<i64> = appended.iter().map(|p| p.global_seq).collect();
    assert_eq!(after, [3, 4], "new events follow the history");
}
