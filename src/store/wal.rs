//! SQLite's WAL checkpoints, taken off the write path. By default SQLite checkpoints inside the
//! commit that takes the WAL past 1,000 pages: that writer copies the WAL into the database file
//! and flushes both, and this process's queue of that file's writers (`SqliteStore::writer`)
//! waits behind it. Here every connection has automatic checkpoints off, and a task with a
//! connection of its own checkpoints each file (the ledger's and the derived one) `PASSIVE`,
//! beside writers and readers and waiting on neither.
//!
//! A WAL restarts from its beginning only when a writer finds it wholly copied, which under a
//! steady stream of writes a checkpoint beside them never leaves it: it would grow without end
//! (tens of megabytes a second at full load). So once `RESTART_FRAMES` are in use the few frames
//! written since the passive pass are copied in the writers' turn (`RESTART`), and the next write
//! starts the WAL over; `journal_size_limit` then cuts the file back. How long each such restart
//! held the writers' turn is `ledgerhook_sqlite_wal_restart_seconds` (at 400 signals/s: 1.4 a
//! second, all under 25 ms; benches/README, thirteenth session).

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Mutex;

/// How often the task checkpoints.
const EVERY: Duration = Duration::from_millis(200);
/// Frames in use (4 KiB pages) past which the WAL is started over: about 8 MB.
const RESTART_FRAMES: i64 = 2_000;
/// The size a restarted WAL file is cut back to (`PRAGMA journal_size_limit`), in bytes.
pub(super) const WAL_FILE_LIMIT: &str = "16777216";

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Frames copied into the database file beside the writers.
    Passive { wal_frames: i64, copied: i64 },
    /// Past `RESTART_FRAMES`: the rest copied in the writers' turn; the next write starts the
    /// WAL over.
    Restarted,
}

/// One file of the store, as the task checkpoints it: its schema name on the connection and its
/// writers' queue, held weakly so that the task ends with the store.
pub(super) struct Database {
    schema: &'static str,
    writer: Weak<Mutex<()>>,
}

impl Database {
    pub(super) fn new(schema: &'static str, writer: &Arc<Mutex<()>>) -> Self {
        Self {
            schema,
            writer: Arc::downgrade(writer),
        }
    }
}

/// Starts the checkpoints of `databases` on `connection` (which has them all attached); they stop
/// once the store is dropped.
pub(super) fn spawn<const N: usize>(connection: SqlitePool, databases: [Database; N]) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'store: loop {
            tick.tick().await;
            for database in &databases {
                let Some(writer) = database.writer.upgrade() else {
                    break 'store;
                };
                let done = pass(&writer, &connection, database.schema, RESTART_FRAMES);
                if let Err(error) = done.await {
                    tracing::warn!(
                        %error,
                        schema = database.schema,
                        "SQLite checkpoint failed; retried shortly"
                    );
                }
            }
        }
        connection.close().await;
    });
}

async fn pass(
    writer: &Mutex<()>,
    connection: &SqlitePool,
    schema: &str,
    restart_frames: i64,
) -> Result<Pass, sqlx::Error> {
    // (busy, frames in the WAL, frames copied): busy only means another checkpoint ran.
    let (_busy, wal_frames, copied): (i64, i64, i64) =
        sqlx::query_as(&format!("PRAGMA {schema}.wal_checkpoint(PASSIVE)"))
            .fetch_one(connection)
            .await?;
    if wal_frames <= restart_frames {
        return Ok(Pass::Passive { wal_frames, copied });
    }
    let _turn = writer.lock().await;
    let held_since = std::time::Instant::now();
    // Waits (the busy timeout) for readers of older frames; busy if some still read them.
    let restart: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as(&format!("PRAGMA {schema}.wal_checkpoint(RESTART)"))
            .fetch_one(connection)
            .await;
    metrics::histogram!(crate::telemetry::SQLITE_WAL_RESTART_SECONDS)
        .record(held_since.elapsed().as_secs_f64());
    let (busy, _, _) = restart?;
    Ok(match busy {
        0 => Pass::Restarted,
        _ => Pass::Passive { wal_frames, copied },
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    async fn database(dir: &tempfile::TempDir) -> (SqlitePool, SqlitePool) {
        let file = dir.path().join("ledger.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let writes = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .unwrap();
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE rows (body TEXT NOT NULL)")
            .execute(&writes)
            .await
            .unwrap();
        (writes, checkpoints)
    }

    async fn write_rows(pool: &SqlitePool, rows: usize) {
        for _ in 0..rows {
            sqlx::query("INSERT INTO rows (body) VALUES (?)")
                .bind("x".repeat(3_000))
                .execute(pool)
                .await
                .unwrap();
        }
    }

    /// A pass below the restart limit: the WAL's frames, and how many of them it copied.
    async fn passive(writer: &Mutex<()>, checkpoints: &SqlitePool) -> (i64, i64) {
        match pass(writer, checkpoints, "main", RESTART_FRAMES)
            .await
            .unwrap()
        {
            Pass::Passive { wal_frames, copied } => (wal_frames, copied),
            restarted => panic!("below the limit, a passive pass; got {restarted:?}"),
        }
    }

    /// The point of the task: a checkpoint copies the WAL into the database file while this
    /// process's writer queue is taken, instead of holding every writer up.
    #[tokio::test]
    async fn a_checkpoint_copies_the_wal_without_waiting_for_the_writers_turn() {
        let dir = tempfile::tempdir().unwrap();
        let (writes, checkpoints) = database(&dir).await;
        write_rows(&writes, 50).await;
        let writer = Mutex::new(());
        let _writer_busy = writer.lock().await;

        let (wal_frames, copied) =
            tokio::time::timeout(Duration::from_secs(10), passive(&writer, &checkpoints))
                .await
                .expect("the checkpoint waited for the writer's turn");

        assert!(wal_frames >= 50, "{wal_frames} frames in the WAL");
        assert_eq!(copied, wal_frames, "every committed frame copied");
    }

    /// Frames a reader may still need stay in the WAL until it is done; the next pass copies them.
    #[tokio::test]
    async fn frames_a_reader_still_needs_are_copied_by_a_later_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (writes, checkpoints) = database(&dir).await;
        write_rows(&writes, 5).await;
        let mut reader = writes.begin().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM rows")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        write_rows(&writes, 5).await;
        let writer = Mutex::new(());

        let (wal_frames, copied) = passive(&writer, &checkpoints).await;
        assert!(
            copied < wal_frames,
            "{copied} of {wal_frames}: the reader's snapshot kept"
        );
        reader.rollback().await.unwrap();
        let (wal_frames, copied) = passive(&writer, &checkpoints).await;
        assert_eq!(copied, wal_frames);
    }

    /// Under a steady stream of writes the WAL is never found wholly copied; past its limit it
    /// is started over (the writers' wait meanwhile measured), and the next write begins at its
    /// start instead of growing it.
    #[tokio::test]
    async fn a_wal_long_in_use_is_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let (writes, checkpoints) = database(&dir).await;
        write_rows(&writes, 20).await;
        let writer = Mutex::new(());
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);

        let done = pass(&writer, &checkpoints, "main", 5).await.unwrap();

        assert_eq!(done, Pass::Restarted);
        assert!(
            metrics
                .render()
                .contains("ledgerhook_sqlite_wal_restart_seconds_count 1"),
            "how long the writers waited is on /metrics: {}",
            metrics.render()
        );
        write_rows(&writes, 1).await;
        let (wal_frames, _) = passive(&writer, &checkpoints).await;
        assert!(wal_frames <= 3, "the WAL went on from frame {wal_frames}");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rows")
            .fetch_one(&writes)
            .await
            .unwrap();
        assert_eq!(rows, 21, "nothing lost by starting over");
    }
}
