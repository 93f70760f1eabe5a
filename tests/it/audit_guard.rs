//! What `audit verify` and the audit writer must not be fooled by, on both stores: unsigned or
//! missing checkpoints under a key, a conflicting checkpoint, a published checkpoint the chain does
//! not hold, rows that do not match their events, a row the writer did not write; checkpoints on a
//! timer; and the compliance API answering from a background verification.

use chrono::Utc;
use serde_json::Value;
use sqlx::Connection;

use ledgerhook::audit::chain::{canonical_time, row_hash};
use ledgerhook::store::{AuditRow, Store, StoreError};

use crate::audit::{
    audit_rows, audit_verify, audited_service, running_trail, trail_of_signals, wait_until_settled,
    KEY,
};
use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::audit::{bind_audit_row, create_staff, insert_audit_row_sql, Dialect};
use crate::support::eventually;
use crate::support::service::{cli_output, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::tamper::{tamper, AppendOnly, Bind};

/// `ledgerhook audit verify --json ARGS...`: whether it succeeded, its report (Null when it printed
/// none) and its stderr.
async fn verify_with(url: &str, args: &[&str]) -> (bool, Value, String) {
    let output = cli_output(url, &[&["audit", "verify", "--json"], args].concat()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), report, stderr)
}

fn problem(report: &Value) -> &str {
    report["first_mismatch"]["problem"]
        .as_str()
        .unwrap_or_default()
}

fn service_with(args: &[&str], log_file: Option<std::path::PathBuf>) -> Options {
    Options {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        log_file,
        ..Options::default()
    }
}

/// The row a forger with the service's login would append: correctly chained after the head,
/// recording no event of the ledger.
fn forged_row_after(head: &AuditRow) -> AuditRow {
    let mut row = AuditRow {
        position: head.position + 1,
        account_id: head.account_id.clone(),
        aggregate_type: head.aggregate_type.clone(),
        sequence: 100_000,
        event_type: "OrderFilled".into(),
        event_version: head.event_version.clone(),
        signal_id: None,
        recorded_at: canonical_time(Utc::now()),
        payload: r#"{"forged":true}"#.into(),
        metadata: "{}".into(),
        prev_hash: head.hash.clone(),
        hash: String::new(),
    };
    row.hash = row_hash(&row);
    row
}

/// Inserts `row` as the service's own login may: on PostgreSQL under the audit writer role (INSERT
/// is all it may do), on SQLite by anyone who can open the file.
async fn insert_as_writer(url: &str, row: &AuditRow) {
    if url.starts_with("postgres") {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connects");
        sqlx::query("SET ROLE ledgerhook_audit_writer")
            .execute(&mut connection)
            .await
            .expect("switches to the writer role");
        let insert = insert_audit_row_sql(Dialect::Postgres);
        bind_audit_row(sqlx::query(&insert), row)
            .execute(&mut connection)
            .await
            .expect("the writer role may insert");
    } else {
        let mut connection = crate::support::stores::raw_sqlite(url).await;
        let insert = insert_audit_row_sql(Dialect::Sqlite);
        bind_audit_row(sqlx::query(&insert), row)
            .execute(&mut connection)
            .await
            .expect("inserts");
    }
}

/// Plants a checkpoint row as the service's own login may.
async fn insert_checkpoint_as_writer(url: &str, position: i64, hash: &str) {
    let at = canonical_time(Utc::now());
    if url.starts_with("postgres") {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connects");
        sqlx::query("SET ROLE ledgerhook_audit_writer")
            .execute(&mut connection)
            .await
            .expect("switches to the writer role");
        sqlx::query(
            "INSERT INTO audit_checkpoints (position, hash, at) VALUES ($1, $2, $3::timestamptz)",
        )
        .bind(position)
        .bind(hash)
        .bind(&at)
        .execute(&mut connection)
        .await
        .expect("the writer role may insert");
    } else {
        let mut connection = crate::support::stores::raw_sqlite(url).await;
        sqlx::query("INSERT INTO audit_checkpoints (position, hash, at) VALUES (?, ?, ?)")
            .bind(position)
            .bind(hash)
            .bind(&at)
            .execute(&mut connection)
            .await
            .expect("inserts");
    }
}

/// Rewrites one event's payload as an attacker with raw access would (append-only triggers off).
async fn rewrite_event_payload(store: &Store, account: &str, sequence: i64, payload: &str) {
    let payload_column = match store {
        Store::Postgres(_) => "payload = $1::json",
        Store::Sqlite(_) => "payload = $1",
    };
    tamper(
        store,
        AppendOnly::Events,
        &format!("UPDATE events SET {payload_column} WHERE aggregate_id = $2 AND sequence = $3"),
        &[
            Bind::Text(payload),
            Bind::Text(account),
            Bind::Integer(sequence),
        ],
    )
    .await;
}

/// Waits until the service's log holds `text`.
async fn logged(path: &std::path::Path, text: &str) -> String {
    eventually(&format!("the service to log {text:?}"), || async {
        let log = std::fs::read_to_string(path).ok()?;
        log.lines()
            .find(|line| line.contains(text))
            .map(str::to_owned)
    })
    .await
}

async fn an_unsigned_checkpoint_fails_verification_with_the_key(backend: Backend) {
    let test = TestStore::new(backend).await;
    // No key: the checkpoints are recorded unsigned.
    let (store, service, _) = running_trail(
        &test,
        service_with(&["--audit-checkpoint-every", "7"], None),
    )
    .await;
    service.stop().await;
    assert!(store.audit().last_checkpoint().await.expect("reads") > 0);

    let (ok, report) = audit_verify(&test.url, false).await;
    assert!(ok, "without a key the chain verifies: {report}");
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(!ok, "an unsigned checkpoint fails under the key: {report}");
    assert!(problem(&report).contains("unsigned"), "{report}");
}
on_both_stores!(an_unsigned_checkpoint_fails_verification_with_the_key);

async fn rows_without_a_signed_checkpoint_fail_verification_with_the_key(backend: Backend) {
    let test = TestStore::new(backend).await;
    let options = service_with(
        &[
            "--audit-key",
            KEY,
            "--audit-checkpoint-every",
            "100000",
            "--audit-checkpoint-interval-seconds",
            "3600",
        ],
        None,
    );
    let (store, service, _) = running_trail(&test, options).await;
    // No shutdown checkpoint: the rows after the first page stay without one.
    service.kill_9().await;
    let head = store.audit().head().await.expect("reads").expect("rows");
    assert!(store.audit().last_checkpoint().await.expect("reads") < head.position);

    let (ok, report, stderr) = verify_with(&test.url, &["--audit-key", KEY]).await;
    assert!(
        ok,
        "recent rows may wait for their checkpoint: {report} {stderr}"
    );
    assert!(report["unprotected_rows"].as_u64() > Some(0), "{report}");
    let (ok, report, _) = verify_with(
        &test.url,
        &["--audit-key", KEY, "--max-unprotected-seconds", "0"],
    )
    .await;
    assert!(
        !ok,
        "rows older than allowed without a checkpoint fail: {report}"
    );
    assert!(
        problem(&report).contains("no signed checkpoint covers this row"),
        "{report}"
    );
    assert!(
        problem(&report).contains("s ago); the latest checkpoint is at position"),
        "one sentence, as compliance staff read it: {report}"
    );
}
on_both_stores!(rows_without_a_signed_checkpoint_fail_verification_with_the_key);

async fn a_conflicting_checkpoint_is_refused_loudly_and_fails_verification(backend: Backend) {
    let test = TestStore::new(backend).await;
    let (store, service, mut accounts) = running_trail(&test, audited_service()).await;
    service.stop().await;
    let recorded = store
        .audit()
        .read_checkpoints(0, 1)
        .await
        .expect("reads")
        .pop()
        .expect("a checkpoint");
    store
        .audit()
        .insert_checkpoint(&recorded)
        .await
        .expect("recording the very same checkpoint again is a no-op");
    let mut conflicting = recorded.clone();
    conflicting.hash = "f".repeat(64);
    let refused = store.audit().insert_checkpoint(&conflicting).await;
    assert!(
        matches!(refused, Err(StoreError::AuditCheckpointConflict(position)) if position == recorded.position),
        "{refused:?}"
    );
    let mut resigned = recorded.clone();
    resigned.signature = Some("0".repeat(64));
    assert!(store.audit().insert_checkpoint(&resigned).await.is_err());
    let stored = store
        .audit()
        .read_checkpoints(recorded.position - 1, 1)
        .await
        .expect("reads");
    assert_eq!(stored, vec![recorded], "the first checkpoint stays");

    // The running writer meets a checkpoint someone planted where it is about to record its own
    // (at shutdown: the timer is far off, and the first page after the start took the one due).
    let log_dir = tempfile::tempdir().expect("a directory for the service's log");
    let log = log_dir.path().join("service.log");
    let user = crate::support::service::create_user(&test.url, "carol").await;
    accounts.push(user.user_id.clone());
    let options = service_with(
        &[
            "--audit-key",
            KEY,
            "--audit-checkpoint-every",
            "100000",
            "--audit-checkpoint-interval-seconds",
            "3600",
        ],
        Some(log.clone()),
    );
    let service = Service::start(&test.url, options).await;
    eventually("carol's account chained and checkpointed", || async {
        let head = store.audit().head().await.ok()??;
        (store.audit().last_checkpoint().await.ok()? == head.position
            && audit_rows(&store)
                .await
                .iter()
                .any(|r| r.account_id == user.user_id))
        .then_some(())
    })
    .await;
    let (status, body) = service
        .post_signal(&user.webhook_token, &Alert::new("c-1").json())
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("carol's signal notified", || async {
        let events = crate::support::event_types(&store, &user.user_id).await;
        events.iter().any(|e| e == "NotificationSent").then_some(())
    })
    .await;
    wait_until_settled(&store, &accounts).await;
    let head = store.audit().head().await.expect("reads").expect("rows");
    assert!(store.audit().last_checkpoint().await.expect("reads") < head.position);
    insert_checkpoint_as_writer(&test.url, head.position, &"e".repeat(64)).await;
    service.stop().await;
    let line = logged(&log, "a different audit checkpoint is already recorded").await;
    assert!(line.contains("ERROR"), "{line}");

    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(!ok, "{report}");
    assert_eq!(
        report["first_mismatch"]["position"], head.position,
        "{report}"
    );
}
on_both_stores!(a_conflicting_checkpoint_is_refused_loudly_and_fails_verification);

async fn a_checkpoint_is_taken_on_a_timer(backend: Backend) {
    let test = TestStore::new(backend).await;
    let options = service_with(
        &[
            "--audit-key",
            KEY,
            "--audit-checkpoint-every",
            "100000",
            "--audit-checkpoint-interval-seconds",
            "1",
        ],
        None,
    );
    let (store, service, _) = running_trail(&test, options).await;
    let head = store.audit().head().await.expect("reads").expect("rows");
    // Far fewer rows than --audit-checkpoint-every, and the service still runs.
    assert!(head.position < 100);
    eventually(
        "a checkpoint of the head while the service runs",
        || async { (store.audit().last_checkpoint().await.ok()? == head.position).then_some(()) },
    )
    .await;
    let (ok, report, stderr) = verify_with(
        &test.url,
        &["--audit-key", KEY, "--max-unprotected-seconds", "0"],
    )
    .await;
    assert!(ok, "{report} {stderr}");
    assert_eq!(report["unprotected_rows"], 0, "{report}");
    service.stop().await;
}
on_both_stores!(a_checkpoint_is_taken_on_a_timer);

async fn verify_checks_the_chain_against_a_published_checkpoint(backend: Backend) {
    let test = TestStore::new(backend).await;
    trail_of_signals(&test).await;
    let store = test.open().await;
    let rows = audit_rows(&store).await;
    let middle = &rows[rows.len() / 2];
    let last = rows.last().expect("rows");
    let published = format!("{}:{}", middle.position, middle.hash);

    let (ok, report, stderr) = verify_with(
        &test.url,
        &["--audit-key", KEY, "--expect-checkpoint", &published],
    )
    .await;
    assert!(ok, "{report} {stderr}");
    assert_eq!(report["published_verified"], 1, "{report}");

    // The copy says another hash at that position: the chain there is not what was published.
    let other = format!("{}:{}", middle.position, last.hash);
    let (ok, report, stderr) = verify_with(
        &test.url,
        &[
            "--audit-key",
            KEY,
            "--expect-checkpoint",
            &published,
            "--expect-checkpoint",
            &other,
        ],
    )
    .await;
    assert!(!ok, "{report}");
    assert_eq!(
        report["first_mismatch"]["position"], middle.position,
        "{report}"
    );
    assert!(
        problem(&report).contains("published checkpoint"),
        "{report}"
    );
    assert!(stderr.contains("published checkpoint"), "{stderr}");

    // Published beyond the chain's end: rows were removed.
    let beyond = format!("{}:{}", last.position + 3, last.hash);
    let (ok, report, _) = verify_with(&test.url, &["--expect-checkpoint", &beyond]).await;
    assert!(!ok, "{report}");
    assert_eq!(
        report["first_mismatch"]["position"],
        last.position + 1,
        "{report}"
    );

    let (ok, _, stderr) = verify_with(&test.url, &["--expect-checkpoint", "12:not-a-hash"]).await;
    assert!(!ok);
    assert!(stderr.contains("POSITION:HASH"), "{stderr}");
}
on_both_stores!(verify_checks_the_chain_against_a_published_checkpoint);

async fn verify_checks_every_row_against_its_event(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = trail_of_signals(&test).await;
    let rows = audit_rows(&store).await;
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "{report}");

    // An event rewritten in the ledger: its row no longer matches.
    let target = rows
        .iter()
        .find(|row| row.event_type == "OrderFilled")
        .expect("a fill");
    rewrite_event_payload(
        &store,
        &target.account_id,
        target.sequence,
        r#"{"rewritten":1}"#,
    )
    .await;
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(!ok, "a rewritten event is caught: {report}");
    assert_eq!(
        report["first_mismatch"]["position"], target.position,
        "{report}"
    );
    assert!(problem(&report).contains("payload"), "{report}");
    rewrite_event_payload(&store, &target.account_id, target.sequence, &target.payload).await;
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(ok, "restored: {report}");

    // A correctly chained row that records no event of the ledger.
    let forged = forged_row_after(rows.last().expect("rows"));
    insert_as_writer(&test.url, &forged).await;
    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(!ok, "a row without its event is caught: {report}");
    assert_eq!(
        report["first_mismatch"]["position"], forged.position,
        "{report}"
    );
    assert!(problem(&report).contains("records no event"), "{report}");
}
on_both_stores!(verify_checks_every_row_against_its_event);

async fn the_writer_stops_at_a_head_it_did_not_write(backend: Backend) {
    let test = TestStore::new(backend).await;
    let log_dir = tempfile::tempdir().expect("a directory for the service's log");
    let log = log_dir.path().join("service.log");
    let mut options = audited_service();
    options.log_file = Some(log.clone());
    let (store, service, _) = running_trail(&test, options).await;
    let rows = audit_rows(&store).await;
    let forged = forged_row_after(rows.last().expect("rows"));
    insert_as_writer(&test.url, &forged).await;

    // A new signal: its events must not be chained after the forged row.
    let user = crate::support::service::create_user(&test.url, "dave").await;
    let (status, body) = service
        .post_signal(&user.webhook_token, &Alert::new("d-1").json())
        .await;
    assert_eq!(status, 200, "{body}");
    let line = logged(
        &log,
        "the audit trail's head is not the one the audit writer wrote",
    )
    .await;
    assert!(line.contains("ERROR"), "{line}");
    eventually("dave's signal notified", || async {
        let events = crate::support::event_types(&store, &user.user_id).await;
        events.iter().any(|e| e == "NotificationSent").then_some(())
    })
    .await;
    let head = store.audit().head().await.expect("reads").expect("rows");
    assert_eq!(
        head.position, forged.position,
        "nothing chained after the forged row"
    );
    service.stop().await;

    let (ok, report) = audit_verify(&test.url, true).await;
    assert!(!ok, "{report}");
    assert_eq!(
        report["first_mismatch"]["position"], forged.position,
        "{report}"
    );
}
on_both_stores!(the_writer_stops_at_a_head_it_did_not_write);

async fn the_compliance_api_serves_the_latest_background_verification(backend: Backend) {
    let test = TestStore::new(backend).await;
    let (_, key) = create_staff(&test.url, "Carol", "compliance").await;
    let mut options = audited_service();
    options
        .args
        .extend(["--audit-verify-interval-seconds".into(), "1".into()]);
    let (store, service, _) = running_trail(&test, options).await;
    let get = || async {
        service
            .send(
                service
                    .client()
                    .get(format!("{}/api/compliance/audit/verify", service.base_url))
                    .bearer_auth(&key),
            )
            .await
    };
    let head = store.audit().head().await.expect("reads").expect("rows");
    let report = eventually("a verification of the whole trail", || async {
        let (status, report) = get().await;
        assert_eq!(status, 200, "{report}");
        assert!(
            ["pending", "verified"].contains(&report["status"].as_str().unwrap_or_default()),
            "{report}"
        );
        (report["head_position"] == head.position).then_some(report)
    })
    .await;
    assert_eq!(report["status"], "verified", "{report}");
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["head_hash"], head.hash.as_str(), "{report}");
    assert!(report["verified_at"].as_str().is_some(), "{report}");

    // Damage is reported by a later verification, with its time.
    let rows = audit_rows(&store).await;
    let forged = forged_row_after(rows.last().expect("rows"));
    insert_as_writer(&test.url, &forged).await;
    let failed = eventually("a verification that finds the forged row", || async {
        let (_, report) = get().await;
        (report["status"] == "failed").then_some(report)
    })
    .await;
    assert_eq!(failed["intact"], false, "{failed}");
    assert_eq!(
        failed["first_mismatch"]["position"], forged.position,
        "{failed}"
    );
    assert_ne!(failed["verified_at"], report["verified_at"], "{failed}");
    service.stop().await;
}
on_both_stores!(the_compliance_api_serves_the_latest_background_verification);
