//! The command path: `Ledger::execute(account, ReceiveSignal, ..)`, which decides on the account's
//! state and durably appends the resulting events, for accounts with 0, 1,000 and 10,000 prior
//! events, on SQLite (a file in a temporary directory) and PostgreSQL (a fresh database on the
//! server named by `DATABASE_URL`, dropped afterwards).
//!
//! - `command/{store}/{events}`: a warm ledger (the account is already cached), one new signal per
//!   iteration; only the `ReceiveSignal` command is timed. This is the cost every webhook pays.
//!   After it, untimed, the iteration does what the execution saga would (the order fills, the
//!   trader is told), so the account stays in its steady state: nothing left in flight.
//! - `command_cold/{store}/{events}`: the first command of a freshly started ledger on an account
//!   it has never seen, so it loads the account first: from the snapshot the ledger itself took
//!   (accounts past `SNAPSHOT_INTERVAL_EVENTS`), plus the few events after it.
//! - `command_cold_replay/{store}/{events}`: the same with no snapshot stored, so the load replays
//!   the whole history (an account written before snapshots, or after a state-schema change).
//!
//! Cold iterations each use a newly seeded account; only the `execute` call is timed.
//!
//! - `decide/in_flight/{n}`: the domain's decision alone (`TradingAccount::decide` on a
//!   `ReceiveSignal`, no store), on an account with `n` signals approved and not yet executed: a
//!   busy account whose saga is behind. Pins that the decision does not grow with them (the
//!   exposure it checks is kept per market, not summed per decision).
//!
//! "0 prior events" means an account holding only its `AccountOpened` event (a signal needs an
//! open account). Prior events are whole signal lifecycles (received, approved, submitted, filled,
//! position change, notified) produced by the real aggregate and appended directly to the store in
//! batches; their alerts are days old, so their idempotency keys have expired.
//!
//! Environment: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names the
//! PostgreSQL server to create the scratch database on; `BENCH_STORES` (default
//! `sqlite,postgres`) picks the stores. See `benches/README.md`.

mod support;

use support::{interrupted, with_database};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use criterion::{BenchmarkId, Criterion, SamplingMode};
use rust_decimal::Decimal;
use sqlx::Connection;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use aggregates::{
    AccountCommand, AccountEvent, ClientOrderId, ExecutionReport, Fill, Market,
    NotificationOutcome, OrderType, Quantity, RiskLimits, Side, SignalId, SignalIntent,
    TradeInstruction, TradingAccount, IDEMPOTENCY_WINDOW_HOURS,
};
use ledgerhook::app::open_store;
use ledgerhook::ledger::{
    encode, Committed, EventContext, Ledger, LedgerOptions, SNAPSHOT_INTERVAL_EVENTS,
};
use ledgerhook::store::Store;

/// Prior events of the benchmarked accounts.
const SIZES: [usize; 3] = [0, 1_000, 10_000];
/// Events per `Store::append` while seeding.
const SEED_BATCH: usize = 1_000;
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every measured signal gets its own id and idempotency key.
static SIGNALS: AtomicU64 = AtomicU64::new(0);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    let templates: BTreeMap<usize, Vec<SerializedEvent>> = SIZES
        .iter()
        .map(|&size| {
            (
                size,
                history("template", size, Utc::now() - TimeDelta::days(7)),
            )
        })
        .collect();
    // Criterion's loop cannot be stopped cleanly: on Ctrl-C or SIGTERM, remove the scratch
    // stores and exit.
    let leftovers = Leftovers::default();
    runtime.spawn(leftovers.clone().remove_when_interrupted());
    bench_decide(&mut criterion);
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    for kind in stores.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let target = match runtime.block_on(Target::open(kind, &leftovers)) {
            Ok(target) => target,
            Err(error) => {
                eprintln!("\n*** command_path: skipping the {kind} store: {error:#}\n");
                continue;
            }
        };
        bench_store(&mut criterion, &runtime, &target, &templates);
        runtime.block_on(target.close(&leftovers));
    }
    criterion.final_summary();
}

/// Signals in flight on the account `decide` is measured on.
const IN_FLIGHT: [usize; 3] = [0, 1_000, 10_000];

fn bench_decide(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("decide");
    for &pending in &IN_FLIGHT {
        let state = with_signals_in_flight("decide", pending);
        group.bench_function(BenchmarkId::new("in_flight", pending), |b| {
            b.iter_batched(
                || signal("decide").0,
                |command| {
                    let events = state.decide(command).expect("decided");
                    assert!(matches!(
                        events.as_slice(),
                        [
                            AccountEvent::SignalReceived { .. },
                            AccountEvent::RiskApproved { .. }
                        ]
                    ));
                    events
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// An open account with `pending` signals received and approved in the last hour, none executed.
fn with_signals_in_flight(account: &str, pending: usize) -> TradingAccount {
    let start = Utc::now() - TimeDelta::hours(1);
    let mut state = TradingAccount::default();
    let run = |state: &mut TradingAccount, command| {
        for event in state.decide(command).expect("seed command refused") {
            state.apply(event);
        }
    };
    run(
        &mut state,
        AccountCommand::OpenAccount {
            display_name: "bench".to_owned(),
            limits: RiskLimits::default(),
            opened_at: start,
        },
    );
    for n in 0..pending {
        let at = start + TimeDelta::milliseconds(n as i64);
        let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
        let intent = intent(account, format!("id:pending-{n}"), side, at);
        run(&mut state, AccountCommand::ReceiveSignal(intent));
    }
    assert_eq!(state.in_flight.len(), pending);
    state
}

fn bench_store(
    criterion: &mut Criterion,
    runtime: &Runtime,
    target: &Target,
    templates: &BTreeMap<usize, Vec<SerializedEvent>>,
) {
    let kind = target.store.kind();
    let store = &target.store;

    // Warm: one ledger, every account loaded before measuring.
    let mut committers = JoinSet::new();
    let ledger = runtime.block_on(async { start_ledger(store, &mut committers) });
    let mut group = criterion.benchmark_group("command");
    for &size in &SIZES {
        let account = runtime.block_on(async {
            let account = uuid::Uuid::new_v4().to_string();
            seed(store, &templates[&size], &account).await;
            // Loads the account into the ledger's cache.
            let committed = receive_signal(&ledger, &account).await;
            conclude(&ledger, &account, &committed).await;
            account
        });
        let (ledger, account) = (&ledger, account.as_str());
        group.bench_function(BenchmarkId::new(kind, size), |b| {
            b.to_async(runtime).iter_custom(|iters| async move {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let (command, context) = signal(account);
                    let started = Instant::now();
                    let committed = ledger
                        .execute(account, command, &context)
                        .await
                        .expect("the command failed");
                    timed += started.elapsed();
                    conclude(ledger, account, &committed).await;
                }
                timed
            })
        });
    }
    group.finish();
    drop(ledger);
    runtime.block_on(async { while committers.join_next().await.is_some() {} });

    // Cold: a fresh ledger per iteration, on a freshly seeded account.
    for (name, snapshot) in [("command_cold", true), ("command_cold_replay", false)] {
        let mut group = criterion.benchmark_group(name);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        for &size in &SIZES {
            // Seeding a 10,000-event account takes longer than the timed command: fewer fit.
            group.measurement_time(Duration::from_secs(if size >= 10_000 { 8 } else { 5 }));
            let template = &templates[&size];
            group.bench_function(BenchmarkId::new(kind, size), |b| {
                b.to_async(runtime).iter_custom(|iters| async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let account = uuid::Uuid::new_v4().to_string();
                        seed(store, template, &account).await;
                        if snapshot {
                            prime_snapshot(store, &account).await;
                        }
                        let mut committers = JoinSet::new();
                        let ledger = start_ledger(store, &mut committers);
                        let (command, context) = signal(&account);
                        let started = Instant::now();
                        let committed = ledger
                            .execute(&account, command, &context)
                            .await
                            .expect("the command failed");
                        timed += started.elapsed();
                        assert_approved(&committed);
                        drop(ledger);
                        while committers.join_next().await.is_some() {}
                    }
                    timed
                })
            });
        }
        group.finish();
    }
}

fn start_ledger(store: &Store, committers: &mut JoinSet<()>) -> Ledger {
    Ledger::start(
        store.clone(),
        LedgerOptions::for_store(store),
        aggregates::upcasters(),
        committers,
    )
}

/// Lets a short-lived ledger load the account and take a signal through its life, as the service
/// would; an account past twice `SNAPSHOT_INTERVAL_EVENTS` (the longest interval an account can
/// draw) gets its snapshot then, which this waits for.
async fn prime_snapshot(store: &Store, account: &str) {
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let committed = receive_signal(&ledger, account).await;
    conclude(&ledger, account, &committed).await;
    drop(ledger);
    while committers.join_next().await.is_some() {}
    if committed.version < 2 * SNAPSHOT_INTERVAL_EVENTS {
        return;
    }
    let waiting = Instant::now();
    loop {
        let snapshot = store
            .events()
            .snapshot(account)
            .await
            .expect("snapshot unreadable");
        if snapshot.is_some_and(|snapshot| snapshot.version >= committed.version) {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the ledger stored no snapshot for {account}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn receive_signal(ledger: &Ledger, account: &str) -> Committed {
    let (command, context) = signal(account);
    let committed = ledger
        .execute(account, command, &context)
        .await
        .expect("the command failed");
    assert_approved(&committed);
    committed
}

/// What the execution saga does after an approval: the order fills, the trader is told. Keeps the
/// account in its steady state (no signal left in flight) however many signals it receives.
async fn conclude(ledger: &Ledger, account: &str, received: &Committed) {
    assert_approved(received);
    let Some(AccountEvent::RiskApproved {
        signal_id,
        client_order_id,
        market,
        side,
        size,
        ..
    }) = received.events.last()
    else {
        unreachable!("checked above");
    };
    let now = Utc::now();
    let context = EventContext::new("bench-execution", now);
    let fill = AccountCommand::RecordExecution(ExecutionReport::Filled {
        signal_id: signal_id.clone(),
        client_order_id: client_order_id.clone(),
        exchange_order_id: format!("paper-{}", signal_id.0),
        fill: Fill {
            market: market.clone(),
            side: *side,
            price: price(),
            size: *size,
            fee: Decimal::new(325, 5),
        },
        at: now,
    });
    let notify = AccountCommand::RecordNotification {
        signal_id: signal_id.clone(),
        channel: "log".to_owned(),
        outcome: NotificationOutcome::Sent,
        at: now,
    };
    for command in [fill, notify] {
        ledger
            .execute(account, command, &context)
            .await
            .expect("the saga's command failed");
    }
}

/// The measured path is the approval path: a risk rejection would measure something else.
fn assert_approved(committed: &Committed) {
    assert!(
        matches!(
            committed.events.as_slice(),
            [
                AccountEvent::SignalReceived { .. },
                AccountEvent::RiskApproved { .. }
            ]
        ),
        "the benchmark signal was not approved: {:?}",
        committed.events
    );
}

/// A new signal for `account`: unique id, received now, 0.0001 BTC-USD (6.50 USD at the reference
/// price, so a UTC day's 1,000,000 USD volume limit allows ~150,000 of them per account).
fn signal(account: &str) -> (AccountCommand, EventContext) {
    let n = SIGNALS.fetch_add(1, Ordering::Relaxed);
    let now = Utc::now();
    let key = format!("id:bench-{n}");
    let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
    let command = AccountCommand::ReceiveSignal(intent(account, key, side, now));
    (command, EventContext::new("bench", now))
}

fn intent(account: &str, idempotency_key: String, side: Side, at: DateTime<Utc>) -> SignalIntent {
    SignalIntent {
        // Unique per bench alert, as ingest's sequence-derived ids are per signal.
        signal_id: SignalId(format!("{account}/{idempotency_key}")),
        idempotency_key,
        key_expires_at: at + chrono::Duration::hours(IDEMPOTENCY_WINDOW_HOURS),
        market: Market::parse("BTC-USD").expect("market"),
        instruction: TradeInstruction::Order { side, size: size() },
        order_type: OrderType::Market,
        take_profit: None,
        stop_loss: None,
        alert_price: None,
        reference_price: price(),
        sent_at: None,
        max_lag_seconds: 60,
        emergency_stop: None,
        paper_only: false,
        quota: None,
        received_at: at,
        earlier_use: None,
    }
}

fn size() -> Quantity {
    Quantity::new(Decimal::new(1, 4)).expect("size")
}

fn price() -> Decimal {
    Decimal::from(65_000)
}

/// Exactly `max(events, 1)` events of one account: opened at `start`, then one signal a minute,
/// each taken through its whole life by the real aggregate.
fn history(account: &str, events: usize, start: DateTime<Utc>) -> Vec<SerializedEvent> {
    let mut seeder = Seeder {
        account,
        state: TradingAccount::default(),
        events: Vec::with_capacity(events + 8),
    };
    seeder.run(
        AccountCommand::OpenAccount {
            display_name: "bench".to_owned(),
            limits: RiskLimits::default(),
            opened_at: start,
        },
        start,
    );
    let mut n: i64 = 0;
    while seeder.events.len() < events {
        let at = start + TimeDelta::minutes(n + 1);
        let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
        let intent = intent(account, format!("id:seed-{n}"), side, at);
        let signal_id = intent.signal_id.clone();
        seeder.run(AccountCommand::ReceiveSignal(intent), at);
        let filled_at = at + TimeDelta::seconds(1);
        seeder.run(
            AccountCommand::RecordExecution(ExecutionReport::Filled {
                client_order_id: ClientOrderId::for_signal(&signal_id),
                signal_id: signal_id.clone(),
                exchange_order_id: format!("paper-{n}"),
                fill: Fill {
                    market: Market::parse("BTC-USD").expect("market"),
                    side,
                    price: price(),
                    size: size(),
                    fee: Decimal::new(325, 5),
                },
                at: filled_at,
            }),
            filled_at,
        );
        let notified_at = at + TimeDelta::seconds(2);
        seeder.run(
            AccountCommand::RecordNotification {
                signal_id,
                channel: "log".to_owned(),
                outcome: NotificationOutcome::Sent,
                at: notified_at,
            },
            notified_at,
        );
        n += 1;
    }
    seeder.events.truncate(events.max(1));
    seeder.events
}

struct Seeder<'a> {
    account: &'a str,
    state: TradingAccount,
    events: Vec<SerializedEvent>,
}

impl Seeder<'_> {
    fn run(&mut self, command: AccountCommand, at: DateTime<Utc>) {
        let events = self.state.decide(command).expect("seed command refused");
        let context = EventContext::new("bench-seed", at);
        let encoded =
            encode(self.account, self.events.len() + 1, &events, &context).expect("encode");
        for event in events {
            self.state.apply(event);
        }
        self.events.extend(encoded);
    }
}

/// Appends the template history under `account`, in batches.
async fn seed(store: &Store, template: &[SerializedEvent], account: &str) {
    let events: Vec<SerializedEvent> = template
        .iter()
        .map(|event| SerializedEvent {
            aggregate_id: account.to_owned(),
            ..event.clone()
        })
        .collect();
    for batch in events.chunks(SEED_BATCH) {
        store.events().append(batch).await.expect("seeding failed");
    }
}

/// One store under test, and what to remove after it.
struct Target {
    store: Store,
    /// Keeps the SQLite file's directory until the target is closed.
    _dir: Option<tempfile::TempDir>,
    leftover: Leftover,
}

/// What a target leaves behind until it is removed.
#[derive(Clone, PartialEq, Eq)]
enum Leftover {
    Dir(PathBuf),
    Database { admin_url: String, database: String },
}

impl Target {
    async fn open(kind: &str, leftovers: &Leftovers) -> anyhow::Result<Self> {
        match kind {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let leftover = Leftover::Dir(dir.path().to_owned());
                leftovers.add(&leftover);
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                let store = open_store(&url).await?;
                Ok(Self {
                    store,
                    _dir: Some(dir),
                    leftover,
                })
            }
            "postgres" => {
                let admin_url = std::env::var("DATABASE_URL")
                    .ok()
                    .filter(|url| url.starts_with("postgres"))
                    .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
                let database = format!(
                    "ledgerhook_bench_{}_{}",
                    std::process::id(),
                    Utc::now().timestamp_millis()
                );
                let mut admin = tokio::time::timeout(
                    Duration::from_secs(10),
                    sqlx::PgConnection::connect(&admin_url),
                )
                .await
                .map_err(|_| anyhow::anyhow!("no answer from PostgreSQL within 10 s"))??;
                let leftover = Leftover::Database {
                    admin_url: admin_url.clone(),
                    database: database.clone(),
                };
                leftovers.add(&leftover);
                sqlx::raw_sql(&format!("CREATE DATABASE \"{database}\""))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                let url = with_database(&admin_url, &database)
                    .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not a URL"))?;
                match open_store(&url).await {
                    Ok(store) => Ok(Self {
                        store,
                        _dir: None,
                        leftover,
                    }),
                    Err(error) => {
                        leftover.remove().await;
                        leftovers.forget(&leftover);
                        Err(error)
                    }
                }
            }
            other => anyhow::bail!("unknown store `{other}` (expected sqlite or postgres)"),
        }
    }

    async fn close(self, leftovers: &Leftovers) {
        match &self.store {
            Store::Postgres(store) => store.pool().close().await,
            Store::Sqlite(store) => store.pool().close().await,
        }
        self.leftover.remove().await;
        leftovers.forget(&self.leftover);
    }
}

impl Leftover {
    async fn remove(&self) {
        match self {
            Self::Dir(path) => {
                let _ = std::fs::remove_dir_all(path);
            }
            Self::Database {
                admin_url,
                database,
            } => {
                if let Err(error) = drop_database(admin_url, database).await {
                    eprintln!("command_path: could not drop database {database}: {error}");
                }
            }
        }
    }
}

async fn drop_database(admin_url: &str, database: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
    // Executor::execute returns a boxed `Send` future, which the spawned handler needs.
    sqlx::Executor::execute(&mut admin, sql.as_str()).await?;
    admin.close().await
}

/// The scratch stores not yet removed.
#[derive(Clone, Default)]
struct Leftovers(Arc<Mutex<Vec<Leftover>>>);

impl Leftovers {
    fn add(&self, leftover: &Leftover) {
        self.list().push(leftover.clone());
    }

    fn forget(&self, leftover: &Leftover) {
        self.list().retain(|held| held != leftover);
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Leftover>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn remove_when_interrupted(self) {
        let signal = interrupted().await;
        eprintln!("\ncommand_path: {signal}: removing the scratch stores");
        let pending = self.list().clone();
        for leftover in pending {
            leftover.remove().await;
        }
        std::process::exit(130);
    }
}
