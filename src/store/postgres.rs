//! PostgreSQL, the production store. Several service instances may share one database.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use postgres_es::PostgresEventRepository;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Connection;
use sqlx::Row;

use aggregates::{EmergencyStop, TradingAccount, EMERGENCY_STOP_ID};

use super::users::{
    ActiveUser, CredentialDigests, NewUser, RateLimit, TwoFactorUser, UserProfile, WebhookDigests,
    ACTIVE_CREDENTIAL_DIGESTS, CREDENTIALS_CHANGED_CHANNEL,
};
use super::{LogPosition, LoggedEvent, PaperOrder, Result, Snapshot, StoreError};

/// Enough connections for the group committers, the execution saga and request-time reads
/// without crowding a small server's default `max_connections` (100) when instances share it.
const MAX_CONNECTIONS: u32 = 24;

const UNIQUE_VIOLATION: &str = "23505";
const UNDEFINED_TABLE: &str = "42P01";
/// How long start-up waits for the server before saying it does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// What the service's login could do to the audit trail's append-only guarantees: a superuser
/// or an owner of the audit tables (or member of `ledgerhook_audit_owner`) can disable or drop
/// their triggers; a role with CREATEROLE can grant itself the owner role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPrivileges {
    pub login: String,
    pub superuser: bool,
    pub create_role: bool,
    pub audit_owner: bool,
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
        ]
        .into_iter()
        .filter_map(|(held, words)| held.then_some(words))
        .collect()
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    events: Arc<PostgresEventRepository>,
    /// Credential changes made through this store (and its clones), counted as they return: this
    /// process knows of its own changes before their NOTIFY comes back.
    credential_changes: Arc<AtomicU64>,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
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
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|error| unreachable(super::connect_reason(&error)))?;
        let events = Arc::new(PostgresEventRepository::new(pool.clone()));
        Ok(Self {
            pool,
            events,
            credential_changes: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
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
                               AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owns_audit
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

    /// One multi-row INSERT per batch: postgres-es issues one statement per event, which costs a
    /// round trip each and dominated append time under load.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<Vec<LogPosition>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&SerializedEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        let sequences: Vec<i64> = events.iter().map(|e| sequence_to_i64(e.sequence)).collect();
        let payloads = column(|e| e.payload.to_string());
        let metadata = column(|e| e.metadata.to_string());
        // The trigger `events_global_position` gives each row its position (migration 0007).
        let result = sqlx::query_as::<_, (String, String, i64, i64)>(
            "INSERT INTO events
                 (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::text[]::json[], $7::text[]::json[])
             RETURNING aggregate_type, aggregate_id, sequence, global_seq",
        )
        .bind(column(|e| e.aggregate_type.clone()))
        .bind(column(|e| e.aggregate_id.clone()))
        .bind(sequences)
        .bind(column(|e| e.event_type.clone()))
        .bind(column(|e| e.event_version.clone()))
        .bind(payloads)
        .bind(metadata)
        .fetch_all(&self.pool)
        .await;
        match result {
            Ok(rows) => positions_in_order(events, rows),
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(UNIQUE_VIOLATION) =>
            {
                Err(StoreError::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Reads in plain `global_seq` order: appends take their positions under one lock held until
    /// they commit (migration 0007), so nothing below a visible position can still appear.
    pub async fn read_log(&self, after: LogPosition, limit: i64) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT global_seq, aggregate_type, aggregate_id, sequence,
                    event_type, event_version, payload, metadata
               FROM events
              WHERE global_seq > $1
              ORDER BY global_seq
              LIMIT $2",
        )
        .bind(after.global_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(logged_event).collect()
    }

    pub async fn snapshot(&self, account_id: &str) -> Result<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT version, state_version, state FROM account_snapshots WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<Snapshot> {
            let version: i64 = row.try_get("version")?;
            Ok(Snapshot {
                version: usize::try_from(version).unwrap_or_default(),
                state_version: row.try_get("state_version")?,
                state: row.try_get("state")?,
            })
        })
        .transpose()
    }

    pub async fn save_snapshot(&self, account_id: &str, snapshot: &Snapshot) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_snapshots (account_id, version, state_version, state)
             VALUES ($1, $2, $3, $4::json)
             ON CONFLICT (account_id) DO UPDATE
                SET version = EXCLUDED.version, state_version = EXCLUDED.state_version,
                    state = EXCLUDED.state, taken_at = now()
              WHERE account_snapshots.version < EXCLUDED.version
                 OR account_snapshots.state_version <> EXCLUDED.state_version",
        )
        .bind(account_id)
        .bind(sequence_to_i64(snapshot.version))
        .bind(&snapshot.state_version)
        .bind(snapshot.state.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn checkpoint(&self, name: &str) -> Result<LogPosition> {
        let global_seq: Option<i64> =
            sqlx::query_scalar("SELECT global_seq FROM checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(LogPosition {
            global_seq: global_seq.unwrap_or_default(),
        })
    }

    pub async fn save_checkpoint(&self, name: &str, position: LogPosition) -> Result<()> {
        save_checkpoint_with(&self.pool, name, position).await
    }

    /// Announced like every change: each instance's index of known credentials must learn of it.
    pub async fn insert_user(&self, user: &NewUser) -> Result<()> {
        sqlx::query(&format!(
            "WITH inserted AS (
                 INSERT INTO users (user_id, display_name, webhook_token_sha256, webhook_uuid,
                                    webhook_secret_sha256, api_key_sha256, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING user_id)
             SELECT pg_notify('{CREDENTIALS_CHANGED_CHANNEL}', user_id) FROM inserted"
        ))
        .bind(&user.user_id)
        .bind(&user.display_name)
        .bind(&user.webhook.webhook_token_sha256)
        .bind(&user.webhook.webhook_uuid)
        .bind(&user.webhook.webhook_secret_sha256)
        .bind(&user.api_key_sha256)
        .bind(user.created_at)
        .fetch_all(&self.pool)
        .await?;
        self.credential_changes.fetch_add(1, Ordering::SeqCst);
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

    /// Credential changes made through this store so far.
    pub fn local_credential_changes(&self) -> u64 {
        self.credential_changes.load(Ordering::SeqCst)
    }

    pub async fn active_user_by_token_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTIVE_USER_COLUMNS} FROM users
              WHERE webhook_token_sha256 = $1 AND disabled_at IS NULL"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(active_user).transpose()
    }

    pub async fn active_user_by_api_key_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTIVE_USER_COLUMNS} FROM users
              WHERE api_key_sha256 = $1 AND disabled_at IS NULL"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(active_user).transpose()
    }

    pub async fn active_user_by_webhook_uuid(&self, uuid: &str) -> Result<Option<TwoFactorUser>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTIVE_USER_COLUMNS}, webhook_secret_sha256 FROM users
              WHERE webhook_uuid = $1 AND disabled_at IS NULL"
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
               FROM users WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<UserProfile> {
            Ok(UserProfile {
                user_id: row.try_get("user_id")?,
                display_name: row.try_get("display_name")?,
                webhook_uuid: row.try_get("webhook_uuid")?,
                disabled_at: row.try_get("disabled_at")?,
                rate_limit: rate_limit(&row)?,
            })
        })
        .transpose()
    }

    // Every credential change below is one statement that also announces it: NOTIFY is delivered
    // when (and only if) the change commits, so no instance can miss a committed change while its
    // listener is up, nor hear of one that rolled back.

    pub async fn replace_webhook_credentials(
        &self,
        user_id: &str,
        webhook: &WebhookDigests,
    ) -> Result<bool> {
        self.change_and_announce(
            "UPDATE users SET webhook_token_sha256 = $2, webhook_uuid = $3,
                              webhook_secret_sha256 = $4
              WHERE user_id = $1",
            user_id,
            |query| {
                query
                    .bind(webhook.webhook_token_sha256.clone())
                    .bind(webhook.webhook_uuid.clone())
                    .bind(webhook.webhook_secret_sha256.clone())
            },
        )
        .await
    }

    pub async fn replace_api_key(&self, user_id: &str, api_key_sha256: &str) -> Result<bool> {
        self.change_and_announce(
            "UPDATE users SET api_key_sha256 = $2 WHERE user_id = $1",
            user_id,
            |query| query.bind(api_key_sha256.to_owned()),
        )
        .await
    }

    pub async fn disable_user(&self, user_id: &str, at: DateTime<Utc>) -> Result<bool> {
        self.change_and_announce(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE user_id = $1",
            user_id,
            |query| query.bind(at),
        )
        .await
    }

    pub async fn set_rate_limit(&self, user_id: &str, limit: Option<RateLimit>) -> Result<bool> {
        self.change_and_announce(
            "UPDATE users SET rate_limit_requests = $2::integer, rate_limit_window_seconds = $3::integer
              WHERE user_id = $1",
            user_id,
            |query| {
                query
                    .bind(limit.map(|l| i64::from(l.requests)))
                    .bind(limit.map(|l| i64::from(l.window_seconds)))
            },
        )
        .await
    }

    /// Runs `update` (with `$1` = the user id) and NOTIFY in one statement; whether the user exists.
    async fn change_and_announce(
        &self,
        update: &str,
        user_id: &str,
        bind: impl for<'q> FnOnce(PgQuery<'q>) -> PgQuery<'q>,
    ) -> Result<bool> {
        let sql = format!(
            "WITH changed AS ({update} RETURNING user_id)
             SELECT pg_notify('{CREDENTIALS_CHANGED_CHANNEL}', user_id) FROM changed"
        );
        let rows = bind(sqlx::query(&sql).bind(user_id))
            .fetch_all(&self.pool)
            .await?;
        self.credential_changes.fetch_add(1, Ordering::SeqCst);
        Ok(!rows.is_empty())
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

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Books every order in one statement; each comes back as booked, which for a client order id
    /// seen before is the first booking. (The CTE's insert is invisible to the statement's own
    /// snapshot, so the second half returns exactly the rows booked earlier.)
    pub async fn book_paper_orders(&self, orders: &[PaperOrder]) -> Result<Vec<PaperOrder>> {
        let column = |f: fn(&PaperOrder) -> String| orders.iter().map(f).collect::<Vec<_>>();
        let placed_at: Vec<DateTime<Utc>> = orders.iter().map(|order| order.placed_at).collect();
        let rows = sqlx::query(
            "WITH booked AS (
                 INSERT INTO paper_orders (client_order_id, account_id, market, side, size, price,
                                           fee, exchange_order_id, placed_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::text[], $9::timestamptz[])
                 ON CONFLICT (client_order_id) DO NOTHING
                 RETURNING *)
             SELECT * FROM booked
             UNION ALL
             SELECT * FROM paper_orders WHERE client_order_id = ANY($1)",
        )
        .bind(column(|o| o.client_order_id.clone()))
        .bind(column(|o| o.account_id.clone()))
        .bind(column(|o| o.market.clone()))
        .bind(column(|o| o.side.clone()))
        .bind(column(|o| o.size.clone()))
        .bind(column(|o| o.price.clone()))
        .bind(column(|o| o.fee.clone()))
        .bind(column(|o| o.exchange_order_id.clone()))
        .bind(placed_at)
        .fetch_all(&self.pool)
        .await?;
        let by_id: HashMap<String, PaperOrder> = rows
            .iter()
            .map(|row| paper_order_row(row).map(|order| (order.client_order_id.clone(), order)))
            .collect::<Result<_>>()?;
        orders
            .iter()
            .map(|order| {
                by_id
                    .get(&order.client_order_id)
                    .cloned()
                    .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
            })
            .collect()
    }

    pub async fn paper_order(&self, client_order_id: &str) -> Result<Option<PaperOrder>> {
        let row = sqlx::query("SELECT * FROM paper_orders WHERE client_order_id = $1")
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

/// Saves a reader's checkpoint through `executor`: the pool, or the transaction that writes the
/// reader's rows (so rows and checkpoint commit together).
pub(super) async fn save_checkpoint_with<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    name: &str,
    position: LogPosition,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (name, global_seq) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET global_seq = EXCLUDED.global_seq, updated_at = now()",
    )
    .bind(name)
    .bind(position.global_seq)
    .execute(executor)
    .await?;
    Ok(())
}

fn paper_order_row(row: &PgRow) -> Result<PaperOrder> {
    Ok(PaperOrder {
        client_order_id: row.try_get("client_order_id")?,
        account_id: row.try_get("account_id")?,
        market: row.try_get("market")?,
        side: row.try_get("side")?,
        size: row.try_get("size")?,
        price: row.try_get("price")?,
        fee: row.try_get("fee")?,
        exchange_order_id: row.try_get("exchange_order_id")?,
        placed_at: row.try_get("placed_at")?,
    })
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

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

const ACTIVE_USER_COLUMNS: &str = "user_id, rate_limit_requests, rate_limit_window_seconds";

fn active_user(row: &PgRow) -> Result<ActiveUser> {
    Ok(ActiveUser {
        user_id: row.try_get("user_id")?,
        rate_limit: rate_limit(row)?,
    })
}

fn rate_limit(row: &PgRow) -> Result<Option<RateLimit>> {
    let requests: Option<i32> = row.try_get("rate_limit_requests")?;
    let window: Option<i32> = row.try_get("rate_limit_window_seconds")?;
    Ok(RateLimit::from_columns(
        requests.map(i64::from),
        window.map(i64::from),
    ))
}

fn logged_event(row: &PgRow) -> Result<LoggedEvent> {
    let sequence: i64 = row.try_get("sequence")?;
    Ok(LoggedEvent {
        position: LogPosition {
            global_seq: row.try_get("global_seq")?,
        },
        event: SerializedEvent {
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: usize::try_from(sequence).unwrap_or_default(),
            aggregate_type: row.try_get("aggregate_type")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
        },
    })
}

/// The position each of `events` took, in their order, from the rows the insert returned (whose
/// order SQL does not promise).
fn positions_in_order(
    events: &[SerializedEvent],
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
        .map(|event| {
            let key = (
                event.aggregate_type.clone(),
                event.aggregate_id.clone(),
                sequence_to_i64(event.sequence),
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

/// Sequences are per-account counts; an account would need 2^63 events to overflow.
pub(super) fn sequence_to_i64(sequence: usize) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}
