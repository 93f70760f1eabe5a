//! The embedded store's derived file (read models, readers' checkpoints, the audit trail) lost or
//! restored out of step with its ledger: the service refuses to run on it, says what to do, and
//! once the operator recreates it, derives the same trail and read models from the ledger with no
//! order placed twice.

use std::path::Path;
use std::time::Duration;

use cqrs_es::persist::SerializedEvent;
use serde_json::json;

use ledgerhook::store::{LogPosition, Store};

use crate::support::eventually;
use crate::support::invariants::{check, Venue};
use crate::support::load::Load;
use crate::support::service::{cli, cli_output, create_user, Options, Service};
use crate::support::stores::{derived_path, Backend, TestStore};

fn probe(account: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: account.to_owned(),
        sequence,
        aggregate_type: "TradingAccount".to_owned(),
        event_type: "Probe".to_owned(),
        event_version: "1.0".to_owned(),
        payload: json!({"Probe": {}}),
        metadata: json!({}),
    }
}

/// Appends `events` and moves a reader's checkpoint to the last of them, as a reader keeping up
/// would; returns that position.
async fn append_and_follow(store: &Store, events: &[SerializedEvent]) -> LogPosition {
    let appended = store.events().append(events).await.expect("appends");
    let last = *appended.last().expect("a position for each event");
    store
        .events()
        .save_checkpoint("execution", last)
        .await
        .expect("the reader follows");
    last
}

/// The derived file and the two files SQLite keeps beside it.
fn remove_derived_file(url: &str) {
    let derived = derived_path(url);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = derived.clone().into_os_string();
        name.push(suffix);
        match std::fs::remove_file(Path::new(&name)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => panic!("cannot remove {name:?}: {error}"),
        }
    }
}

/// `ledgerhook serve` on `url` exits by itself, and what it printed.
async fn refused_serve(url: &str) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), cli_output(url, &["serve"]))
        .await
        .expect("serve exits instead of running on the derived file");
    assert!(!output.status.success(), "serve ran on the derived file");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// (position, hash) of every link of the audit chain.
async fn audit_chain(url: &str) -> Vec<(i64, String)> {
    let store = ledgerhook::app::open_store(url).await.expect("opens");
    let rows = store
        .audit()
        .read(0, 1_000_000)
        .await
        .expect("reads the trail");
    rows.into_iter()
        .map(|row| (row.position, row.hash))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_derived_file_stops_the_service_until_recreated_then_the_same_trail_is_derived() {
    let test = TestStore::new(Backend::Sqlite).await;
    let url = test.url.clone();
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(create_user(&url, &format!("trader {i}")).await);
    }
    let accounts: Vec<String> = users.iter().map(|user| user.user_id.clone()).collect();
    let service = Service::start(&url, Options::default()).await;
    let load = Load::start(&service.base_url, &users, 2, "lost");
    eventually("60 alerts acknowledged", || async {
        (load.acknowledged() >= 60).then_some(())
    })
    .await;
    let tally = load.stop().await;
    let store = ledgerhook::app::open_store(&url).await.expect("opens");
    check(&url, &store, &accounts, &tally.acked, Venue::Paper).await;
    drop(store);
    service.stop().await;
    let trail = audit_chain(&url).await;
    assert!(trail.len() > 60, "a trail of {} links", trail.len());

    remove_derived_file(&url);
    let refused = refused_serve(&url).await;
    assert!(
        refused.contains("derived file")
            && refused.contains("store recreate-derived")
            && !refused.contains("needs migrations"),
        "{refused}"
    );
    let recreated = cli(&url, &["store", "recreate-derived"]).await;
    assert!(recreated.contains("recreated"), "{recreated}");
    let again = cli_output(&url, &["store", "recreate-derived"]).await;
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("holds tables already"),
        "a derived file with tables was recreated over"
    );

    let service = Service::start(&url, Options::default()).await;
    let store = ledgerhook::app::open_store(&url).await.expect("opens");
    // The same invariants: every signal final, no order sent twice (the paper book is in the
    // ledger's file), the read models equal to a rebuild, `audit verify` passing.
    let verdict = check(&url, &store, &accounts, &tally.acked, Venue::Paper).await;
    assert_eq!(verdict.duplicated, 0);
    drop(store);
    service.stop().await;
    assert_eq!(
        audit_chain(&url).await,
        trail,
        "the trail derived again differs from the lost one"
    );
}

/// The derived file deleted under a running service (which writes on into the file it has open):
/// `store recreate-derived` refuses while the service runs, whose readers would go on writing the
/// old file; once it stops, the store is refused, recreated, and served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreating_beside_a_running_service_is_refused() {
    let test = TestStore::new(Backend::Sqlite).await;
    let url = test.url.clone();
    let user = create_user(&url, "beside").await;
    let service = Service::start(&url, Options::default()).await;
    let load = Load::start(&service.base_url, std::slice::from_ref(&user), 1, "beside");
    eventually("10 alerts acknowledged", || async {
        (load.acknowledged() >= 10).then_some(())
    })
    .await;

    remove_derived_file(&url);
    let refused = cli_output(&url, &["store", "recreate-derived"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("already running"),
        "{stderr}"
    );
    let tally = load.stop().await;
    service.stop().await;

    let refused = refused_serve(&url).await;
    assert!(refused.contains("store recreate-derived"), "{refused}");
    cli(&url, &["store", "recreate-derived"]).await;
    let service = Service::start(&url, Options::default()).await;
    let store = ledgerhook::app::open_store(&url).await.expect("opens");
    let verdict = check(
        &url,
        &store,
        std::slice::from_ref(&user.user_id),
        &tally.acked,
        Venue::Paper,
    )
    .await;
    assert_eq!(verdict.duplicated, 0);
    drop(store);
    service.stop().await;
}

/// A derived file restored from a later backup than its ledger has read past the ledger's end:
/// the readers would skip the positions the ledger gives its next events. Refused.
#[tokio::test]
async fn a_derived_file_ahead_of_its_ledger_is_refused() {
    let test = TestStore::new(Backend::Sqlite).await;
    let ledger = Path::new(test.url.trim_start_matches("sqlite://")).to_path_buf();
    let backup = ledger.with_extension("backup");
    let store = test.open().await;
    let event = |sequence| probe("ahead", sequence);
    store.events().append(&[event(1)]).await.expect("appends");
    sqlx::query("VACUUM main INTO $1")
        .bind(backup.display().to_string())
        .execute(match &store {
            Store::Sqlite(sqlite) => sqlite.pool(),
            Store::Postgres(_) => unreachable!("a SQLite store"),
        })
        .await
        .expect("backs the ledger up at one event");
    let read_to = append_and_follow(&store, &[event(2), event(3)]).await;
    drop(store);

    // The ledger restored from its backup, the derived file left as it is.
    for suffix in ["-wal", "-shm"] {
        let mut name = ledger.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(Path::new(&name));
    }
    std::fs::copy(&backup, &ledger).expect("restores the ledger");
    let refused = ledgerhook::app::open_store(&test.url)
        .await
        .err()
        .expect("a derived file ahead of its ledger is refused")
        .to_string();
    assert!(
        refused.contains("ahead of its ledger")
            && refused.contains(&format!("position {}", read_to.global_seq)),
        "{refused}"
    );
    assert!(read_to > LogPosition { global_seq: 1 });
}

/// Beside a running service (a `users create` while it serves, say) the check reads while events
/// are appended and readers move their checkpoints past them: it never takes that for a derived
/// file ahead of its ledger. (Reading the ledger's end before the checkpoints, it did: found by
/// `http_load`, whose users are created beside the service.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_beside_a_running_service_never_refuses() {
    let test = TestStore::new(Backend::Sqlite).await;
    let service = test.open().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let busy = tokio::spawn(async move {
        let mut sequence = 1;
        while !*stopped.borrow() {
            append_and_follow(&service, &[probe("busy", sequence)]).await;
            sequence += 1;
        }
        sequence
    });
    let beside = test.open().await;
    for _ in 0..300 {
        beside
            .migrate()
            .await
            .expect("the check beside the service's writes");
    }
    stop.send_replace(true);
    let appended = busy.await.expect("the writer");
    assert!(appended > 10, "only {appended} appends beside the checks");
}
