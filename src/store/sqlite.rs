//! SQLite, the embedded default. Durable: WAL with synchronous=FULL, so an acknowledged signal
//! survives power loss, not just a process crash.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use sqlite_es::SqliteEventRepository;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::Mutex;

use aggregates::{EmergencyStop, TradingAccount, EMERGENCY_STOP_ID};

use super::postgres::sequence_to_i64;
use super::users::{
    ActiveUser, CredentialDigests, NewUser, RateLimit, TwoFactorUser, UserProfile, WebhookDigests,
    ACTIVE_CREDENTIAL_DIGESTS,
};
use super::{LogPosition, LoggedEvent, PaperOrder, Result, Snapshot, StoreError};

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
    /// One transaction for the whole batch; the trigger `events_global_order` numbers the rows
    /// in insertion order, and SQLite's single writer keeps one transaction's positions together.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<Vec<LogPosition>> {
        let _writing = self.writer.lock().await;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // 7 bound values a row: well under SQLite's 32,766 variables per statement.
        for chunk in events.chunks(1_000) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(&event.aggregate_type)
                    .push_bind(&event.aggregate_id)
                    .push_bind(sequence_to_i64(event.sequence))
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
        let global_seq: Option<i64> =
            sqlx::query_scalar("SELECT global_seq FROM checkpoints WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(LogPosition {
            global_seq: global_seq.unwrap_or_default(),
        })
    }

    pub async fn save_checkpoint(&self, name: &str, position: LogPosition) -> Result<()> {
        let _writing = self.writer.lock().await;
        save_checkpoint_with(&self.pool, name, position).await
    }

    pub async fn insert_user(&self, user: &NewUser) -> Result<()> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO users (user_id, display_name, webhook_token_sha256, webhook_uuid,
                                webhook_secret_sha256, api_key_sha256, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.user_id)
        .bind(&user.display_name)
        .bind(&user.webhook.webhook_token_sha256)
        .bind(&user.webhook.webhook_uuid)
        .bind(&user.webhook.webhook_secret_sha256)
        .bind(&user.api_key_sha256)
        .bind(user.created_at.to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every active user's credential digests, at most `limit` of them.
    pub async fn active_credential_digests(&self, limit: i64) -> Result<Vec<CredentialDigests>> {
        let rows = sqlx::query(ACTIVE_CREDENTIAL_DIGESTS)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(CredentialDigests::from_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Bumped by a trigger on every change to `users`, by any process (migration 0007): one row
    /// to read to learn whether the credentials changed.
    pub async fn credentials_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM credentials_version WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or_default(),
        )
    }

    pub async fn active_user_by_token_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTIVE_USER_COLUMNS} FROM users
              WHERE webhook_token_sha256 = ? AND disabled_at IS NULL"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(active_user).transpose()
    }

    pub async fn active_user_by_api_key_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTIVE_USER_COLUMNS} FROM users
              WHERE api_key_sha256 = ? AND disabled_at IS NULL"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(active_user).transpose()
    }

    pub async fn active_user_by_webhook_uuid(&self, uuid: &str) -> Result<Option<TwoFactorUser>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTIVE_USER_COLUMNS}, webhook_secret_sha256 FROM users
              WHERE webhook_uuid = ? AND disabled_at IS NULL"
        ))
        .bind(uuid)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<TwoFactorUser> {
            Ok(TwoFactorUser {
                user: active_user(&row)?,
                webhook_secret_sha256: row.try_get("webhook_secret_sha256")?,
            })
        })
        .transpose()
    }

    pub async fn user_profile(&self, user_id: &str) -> Result<Option<UserProfile>> {
        let row = sqlx::query(
            "SELECT user_id, display_name, webhook_uuid, disabled_at, rate_limit_requests,
                    rate_limit_window_seconds
               FROM users WHERE user_id = ?",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<UserProfile> {
            let disabled_at: Option<String> = row.try_get("disabled_at")?;
            Ok(UserProfile {
                user_id: row.try_get("user_id")?,
                display_name: row.try_get("display_name")?,
                webhook_uuid: row.try_get("webhook_uuid")?,
                disabled_at: disabled_at.as_deref().map(parse_time).transpose()?,
                rate_limit: rate_limit(&row)?,
            })
        })
        .transpose()
    }

    // No announcement here: the embedded store has one service process, and its authenticator
    // remembers no user; its index of known credentials rereads `credentials_version` (bumped by
    // trigger) before refusing a credential it does not know, so it sees this change (also one
    // made by the CLI) in time.

    pub async fn replace_webhook_credentials(
        &self,
        user_id: &str,
        webhook: &WebhookDigests,
    ) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query(
            "UPDATE users SET webhook_token_sha256 = ?, webhook_uuid = ?, webhook_secret_sha256 = ?
              WHERE user_id = ?",
        )
        .bind(&webhook.webhook_token_sha256)
        .bind(&webhook.webhook_uuid)
        .bind(&webhook.webhook_secret_sha256)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn replace_api_key(&self, user_id: &str, api_key_sha256: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("UPDATE users SET api_key_sha256 = ? WHERE user_id = ?")
            .bind(api_key_sha256)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn disable_user(&self, user_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, ?) WHERE user_id = ?",
        )
        .bind(at.to_rfc3339())
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_rate_limit(&self, user_id: &str, limit: Option<RateLimit>) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query(
            "UPDATE users SET rate_limit_requests = ?, rate_limit_window_seconds = ?
              WHERE user_id = ?",
        )
        .bind(limit.map(|l| i64::from(l.requests)))
        .bind(limit.map(|l| i64::from(l.window_seconds)))
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Books every order in one transaction; each comes back as booked, which for a client order
    /// id seen before is the first booking.
    pub async fn book_paper_orders(&self, orders: &[PaperOrder]) -> Result<Vec<PaperOrder>> {
        let _writing = self.writer.lock().await;
        let mut transaction = self.pool.begin().await?;
        for order in orders {
            sqlx::query(
                "INSERT INTO paper_orders (client_order_id, account_id, market, side, size, price,
                                           fee, exchange_order_id, placed_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (client_order_id) DO NOTHING",
            )
            .bind(&order.client_order_id)
            .bind(&order.account_id)
            .bind(&order.market)
            .bind(&order.side)
            .bind(&order.size)
            .bind(&order.price)
            .bind(&order.fee)
            .bind(&order.exchange_order_id)
            .bind(order.placed_at.to_rfc3339())
            .execute(&mut *transaction)
            .await?;
        }
        let mut booked = Vec::with_capacity(orders.len());
        for order in orders {
            let row = sqlx::query("SELECT * FROM paper_orders WHERE client_order_id = ?")
                .bind(&order.client_order_id)
                .fetch_one(&mut *transaction)
                .await?;
            booked.push(paper_order_row(&row)?);
        }
        transaction.commit().await?;
        Ok(booked)
    }

    pub async fn paper_order(&self, client_order_id: &str) -> Result<Option<PaperOrder>> {
        let row = sqlx::query("SELECT * FROM paper_orders WHERE client_order_id = ?")
            .bind(client_order_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(paper_order_row).transpose()
    }

    pub async fn count_paper_orders(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM paper_orders")
            .fetch_one(&self.pool)
            .await?)
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

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| StoreError::Database(sqlx::Error::Decode(Box::new(error))))
}

const ACTIVE_USER_COLUMNS: &str = "user_id, rate_limit_requests, rate_limit_window_seconds";

fn active_user(row: &SqliteRow) -> Result<ActiveUser> {
    Ok(ActiveUser {
        user_id: row.try_get("user_id")?,
        rate_limit: rate_limit(row)?,
    })
}

fn rate_limit(row: &SqliteRow) -> Result<Option<RateLimit>> {
    Ok(RateLimit::from_columns(
        row.try_get("rate_limit_requests")?,
        row.try_get("rate_limit_window_seconds")?,
    ))
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
        "INSERT INTO checkpoints (name, global_seq) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE
            SET global_seq = excluded.global_seq,
                updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .bind(name)
    .bind(position.global_seq)
    .execute(executor)
    .await?;
    Ok(())
}

fn paper_order_row(row: &SqliteRow) -> Result<PaperOrder> {
    let placed_at: String = row.try_get("placed_at")?;
    Ok(PaperOrder {
        client_order_id: row.try_get("client_order_id")?,
        account_id: row.try_get("account_id")?,
        market: row.try_get("market")?,
        side: row.try_get("side")?,
        size: row.try_get("size")?,
        price: row.try_get("price")?,
        fee: row.try_get("fee")?,
        exchange_order_id: row.try_get("exchange_order_id")?,
        placed_at: parse_time(&placed_at)?,
    })
}
