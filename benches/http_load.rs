//! HTTP load against the real service: runs the already-built release binary as `ledgerhook serve`
//! on a free loopback port against a fresh database, creates users with `ledgerhook users create`,
//! then drives `POST /api/webhook` in two phases:
//!
//! - open loop: a fixed arrival rate, each request sent at its scheduled time whatever the previous
//!   ones are doing; latency counts from the scheduled time, so a stalled server is charged for the
//!   requests it kept waiting (no coordinated omission);
//! - closed loop: a fixed number of workers sending back to back: the throughput ceiling.
//!
//! After each phase it waits for the execution saga to work off its backlog and reports how long
//! that took. Environment (defaults in brackets): `LEDGERHOOK_BIN` [target/release/ledgerhook],
//! `LOAD_STORE` [postgres] or sqlite, `DATABASE_URL` [postgres://postgres@127.0.0.1:5432/postgres],
//! `LOAD_RATE` [2000], `LOAD_SECONDS` [10], `LOAD_CONCURRENCY` [64], `LOAD_USERS` [200].
//!
//! `LOAD_MODE=guess-flood` (issue 9) replaces the two phases: real signals alone at `LOAD_RATE`
//! [200] from `LOAD_USERS` [20] accounts, then the same while a second client, bound to
//! 127.0.0.2, sends `LOAD_GUESS_RATE` [5000] random well-formed tokens a second. Each phase
//! reports the service's credential-query counter (`/metrics`) and, on PostgreSQL, the database's
//! committed + rolled-back transactions (`pg_stat_database`).
//! `LOAD_MODE=open-transaction` (issue 10): real signals at `LOAD_RATE` [200]
//! from `LOAD_USERS` [20] accounts for `LOAD_SECONDS` [60], first alone, then (PostgreSQL only)
//! while another database of the same server holds a transaction open (with a transaction id)
//! for the whole phase. Each phase reports signal-to-fill: from a signal's `received_at` to its `OrderFilled`
//! being recorded, over every signal received in the phase.
//! See `benches/README.md`.

mod support;

use support::{interrupted, with_database};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::process::{Child, Command};

use ledgerhook::app::open_store;
use ledgerhook::exchange::PaperBook;
use ledgerhook::execution::CHECKPOINT_NAME;
use ledgerhook::store::Store;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// `users create` processes run at once.
const USER_CREATION_PARALLELISM: usize = 8;
/// Longest wait for the execution saga to catch up after a phase.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// A saga whose checkpoint does not move for this long is reported as stalled.
const SAGA_STALL: Duration = Duration::from_secs(20);
/// Longest wait for the server to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: stay out of test runs.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("http_load: a load generator; run it with `cargo bench --bench http_load`");
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("http_load: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    if !config.bin.is_file() {
        eprintln!(
            "http_load: no ledgerhook binary at {}: run cargo build --release first \
             (or point LEDGERHOOK_BIN at one)",
            config.bin.display()
        );
        return ExitCode::FAILURE;
    }
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("http_load: no temporary directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    let database = match Database::create(&config, scratch.path()).await {
        Ok(database) => database,
        Err(error) => {
            eprintln!("http_load: could not create the database: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let bound = Duration::from_secs_f64(2.0 * config.seconds) + Duration::from_secs(900);
    // Dropping the run on a signal kills the server (kill_on_drop); the database goes below.
    let result = tokio::select! {
        outcome = tokio::time::timeout(bound, run(&config, &database, scratch.path())) => {
            outcome.unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "gave up after {} s (the whole run is bounded)",
                    bound.as_secs()
                ))
            })
        }
        signal = interrupted() => Err(anyhow::anyhow!("{signal}; cleaning up")),
    };
    database.remove().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("http_load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone)]
struct Config {
    bin: PathBuf,
    store: StoreKind,
    admin_url: String,
    rate: f64,
    seconds: f64,
    /// Open-loop traffic sent before the measured open loop, reported on its own: it pays the
    /// service's cold start (account loads, first token lookups, connections being opened).
    warmup_seconds: f64,
    concurrency: usize,
    users: usize,
    /// `LOAD_MODE=guess-flood`: random-token requests per second beside the real signals.
    guess_rate: Option<f64>,
    /// `LOAD_MODE=open-transaction`.
    open_transaction: bool,
}

/// Between two phases' reads of the database's transaction counters: PostgreSQL's backends
/// publish their statistics at most once a second.
const STATS_SETTLE: Duration = Duration::from_millis(2_500);
/// Where the guesses come from: another loopback address than the real senders.
const GUESSER_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={text} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let bin = std::env::var_os("LEDGERHOOK_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ledgerhook")
            });
        let store = match std::env::var("LOAD_STORE").as_deref() {
            Err(_) | Ok("") | Ok("postgres") | Ok("postgresql") => StoreKind::Postgres,
            Ok("sqlite") => StoreKind::Sqlite,
            Ok(other) => anyhow::bail!("LOAD_STORE={other}: expected postgres or sqlite"),
        };
        let admin_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| url.starts_with("postgres"))
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let mode = std::env::var("LOAD_MODE").unwrap_or_default();
        let (flood, open_transaction) = match mode.as_str() {
            "" | "standard" => (false, false),
            "guess-flood" => (true, false),
            "open-transaction" => (false, true),
            other => anyhow::bail!(
                "LOAD_MODE={other}: expected standard, guess-flood or open-transaction"
            ),
        };
        let light = flood || open_transaction;
        let config = Self {
            bin,
            store,
            admin_url,
            rate: number("LOAD_RATE", if light { 200.0 } else { 2000.0 })?,
            seconds: number("LOAD_SECONDS", if open_transaction { 60.0 } else { 10.0 })?,
            warmup_seconds: number("LOAD_WARMUP_SECONDS", 2.0)?,
            concurrency: number("LOAD_CONCURRENCY", 64)?,
            users: number("LOAD_USERS", if light { 20 } else { 200 })?,
            guess_rate: if flood {
                Some(number("LOAD_GUESS_RATE", 5000.0)?)
            } else {
                None
            },
            open_transaction,
        };
        anyhow::ensure!(
            config.rate > 0.0 && config.seconds > 0.0,
            "rate and duration must be positive"
        );
        anyhow::ensure!(
            config.concurrency > 0 && config.users > 0,
            "concurrency and users must be positive"
        );
        Ok(config)
    }
}

async fn run(config: &Config, database: &Database, scratch: &Path) -> anyhow::Result<()> {
    let port = free_port()?;
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let log_path = scratch.join("server.log");
    // The vault's master keys for the server and `users create` (releases before issue 11 ignore
    // the variable); set before any child starts, which inherits it.
    if std::env::var_os("LEDGERHOOK_VAULT_KEY_FILE").is_none() {
        let keys = scratch.join("vault.keys");
        if !keys.exists() {
            ledgerhook::vault::create_key_file(&keys)?;
        }
        std::env::set_var("LEDGERHOOK_VAULT_KEY_FILE", &keys);
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(8_192)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .build()?;

    let mut server = Server::start(config, &database.url, listen, &log_path)?;
    let server_pid = server.child.id();
    let outcome = async {
        server.wait_ready(&client, &log_path).await?;
        let store = open_store(&database.url).await?;
        let phases = drive(config, database, listen, &client, &store, server_pid).await;
        store_close(&store).await;
        phases
    }
    .await;
    let stopped = server.stop().await;
    let log = ServerLog::read(&log_path);

    let phases = outcome.inspect_err(|_| {
        for line in log.lines.iter().take(20) {
            eprintln!("  server | {line}");
        }
    })?;
    let (status, stop_time) = stopped;
    print_report(config, &phases, &log, status, stop_time);
    Ok(())
}

async fn drive(
    config: &Config,
    database: &Database,
    listen: SocketAddr,
    client: &reqwest::Client,
    store: &Store,
    server_pid: Option<u32>,
) -> anyhow::Result<Vec<Phase>> {
    let started = Instant::now();
    let users = create_users(config, &database.url, listen).await?;
    eprintln!(
        "http_load: {} users created in {:.1} s",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    let users = Arc::new(users);
    let run_tag = format!("{:x}", std::process::id());
    if let Some(guess_rate) = config.guess_rate {
        return guess_flood(
            config, database, listen, client, store, &users, guess_rate, server_pid,
        )
        .await;
    }

    if config.open_transaction {
        return open_transaction_elsewhere(config, client, store, &users, server_pid).await;
    }

    eprintln!(
        "http_load: open loop, {} req/s for {} s",
        config.rate, config.seconds
    );
    let mut neighbours = Neighbours::default();
    neighbours.look(server_pid);
    let mut phases = Vec::new();
    if config.warmup_seconds > 0.0 {
        eprintln!(
            "http_load: warm-up, {} req/s for {} s (reported, not drained)",
            config.rate, config.warmup_seconds
        );
        let cpu = CpuSample::take(server_pid);
        let warm = Config {
            seconds: config.warmup_seconds,
            ..config.clone()
        };
        let mut warmup =
            open_loop(client, &users, &warm, &format!("{run_tag}-warm"), "warmup").await;
        warmup.cpu = cpu.and_then(|before| before.share_until(&CpuSample::take(server_pid)?));
        phases.push(warmup);
    }
    let cpu = CpuSample::take(server_pid);
    let mut open = open_loop(client, &users, config, &format!("{run_tag}-open"), "open").await;
    open.cpu = cpu.and_then(|before| before.share_until(&CpuSample::take(server_pid)?));
    open.saga_drain = drain(store).await?;
    eprintln!(
        "http_load: closed loop, {} workers for {} s",
        config.concurrency, config.seconds
    );
    let cpu = CpuSample::take(server_pid);
    let mut closed = closed_loop(client, &users, config, &format!("{run_tag}-closed")).await;
    closed.cpu = cpu.and_then(|before| before.share_until(&CpuSample::take(server_pid)?));
    neighbours.look(server_pid);
    closed.saga_drain = drain(store).await?;
    open.neighbours = neighbours.seen.clone();
    closed.neighbours = neighbours.seen;
    phases.extend([open, closed]);
    let paper_orders = PaperBook::of(store).count().await?;
    for phase in &mut phases {
        phase.paper_orders_total = Some(paper_orders);
    }
    Ok(phases)
}

/// Real signals alone, then the same while another database of the server holds a transaction
/// open; each phase's signal-to-fill latency shows whether the stranger's transaction delays
/// execution.
async fn open_transaction_elsewhere(
    config: &Config,
    client: &reqwest::Client,
    store: &Store,
    users: &Arc<Vec<Arc<str>>>,
    server_pid: Option<u32>,
) -> anyhow::Result<Vec<Phase>> {
    let run_tag = format!("{:x}", std::process::id());
    let mut phases = Vec::new();
    // An embedded store has no neighbours on a server: its quiet phase alone.
    let neighbours: &[(&str, bool)] = match store {
        Store::Postgres(_) => &[("quiet", false), ("open-tx", true)],
        Store::Sqlite(_) => &[("quiet", false)],
    };
    for &(name, hold_open) in neighbours {
        // The server's maintenance database: another database than the ledger's.
        let mut stranger = None;
        if hold_open {
            let mut connection = sqlx::PgConnection::connect(&config.admin_url).await?;
            sqlx::query("BEGIN").execute(&mut connection).await?;
            sqlx::query("SELECT txid_current()")
                .execute(&mut connection)
                .await?;
            eprintln!("http_load: a transaction is open in another database");
            stranger = Some(connection);
        }
        eprintln!(
            "http_load: {name}: {} req/s for {} s",
            config.rate, config.seconds
        );
        let from = chrono::Utc::now();
        let cpu = CpuSample::take(server_pid);
        let mut phase = open_loop(client, users, config, &format!("{run_tag}-{name}"), name).await;
        phase.cpu = cpu.and_then(|before| before.share_until(&CpuSample::take(server_pid)?));
        let until = chrono::Utc::now();
        phase.saga_drain = drain(store).await?;
        phase.signal_to_fill = Some(signal_to_fill(store, from, until).await?);
        if let Some(mut connection) = stranger {
            sqlx::query("COMMIT").execute(&mut connection).await?;
        }
        phases.push(phase);
    }
    Ok(phases)
}

/// Signal-to-fill of every signal received in [from, until): its `OrderFilled`'s recording time
/// less its `received_at`.
async fn signal_to_fill(
    store: &Store,
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<FillLatency> {
    let mut ms = match store {
        Store::Postgres(postgres) => {
            sqlx::query_scalar(
                "WITH received AS (
                 SELECT payload->'SignalReceived'->>'signal_id' AS signal_id,
                        (payload->'SignalReceived'->>'received_at')::timestamptz AS at
                   FROM events WHERE event_type = 'SignalReceived'),
             filled AS (
                 SELECT payload->'OrderFilled'->>'signal_id' AS signal_id, recorded_at AS at
                   FROM events WHERE event_type = 'OrderFilled')
             SELECT extract(epoch FROM filled.at - received.at)::float8 * 1000
               FROM received JOIN filled USING (signal_id)
              WHERE received.at >= $1 AND received.at < $2",
            )
            .bind(from)
            .bind(until)
            .fetch_all(postgres.pool())
            .await?
        }
        // SQLite's recording time is the global order's (`event_log`). Joined here: SQLite
        // would join the two unindexed lists row by row.
        Store::Sqlite(sqlite) => {
            let received: Vec<(String, String)> = sqlx::query_as(
                "SELECT json_extract(payload, '$.SignalReceived.signal_id'),
                        json_extract(payload, '$.SignalReceived.received_at')
                   FROM events WHERE event_type = 'SignalReceived'",
            )
            .fetch_all(sqlite.pool())
            .await?;
            let filled: std::collections::HashMap<String, String> = sqlx::query_as(
                "SELECT json_extract(events.payload, '$.OrderFilled.signal_id'),
                        event_log.recorded_at
                   FROM events JOIN event_log USING (aggregate_type, aggregate_id, sequence)
                  WHERE events.event_type = 'OrderFilled'",
            )
            .fetch_all(sqlite.pool())
            .await?
            .into_iter()
            .collect();
            let mut ms = Vec::with_capacity(received.len());
            for (signal_id, received) in received {
                let Some(filled) = filled.get(&signal_id) else {
                    continue;
                };
                let received = chrono::DateTime::parse_from_rfc3339(&received)?;
                let filled = chrono::DateTime::parse_from_rfc3339(filled)?;
                if received >= from && received < until {
                    let micros = (filled - received).num_microseconds().unwrap_or(i64::MAX);
                    ms.push(micros as f64 / 1e3);
                }
            }
            ms
        }
    };
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| match ms.len() {
        0 => f64::NAN,
        n => ms[((n - 1) as f64 * q).round() as usize],
    };
    Ok(FillLatency {
        count: ms.len() as i64,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
    })
}

struct FillLatency {
    count: i64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Real signals alone, then the same with a flood of random tokens from another address; the
/// credential queries and database transactions of each phase tell whether guesses cost queries.
#[allow(clippy::too_many_arguments)]
async fn guess_flood(
    config: &Config,
    database: &Database,
    listen: SocketAddr,
    client: &reqwest::Client,
    store: &Store,
    users: &Arc<Vec<Arc<str>>>,
    guess_rate: f64,
    server_pid: Option<u32>,
) -> anyhow::Result<Vec<Phase>> {
    let run_tag = format!("{:x}", std::process::id());
    let guesser = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::V4(GUESSER_ADDRESS))
        .pool_max_idle_per_host(8_192)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .build()?;
    let counters = || async {
        tokio::time::sleep(STATS_SETTLE).await;
        Ok::<_, anyhow::Error>((
            credential_queries(client, listen).await?,
            database_transactions(database).await?,
        ))
    };
    let mut phases = Vec::new();
    if config.warmup_seconds > 0.0 {
        let warm = Config {
            seconds: config.warmup_seconds,
            ..config.clone()
        };
        phases.push(open_loop(client, users, &warm, &format!("{run_tag}-warm"), "warmup").await);
    }
    let before = counters().await?;
    eprintln!(
        "http_load: real signals alone, {} req/s for {} s",
        config.rate, config.seconds
    );
    let cpu = CpuSample::take(server_pid);
    let mut real = open_loop(client, users, config, &format!("{run_tag}-real"), "real").await;
    real.cpu = cpu.and_then(|before| before.share_until(&CpuSample::take(server_pid)?));
    let middle = counters().await?;
    real.counted(before, middle, None);
    real.saga_drain = drain(store).await?;

    let middle = counters().await?;
    eprintln!(
        "http_load: real signals {} req/s beside {guess_rate} random tokens/s for {} s",
        config.rate, config.seconds
    );
    let cpu = CpuSample::take(server_pid);
    let flood_tag = format!("{run_tag}-flood");
    let (mut flood, guesses) = tokio::join!(
        open_loop(client, users, config, &flood_tag, "flood"),
        guess_loop(&guesser, listen, guess_rate, config.seconds),
    );
    flood.cpu = cpu.and_then(|before| before.share_until(&CpuSample::take(server_pid)?));
    let after = counters().await?;
    flood.counted(middle, after, Some(guesses));
    flood.saga_drain = drain(store).await?;
    phases.extend([real, flood]);
    let paper_orders = PaperBook::of(store).count().await?;
    for phase in &mut phases {
        phase.paper_orders_total = Some(paper_orders);
    }
    Ok(phases)
}

/// `ledgerhook_credential_queries_total` from the service's `/metrics`.
async fn credential_queries(client: &reqwest::Client, listen: SocketAddr) -> anyhow::Result<u64> {
    let text = client
        .get(format!("http://{listen}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix("ledgerhook_credential_queries_total "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no credential query counter in /metrics"))
}

/// PostgreSQL: the scratch database's committed + rolled-back transactions so far.
async fn database_transactions(database: &Database) -> anyhow::Result<Option<i64>> {
    if database.postgres.is_none() {
        return Ok(None);
    }
    let mut connection = sqlx::PgConnection::connect(&database.url).await?;
    let count: i64 = sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
          WHERE datname = current_database()",
    )
    .fetch_one(&mut connection)
    .await?;
    connection.close().await?;
    Ok(Some(count))
}

/// What the flood of guesses came to.
struct Guesses {
    offered_rate: f64,
    sent: usize,
    sent_rate: f64,
    answers: BTreeMap<String, usize>,
}

/// `rate` requests a second for `seconds`, each with a fresh random well-formed token.
async fn guess_loop(
    client: &reqwest::Client,
    listen: SocketAddr,
    rate: f64,
    seconds: f64,
) -> Guesses {
    let total = (rate * seconds).round().max(1.0) as u64;
    let mut random = SplitMix(0x6e55_0001 ^ u64::from(std::process::id()));
    let mut requests = Vec::with_capacity(total as usize);
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let token: String = (0..4).map(|_| format!("{:016x}", random.next())).collect();
        let url: Arc<str> = Arc::from(format!("http://{listen}/api/webhook?token={token}"));
        let body = alert(&format!("guess-{i}"), true);
        requests.push(tokio::spawn(send(client.clone(), url, body, due)));
    }
    let sending = start.elapsed();
    let mut answers = BTreeMap::new();
    for request in requests {
        let key = match request.await {
            Ok(Outcome {
                result: Answer::Ok(verdict),
                ..
            }) => format!("200 {verdict}"),
            Ok(Outcome {
                result: Answer::Status(status, code),
                ..
            }) => format!("{status} {code}"),
            Ok(Outcome {
                result: Answer::Error(kind),
                ..
            }) => kind.to_owned(),
            Err(_) => "task failed".to_owned(),
        };
        *answers.entry(key).or_default() += 1;
    }
    Guesses {
        offered_rate: rate,
        sent: total as usize,
        sent_rate: total as f64 / sending.as_secs_f64(),
        answers,
    }
}

async fn store_close(store: &Store) {
    match store {
        Store::Postgres(store) => store.pool().close().await,
        Store::Sqlite(store) => store.pool().close().await,
    }
}

// ---------------------------------------------------------------------------------------------
// The phases
// ---------------------------------------------------------------------------------------------

/// What one request came to.
struct Outcome {
    /// When the request was due (open loop) or sent (closed loop).
    since: Instant,
    latency: Duration,
    finished: Instant,
    result: Answer,
}

enum Answer {
    /// HTTP 200 with the ledger's verdict (`accepted`, `rejected`, `duplicate`).
    Ok(String),
    /// Another status, with the error body's `code`.
    Status(u16, String),
    Error(&'static str),
}

async fn send(client: reqwest::Client, url: Arc<str>, body: String, since: Instant) -> Outcome {
    let answer = async {
        let response = client
            .post(&*url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let field = |name: &str| {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|value| value.get(name)?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".to_owned())
        };
        Ok::<_, reqwest::Error>(if status == 200 {
            Answer::Ok(field("status"))
        } else {
            Answer::Status(status, field("code"))
        })
    }
    .await
    .unwrap_or_else(|error| {
        Answer::Error(if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else {
            "other"
        })
    });
    let finished = Instant::now();
    Outcome {
        since,
        latency: finished.saturating_duration_since(since),
        finished,
        result: answer,
    }
}

fn alert(id: &str, buy: bool) -> String {
    let side = if buy { "buy" } else { "sell" };
    format!(r#"{{"symbol":"BTC-USD","side":"{side}","size":"0.0001","id":"{id}"}}"#)
}

async fn open_loop(
    client: &reqwest::Client,
    users: &Arc<Vec<Arc<str>>>,
    config: &Config,
    tag: &str,
    name: &'static str,
) -> Phase {
    let total = (config.rate * config.seconds).round().max(1.0) as u64;
    let mut pick = SplitMix(0x5eed_0001);
    let mut requests = Vec::with_capacity(total as usize);
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / config.rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let url = users[pick.below(users.len())].clone();
        let body = alert(&format!("{tag}-{i}"), i % 2 == 0);
        requests.push(tokio::spawn(send(client.clone(), url, body, due)));
    }
    let sending = start.elapsed();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        if let Ok(outcome) = request.await {
            outcomes.push(outcome);
        }
    }
    let timeline = Second::timeline(start, &outcomes);
    let mut phase = Phase::summarize(name, start, outcomes);
    phase.timeline = timeline;
    phase.offered_rate = Some(config.rate);
    phase.sent_rate = Some(total as f64 / sending.as_secs_f64());
    phase
}

async fn closed_loop(
    client: &reqwest::Client,
    users: &Arc<Vec<Arc<str>>>,
    config: &Config,
    tag: &str,
) -> Phase {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(config.seconds);
    let mut workers = Vec::with_capacity(config.concurrency);
    for worker in 0..config.concurrency {
        let (client, users, tag) = (client.clone(), users.clone(), tag.to_owned());
        workers.push(tokio::spawn(async move {
            let mut pick = SplitMix(0x5eed_1000 + worker as u64);
            let mut outcomes = Vec::new();
            let mut n = 0_u64;
            while Instant::now() < deadline {
                let url = users[pick.below(users.len())].clone();
                let body = alert(&format!("{tag}-{worker}-{n}"), n % 2 == 0);
                outcomes.push(send(client.clone(), url, body, Instant::now()).await);
                n += 1;
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        if let Ok(done) = worker.await {
            outcomes.extend(done);
        }
    }
    let mut phase = Phase::summarize("closed", start, outcomes);
    phase.concurrency = Some(config.concurrency);
    phase
}

/// Waits until the execution saga has read every event in the ledger; returns how long it took.
/// Gives up (`None`) after `DRAIN_TIMEOUT`, or sooner when its checkpoint stops moving.
async fn drain(store: &Store) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let mut last_move = (
        store.events().checkpoint(CHECKPOINT_NAME).await?,
        Instant::now(),
    );
    while started.elapsed() < DRAIN_TIMEOUT {
        let checkpoint = store.events().checkpoint(CHECKPOINT_NAME).await?;
        if store.events().read_log(checkpoint, 1).await?.is_empty() {
            return Ok(Some(started.elapsed()));
        }
        if checkpoint != last_move.0 {
            last_move = (checkpoint, Instant::now());
        } else if last_move.1.elapsed() > SAGA_STALL {
            eprintln!(
                "http_load: the execution saga made no progress for {} s (checkpoint {:?}); \
                 not waiting for it",
                SAGA_STALL.as_secs(),
                checkpoint
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "http_load: the execution saga had not caught up after {} s",
        DRAIN_TIMEOUT.as_secs()
    );
    Ok(None)
}

/// A small deterministic generator for picking users.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

struct Phase {
    name: &'static str,
    offered_rate: Option<f64>,
    sent_rate: Option<f64>,
    concurrency: Option<usize>,
    /// From the phase's start to its last response.
    elapsed: Duration,
    requests: usize,
    ok: usize,
    verdicts: BTreeMap<String, usize>,
    non_200: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
    /// Sorted latencies of every request, whatever its outcome, in microseconds.
    latencies_us: Vec<u64>,
    saga_drain: Option<Duration>,
    paper_orders_total: Option<i64>,
    /// Where the machine's CPU went during the phase.
    cpu: Option<CpuShare>,
    /// Open loop: the requests due in each second of the phase.
    timeline: Vec<Second>,
    /// Other processes that compete for the machine, seen before or after the phases.
    neighbours: BTreeMap<String, usize>,
    /// Guess-flood mode: the service's credential queries during the phase.
    credential_queries: Option<u64>,
    /// Guess-flood mode on PostgreSQL: the database's transactions during the phase.
    database_transactions: Option<i64>,
    /// Guess-flood mode: the guesses sent beside the phase's real signals.
    guesses: Option<Guesses>,
    /// Open-transaction mode: from receipt to fill, for the phase's signals.
    signal_to_fill: Option<FillLatency>,
}

impl Phase {
    fn summarize(name: &'static str, start: Instant, outcomes: Vec<Outcome>) -> Self {
        let mut phase = Self {
            name,
            offered_rate: None,
            sent_rate: None,
            concurrency: None,
            elapsed: Duration::ZERO,
            requests: outcomes.len(),
            ok: 0,
            verdicts: BTreeMap::new(),
            non_200: BTreeMap::new(),
            errors: BTreeMap::new(),
            latencies_us: Vec::with_capacity(outcomes.len()),
            saga_drain: None,
            paper_orders_total: None,
            cpu: None,
            timeline: Vec::new(),
            neighbours: BTreeMap::new(),
            credential_queries: None,
            database_transactions: None,
            guesses: None,
            signal_to_fill: None,
        };
        for outcome in outcomes {
            phase.elapsed = phase
                .elapsed
                .max(outcome.finished.saturating_duration_since(start));
            phase
                .latencies_us
                .push(u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX));
            match outcome.result {
                Answer::Ok(verdict) => {
                    phase.ok += 1;
                    *phase.verdicts.entry(verdict).or_default() += 1;
                }
                Answer::Status(status, code) => {
                    *phase.non_200.entry(format!("{status} {code}")).or_default() += 1;
                }
                Answer::Error(kind) => *phase.errors.entry(kind.to_owned()).or_default() += 1,
            }
        }
        phase.latencies_us.sort_unstable();
        phase
    }

    /// Guess-flood mode: the counters' movement over the phase, and its guesses.
    fn counted(
        &mut self,
        before: (u64, Option<i64>),
        after: (u64, Option<i64>),
        guesses: Option<Guesses>,
    ) {
        self.credential_queries = Some(after.0.saturating_sub(before.0));
        self.database_transactions = before.1.zip(after.1).map(|(b, a)| a - b);
        self.guesses = guesses;
    }

    fn non_200_count(&self) -> usize {
        self.non_200.values().sum()
    }

    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Responses with status 200 per second of the phase.
    fn ok_rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at quantile `q` (nearest rank), in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[index] as f64 / 1000.0
    }

    fn to_json(&self) -> Value {
        let ms = |q: f64| (self.quantile_ms(q) * 1000.0).round() / 1000.0;
        json!({
            "phase": self.name,
            "offered_rate": self.offered_rate,
            "sent_rate": self.sent_rate.map(|r| r.round()),
            "concurrency": self.concurrency,
            "elapsed_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "requests": self.requests,
            "ok_200": self.ok,
            "ok_per_s": self.ok_rate().round(),
            "verdicts": self.verdicts,
            "non_200": self.non_200,
            "errors": self.errors,
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": ms(1.0),
            "saga_drain_s": self.saga_drain.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            "paper_orders_total": self.paper_orders_total,
            "cpu_percent_of_machine": self.cpu.as_ref().map(CpuShare::to_json),
            "timeline": self.timeline.iter().map(Second::to_json).collect::<Vec<_>>(),
            "credential_queries": self.credential_queries,
            "database_transactions": self.database_transactions,
            "guesses": self.guesses.as_ref().map(|guesses| json!({
                "offered_rate": guesses.offered_rate,
                "sent": guesses.sent,
                "sent_rate": guesses.sent_rate.round(),
                "answers": guesses.answers,
            })),
        })
    }
}

/// The open loop's requests due in one second of the phase.
struct Second {
    second: u64,
    sent: usize,
    ok: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Second {
    fn timeline(start: Instant, outcomes: &[Outcome]) -> Vec<Self> {
        let mut seconds: BTreeMap<u64, (usize, Vec<u64>)> = BTreeMap::new();
        for outcome in outcomes {
            let second = outcome.since.saturating_duration_since(start).as_secs();
            let (ok, latencies) = seconds.entry(second).or_default();
            *ok += usize::from(matches!(outcome.result, Answer::Ok(_)));
            latencies.push(u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX));
        }
        seconds
            .into_iter()
            .map(|(second, (ok, mut latencies))| {
                latencies.sort_unstable();
                let at = |q: f64| {
                    let rank = (q * latencies.len() as f64).ceil() as usize;
                    latencies[rank.clamp(1, latencies.len()) - 1] as f64 / 1000.0
                };
                Self {
                    second,
                    sent: latencies.len(),
                    ok,
                    p50_ms: at(0.5),
                    p99_ms: at(0.99),
                    max_ms: at(1.0),
                }
            })
            .collect()
    }

    fn to_json(&self) -> Value {
        let round = |ms: f64| (ms * 10.0).round() / 10.0;
        json!({
            "s": self.second,
            "sent": self.sent,
            "ok_200": self.ok,
            "p50_ms": round(self.p50_ms),
            "p99_ms": round(self.p99_ms),
            "max_ms": round(self.max_ms),
        })
    }
}

/// CPU time counters from /proc (Linux), in clock ticks.
struct CpuSample {
    total: u64,
    idle: u64,
    steal: u64,
    server: u64,
    generator: u64,
    /// Every `postgres` process on the machine (the server's backends and anyone else's).
    postgres: u64,
}

/// Shares of the whole machine (all cores = 100%) over an interval.
struct CpuShare {
    busy: f64,
    server: f64,
    generator: f64,
    postgres: f64,
    other: f64,
    steal: f64,
}

impl CpuSample {
    fn take(server_pid: Option<u32>) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|field| field.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4)?;
        let steal = *ticks.get(7)?;
        Some(Self {
            total,
            idle,
            steal,
            server: process_ticks(&format!("/proc/{}/stat", server_pid?))?,
            generator: process_ticks("/proc/self/stat")?,
            postgres: postgres_ticks(),
        })
    }

    fn share_until(&self, after: &Self) -> Option<CpuShare> {
        let total = after.total.checked_sub(self.total)?.max(1) as f64;
        let percent = |before: u64, after: u64| after.saturating_sub(before) as f64 * 100.0 / total;
        let busy = 100.0 - percent(self.idle, after.idle);
        let server = percent(self.server, after.server);
        let generator = percent(self.generator, after.generator);
        // Backends that exited during the interval are missed: a lower bound.
        let postgres = percent(self.postgres, after.postgres);
        Some(CpuShare {
            busy,
            server,
            generator,
            postgres,
            other: (busy - server - generator - postgres).max(0.0),
            steal: percent(self.steal, after.steal),
        })
    }
}

impl CpuShare {
    fn to_json(&self) -> Value {
        let round = |percent: f64| percent.round();
        json!({
            "busy": round(self.busy),
            "server": round(self.server),
            "generator": round(self.generator),
            "postgres": round(self.postgres),
            "other": round(self.other),
            "steal": round(self.steal),
        })
    }
}

/// Processes that would disturb a measurement: other ledgerhook servers and load generators,
/// compilers. By name, with how many times each was seen.
#[derive(Default)]
struct Neighbours {
    seen: BTreeMap<String, usize>,
}

impl Neighbours {
    fn look(&mut self, server_pid: Option<u32>) {
        const BUSY: [&str; 6] = [
            "ledgerhook",
            "http_load",
            "command_path",
            "rustc",
            "cargo",
            "cc1",
        ];
        let own = [Some(std::process::id()), server_pid, parent_pid()];
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in processes.filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if own.contains(&Some(pid)) {
                continue;
            }
            let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            let name = name.trim_end();
            if BUSY.iter().any(|busy| name.starts_with(busy)) {
                *self.seen.entry(name.to_owned()).or_default() += 1;
            }
        }
    }
}

/// This process's parent (the `cargo bench` that started it), from /proc.
fn parent_pid() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of every process named `postgres`.
fn postgres_ticks() -> u64 {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == "postgres")
        })
        .filter_map(|entry| process_ticks(&entry.path().join("stat").to_string_lossy()))
        .sum()
}

/// utime + stime of one process, from its /proc/PID/stat.
fn process_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The server's stderr (RUST_LOG=warn: warnings and errors only).
struct ServerLog {
    lines: Vec<String>,
}

impl ServerLog {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Self {
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    fn count(&self, level: &str) -> usize {
        self.lines
            .iter()
            .filter(|line| line.contains(level))
            .count()
    }
}

fn print_report(
    config: &Config,
    phases: &[Phase],
    log: &ServerLog,
    status: Option<ExitStatus>,
    stop_time: Duration,
) {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nhttp_load: store={} users={} (server, database and load generator share this machine)",
        config.store.name(),
        config.users
    );
    let _ = writeln!(
        table,
        "{:<7} {:>10} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "phase",
        "load",
        "sent/s",
        "200/s",
        "200",
        "non200",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "drain s"
    );
    for phase in phases {
        let load = match (phase.offered_rate, phase.concurrency) {
            (Some(rate), _) => format!("{rate}/s"),
            (_, Some(workers)) => format!("{workers} conc"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            table,
            "{:<7} {:>10} {:>8} {:>8.0} {:>7} {:>7} {:>8} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>8}",
            phase.name,
            load,
            phase
                .sent_rate
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
            phase.ok_rate(),
            phase.ok,
            phase.non_200_count(),
            phase.error_count(),
            phase.quantile_ms(0.5),
            phase.quantile_ms(0.9),
            phase.quantile_ms(0.99),
            phase.quantile_ms(0.999),
            phase.quantile_ms(1.0),
            match (phase.name, phase.saga_drain) {
                ("warmup", _) => "-".to_owned(),
                (_, Some(drain)) => format!("{:.1}", drain.as_secs_f64()),
                (_, None) => "> limit".to_owned(),
            },
        );
    }
    for phase in phases {
        let _ = writeln!(
            table,
            "{}: verdicts {:?}, non-200 {:?}, errors {:?}",
            phase.name, phase.verdicts, phase.non_200, phase.errors
        );
    }
    for phase in phases {
        if let Some(fill) = &phase.signal_to_fill {
            let _ = writeln!(
                table,
                "{}: signal-to-fill of {} signals: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                phase.name, fill.count, fill.p50_ms, fill.p99_ms, fill.max_ms
            );
        }
    }
    for phase in phases {
        if let Some(cpu) = &phase.cpu {
            let _ = writeln!(
                table,
                "{}: CPU of the whole machine: {:.0}% busy = server {:.0}% + load generator {:.0}% \
                 + PostgreSQL {:.0}% + everything else {:.0}%; steal {:.0}%",
                phase.name,
                cpu.busy,
                cpu.server,
                cpu.generator,
                cpu.postgres,
                cpu.other,
                cpu.steal
            );
        }
    }
    for phase in phases.iter().filter(|phase| !phase.timeline.is_empty()) {
        let _ = writeln!(
            table,
            "{} timeline, by the second each request was due:\n{:>4} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}",
            phase.name, "s", "sent", "200", "failed", "p50 ms", "p99 ms", "max ms"
        );
        for second in &phase.timeline {
            let _ = writeln!(
                table,
                "{:>4} {:>6} {:>6} {:>6} {:>9.1} {:>9.1} {:>9.1}",
                second.second,
                second.sent,
                second.ok,
                second.sent - second.ok,
                second.p50_ms,
                second.p99_ms,
                second.max_ms
            );
        }
    }
    for phase in phases.iter().filter(|p| p.credential_queries.is_some()) {
        let _ = writeln!(
            table,
            "{}: credential queries {}, database transactions {} (both over the phase and {:.1} s \
             after it)",
            phase.name,
            phase.credential_queries.unwrap_or_default(),
            phase
                .database_transactions
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            STATS_SETTLE.as_secs_f64()
        );
        if let Some(guesses) = &phase.guesses {
            let _ = writeln!(
                table,
                "{}: guesses {} at {:.0}/s (offered {}/s) from {GUESSER_ADDRESS}: {:?}",
                phase.name, guesses.sent, guesses.sent_rate, guesses.offered_rate, guesses.answers
            );
        }
    }
    if let Some(neighbours) = phases.first().map(|p| &p.neighbours) {
        if !neighbours.is_empty() {
            let _ = writeln!(
                table,
                "WARNING: other busy processes shared the machine (results disturbed): {neighbours:?}"
            );
        }
    }
    if let Some(total) = phases.first().and_then(|p| p.paper_orders_total) {
        let _ = writeln!(table, "paper orders booked by the saga: {total}");
    }
    let _ = writeln!(
        table,
        "server: {} WARN and {} ERROR log lines; stopped by SIGTERM in {:.1} s with {}",
        log.count("WARN"),
        log.count("ERROR"),
        stop_time.as_secs_f64(),
        status.map_or_else(|| "no exit status".to_owned(), |s| s.to_string())
    );
    for line in log.lines.iter().take(10) {
        let _ = writeln!(table, "  | {line}");
    }
    println!("{table}");
    let line = json!({
        "bench": "http_load",
        "store": config.store.name(),
        "users": config.users,
        "seconds": config.seconds,
        "phases": phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
        "server_warn_lines": log.count("WARN"),
        "server_error_lines": log.count("ERROR"),
        "server_exit": status.map(|s| s.to_string()),
        "server_stop_s": (stop_time.as_secs_f64() * 10.0).round() / 10.0,
        "neighbours": phases.first().map(|p| &p.neighbours),
    });
    println!("{line}");
}

// ---------------------------------------------------------------------------------------------
// The server, its users and its database
// ---------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(
        config: &Config,
        database_url: &str,
        address: SocketAddr,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log_path)?;
        let child = Command::new(&config.bin)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("LEDGERHOOK_LISTEN", address.to_string())
            .env("RUST_LOG", "warn")
            // `true` works with every release; `1` needs 2d2f1f0 (FalseyValueParser).
            .env("LEDGERHOOK_NO_DEMO", "true")
            // The bench connects as a superuser; releases before issue 9 ignore this.
            .env("LEDGERHOOK_ALLOW_PRIVILEGED_LOGIN", "true")
            // The load sends 10 alerts/s per account; the per-user default is 10 a minute.
            .env("LEDGERHOOK_RATE_LIMIT_REQUESTS", "1000000")
            .env_remove("APP_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child, address })
    }

    async fn wait_ready(&mut self, client: &reqwest::Client, log: &Path) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.address);
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "the server exited before it was ready ({status}): {}",
                    ServerLog::read(log).lines.join("\n")
                );
            }
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the server did not become ready within {} s",
            READY_TIMEOUT.as_secs()
        )
    }

    /// SIGTERM, then a bounded wait for the graceful shutdown; killed if it does not come.
    async fn stop(mut self) -> (Option<ExitStatus>, Duration) {
        let started = Instant::now();
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!("http_load: the server had already exited: {status}");
            return (Some(status), Duration::ZERO);
        }
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => (status.ok(), started.elapsed()),
            Err(_) => {
                eprintln!(
                    "http_load: the server did not stop within {} s of SIGTERM; killing it",
                    STOP_TIMEOUT.as_secs()
                );
                let _ = self.child.kill().await;
                (None, started.elapsed())
            }
        }
    }
}

/// Creates `config.users` users through the CLI, a few processes at a time; returns their webhook
/// URLs.
async fn create_users(
    config: &Config,
    database_url: &str,
    listen: SocketAddr,
) -> anyhow::Result<Vec<Arc<str>>> {
    let create = |n: usize| async move {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new(&config.bin)
                .args(["users", "create", "--name", &format!("u{n}"), "--json"])
                .env("DATABASE_URL", database_url)
                .env("LEDGERHOOK_LISTEN", listen.to_string())
                .env("RUST_LOG", "warn")
                .env_remove("APP_HOST")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("`users create` took over 60 s"))??;
        anyhow::ensure!(
            output.status.success(),
            "`users create` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|line| line.trim_start().starts_with('{'))
            .ok_or_else(|| anyhow::anyhow!("`users create --json` printed no JSON: {stdout}"))?;
        let user: Value = serde_json::from_str(line)?;
        for field in ["user_id", "webhook_token"] {
            anyhow::ensure!(user[field].is_string(), "no {field} in {line}");
        }
        let url = user["webhook_url"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no webhook_url in {line}"))?;
        anyhow::ensure!(
            url.starts_with(&format!("http://{listen}/")),
            "webhook_url {url} is not on the loopback server"
        );
        Ok::<Arc<str>, anyhow::Error>(Arc::from(url))
    };
    futures::stream::iter(0..config.users)
        .map(create)
        .buffer_unordered(USER_CREATION_PARALLELISM)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The scratch database: a fresh PostgreSQL database (dropped afterwards) or a SQLite file in the
/// temporary directory.
struct Database {
    url: String,
    postgres: Option<(String, String)>,
}

impl Database {
    async fn create(config: &Config, scratch: &Path) -> anyhow::Result<Self> {
        match config.store {
            StoreKind::Sqlite => Ok(Self {
                url: format!("sqlite://{}", scratch.join("load.db").display()),
                postgres: None,
            }),
            StoreKind::Postgres => {
                let name = format!(
                    "ledgerhook_load_{}_{}",
                    std::process::id(),
                    chrono::Utc::now().timestamp_millis()
                );
                let mut admin = tokio::time::timeout(
                    Duration::from_secs(10),
                    sqlx::PgConnection::connect(&config.admin_url),
                )
                .await
                .map_err(|_| anyhow::anyhow!("no answer from PostgreSQL within 10 s"))??;
                sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                let url = with_database(&config.admin_url, &name)
                    .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not a URL"))?;
                Ok(Self {
                    url,
                    postgres: Some((config.admin_url.clone(), name)),
                })
            }
        }
    }

    async fn remove(self) {
        let Some((admin_url, name)) = self.postgres else {
            return;
        };
        let dropped = async {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            admin.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!("http_load: could not drop database {name}: {error}");
        }
    }
}
