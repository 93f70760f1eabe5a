//! Table upkeep: expired idempotency keys forgotten (both stores), and on PostgreSQL statistics
//! and dead rows, seen to by the service where the server's autovacuum does not (turned off, as
//! on the machine the soak ran on, or behind).
//!
//! Without fresh statistics a connection keeps the generic plan it made for each prepared
//! statement while the tables were nearly empty: a sequential scan, which then costs in
//! proportion to the table on every page the saga and the read side handle. The soak found the
//! paper orders read whole fifty times a second, and the database's CPU per signal growing with
//! every minute until the saga fell two minutes behind. `ANALYZE` both gives the planner
//! statistics and makes every connection plan its statements again.
//!
//! The thresholds are twice autovacuum's defaults, so a server whose autovacuum runs is left to
//! it. Instances take turns (an advisory lock); a table another session has locked is skipped.

use sqlx::Row;

use super::{Result, Store, FORGET_AFTER, FORGET_BATCH};

/// A table is analyzed once this many rows, plus `ANALYZE_FRACTION` of its rows, changed since.
const ANALYZE_BASE: i64 = 100;
const ANALYZE_FRACTION: f64 = 0.2;
/// And vacuumed once its dead rows, or its rows inserted since, pass these.
const VACUUM_BASE: i64 = 100;
const VACUUM_FRACTION: f64 = 0.4;
const VACUUM_INSERTED_BASE: i64 = 2_000;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpkeepPass {
    pub analyzed: Vec<String>,
    pub vacuumed: Vec<String>,
    /// Another instance held the turn: this one did nothing.
    pub skipped: bool,
}

pub struct Upkeep<'a> {
    pub(super) store: &'a Store,
}

impl Upkeep<'_> {
    /// Analyzes and vacuums the service's tables that need it, in this store's schema. Nothing on
    /// SQLite, whose planner keeps no statistics unless asked.
    pub async fn pass(&self) -> Result<UpkeepPass> {
        let Store::Postgres(postgres) = self.store else {
            return Ok(UpkeepPass::default());
        };
        let mut connection = postgres.pool().acquire().await?;
        let turn: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1 || current_schema()))")
                .bind(TURN)
                .fetch_one(&mut *connection)
                .await?;
        if !turn {
            return Ok(UpkeepPass {
                skipped: true,
                ..UpkeepPass::default()
            });
        }
        let done = due_work(&mut connection).await;
        // Released on this connection before it goes back to the pool, whatever happened.
        sqlx::query("SELECT pg_advisory_unlock(hashtext($1 || current_schema()))")
            .bind(TURN)
            .execute(&mut *connection)
            .await?;
        done
    }
}

/// The advisory lock instances sharing a schema take turns by: this text and the schema's name.
pub const TURN: &str = "ledgerhook table upkeep ";

async fn due_work(connection: &mut sqlx::PgConnection) -> Result<UpkeepPass> {
    let rows = sqlx::query(
        "SELECT format('%I.%I', schemaname, relname) AS name, relname,
                n_mod_since_analyze >= $1 + $2 * n_live_tup AS analyze,
                n_dead_tup >= $3 + $4 * n_live_tup
                    OR n_ins_since_vacuum >= $5 + $4 * n_live_tup AS vacuum
           FROM pg_stat_user_tables
          WHERE schemaname = current_schema()
          ORDER BY relname",
    )
    .bind(ANALYZE_BASE)
    .bind(ANALYZE_FRACTION)
    .bind(VACUUM_BASE)
    .bind(VACUUM_FRACTION)
    .bind(VACUUM_INSERTED_BASE)
    .fetch_all(&mut *connection)
    .await?;
    let mut pass = UpkeepPass::default();
    for row in rows {
        let name: String = row.try_get("name")?;
        let table: String = row.try_get("relname")?;
        let analyze: bool = row.try_get("analyze")?;
        let vacuum: bool = row.try_get("vacuum")?;
        // VACUUM cannot run in a transaction: each statement is its own.
        if vacuum {
            sqlx::query(&format!("VACUUM (SKIP_LOCKED, ANALYZE) {name}"))
                .execute(&mut *connection)
                .await?;
            pass.vacuumed.push(table.clone());
            pass.analyzed.push(table);
        } else if analyze {
            sqlx::query(&format!("ANALYZE (SKIP_LOCKED) {name}"))
                .execute(&mut *connection)
                .await?;
            pass.analyzed.push(table);
        }
    }
    Ok(pass)
}

/// How often an instance looks: a table that grows by a fifth in less time than this is young
/// enough to be cheap to scan meanwhile.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Batches of expired keys one turn forgets at most: a backlog (a service that was stopped for
/// a day) is worked off over several turns, without holding SQLite's writer for long.
const FORGET_BATCHES_PER_TURN: usize = 20;

/// Forgets the keys that expired `FORGET_AFTER` before `now`, up to `FORGET_BATCHES_PER_TURN`
/// batches; how many.
pub async fn forget_expired_keys(store: &Store, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
    let mut forgotten = 0;
    for _ in 0..FORGET_BATCHES_PER_TURN {
        let batch = store
            .signal_keys()
            .forget_expired(now - FORGET_AFTER)
            .await?;
        forgotten += batch;
        if batch < FORGET_BATCH.unsigned_abs() {
            break;
        }
    }
    Ok(forgotten)
}

/// A pass every `every` until `shutdown` turns true. A failed pass is logged and tried again at
/// the next turn: upkeep is never a reason to stop serving.
pub async fn run(
    store: Store,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match forget_expired_keys(&store, chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::debug!(forgotten, "expired idempotency keys forgotten"),
            Err(error) => tracing::warn!(%error, "expired keys not forgotten; trying again later"),
        }
        match store.upkeep().pass().await {
            Ok(pass) if !pass.analyzed.is_empty() => tracing::info!(
                analyzed = ?pass.analyzed,
                vacuumed = ?pass.vacuumed,
                "table upkeep: the planner's statistics refreshed"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "table upkeep failed; trying again later"),
        }
    }
}
