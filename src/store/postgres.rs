//! PostgreSQL, the production store. Several service instances may share one database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use postgres_es::PostgresEventRepository;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use aggregates::{EmergencyStop, TradingAccount, EMERGENCY_STOP_ID};

use super::{LogPosition, LoggedEvent, NewUser, PaperOrder, Result, Snapshot, StoreError};

/// Enough connections for the group committers, the execution saga and request-time reads
/// without crowding a small server's default `max_connections` (100) when instances share it.
const MAX_CONNECTIONS: u32 = 24;

const UNIQUE_VIOLATION: &str = "23505";

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    events: Arc<PostgresEventRepository>,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let events = Arc::new(PostgresEventRepository::new(pool.clone()));
        Ok(Self { pool, events })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
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
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&SerializedEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        let sequences: Vec<i64> = events.iter().map(|e| sequence_to_i64(e.sequence)).collect();
        let payloads = column(|e| e.payload.to_string());
        let metadata = column(|e| e.metadata.to_string());
        let result = sqlx::query(
            "INSERT INTO events
                 (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::text[]::json[], $7::text[]::json[])",
        )
        .bind(column(|e| e.aggregate_type.clone()))
        .bind(column(|e| e.aggregate_id.clone()))
        .bind(sequences)
        .bind(column(|e| e.event_type.clone()))
        .bind(column(|e| e.event_version.clone()))
        .bind(payloads)
        .bind(metadata)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(UNIQUE_VIOLATION) =>
            {
                Err(StoreError::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }

    pub async fn read_log(&self, after: LogPosition, limit: i64) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT tx_id::text::bigint AS tx, global_seq, aggregate_type, aggregate_id, sequence,
                    event_type, event_version, payload, metadata
               FROM events
              WHERE (tx_id, global_seq) > ($1::text::xid8, $2)
                AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY tx_id, global_seq
              LIMIT $3",
        )
        .bind(after.tx_id.to_string())
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
        let row = sqlx::query("SELECT tx_id, global_seq FROM checkpoints WHERE name = $1")
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
        sqlx::query(
            "INSERT INTO checkpoints (name, tx_id, global_seq) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                SET tx_id = EXCLUDED.tx_id, global_seq = EXCLUDED.global_seq, updated_at = now()",
        )
        .bind(name)
        .bind(position.tx_id)
        .bind(position.global_seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_user(&self, user: &NewUser) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (user_id, display_name, webhook_token_sha256, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.user_id)
        .bind(&user.display_name)
        .bind(&user.webhook_token_sha256)
        .bind(user.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn user_by_token_sha256(&self, token_sha256: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM users WHERE webhook_token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("user_id")))
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

fn logged_event(row: &PgRow) -> Result<LoggedEvent> {
    let sequence: i64 = row.try_get("sequence")?;
    Ok(LoggedEvent {
        position: LogPosition {
            tx_id: row.try_get("tx")?,
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

/// Sequences are per-account counts; an account would need 2^63 events to overflow.
pub(super) fn sequence_to_i64(sequence: usize) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}
