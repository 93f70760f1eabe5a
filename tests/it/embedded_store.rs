//! The embedded store's two files: the ledger's, and the derived one beside it (read models,
//! readers' checkpoints, the audit trail), each with its own writer.

use std::path::Path;
use std::time::Duration;

use cqrs_es::persist::SerializedEvent;
use serde_json::json;
use sqlx::{Connection, SqliteConnection};

use ledgerhook::store::{LogPosition, Store};

use crate::support::stores::{derived_path, Backend, TestStore};

fn probe(account: &str) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: account.to_owned(),
        sequence: 1,
        aggregate_type: "TradingAccount".to_owned(),
        event_type: "Probe".to_owned(),
        event_version: "1.0".to_owned(),
        payload: json!({"Probe": {}}),
        metadata: json!({}),
    }
}

/// The embedded store's migrations up to, not including, `version`: a store as an older release
/// left it.
fn migrations_before(version: i64) -> sqlx::migrate::Migrator {
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|migration| migration.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before
}

async fn tables_of(file: &Path) -> Vec<String> {
    let mut connection = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("opens the file alone");
    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&mut connection)
        .await
        .expect("lists its tables")
}

/// On SQLite what readers derive (read models, checkpoints, the audit trail) is written to a file
/// of its own, with its own writer queue: the ledger's appends, which every acknowledgement waits
/// for, go on while a reader's page holds that file, and the reader's write waits for it alone.
/// (In one file, every append queued behind the readers' pages: an audit page takes 10 ms.)
#[tokio::test]
async fn sqlite_ledger_appends_do_not_wait_for_the_readers_writes() {
    let test = TestStore::new(Backend::Sqlite).await;
    let store = test.open().await;
    let Store::Sqlite(sqlite) = &store else {
        unreachable!("a SQLite test store")
    };
    // A reader's page in progress: its turn in the queue, and SQLite's lock on the derived file
    // (taken on a connection of its own, as another process's would be).
    let turn = sqlite.lock_derived_writer().await;
    let derived = derived_path(&test.url);
    let mut page = SqliteConnection::connect(&format!("sqlite://{}", derived.display()))
        .await
        .expect("opens the derived file");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut page)
        .await
        .expect("takes the derived file's write lock");

    let appended = tokio::time::timeout(
        Duration::from_secs(5),
        store.events().append(&[probe("derived-busy")]),
    )
    .await
    .expect("the append waited for the readers' write")
    .expect("appends");

    let (reader, position) = (store.clone(), appended[0]);
    let mut checkpoint =
        tokio::spawn(async move { reader.events().save_checkpoint("probe", position).await });
    let while_held = tokio::time::timeout(Duration::from_millis(300), &mut checkpoint).await;
    assert!(
        while_held.is_err(),
        "a reader wrote while the derived file's queue was held"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut page)
        .await
        .expect("ends the page");
    drop(turn);
    checkpoint
        .await
        .expect("the checkpoint task")
        .expect("the reader's write goes through once the page is done");
    assert_eq!(
        store.events().checkpoint("probe").await.expect("reads"),
        position
    );
    assert_eq!(
        store
            .events()
            .load_account("derived-busy")
            .await
            .expect("reads")
            .len(),
        1
    );
}

/// A store written before migration 0021 kept everything in one file: opening it moves the
/// derived tables, rows and all, into the derived file, and they keep their guards there.
#[tokio::test]
async fn a_one_file_store_moves_its_derived_tables_to_the_derived_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = dir.path().join("ledger.db");
    let url = format!("sqlite://{}", ledger.display());
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&ledger)
        .create_if_missing(true);
    let old = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("opens the file as the last release did");
    migrations_before(21)
        .run(&old)
        .await
        .expect("migrations 0001-0020");
    sqlx::raw_sql(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
             payload, metadata) VALUES ('TradingAccount', 'alice', 1, 'Probe', '1.0', '{}', '{}');
         INSERT INTO audit_log VALUES (1, 'alice', 'TradingAccount', 1, 'Probe', '1.0', NULL,
             '2026-11-29T12:00:00.000000Z', '{}', '{}', 'genesis', 'h1');
         INSERT INTO checkpoints (name, global_seq) VALUES ('audit', 1);
         INSERT INTO positions VALUES ('alice', 'BTC-USD', '0.5', 'long', '100', '0', 1);",
    )
    .execute(&old)
    .await
    .expect("the old release's rows");
    old.close().await;

    let store = ledgerhook::app::open_store(&url)
        .await
        .expect("opens and migrates");

    let derived = derived_path(&url);
    let in_ledger = tables_of(&ledger).await;
    let in_derived = tables_of(&derived).await;
    for moved in [
        "audit_log",
        "audit_checkpoints",
        "checkpoints",
        "positions",
        "signals",
    ] {
        assert!(
            !in_ledger.contains(&moved.to_owned()),
            "{moved} left in {in_ledger:?}"
        );
        assert!(
            in_derived.contains(&moved.to_owned()),
            "{moved} not in {in_derived:?}"
        );
    }
    assert!(in_ledger.contains(&"events".to_owned()));
    let chained = store.audit().read(0, 10).await.expect("reads the trail");
    assert_eq!(
        chained
            .iter()
            .map(|row| row.hash.as_str())
            .collect::<Vec<_>>(),
        ["h1"]
    );
    assert_eq!(
        store.events().checkpoint("audit").await.expect("reads"),
        LogPosition { global_seq: 1 }
    );
    let refused = sqlx::query("UPDATE audit_log SET hash = 'forged'")
        .execute(match &store {
            Store::Sqlite(sqlite) => sqlite.pool(),
            Store::Postgres(_) => unreachable!("a SQLite store"),
        })
        .await
        .expect_err("the trail stays append-only in its new file");
    assert!(refused.to_string().contains("append-only"), "{refused}");
}

/// In memory (`sqlite::memory:`, what a quick trial or a test may open) the derived tables live in
/// a shared in-memory database attached to every connection of the store, and of that store
/// alone: two such stores in one process never see each other's read models.
#[tokio::test]
async fn an_in_memory_store_keeps_its_derived_tables_to_itself() {
    let first = ledgerhook::app::open_store("sqlite::memory:")
        .await
        .expect("opens in memory");
    let second = ledgerhook::app::open_store("sqlite::memory:")
        .await
        .expect("opens another in memory");
    let appended = first
        .events()
        .append(&[probe("in-memory")])
        .await
        .expect("appends");
    first
        .events()
        .save_checkpoint("probe", appended[0])
        .await
        .expect("a reader's checkpoint goes to the derived tables");
    // Reads at once, so that several of the pool's connections serve them: each sees it.
    let events = first.events();
    let reads = (0..8).map(|_| events.checkpoint("probe"));
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.expect("reads"), appended[0]);
    }
    assert_eq!(
        second.events().checkpoint("probe").await.expect("reads"),
        LogPosition::default(),
        "one in-memory store saw another's checkpoint"
    );
    let Store::Sqlite(sqlite) = &first else {
        unreachable!("a SQLite store")
    };
    let schema: String =
        sqlx::query_scalar("SELECT schema FROM pragma_table_list WHERE name = 'checkpoints'")
            .fetch_one(sqlite.pool())
            .await
            .expect("finds the table");
    assert_eq!(schema, "derived");
}

/// Migration 0022 makes the audit trail again without its UNIQUE (aggregate_type, account_id,
/// sequence), which cost every insert and served no query: every row stays, in order, with the
/// other indexes and the append-only guards. (`audit verify`, not the database, refuses an event
/// chained twice: `audit::an_event_chained_twice_is_named_by_verify`.)
#[tokio::test]
async fn the_audit_trail_keeps_its_rows_and_guards_without_its_unique_index() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = dir.path().join("ledger.db");
    let url = format!("sqlite://{}", ledger.display());
    let mut old = SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&ledger)
            .create_if_missing(true),
    )
    .await
    .expect("opens the ledger's file as the last release did");
    sqlx::query("ATTACH DATABASE ?1 AS derived")
        .bind(derived_path(&url).display().to_string())
        .execute(&mut old)
        .await
        .expect("attaches the derived file");
    migrations_before(22)
        .run(&mut old)
        .await
        .expect("migrations 0001-0021");
    for position in 1..=3 {
        sqlx::query(
            "INSERT INTO audit_log VALUES (?1, 'alice', 'TradingAccount', ?1, 'Probe', '1.0', NULL,
                 '2026-11-29T12:00:00.000000Z', '{}', '{}', 'prev', 'h' || ?1)",
        )
        .bind(position)
        .execute(&mut old)
        .await
        .expect("the old release's rows");
    }
    old.close().await.expect("closes");

    let store = ledgerhook::app::open_store(&url)
        .await
        .expect("opens and migrates");

    let chained = store.audit().read(0, 10).await.expect("reads the trail");
    let kept: Vec<(i64, &str)> = chained
        .iter()
        .map(|row| (row.position, row.hash.as_str()))
        .collect();
    assert_eq!(kept, [(1, "h1"), (2, "h2"), (3, "h3")]);
    let Store::Sqlite(sqlite) = &store else {
        unreachable!("a SQLite store")
    };
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM derived.sqlite_master
          WHERE type = 'index' AND tbl_name = 'audit_log' ORDER BY name",
    )
    .fetch_all(sqlite.pool())
    .await
    .expect("lists the indexes");
    assert_eq!(
        indexes,
        [
            "audit_log_account",
            "audit_log_event_type",
            "audit_log_recorded_at",
            "audit_log_signal"
        ]
    );
    for forbidden in [
        "UPDATE audit_log SET hash = 'forged'",
        "DELETE FROM audit_log",
    ] {
        let refused = sqlx::query(forbidden)
            .execute(sqlite.pool())
            .await
            .expect_err("the trail stays append-only");
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
    sqlx::query(
        "INSERT INTO audit_log VALUES (4, 'alice', 'TradingAccount', 1, 'Probe', '1.0', NULL,
             '2026-11-29T12:00:01.000000Z', '{}', '{}', 'h3', 'h4')",
    )
    .execute(sqlite.pool())
    .await
    .expect("a row naming an event already chained is the verifier's to refuse, not the table's");
}
