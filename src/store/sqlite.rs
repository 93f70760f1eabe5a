//! SQLite, the embedded default. Durable: WAL with synchronous=FULL, so an acknowledged signal
//! survives power loss, not just a process crash.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::SerializedEvent;
use sqlite_es::SqliteEventRepository;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Mutex;

use super::{LogPosition, Result, SignalKey, StoreError};

/// Readers run in parallel under WAL; writers queue on SQLite's lock for at most this long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 8;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Readers' writes: one connection that commits without waiting for the flush (see
    /// `writing_derived!`). The pool itself for an in-memory database, which no other connection
    /// would see.
    derived: SqlitePool,
    pub(super) events: Arc<SqliteEventRepository>,
    /// Writers of the ledger's file queue here, first come first served. SQLite has one write
    /// lock per file and settles contention by sleeping and retrying, which under load lets one
    /// writer lose for seconds; queueing in-process keeps every write's wait proportional to the
    /// queue.
    writer: Arc<Mutex<()>>,
    /// And writers of the derived file (`derived_file`) here: they never wait for the ledger's,
    /// nor it for them. The same queue in memory, where both are one database.
    derived_writer: Arc<Mutex<()>>,
    /// The database file; `None` in memory.
    file: Option<std::path::PathBuf>,
}

/// Which of the two files' writer queues a statement joins: none for a read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WriterQueue {
    None,
    Ledger,
    Derived,
}

/// Held by the one `serve` of an embedded store (see `SqliteStore::lock_for_service`).
#[derive(Debug)]
pub struct ServiceLock {
    _file: std::fs::File,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = (!in_memory).then(|| options.get_filename().to_path_buf());
        // A file's checkpoints are the `wal` task's, not the commits' (see `wal`).
        let options = match file {
            Some(_) => options
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", super::wal::WAL_FILE_LIMIT),
            None => options,
        };
        let unopenable = |reason: String| StoreError::SqliteUnopenable {
            path: options.get_filename().display().to_string(),
            reason,
        };
        if let Some(parent) = file.as_deref().and_then(Path::parent) {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|error| {
                    unopenable(format!(
                        "cannot create its directory {}: {}",
                        parent.display(),
                        super::io_reason(&error)
                    ))
                })?;
            }
        }
        let derived_target: Arc<str> = match &file {
            Some(file) => derived_file(file).display().to_string().into(),
            None => format!(
                "file:ledgerhook-derived-{}-{}?mode=memory&cache=shared",
                std::process::id(),
                IN_MEMORY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
            .into(),
        };
        // One flush policy a pool, for both files its connections write.
        let connect = async |max_connections: u32, synchronous: SqliteSynchronous| {
            let derived_target = derived_target.clone();
            SqlitePoolOptions::new()
                .max_connections(max_connections)
                .before_acquire(|connection, _| Box::pin(async move { Ok(usable(connection)) }))
                .after_connect(move |connection, _| {
                    let derived_target = derived_target.clone();
                    Box::pin(async move {
                        attach_derived(connection, &derived_target, synchronous).await
                    })
                })
                .connect_with(options.clone().synchronous(synchronous))
                .await
                .map_err(|error| unopenable(super::connect_reason(&error)))
        };
        let pool = connect(MAX_CONNECTIONS, SqliteSynchronous::Full).await?;
        let events = Arc::new(SqliteEventRepository::new(pool.clone()));
        let writer = Arc::new(Mutex::new(()));
        let Some(file) = file else {
            // In memory: one pool, which alone sees the database, and so one writer queue.
            return Ok(Self {
                derived: pool.clone(),
                pool,
                events,
                derived_writer: writer.clone(),
                writer,
                file: None,
            });
        };
        let derived = connect(1, SqliteSynchronous::Normal).await?;
        let derived_writer = Arc::new(Mutex::new(()));
        let checkpoints = connect(1, SqliteSynchronous::Full).await?;
        super::wal::spawn(
            checkpoints,
            [
                super::wal::Database::new("main", &writer),
                super::wal::Database::new("derived", &derived_writer),
            ],
        );
        Ok(Self {
            pool,
            derived,
            events,
            writer,
            derived_writer,
            file: Some(file),
        })
    }

    /// Makes this process the only `serve` of the database file, until the returned lock is
    /// dropped or the process ends (an OS lock, so also after kill -9). Its writer queue is what
    /// keeps writes orderly; a second service process would contend on SQLite's lock instead.
    /// Other commands (users, halt, ...) do not take it and run beside the service.
    pub fn lock_for_service(&self) -> Result<Option<ServiceLock>> {
        let Some(database) = &self.file else {
            return Ok(None);
        };
        let mut path = database.clone().into_os_string();
        path.push("-serve.lock");
        let path = std::path::PathBuf::from(path);
        let failed = |reason: String| StoreError::SqliteUnopenable {
            path: database.display().to_string(),
            reason,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| {
                failed(format!(
                    "cannot open its lock file {}: {}",
                    path.display(),
                    super::io_reason(&error)
                ))
            })?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(StoreError::AlreadyServing {
                    database: database.display().to_string(),
                    lock: path.display().to_string(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(", process {holder}")
                    },
                });
            }
            Err(error) => {
                return Err(failed(format!(
                    "cannot lock {}: {}",
                    path.display(),
                    super::io_reason(&error)
                )))
            }
        }
        // The holder's pid, for the message a second `serve` prints; the lock is what counts.
        use std::io::Write;
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Some(ServiceLock { _file: file }))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The derived file (`derived_file`); `None` in memory.
    pub fn derived_path(&self) -> Option<std::path::PathBuf> {
        self.file.as_deref().map(derived_file)
    }

    pub fn derived_pool(&self) -> &SqlitePool {
        &self.derived
    }

    /// Joins this process's queue of the ledger file's writers (see `writer`): every write of the
    /// store there takes its turn here, and so must a write made outside it (a test seeding rows).
    pub async fn lock_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// The queue of the derived file's writers (see `derived_writer`).
    pub async fn lock_derived_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.derived_writer.lock().await
    }

    /// The turn a statement of `on_pool!` takes, by the file it writes.
    pub(crate) async fn turn(&self, queue: WriterQueue) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match queue {
            WriterQueue::None => None,
            WriterQueue::Ledger => Some(self.lock_writer().await),
            WriterQueue::Derived => Some(self.lock_derived_writer().await),
        }
    }
}

/// Tells apart the derived databases of in-memory stores in one process.
static IN_MEMORY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The file beside `ledger` that holds what readers derive from it (migration 0021): the audit
/// trail, the read models and the readers' checkpoints. `ledger.db` → `ledger.derived.db`.
pub fn derived_file(ledger: &Path) -> std::path::PathBuf {
    let stem = ledger.file_stem().unwrap_or_default().to_string_lossy();
    let name = match ledger.extension() {
        Some(extension) => format!("{stem}.derived.{}", extension.to_string_lossy()),
        None => format!("{stem}.derived"),
    };
    ledger.with_file_name(name)
}

/// Attaches the derived database to a new connection as `derived`: queries name its tables
/// unqualified, and SQLite finds them there. It flushes as the connection's own file does.
async fn attach_derived(
    connection: &mut sqlx::SqliteConnection,
    target: &str,
    synchronous: SqliteSynchronous,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("ATTACH DATABASE $1 AS derived")
        .bind(target)
        .execute(&mut *connection)
        .await?;
    sqlx::query("PRAGMA derived.journal_mode = WAL")
        .execute(&mut *connection)
        .await?;
    sqlx::query(&format!(
        "PRAGMA derived.synchronous = {}",
        pragma_text(synchronous)
    ))
    .execute(&mut *connection)
    .await?;
    sqlx::query(&format!(
        "PRAGMA derived.journal_size_limit = {}",
        super::wal::WAL_FILE_LIMIT
    ))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The pragma's word for a flush policy (sqlx keeps its own mapping private).
fn pragma_text(synchronous: SqliteSynchronous) -> &'static str {
    match synchronous {
        SqliteSynchronous::Off => "OFF",
        SqliteSynchronous::Normal => "NORMAL",
        SqliteSynchronous::Full => "FULL",
        SqliteSynchronous::Extra => "EXTRA",
    }
}

/// Whether a connection taken from the pool may serve. One still inside a transaction is closed
/// instead (SQLite then rolls back whatever it held): that is left behind when a write failed (the
/// disk full or read-only, an I/O error) and the rollback after it failed too. Kept, it would hold
/// SQLite's one write lock for good, every other write waiting on it, and its own later commits
/// would only release savepoints inside that transaction: answered, never durable. Checked when
/// taken rather than when handed back, where it costs nothing (the rollback of a transaction
/// dropped on an error is still queued on the connection then; a connection taken again at once
/// may be closed for it, which costs only a new connection).
fn usable(connection: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::Connection;
    let stuck = connection.is_in_transaction();
    if stuck {
        tracing::warn!("a store connection left inside a failed transaction is closed");
    }
    !stuck
}

/// An exclusive OS lock on `file`, without waiting: `false` while another process holds it. Held
/// until the file is closed, which the OS does when the process ends, however it ends.
#[cfg(unix)]
fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// Off unix there is no lock (the service is built and run on Linux).
#[cfg(not(unix))]
fn try_lock(_: &std::fs::File) -> std::io::Result<bool> {
    Ok(true)
}

pub(super) fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("migrations/sqlite")
}

/// One transaction for the whole batch; the trigger `events_global_order` numbers the rows
/// in insertion order, and SQLite's single writer keeps one transaction's positions together.
impl super::Dialect for SqlitePool {
    async fn run_migrations(&self) -> Result<()> {
        migrator().run(self).await?;
        Ok(())
    }

    /// Called through `writing!`: the writer queue is held.
    async fn append_events(
        &self,
        events: &[SerializedEvent],
        sequences: Vec<i64>,
        keys: &[SignalKey],
    ) -> Result<Vec<LogPosition>> {
        append(self, events, sequences, keys).await
    }
}

async fn append(
    pool: &SqlitePool,
    events: &[SerializedEvent],
    sequences: Vec<i64>,
    keys: &[SignalKey],
) -> Result<Vec<LogPosition>> {
    let mut tx = pool.begin().await?;
    // 7 bound values a row: well under SQLite's 32,766 variables per statement.
    let rows: Vec<_> = events.iter().zip(sequences).collect();
    for chunk in rows.chunks(1_000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) ",
        );
        insert.push_values(chunk, |mut row, (event, sequence)| {
            row.push_bind(&event.aggregate_type)
                .push_bind(&event.aggregate_id)
                .push_bind(*sequence)
                .push_bind(&event.event_type)
                .push_bind(&event.event_version)
                .push_bind(event.payload.to_string())
                .push_bind(event.metadata.to_string());
        });
        match insert.build().execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(StoreError::Conflict);
            }
            Err(error) => return Err(error.into()),
        }
    }
    remember_keys(&mut tx, keys).await?;
    let last: i64 = sqlx::query_scalar("SELECT max(position) FROM event_log")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut positions: Vec<LogPosition> =
        std::iter::successors(Some(last), |global_seq| Some(global_seq - 1))
            .take(events.len())
            .map(|global_seq| LogPosition { global_seq })
            .collect();
    positions.reverse();
    Ok(positions)
}

/// A key used again after its window takes the new signal's id and expiry.
async fn remember_keys(tx: &mut sqlx::SqliteConnection, keys: &[SignalKey]) -> Result<()> {
    // 4 bound values a row.
    for chunk in keys.chunks(1_000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO signal_keys (account_id, idempotency_key, signal_id, expires_at_ns) ",
        );
        insert.push_values(chunk, |mut row, key| {
            row.push_bind(&key.account_id)
                .push_bind(&key.key)
                .push_bind(&key.signal_id)
                .push_bind(key.expires_at_ns());
        });
        insert.push(
            " ON CONFLICT (account_id, idempotency_key) DO UPDATE \
             SET signal_id = excluded.signal_id, expires_at_ns = excluded.expires_at_ns",
        );
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
}
