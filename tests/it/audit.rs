//! The tamper-evident audit trail, on both stores: every event is chained exactly once (also
//! across kill -9), the database refuses to edit the trail, and `audit verify` names the first row
//! an attacker with raw access changed.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use sqlx::Connection;

use ledgerhook::audit::{verify, verify_from, Pace, VerifyOptions, VerifyReport};
use ledgerhook::store::{AuditRow, Store};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::audit::{bind_audit_row, create_staff, insert_audit_row_sql, Dialect};
use crate::support::log::whole_log;
use crate::support::seed::seeded_rng;
use crate::support::service::{cli_output, create_user, operator_cli, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::tamper::{tamper, AppendOnly, Bind};
use crate::support::{event_types, eventually};

pub(crate) const KEY: &str = "an-audit-key-of-at-least-32-bytes-for-tests";

pub(crate) fn audited_service() -> Options {
    Options {
        args: vec![
            "--audit-key".into(),
            KEY.into(),
            "--audit-checkpoint-every".into(),
            "7".into(),
        ],
        ..Options::default()
    }
}

/// (aggregate_type, account, sequence) of every event in the global order.
pub(crate) async fn logged_events(store: &Store) -> Vec<(String, String, i64)> {
    whole_log(store, 1000)
        .await
        .into_iter()
        .map(|logged| {
            let e = logged.event;
            (
                e.aggregate_type.clone(),
                e.aggregate_id.clone(),
                e.sequence as i64,
            )
        })
        .collect()
}

pub(crate) async fn audit_rows(store: &Store) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    loop {
        let after = rows.last().map_or(0, |row: &AuditRow| row.position);
        let page = store
            .audit()
            .read(after, 1000)
            .await
            .expect("the trail reads");
        if page.is_empty() {
            return rows;
        }
        rows.extend(page);
    }
}

/// Waits until nothing more will happen and every event is chained: the chain holds as many rows
/// as the accounts and the emergency stop hold events (read from their streams: on PostgreSQL the
/// global order lags while any transaction of the cluster is open), and the saga has handled
/// everything the audit writer has read (so it will append nothing more). Returns the global order.
pub(crate) async fn wait_until_settled(
    store: &Store,
    accounts: &[String],
) -> Vec<(String, String, i64)> {
    eventually("every event chained and the saga idle", || async {
        let mut total = store.events().load_emergency_stop().await.ok()?.len();
        for account in accounts {
            total += store.events().load_account(account).await.ok()?.len();
        }
        let head = store
            .audit()
            .head()
            .await
            .ok()?
            .map_or(0, |head| head.position);
        let saga = store.events().checkpoint("execution").await.ok()?;
        let audit = store.events().checkpoint("audit").await.ok()?;
        (head == total as i64 && saga == audit).then_some(())
    })
    .await;
    logged_events(store).await
}

/// `ledgerhook audit verify --json`: whether it succeeded, and its report.
pub(crate) async fn audit_verify(url: &str, with_key: bool) -> (bool, Value) {
    let mut args = vec!["audit", "verify", "--json"];
    if with_key {
        args.extend(["--audit-key", KEY]);
    }
    let output = cli_output(url, &args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "audit verify prints a JSON report, got {stdout:?} / {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

/// Signals from two traders plus an emergency stop, through the real binary, then a clean stop.
pub(crate) async fn trail_of_signals(test: &TestStore) -> Store {
    let (store, service, _) = running_trail(test, audited_service()).await;
    service.stop().await;
    store
}

/// Signals from two traders plus an emergency stop, through the real binary started with
/// `options`, every event chained; the service keeps running. Returns the accounts too.
pub(crate) async fn running_trail(
    test: &TestStore,
    options: Options,
) -> (Store, Service, Vec<String>) {
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let service = Service::start(&test.url, options).await;
    for n in 0..4 {
        for user in [&alice, &bob] {
            let (status, body) = service
                .post_signal(&user.webhook_token, &Alert::new(format!("s-{n}")).json())
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let store = test.open().await;
    let accounts = vec![alice.user_id, bob.user_id];
    for account in &accounts {
        eventually("every signal executed and notified", || async {
            let events = event_types(&store, account).await;
            let notified = events.iter().filter(|e| *e == "NotificationSent").count();
            (notified == 4).then_some(())
        })
        .await;
    }
    operator_cli(&test.url, &["halt", "--reason", "drill"]).await;
    operator_cli(&test.url, &["resume", "--reason", "drill over"]).await;
    wait_until_settled(&store, &accounts).await;
    (store, service, accounts)
}

async fn the_chain_holds_every_event_once_and_verifies(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;

    let events = logged_events(&store).await;
    let rows = audit_rows(&store).await;
    let chained: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.aggregate_type.clone(), r.account_id.clone(), r.sequence))
        .collect();
    assert_eq!(chained, events, "one row per event, in the global order");
    assert!(rows.iter().any(|r| r.aggregate_type == "EmergencyStop"));
    for row in &rows {
        let has_signal = row.signal_id.is_some();
        let expects_signal = row.aggregate_type == "TradingAccount"
            && ![
                "AccountOpened",
                "RiskLimitsChanged",
                "TradingHalted",
                "TradingResumed",
                "EmergencyStopNoted",
                "NoticeSent",
                "NoticeFailed",
            ]
            .contains(&row.event_type.as_str());
        assert_eq!(has_signal, expects_signal, "{row:?}");
    }

    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "{report}");
    assert_eq!(report["rows"], events.len());
    assert_eq!(
        report["head_hash"],
        rows.last().expect("rows").hash.as_str()
    );
    assert_eq!(report["first_mismatch"], Value::Null);
    // After pages that pass 7 rows, and the head at shutdown; all signed with the key.
    let checkpoints = report["checkpoints"].as_u64().expect("a count");
    assert!(checkpoints >= 1, "{report}");
    assert_eq!(report["signatures_verified"], checkpoints);

    // A wrong key is told apart from the right one.
    let wrong = cli_output(
        &test.url,
        &["audit", "verify", "--audit-key", &"w".repeat(40)],
    )
    .await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("signature"));
}
on_both_stores!(the_chain_holds_every_event_once_and_verifies);

/// Raw SQL on a connection of its own, returning the database's error text.
async fn refused(url: &str, as_writer: bool, sql: &str) -> String {
    let result = if url.starts_with("postgres") {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connects");
        if as_writer {
            sqlx::query("SET ROLE ledgerhook_audit_writer")
                .execute(&mut connection)
                .await
                .expect("the service's role may switch to the writer role");
        }
        sqlx::raw_sql(sql)
            .execute(&mut connection)
            .await
            .map(|_| ())
    } else {
        let mut connection = crate::support::stores::raw_sqlite(url).await;
        sqlx::raw_sql(sql)
            .execute(&mut connection)
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => panic!("the database accepted {sql:?}"),
        Err(error) => error.to_string(),
    }
}

async fn the_database_refuses_to_edit_the_trail(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let before = audit_rows(&store).await;
    assert!(!before.is_empty());

    for sql in [
        "UPDATE audit_log SET payload = '{}' WHERE position = 1",
        "DELETE FROM audit_log WHERE position = 1",
        "DELETE FROM audit_log",
        "UPDATE audit_checkpoints SET hash = 'x'",
        "DELETE FROM audit_checkpoints",
    ] {
        let error = refused(&test.url, false, sql).await;
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    if backend == Backend::Postgres {
        for table in ["audit_log", "audit_checkpoints"] {
            let error = refused(&test.url, false, &format!("TRUNCATE {table}")).await;
            assert!(error.contains("append-only"), "{error}");
        }
        // The role the service appends with may not edit, truncate, or switch the triggers off.
        for sql in [
            "UPDATE audit_log SET payload = '{}' WHERE position = 1",
            "DELETE FROM audit_log WHERE position = 1",
            "TRUNCATE audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "DROP TABLE audit_log",
        ] {
            let error = refused(&test.url, true, sql).await;
            assert!(
                error.contains("permission denied") || error.contains("must be owner"),
                "{sql}: {error}"
            );
        }
    }
    assert_eq!(audit_rows(&store).await, before, "nothing changed");
}
on_both_stores!(the_database_refuses_to_edit_the_trail);

/// The text with one character changed (an ASCII letter or digit, so it stays valid UTF-8).
fn one_byte_off(text: &str) -> String {
    let at = text
        .char_indices()
        .skip(text.len() / 2)
        .find(|(_, c)| c.is_ascii_alphanumeric())
        .or_else(|| text.char_indices().find(|(_, c)| c.is_ascii_alphanumeric()))
        .map(|(i, _)| i)
        .expect("something to change");
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    String::from_utf8(bytes).expect("still UTF-8")
}

async fn altering_any_row_or_byte_is_named_by_verify(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let rows = audit_rows(&store).await;
    let (ok, _) = audit_verify(&test.url, true).await;
    assert!(ok);
    let with_signal: Vec<&AuditRow> = rows.iter().filter(|r| r.signal_id.is_some()).collect();
    let target = (*with_signal
        .get(with_signal.len() / 2)
        .expect("rows of signals"))
    .clone();
    assert!(
        target.position < rows.len() as i64,
        "a row in the middle of the chain"
    );
    let k = target.position;
    let time_column = if backend == Backend::Postgres {
        "recorded_at = $1::timestamptz"
    } else {
        "recorded_at = $1"
    };
    let later = "2031-01-01T00:00:00.000000Z".to_owned();
    let cases: Vec<(&str, String, String, String)> = vec![
        // (what, SET clause, tampered value, original value)
        (
            "payload",
            "payload = $1".into(),
            one_byte_off(&target.payload),
            target.payload.clone(),
        ),
        (
            "metadata",
            "metadata = $1".into(),
            one_byte_off(&target.metadata),
            target.metadata.clone(),
        ),
        (
            "hash",
            "hash = $1".into(),
            one_byte_off(&target.hash),
            target.hash.clone(),
        ),
        (
            "prev_hash",
            "prev_hash = $1".into(),
            one_byte_off(&target.prev_hash),
            target.prev_hash.clone(),
        ),
        (
            "account_id",
            "account_id = $1".into(),
            one_byte_off(&target.account_id),
            target.account_id.clone(),
        ),
        (
            "event_type",
            "event_type = $1".into(),
            one_byte_off(&target.event_type),
            target.event_type.clone(),
        ),
        (
            "signal_id",
            "signal_id = $1".into(),
            one_byte_off(target.signal_id.as_deref().unwrap_or("x1")),
            target.signal_id.clone().unwrap_or_default(),
        ),
        // Empty is not NULL: a row that names no signal must say so the one way.
        (
            "signal_id emptied",
            "signal_id = $1".into(),
            String::new(),
            target.signal_id.clone().unwrap_or_default(),
        ),
        (
            "recorded_at",
            time_column.into(),
            later,
            target.recorded_at.clone(),
        ),
    ];
    for (what, set, tampered, original) in cases {
        let sql = format!("UPDATE audit_log SET {set} WHERE position = $2");
        tamper(
            &store,
            AppendOnly::AuditLog,
            &sql,
            &[Bind::Text(&tampered), Bind::Integer(k)],
        )
        .await;
        let (ok, report) = audit_verify(&test.url, true).await;
        assert!(!ok, "a changed {what} is caught: {report}");
        let mismatch = &report["first_mismatch"];
        assert_eq!(mismatch["position"], k, "{what}: {report}");
        assert_eq!(
            report["rows"],
            k - 1,
            "{what}: every row before it verified"
        );
        if what != "account_id" {
            assert_eq!(mismatch["account_id"], target.account_id.as_str(), "{what}");
            assert_eq!(mismatch["sequence"], target.sequence, "{what}");
        }
        tamper(
            &store,
            AppendOnly::AuditLog,
            &sql,
            &[Bind::Text(&original), Bind::Integer(k)],
        )
        .await;
        let (ok, report) = audit_verify(&test.url, true).await;
        assert!(ok, "restoring {what} restores the chain: {report}");
    }

    // A deleted row in the middle, then the last row (caught by the shutdown checkpoint).
    let last = rows.last().expect("rows").position;
    for position in [k, last] {
        tamper(
            &store,
            AppendOnly::AuditLog,
            "DELETE FROM audit_log WHERE position = $1",
            &[Bind::Integer(position)],
        )
        .await;
        let (ok, report) = audit_verify(&test.url, true).await;
        assert!(!ok, "a deleted row {position} is caught: {report}");
        assert_eq!(report["first_mismatch"]["position"], position, "{report}");
        assert!(
            report["first_mismatch"]["problem"]
                .as_str()
                .unwrap_or_default()
                .contains("missing"),
            "{report}"
        );
        reinsert(
            &store,
            &rows[usize::try_from(position - 1).expect("positive")],
        )
        .await;
    }
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "{report}");
}
on_both_stores!(altering_any_row_or_byte_is_named_by_verify);

/// The trail has no unique index on (aggregate_type, account_id, sequence) (migrations
/// postgres/0023, sqlite/0022: it cost the insert and no query used it), so the database takes a
/// row that chains an event a second time. `audit verify` must refuse it, even with every hash
/// and link recomputed: the row does not record the ledger's event at its position.
async fn an_event_chained_twice_is_named_by_verify(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let rows = audit_rows(&store).await;
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "{report}");
    let [.., before_last, last] = rows.as_slice() else {
        panic!("a trail of at least two rows: {rows:?}");
    };
    let copied = &rows[rows.len() / 2];
    let mut twice = AuditRow {
        position: last.position,
        prev_hash: before_last.hash.clone(),
        ..copied.clone()
    };
    twice.hash = ledgerhook::audit::chain::row_hash(&twice);
    replace_row(&store, &twice).await;
    assert_eq!(
        audit_rows(&store)
            .await
            .iter()
            .filter(|row| (&row.account_id, row.sequence) == (&copied.account_id, copied.sequence))
            .count(),
        2,
        "the database holds the event twice"
    );

    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(!ok, "an event chained twice is caught: {report}");
    let mismatch = &report["first_mismatch"];
    assert_eq!(mismatch["position"], last.position, "{report}");
    assert!(
        mismatch["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("does not record the event at this place"),
        "{report}"
    );
    assert_eq!(report["rows"], last.position - 1, "{report}");

    replace_row(&store, last).await;
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "{report}");
}
on_both_stores!(an_event_chained_twice_is_named_by_verify);

/// The background monitor's passes go on from the latest checkpoint the pass before verified, so
/// a pass costs the rows added since, not the history. It reports what a whole walk does, and a
/// forgery that keeps the chain linked from an earlier row up to the head is still found there,
/// by the hash the earlier pass verified.
async fn a_walk_that_goes_on_reports_the_whole_trail_and_finds_a_linked_forgery(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let options = VerifyOptions::default();
    let (whole, earlier) = verify_from(&store, &options, None).await.expect("reads");
    assert!(whole.is_intact(), "{whole:?}");
    assert_eq!(whole.walked_from, 0, "the first walk takes the whole trail");
    let earlier = earlier.expect("a walk past a checkpoint says where to go on from");

    let (goes_on, _) = verify_from(&store, &options, Some(&earlier))
        .await
        .expect("reads");
    let resumed_at = goes_on.walked_from;
    assert!(
        resumed_at >= 2,
        "a checkpoint past the first rows: {goes_on:?}"
    );
    assert_eq!(
        VerifyReport {
            walked_from: 0,
            ..goes_on
        },
        verify(&store, &options).await.expect("reads"),
        "the same report as a walk of the whole trail"
    );

    // Rewrite one row's payload before where the walk goes on, and every row after it with
    // hashes that link: the chain is consistent again, but for the event it no longer matches.
    let rows = audit_rows(&store).await;
    let first = usize::try_from(resumed_at / 2).expect("a position");
    let mut previous = rows[first - 1].hash.clone();
    for (index, row) in rows.iter().enumerate().skip(first) {
        let mut forged = AuditRow {
            prev_hash: previous.clone(),
            ..row.clone()
        };
        if index == first {
            forged.payload = one_byte_off(&row.payload);
        }
        forged.hash = ledgerhook::audit::chain::row_hash(&forged);
        previous = forged.hash.clone();
        replace_row(&store, &forged).await;
    }
    let (found, _) = verify_from(&store, &options, Some(&earlier))
        .await
        .expect("reads");
    let mismatch = found.first_mismatch.expect("the forgery is found");
    assert_eq!(mismatch.position, resumed_at, "{mismatch}");
    assert!(
        mismatch
            .problem
            .contains("an earlier verification found here"),
        "{mismatch}"
    );
    let whole = verify(&store, &options).await.expect("reads");
    let mismatch = whole.first_mismatch.expect("a whole walk finds it too");
    assert_eq!(mismatch.position, rows[first].position, "{mismatch}");
}
on_both_stores!(a_walk_that_goes_on_reports_the_whole_trail_and_finds_a_linked_forgery);

/// The background walks rest after each page (`audit::monitor::PACE`) so that a long one does not
/// starve the signals beside it; resting changes when a walk ends, not what it finds.
async fn a_paced_walk_reports_what_a_walk_at_full_speed_does(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let full_speed = verify(&store, &VerifyOptions::default())
        .await
        .expect("reads");
    assert!(full_speed.is_intact(), "{full_speed:?}");
    let paced = VerifyOptions {
        pace: ledgerhook::audit::monitor::PACE,
        ..VerifyOptions::default()
    };
    assert_ne!(paced.pace, Pace::FULL_SPEED, "the monitor rests");
    assert_eq!(verify(&store, &paced).await.expect("reads"), full_speed);

    let row = audit_rows(&store).await[2].clone();
    replace_row(
        &store,
        &AuditRow {
            payload: one_byte_off(&row.payload),
            ..row.clone()
        },
    )
    .await;
    let mismatch = verify(&store, &paced)
        .await
        .expect("reads")
        .first_mismatch
        .expect("a paced walk finds a changed byte");
    assert_eq!(mismatch.position, row.position, "{mismatch}");
}
on_both_stores!(a_paced_walk_reports_what_a_walk_at_full_speed_does);

/// Puts `row` in place of the row at its position, as an attacker with raw access could.
async fn replace_row(store: &Store, row: &AuditRow) {
    tamper(
        store,
        AppendOnly::AuditLog,
        "DELETE FROM audit_log WHERE position = $1",
        &[Bind::Integer(row.position)],
    )
    .await;
    reinsert(store, row).await;
}

/// Puts a deleted row back as it was (INSERT is what the trail allows anyway).
pub(crate) async fn reinsert(store: &Store, row: &AuditRow) {
    let done = match store {
        Store::Postgres(pg) => {
            let insert = insert_audit_row_sql(Dialect::Postgres);
            bind_audit_row(sqlx::query(&insert), row)
                .execute(pg.pool())
                .await
                .map(|_| ())
        }
        Store::Sqlite(lite) => {
            let insert = insert_audit_row_sql(Dialect::Sqlite);
            bind_audit_row(sqlx::query(&insert), row)
                .execute(lite.pool())
                .await
                .map(|_| ())
        }
    };
    done.expect("the row goes back");
}

/// kill -9 at random moments while signals stream in from many accounts: after a restart the
/// chain verifies and holds every event exactly once.
async fn the_chain_survives_kill_9_exactly_once(backend: Backend) {
    let test = TestStore::new(backend).await;
    let mut tokens = Vec::new();
    let mut accounts = Vec::new();
    for n in 0..4 {
        let user = create_user(&test.url, &format!("trader-{n}")).await;
        tokens.push(user.webhook_token);
        accounts.push(user.user_id);
    }
    let mut rng = seeded_rng(&format!(
        "audit chain killed at random points on {backend:?}"
    ));
    for round in 0..4 {
        let service = Service::start(&test.url, audited_service()).await;
        let client = service.client().clone();
        let base = service.base_url.clone();
        let tokens = tokens.clone();
        let stream = tokio::spawn(async move {
            for n in 0.. {
                let token = &tokens[n % tokens.len()];
                // The service may die under any request: an error is expected here.
                let _ = client
                    .post(format!("{base}/api/webhook?token={token}"))
                    .header("content-type", "text/plain")
                    .body(Alert::new(format!("r{round}-{n}")).json())
                    .send()
                    .await;
            }
        });
        let delay = rng.random_range(100..700);
        tokio::time::sleep(Duration::from_millis(delay)).await; // the crash moment, not a wait
        service.kill_9().await;
        stream.abort();
    }
    let service = Service::start(&test.url, audited_service()).await;
    let store = test.open().await;
    let events = wait_until_settled(&store, &accounts).await;
    let rows = audit_rows(&store).await;
    let chained: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.aggregate_type.clone(), r.account_id.clone(), r.sequence))
        .collect();
    let unique: HashSet<_> = chained.iter().collect();
    assert_eq!(unique.len(), chained.len(), "no event chained twice");
    assert_eq!(chained, events, "every event chained, in the global order");
    assert!(
        events.len() > 20,
        "signals streamed in: {} events",
        events.len()
    );
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "{report}");
    assert_eq!(report["rows"], events.len());
    service.stop().await;
}
on_both_stores!(the_chain_survives_kill_9_exactly_once);

/// Compliance staff get the same verdict over HTTP as `ledgerhook audit verify` gives.
async fn compliance_staff_verify_the_chain_over_http(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let events = logged_events(&store).await;
    let (_, key) = create_staff(&test.url, "Carol", "compliance").await;
    let service = Service::start(&test.url, audited_service()).await;
    // Verified in the background, right after the start: `pending` until then.
    let report = eventually("the first background verification", || async {
        let (status, report) = service
            .send(
                service
                    .client()
                    .get(format!("{}/api/compliance/audit/verify", service.base_url))
                    .bearer_auth(&key),
            )
            .await;
        assert_eq!(status, 200, "{report}");
        (report["status"] != "pending").then_some(report)
    })
    .await;
    assert_eq!(report["status"], "verified", "{report}");
    assert_eq!(report["intact"], true, "{report}");
    assert!(
        report["rows"].as_u64() >= Some(events.len() as u64),
        "{report}"
    );
    assert_eq!(
        report["signatures_verified"], report["checkpoints"],
        "{report}"
    );
    service.stop().await;
}
on_both_stores!(compliance_staff_verify_the_chain_over_http);
