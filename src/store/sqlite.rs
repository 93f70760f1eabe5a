//! SQLite, the embedded default. Durable: WAL with synchronous=FULL, so an acknowledged signal
//! survives power loss, not just a process crash.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::Aggregate;
use sqlite_es::SqliteEventRepository;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::Mutex;

use aggregates::{EmergencyStop, TradingAccount, EMERGENCY_STOP_ID};

use super::{LogPosition, LoggedEvent, Result, Snapshot, StoreError};

/// Readers run in parallel under WAL; writers queue on SQLite's lock for at most this long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 8;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    events: Arc<SqliteEventRepository>,
    /// Writers of this process queue here, first come first served. SQLite has one write lock and
    /// settles contention by sleeping and retrying, which under load lets one writer lose for
    /// seconds; queueing in-process keeps every write's wait proportional to the queue.
    writer: Arc<Mutex<()>>,
    /// The database file; `None` in memory.
    file: Option<std::path::PathBuf>,
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
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = (!in_memory).then(|| options.get_filename().to_path_buf());
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
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(|error| unopenable(super::connect_reason(&error)))?;
        let events = Arc::new(SqliteEventRepository::new(pool.clone()));
        Ok(Self {
            pool,
            events,
            writer: Arc::new(Mutex::new(())),
            file,
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

    /// Joins this process's queue of writers (see `writer`): every write of the store takes its
    /// turn here, and so must a write made outside it (a test seeding rows).
    pub async fn lock_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn load_account(&self, account_id: &str) -> Result<Vec<SerializedEvent>> {
        Ok(self.events.get_events::<TradingAccount>(account_id).await?)
    }

    pub async fn load_emergency_stop(&self) -> Result<Vec<SerializedEvent>> {
        Ok(self
            .events
            .get_events::<EmergencyStop>(EMERGENCY_STOP_ID)
            .await?)
    }

    pub async fn load_account_after(
        &self,
        account_id: &str,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>> {
        Ok(self
            .events
            .get_last_events::<TradingAccount>(account_id, sequence)
            .await?)
    }

    /// sqlite-es writes every event of the batch in one transaction; a primary-key clash (another
    /// writer got there first) comes back as an optimistic-lock error.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<()> {
        let _writing = self.writer.lock().await;
        if events.is_empty() {
            return Ok(());
        }
        // sqlite-es stamps every row with `A::TYPE`, not the event's own aggregate type: one batch
        // holds one aggregate type (the committer batches only accounts).
        let aggregate_type = events[0].aggregate_type.as_str();
        if events.iter().any(|e| e.aggregate_type != aggregate_type) {
            return Err(StoreError::MixedBatch);
        }
        if aggregate_type == EmergencyStop::TYPE {
            Ok(self.events.persist::<EmergencyStop>(events, None).await?)
        } else {
            Ok(self.events.persist::<TradingAccount>(events, None).await?)
        }
    }

    pub async fn read_log(&self, after: LogPosition, limit: i64) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT l.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                    e.event_version, e.payload, e.metadata
               FROM event_log l
               JOIN events e ON e.aggregate_type = l.aggregate_type
                            AND e.aggregate_id = l.aggregate_id
                            AND e.sequence = l.sequence
              WHERE l.position > ?
              ORDER BY l.position
              LIMIT ?",
        )
        .bind(after.global_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(logged_event).collect()
    }

    pub async fn count_log_after(&self, position: LogPosition) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM event_log WHERE position > ?")
                .bind(position.global_seq)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn snapshot(&self, account_id: &str) -> Result<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT version, state_version, state FROM account_snapshots WHERE account_id = ?",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<Snapshot> {
            let version: i64 = row.try_get("version")?;
            let state: String = row.try_get("state")?;
            Ok(Snapshot {
                version: usize::try_from(version).unwrap_or_default(),
                state_version: row.try_get("state_version")?,
                state: json(&state)?,
            })
        })
        .transpose()
    }

    pub async fn save_snapshot(&self, account_id: &str, snapshot: &Snapshot) -> Result<()> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO account_snapshots (account_id, version, state_version, state)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE
                SET version = excluded.version, state_version = excluded.state_version,
                    state = excluded.state, taken_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
              WHERE account_snapshots.version < excluded.version
                 OR account_snapshots.state_version <> excluded.state_version",
        )
        .bind(account_id)
        .bind(i64::try_from(snapshot.version).unwrap_or(i64::MAX))
        .bind(&snapshot.state_version)
        .bind(snapshot.state.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn checkpoint(&self, name: &str) -> Result<LogPosition> {
        let row = sqlx::query("SELECT tx_id, global_seq FROM checkpoints WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|row| LogPosition {
                tx_id: row.get("tx_id"),
                global_seq: row.get("global_seq"),
            })
            .unwrap_or_default())
    }

    pub async fn save_checkpoint(&self, name: &str, position: LogPosition) -> Result<()> {
        let _writing = self.writer.lock().await;
        save_checkpoint_with(&self.pool, name, position).await
    }
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

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Database(sqlx::Error::Decode(Box::new(error))))
}

fn logged_event(row: &SqliteRow) -> Result<LoggedEvent> {
    let sequence: i64 = row.try_get("sequence")?;
    let payload: String = row.try_get("payload")?;
    let metadata: String = row.try_get("metadata")?;
    let json = |text: &str| {
        serde_json::from_str(text)
            .map_err(|error| StoreError::Database(sqlx::Error::Decode(Box::new(error))))
    };
    Ok(LoggedEvent {
        position: LogPosition {
            tx_id: 0,
            global_seq: row.try_get("position")?,
        },
        event: SerializedEvent {
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: usize::try_from(sequence).unwrap_or_default(),
            aggregate_type: row.try_get("aggregate_type")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: json(&payload)?,
            metadata: json(&metadata)?,
        },
    })
}

/// Saves a reader's checkpoint through `executor`: the pool, or the transaction that writes the
/// reader's rows (so rows and checkpoint commit together). The caller holds the writer queue.
pub(super) async fn save_checkpoint_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    name: &str,
    position: LogPosition,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (name, tx_id, global_seq) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE
            SET tx_id = excluded.tx_id, global_seq = excluded.global_seq,
                updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .bind(name)
    .bind(position.tx_id)
    .bind(position.global_seq)
    .execute(executor)
    .await?;
    Ok(())
}
