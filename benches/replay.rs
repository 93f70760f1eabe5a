//! `ledgerhook replay` on long accounts: 10,000 and 100,000 events, human and `--json` output.
//! Times what the command does after it has connected: read the account's history from the store
//! (`Ledger::history`), fold it and write every line (`cli::replay::write`, to a byte counter
//! rather than a terminal).
//!
//! The accounts are seeded straight into the store with the events the service records for a
//! busy strategy: a signal every 30 s (received, approved, submitted, filled, position opened or
//! closed, notified), so the idempotency memory holds a whole day of keys (2,880) once the
//! history is longer than a day (the 10,000-event account: ~1,670 keys, all remembered).
//!
//! Environment: `BENCH_STORES` [sqlite,postgres], `DATABASE_URL`
//! [postgres://postgres@127.0.0.1:5432/postgres] for the server the scratch database is created
//! on (and dropped after). `REPLAY_SEED_DATABASE_URL=URL` only seeds the two accounts
//! (`replay-10000`, `replay-100000`) into the store at URL and exits, to time the real binary on
//! them. See `benches/README.md`.

// Only `with_database` is used here.
#[allow(dead_code)]
mod support;

use support::with_database;

// The same busy account the replay tests replay.
#[path = "../tests/it/support/busy_account.rs"]
mod busy_account;
use busy_account::seed;

use std::io::{self, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode};
use sqlx::Connection;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use ledgerhook::app::{open_store, start_ledger};
use ledgerhook::cli::replay::{write, ReplayArgs};
use ledgerhook::ledger::Ledger;
use ledgerhook::store::Store;

const SIZES: [usize; 2] = [10_000, 100_000];
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(url) = std::env::var("REPLAY_SEED_DATABASE_URL") {
        runtime.block_on(async {
            let store = open_store(&url).await.expect("the store opens");
            for events in SIZES {
                seed(&store, &account(events), events).await;
                println!("seeded {} ({events} events)", account(events));
            }
        });
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let admin_url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    for kind in stores.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let scratch = match runtime.block_on(Scratch::open(kind, &admin_url)) {
            Ok(scratch) => scratch,
            Err(error) => {
                eprintln!("\n*** replay: skipping the {kind} store: {error:#}\n");
                continue;
            }
        };
        bench_store(&mut criterion, &runtime, kind, &scratch.store);
        runtime.block_on(scratch.close());
    }
    criterion.final_summary();
}

fn bench_store(criterion: &mut Criterion, runtime: &Runtime, kind: &str, store: &Store) {
    let mut committers = JoinSet::new();
    let ledger = runtime.block_on(async {
        for events in SIZES {
            seed(store, &account(events), events).await;
        }
        start_ledger(store.clone(), &mut committers)
    });
    for (group, json) in [("replay_human", false), ("replay_json", true)] {
        let mut group = criterion.benchmark_group(group);
        group.sampling_mode(SamplingMode::Flat);
        for events in SIZES {
            let account = account(events);
            let bytes = runtime.block_on(replay(&ledger, &account, json));
            eprintln!(
                "replay {kind} {events} events{}: {bytes} bytes",
                if json { " --json" } else { "" }
            );
            let (ledger, account) = (&ledger, account.as_str());
            group.bench_function(BenchmarkId::new(kind, events), |b| {
                b.to_async(runtime)
                    .iter(|| async move { replay(ledger, account, json).await })
            });
        }
        group.finish();
    }
    drop(ledger);
    runtime.block_on(async { while committers.join_next().await.is_some() {} });
}

/// What `ledgerhook replay ACCOUNT [--json]` does once connected; returns the bytes it wrote.
async fn replay(ledger: &Ledger, account: &str, json: bool) -> u64 {
    let history = ledger.history(account).await.expect("the history loads");
    let args = ReplayArgs {
        user_id: account.to_owned(),
        as_of: None,
        signal: None,
        full_state: false,
        json,
    };
    let mut out = Counter(0);
    write(&mut out, &args, &history).expect("the replay writes");
    out.0
}

/// Counts what it is given, like a terminal that is never slow.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn account(events: usize) -> String {
    format!("replay-{events}")
}

/// A store of its own: a SQLite file in a temporary directory, or a fresh PostgreSQL database
/// (dropped by `close`).
struct Scratch {
    store: Store,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl Scratch {
    async fn open(kind: &str, admin_url: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (url, postgres) = match kind {
            "sqlite" => (
                format!("sqlite://{}", dir.path().join("replay.db").display()),
                None,
            ),
            "postgres" => {
                let database = format!(
                    "ledgerhook_replay_{}_{}",
                    std::process::id(),
                    chrono::Utc::now().timestamp_millis()
                );
                let mut admin = sqlx::PgConnection::connect(admin_url).await?;
                sqlx::raw_sql(&format!("CREATE DATABASE \"{database}\""))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                let url = with_database(admin_url, &database)
                    .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not a URL"))?;
                (url, Some((admin_url.to_owned(), database)))
            }
            other => anyhow::bail!("unknown store `{other}` (expected sqlite or postgres)"),
        };
        let store = open_store(&url).await?;
        Ok(Self {
            store,
            _dir: dir,
            postgres,
        })
    }

    async fn close(self) {
        match &self.store {
            Store::Postgres(store) => store.pool().close().await,
            Store::Sqlite(store) => store.pool().close().await,
        }
        if let Some((admin_url, database)) = &self.postgres {
            let dropped = async {
                let mut admin = sqlx::PgConnection::connect(admin_url).await?;
                sqlx::raw_sql(&format!(
                    "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                ))
                .execute(&mut admin)
                .await?;
                admin.close().await
            };
            if let Err(error) = dropped.await {
                eprintln!("replay: could not drop database {database}: {error}");
            }
        }
    }
}
