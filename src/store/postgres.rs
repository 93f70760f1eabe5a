//! PostgreSQL, the production store. Several service instances may share one database.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::SerializedEvent;
use postgres_es::PostgresEventRepository;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::Connection;
use sqlx::Row;

use super::failover::{Failover, Server};
use super::hosts::{self, HostList};
use super::users::CREDENTIALS_CHANGED_CHANNEL;
use super::{LogPosition, Result, SignalKey, StoreError};

/// Enough connections for the group committers, the execution saga and request-time reads
/// without crowding a small server's default `max_connections` (100) when instances share it.
const MAX_CONNECTIONS: u32 = 24;

const UNIQUE_VIOLATION: &str = "23505";
/// Two instances appending to one account with the same new key can wait on each other's rows;
/// the server aborts one of them whole.
const DEADLOCK_DETECTED: &str = "40P01";
const UNDEFINED_TABLE: &str = "42P01";
/// How long start-up waits for the server before saying it does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A connection's buffers are shrunk back to their default size at one release in this many.
/// sqlx keeps each buffer as large as the largest message it ever carried: a page of audit rows
/// or a committed batch of 2,000 events leaves megabytes behind (a heap profile under load found
/// 11.8 of the 20.2 MB held at its end there, benches/README; the soak's RSS with mimalloc did
/// not change measurably). Shrinking reallocates, so not at every release.
const SHRINK_BUFFERS_EVERY: usize = 16;

fn pool_options() -> PgPoolOptions {
    static RELEASES: AtomicUsize = AtomicUsize::new(0);
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .after_release(|connection, _| {
            if RELEASES.fetch_add(1, Ordering::Relaxed) % SHRINK_BUFFERS_EVERY == 0 {
                connection.shrink_buffers();
            }
            Box::pin(async { Ok(true) })
        })
}

/// What the service's login could do to the audit trail's append-only guarantees: a superuser
/// or an owner of the audit tables (or member of `ledgerhook_audit_owner`) can disable or drop
/// their triggers; a role with CREATEROLE can grant itself the owner role; the owner of their
/// schema (the database's owner, for `public` since PostgreSQL 15) can drop the tables whole and
/// make them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPrivileges {
    pub login: String,
    pub superuser: bool,
    pub create_role: bool,
    pub audit_owner: bool,
    pub audit_schema_owner: bool,
}

impl LoginPrivileges {
    /// The privileges held, in words; empty when the login is fit to serve.
    pub fn held(&self) -> Vec<&'static str> {
        [
            (self.superuser, "is a superuser"),
            (self.create_role, "has CREATEROLE"),
            (
                self.audit_owner,
                "owns the audit tables (or is a member of ledgerhook_audit_owner)",
            ),
            (
                self.audit_schema_owner,
                "owns the audit tables' schema (it could drop them and make them again)",
            ),
        ]
        .into_iter()
        .filter_map(|(held, words)| held.then_some(words))
        .collect()
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    pub(super) events: Arc<PostgresEventRepository>,
    /// With a multi-host URL: the task that moves the pool to the usable server (`failover.rs`),
    /// stopped when the last clone of the store goes.
    _watcher: Option<Arc<Watcher>>,
}

/// Aborts the failover watcher when dropped.
struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresStore {
    /// Connects to the server `url` names; with several (`host1:port1,host2:port2`) or a
    /// `target_session_attrs`, to the first that suits, and follows the usable one from then on
    /// (`hosts.rs`, `failover.rs`).
    pub async fn connect(url: &str) -> Result<Self> {
        match hosts::parse(url)? {
            None => Self::connect_one(url).await,
            Some(list) => Self::connect_following(list).await,
        }
    }

    /// One server, as given.
    async fn connect_one(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let unreachable = |reason: String| StoreError::PostgresUnreachable {
            address: format!("{}:{}", options.get_host(), options.get_port()),
            reason,
        };
        // One plain connection first: the pool retries a failed connection silently until its
        // acquire timeout and then says only "pool timed out", never what failed or why.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(error)) => return Err(unreachable(super::connect_reason(&error))),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
            }
        }
        let pool = pool_options()
            .connect_with(options.clone())
            .await
            .map_err(|error| unreachable(super::connect_reason(&error)))?;
        Ok(Self::over(pool, None))
    }

    /// The first server of `list` that suits, followed when it stops suiting.
    async fn connect_following(list: HostList) -> Result<Self> {
        let servers = list
            .hosts
            .iter()
            .map(|host| {
                Ok(Server {
                    address: host.address.clone(),
                    options: PgConnectOptions::from_str(&host.url)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let failover = Arc::new(Failover::new(servers, list.attrs));
        // Said at once, per server, rather than as the pool's "timed out" later; a server that
        // does not suit `target_session_attrs` is refused here, not at the first write.
        let (index, sentinel) =
            failover
                .first_usable()
                .await
                .map_err(|reason| StoreError::PostgresUnreachable {
                    address: list.addresses(),
                    reason: format!(
                        "none suits target_session_attrs={}: {reason}",
                        list.attrs.as_str()
                    ),
                })?;
        let options = PgConnectOptions::from_str(&list.hosts[index].url)?;
        let pool = failover
            .pool_options(pool_options())
            .connect_with(options)
            .await
            .map_err(|error| StoreError::PostgresUnreachable {
                address: list.hosts[index].address.clone(),
                reason: super::connect_reason(&error),
            })?;
        let watcher = tokio::spawn(failover.watch(pool.clone(), index, sentinel));
        Ok(Self::over(pool, Some(Arc::new(Watcher(watcher)))))
    }

    fn over(pool: PgPool, watcher: Option<Arc<Watcher>>) -> Self {
        let events = Arc::new(PostgresEventRepository::new(pool.clone()));
        Self {
            pool,
            events,
            _watcher: watcher,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether any migration is missing, failed or changed since it was applied (then `migrate`
    /// applies it, or says what is wrong).
    pub async fn migrations_pending(&self) -> Result<bool> {
        let applied: Vec<(i64, Vec<u8>)> = match sqlx::query_as(
            "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        {
            Ok(applied) => applied,
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(UNDEFINED_TABLE) =>
            {
                return Ok(true)
            }
            Err(error) => return Err(error.into()),
        };
        let applied: HashMap<i64, Vec<u8>> = applied.into_iter().collect();
        Ok(MIGRATOR
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .any(|migration| {
                applied.get(&migration.version).map(Vec::as_slice) != Some(&*migration.checksum)
            }))
    }

    /// See `LoginPrivileges`.
    pub async fn login_privileges(&self) -> Result<LoginPrivileges> {
        let row = sqlx::query(
            "SELECT current_user::text AS login, r.rolsuper, r.rolcreaterole,
                    EXISTS (SELECT 1 FROM pg_roles o
                             WHERE o.rolname = 'ledgerhook_audit_owner'
                               AND pg_has_role(current_user, o.oid, 'MEMBER')) AS audit_owner,
                    EXISTS (SELECT 1 FROM pg_class c
                             WHERE c.oid IN (to_regclass('audit_log'),
                                             to_regclass('audit_checkpoints'))
                               AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owns_audit,
                    EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.oid = to_regclass('audit_log')
                               AND pg_has_role(current_user, n.nspowner, 'MEMBER')) AS owns_schema
               FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LoginPrivileges {
            login: row.try_get("login")?,
            superuser: row.try_get("rolsuper")?,
            create_role: row.try_get("rolcreaterole")?,
            audit_owner: row.try_get::<bool, _>("audit_owner")?
                || row.try_get::<bool, _>("owns_audit")?,
            audit_schema_owner: row.try_get("owns_schema")?,
        })
    }

    /// Opens `connections` pool connections now: one set up mid-burst costs the request that
    /// waits for it.
    pub async fn warm_up(&self, connections: usize) -> Result<()> {
        let mut held = Vec::with_capacity(connections);
        for _ in 0..connections {
            held.push(self.pool.acquire().await?);
        }
        Ok(())
    }

    /// A dedicated connection listening for credential changes.
    pub async fn listen_for_credential_changes(&self) -> Result<CredentialListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        // Report a lost connection at once instead of reconnecting first: while it is down the
        // authenticator must stop trusting its memory.
        listener.eager_reconnect(false);
        // Polled on every webhook lookup: skip registering for the pool's close event each time.
        // (Nothing closes the pool; if something did, it would wait for this connection.)
        listener.ignore_pool_close_event(true);
        listener.listen(CREDENTIALS_CHANGED_CHANNEL).await?;
        Ok(CredentialListener { listener })
    }
}

/// A session-level advisory lock on a connection of its own, taken out of the pool so that dropping
/// the lease closes the connection and so releases the lock.
pub struct AdvisoryLease {
    connection: PgConnection,
}

impl AdvisoryLease {
    pub async fn is_held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.connection)
            .await
            .is_ok()
    }
}

impl PostgresStore {
    pub async fn try_lease(&self, name: &str) -> Result<Option<AdvisoryLease>> {
        let mut connection = self.pool.acquire().await?.detach();
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(format!("ledgerhook:{name}"))
            .fetch_one(&mut connection)
            .await?;
        Ok(held.then_some(AdvisoryLease { connection }))
    }
}

/// Announcements of credential changes, on a connection of its own.
pub struct CredentialListener {
    listener: PgListener,
}

impl CredentialListener {
    /// Waits for the next change: `Ok(Some(user_id))`, or `Ok(None)` once the connection is lost
    /// (changes made meanwhile are not heard: the caller must forget what it remembers).
    pub async fn next_change(&mut self) -> Result<Option<String>> {
        Ok(self
            .listener
            .try_recv()
            .await?
            .map(|notification| notification.payload().to_owned()))
    }

    /// Whether the connection still answers: a connection that died without a FIN (a proxy
    /// dropping idle connections) is otherwise only noticed by the next write.
    pub async fn ping(&mut self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.listener).await?;
        Ok(())
    }
}

/// The position each of `events` took, in their order, from the rows the insert returned (whose
/// order SQL does not promise).
fn positions_in_order(
    events: &[SerializedEvent],
    sequences: &[i64],
    rows: Vec<(String, String, i64, i64)>,
) -> Result<Vec<LogPosition>> {
    let taken: std::collections::HashMap<(String, String, i64), i64> = rows
        .into_iter()
        .map(|(aggregate_type, aggregate_id, sequence, global_seq)| {
            ((aggregate_type, aggregate_id, sequence), global_seq)
        })
        .collect();
    events
        .iter()
        .zip(sequences)
        .map(|(event, &sequence)| {
            let key = (
                event.aggregate_type.clone(),
                event.aggregate_id.clone(),
                sequence,
            );
            taken
                .get(&key)
                .map(|&global_seq| LogPosition { global_seq })
                .ok_or_else(|| {
                    StoreError::Database(sqlx::Error::Protocol(
                        "an appended event came back without its position".into(),
                    ))
                })
        })
        .collect()
}

/// One multi-row INSERT per batch: postgres-es issues one statement per event, which costs a
/// round trip each and dominated append time under load.
impl super::Dialect for PgPool {
    async fn run_migrations(&self) -> Result<()> {
        super::audit_roles::prepare(self).await?;
        MIGRATOR.run(self).await?;
        Ok(())
    }

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
    pool: &PgPool,
    events: &[SerializedEvent],
    sequences: Vec<i64>,
    keys: &[SignalKey],
) -> Result<Vec<LogPosition>> {
    let column = |f: fn(&SerializedEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
    let payloads = column(|e| e.payload.to_string());
    let metadata = column(|e| e.metadata.to_string());
    let key_column = |f: fn(&SignalKey) -> String| keys.iter().map(f).collect::<Vec<_>>();
    let expiries: Vec<i64> = keys.iter().map(SignalKey::expires_at_ns).collect();
    // One statement, so one round trip: the keys are remembered exactly when the events land.
    // Each row takes its position from the column's default, under the lock the statement trigger
    // `events_global_order_lock` took first (migrations 0010, 0021). A key
    // used again after its window takes the new signal's id and expiry.
    let result = sqlx::query_as::<_, (String, String, i64, i64)>(
        "WITH remembered AS (
             INSERT INTO signal_keys (account_id, idempotency_key, signal_id, expires_at_ns)
             SELECT * FROM UNNEST($8::text[], $9::text[], $10::text[], $11::bigint[])
             ON CONFLICT (account_id, idempotency_key) DO UPDATE
                SET signal_id = EXCLUDED.signal_id, expires_at_ns = EXCLUDED.expires_at_ns
         )
         INSERT INTO events
             (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::text[]::json[], $7::text[]::json[])
         RETURNING aggregate_type, aggregate_id, sequence, global_seq",
    )
    .bind(column(|e| e.aggregate_type.clone()))
    .bind(column(|e| e.aggregate_id.clone()))
    .bind(&sequences)
    .bind(column(|e| e.event_type.clone()))
    .bind(column(|e| e.event_version.clone()))
    .bind(payloads)
    .bind(metadata)
    .bind(key_column(|k| k.account_id.clone()))
    .bind(key_column(|k| k.key.clone()))
    .bind(key_column(|k| k.signal_id.clone()))
    .bind(expiries)
    .fetch_all(pool)
    .await;
    match result {
        Ok(rows) => positions_in_order(events, &sequences, rows),
        // Nothing of the statement landed: the caller reloads and decides again.
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some(UNIQUE_VIOLATION)
                || error.code().as_deref() == Some(DEADLOCK_DETECTED) =>
        {
            Err(StoreError::Conflict)
        }
        Err(error) => Err(error.into()),
    }
}
