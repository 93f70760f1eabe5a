//! Issue 9's hardening, from the outside: what a caller sends is not stored or echoed beyond what
//! it should be (request ids, halt reasons), one embedded store has one service and one writer,
//! start-up failures say what failed, where and why, and on PostgreSQL the service's own login
//! cannot undo the audit trail's append-only guarantees.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use cqrs_es::persist::SerializedEvent;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

use ledgerhook::store::{AuditRow, ComplianceRead, NewStaff, Store};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::service::{
    cli, cli_output, create_user, operator_cli, Options, Service, BINARY,
};
use crate::support::stores::{Backend, TestStore};

/// `ledgerhook serve` that is expected to give up: (success, stderr, how long it took).
async fn serve_expecting_exit(
    database_url: &str,
    env: &[(&str, &str)],
) -> (bool, String, Duration) {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("LEDGERHOOK_LISTEN", "127.0.0.1:0")
        .env("LEDGERHOOK_NO_DEMO", "true")
        .env_remove("LEDGERHOOK_ALLOW_PRIVILEGED_LOGIN")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .expect("serve gives up within 10 s")
        .expect("the ledgerhook binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

async fn audit_rows_of(store: &Store, account: &str) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .audit()
            .read(after, 1000)
            .await
            .expect("the trail reads");
        let Some(last) = page.last() else {
            return rows;
        };
        after = last.position;
        rows.extend(page.into_iter().filter(|row| row.account_id == account));
    }
}

// ---------------------------------------------------------------------------------------------
// 6a. X-Request-Id
// ---------------------------------------------------------------------------------------------

async fn a_callers_request_id_is_kept_only_when_short_and_plain(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "ids").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let long = "a".repeat(10 * 1024);
    let exactly_64 = "b".repeat(64);
    let cases: [(&str, bool); 6] = [
        (&long, false),
        ("../../etc/passwd", false),
        ("<script>alert(1)</script>", false),
        (&"c".repeat(65), false),
        ("tv-alert.42_A", true),
        (&exactly_64, true),
    ];
    let mut used = BTreeSet::new();
    for (index, (sent, kept)) in cases.iter().enumerate() {
        let response = service
            .client()
            .post(format!(
                "{}/api/webhook?token={}",
                service.base_url, user.webhook_token
            ))
            .header("x-request-id", *sent)
            .body(Alert::btc_usd(format!("rid-{index}")).json())
            .send()
            .await
            .expect("the webhook answers");
        assert_eq!(response.status().as_u16(), 200);
        let answered = response
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .expect("the answer names its request id")
            .to_owned();
        if *kept {
            assert_eq!(answered, *sent, "a short, plain id is kept");
        } else {
            assert_ne!(answered, *sent);
            assert!(
                answered.len() <= 64
                    && answered
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "a generated id: {answered}"
            );
        }
        used.insert(answered);
    }

    let store = test.open().await;
    let events = store
        .events()
        .load_account(&user.user_id)
        .await
        .expect("loads");
    let stored: BTreeSet<String> = events
        .iter()
        .filter_map(|event| event.metadata["request_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stored, used, "the events carry the ids the answers named");
    let rows = eventually("the trail to hold every event of the account", || async {
        let rows = audit_rows_of(&store, &user.user_id).await;
        (rows.len() == events.len()).then_some(rows)
    })
    .await;
    for (sent, kept) in cases {
        let in_trail = rows.iter().any(|row| row.metadata.contains(sent));
        let in_events = events.iter().any(|e| e.metadata.to_string().contains(sent));
        assert_eq!((in_events, in_trail), (kept, kept), "{sent:.80}");
    }
    service.stop().await;
}
on_both_stores!(a_callers_request_id_is_kept_only_when_short_and_plain);

// ---------------------------------------------------------------------------------------------
// 6b. Halt reasons
// ---------------------------------------------------------------------------------------------

async fn a_halt_is_answered_by_code_never_by_the_operators_words(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "halted").await;
    operator_cli(
        &test.url,
        &["halt", &user.user_id, "--reason", "secret incident XYZ"],
    )
    .await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let by_token = service
        .post_signal(&user.webhook_token, &Alert::btc_usd("h-1").json())
        .await;
    let with_secret = Alert::btc_usd("h-2").json().replacen(
        '{',
        &format!(r#"{{"secret":"{}","#, user.webhook_secret),
        1,
    );
    let by_secret = service
        .post_two_factor(&user.webhook_uuid, &with_secret)
        .await;
    for (status, answer) in [by_token, by_secret] {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "rejected", "{answer}");
        assert_eq!(answer["reason"], "halted", "{answer}");
        let text = answer.to_string();
        assert!(
            !text.contains("secret incident XYZ") && !text.contains("alice-ops"),
            "{text}"
        );
    }
    // The ledger still says who halted and why.
    let store = test.open().await;
    let events = store
        .events()
        .load_account(&user.user_id)
        .await
        .expect("loads");
    let rejected = events
        .iter()
        .filter(|event| event.event_type == "SignalRejected")
        .count();
    assert_eq!(rejected, 2);
    assert!(events
        .iter()
        .any(|event| event.payload.to_string().contains("secret incident XYZ")));
    service.stop().await;
}
on_both_stores!(a_halt_is_answered_by_code_never_by_the_operators_words);

// ---------------------------------------------------------------------------------------------
// 8. One embedded store, one service, one writer
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_one_sqlite_file_exits_at_once() {
    let test = TestStore::new(Backend::Sqlite).await;
    let first = Service::start(&test.url, Options::ingest_only()).await;

    let (succeeded, stderr, took) = serve_expecting_exit(&test.url, &[]).await;
    assert!(!succeeded, "a second serve must not run: {stderr}");
    assert!(
        stderr.contains("already running") && stderr.contains("ledger.db-serve.lock"),
        "the message names the lock: {stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Commands other than serve still work beside it.
    let user = create_user(&test.url, "beside").await;
    operator_cli(&test.url, &["halt", &user.user_id, "--reason", "test"]).await;
    let (status, answer) = first
        .post_signal(&user.webhook_token, &Alert::btc_usd("s-1").json())
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("rejected")));

    // The lock goes with its process, however it ends.
    first.kill_9().await;
    let again = Service::start(&test.url, Options::ingest_only()).await;
    again.stop().await;
}

fn appended(account: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: account.to_owned(),
        sequence,
        aggregate_type: "TradingAccount".to_owned(),
        event_type: "Filler".to_owned(),
        event_version: "1.0".to_owned(),
        payload: json!({"Filler": {"n": sequence, "pad": "x".repeat(512)}}),
        metadata: json!({"actor": "test"}),
    }
}

/// Staff and compliance-read writes made while the ledger appends as fast as it can all succeed
/// (on SQLite they queue with every other write of the process; see the next test).
async fn staff_and_compliance_writes_take_their_turn_among_appends(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut appenders = tokio::task::JoinSet::new();
    for appender in 0..3 {
        let store = store.clone();
        let stop = stop.clone();
        appenders.spawn(async move {
            let account = format!("appender-{appender}");
            let mut next = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<_> = (next..next + 100).map(|s| appended(&account, s)).collect();
                store.events().append(&batch).await.expect("an append");
                next += 100;
            }
        });
    }
    let mut staff_writers = tokio::task::JoinSet::new();
    for writer in 0..4 {
        let store = store.clone();
        staff_writers.spawn(async move {
            let staff_id = format!("staff-{writer}");
            store
                .credentials()
                .insert_staff(&NewStaff {
                    staff_id: staff_id.clone(),
                    display_name: staff_id.clone(),
                    role: "compliance".to_owned(),
                    api_key_sha256: format!("{writer:064x}"),
                    created_at: Utc::now(),
                })
                .await?;
            for read in 0..10 {
                store
                    .credentials()
                    .record_compliance_read(&ComplianceRead {
                        staff_id: staff_id.clone(),
                        endpoint: "/api/compliance/audit".to_owned(),
                        filter: json!({ "read": read }),
                        at: Utc::now(),
                    })
                    .await?;
            }
            store
                .credentials()
                .disable_staff(&staff_id, Utc::now())
                .await
                .map(|_| ())
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = staff_writers.join_next().await {
        if let Err(error) = done.expect("a staff writer task") {
            failures.push(error.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(done) = appenders.join_next().await {
        done.expect("the appender ran without an error");
    }
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(
        store
            .credentials()
            .compliance_reads()
            .await
            .expect("reads")
            .len(),
        40
    );
}
on_both_stores!(staff_and_compliance_writes_take_their_turn_among_appends);

/// On SQLite the staff and compliance-read writes wait for the process's one writer queue like
/// every other write: while the queue is held, none of them happens. (Outside it, they fought the
/// queue for SQLite's lock through its sleep-and-retry busy handler: seconds under load, and
/// "database is locked" after 5 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_staff_and_compliance_writes_wait_for_the_one_writer() {
    let test = TestStore::new(Backend::Sqlite).await;
    let store = test.open().await;
    let Store::Sqlite(sqlite) = &store else {
        unreachable!("a SQLite test store")
    };
    let staff = NewStaff {
        staff_id: "carol".to_owned(),
        display_name: "Carol".to_owned(),
        role: "compliance".to_owned(),
        api_key_sha256: format!("{:064x}", 7),
        created_at: Utc::now(),
    };
    let read = ComplianceRead {
        staff_id: "carol".to_owned(),
        endpoint: "/api/compliance/audit".to_owned(),
        filter: json!({}),
        at: Utc::now(),
    };
    for write in ["insert_staff", "record_compliance_read", "disable_staff"] {
        let turn = sqlite.lock_writer().await;
        let (store, staff, read) = (store.clone(), staff.clone(), read.clone());
        let mut pending = tokio::spawn(async move {
            match write {
                "insert_staff" => store.credentials().insert_staff(&staff).await,
                "record_compliance_read" => store.credentials().record_compliance_read(&read).await,
                _ => store
                    .credentials()
                    .disable_staff(&staff.staff_id, Utc::now())
                    .await
                    .map(|_| ()),
            }
        });
        let while_held = tokio::time::timeout(Duration::from_millis(500), &mut pending).await;
        assert!(
            while_held.is_err(),
            "{write} wrote while another writer held the queue"
        );
        drop(turn);
        pending
            .await
            .expect("the write task")
            .unwrap_or_else(|error| panic!("{write}: {error}"));
    }
    assert_eq!(
        store.credentials().compliance_reads().await.expect("reads"),
        [read]
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Start-up errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_postgres_is_named_at_once_without_its_password() {
    let url = "postgres://postgres:hunter2-never-printed@127.0.0.1:1/x";
    let (succeeded, stderr, took) = serve_expecting_exit(url, &[]).await;
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1: connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
}

#[tokio::test]
async fn an_unopenable_sqlite_path_is_named() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let in_the_way = dir.path().join("occupied");
    std::fs::write(&in_the_way, b"a file, not a directory").expect("a file");
    let database = in_the_way.join("ledger.db");
    let url = format!("sqlite://{}", database.display());
    let (succeeded, stderr, took) = serve_expecting_exit(&url, &[]).await;
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot open the SQLite database {}",
            database.display()
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// 5 (last point). The PostgreSQL login serve runs as
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_superuser_login_unless_allowed() {
    let test = TestStore::new(Backend::Postgres).await;
    let (succeeded, stderr, _) = serve_expecting_exit(&test.url, &[]).await;
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains("refusing to serve as PostgreSQL login postgres")
            && stderr.contains("superuser")
            && stderr.contains("--allow-privileged-login"),
        "{stderr}"
    );
    // Allowed explicitly (development), it serves.
    let service = Service::start(&test.url, Options::ingest_only()).await;
    service.stop().await;
}

/// A login role of its own for one test, dropped with it (also when the test fails).
struct PlainLogin {
    name: String,
    url: String,
    admin_url: String,
}

impl PlainLogin {
    /// Granted what `serve` needs on a migrated database, and the audit writer role: nothing on
    /// the audit tables of its own.
    async fn create(admin_url: &str) -> Self {
        Self::with(admin_url, "lh_service", |name| {
            vec![
                format!("CREATE ROLE {name} LOGIN"),
                format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {name}"),
                format!("REVOKE ALL ON audit_log, audit_checkpoints FROM {name}"),
                format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}"),
                format!("GRANT ledgerhook_audit_writer TO {name}"),
            ]
        })
        .await
    }

    /// A login named `{prefix}_<random>`, made by `statements` (run by the admin, in order).
    async fn with(admin_url: &str, prefix: &str, statements: impl Fn(&str) -> Vec<String>) -> Self {
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = PgConnection::connect(admin_url).await.expect("connects");
        for statement in statements(&name) {
            sqlx::query(&statement)
                .execute(&mut admin)
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
        let mut url = reqwest::Url::parse(admin_url).expect("the test database URL parses");
        url.set_username(&name).expect("a username");
        let _ = url.set_password(None);
        Self {
            name,
            url: url.to_string(),
            admin_url: admin_url.to_owned(),
        }
    }
}

impl Drop for PlainLogin {
    /// Best effort, on a thread of its own (the test's runtime may be gone): the role's grants
    /// live in the test database, which is still there, so they go first.
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|error| error.to_string())?;
                // REASSIGN first: a login may own the test database itself.
                for statement in [
                    format!("REASSIGN OWNED BY {name} TO CURRENT_USER"),
                    format!("DROP OWNED BY {name}"),
                    format!("DROP ROLE {name}"),
                ] {
                    sqlx::query(&statement)
                        .execute(&mut admin)
                        .await
                        .map_err(|error| format!("{statement}: {error}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(problem)) = dropped {
            eprintln!("warning: test role {} not dropped: {problem}", self.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_login_serves_and_cannot_undo_the_audit_trail() {
    let test = TestStore::new(Backend::Postgres).await;
    cli(&test.url, &["migrate"]).await;
    let user = create_user(&test.url, "plain").await;
    let login = PlainLogin::create(&test.url).await;

    let service = Service::start(
        &login.url,
        Options {
            strict_login: true,
            ..Options::default()
        },
    )
    .await;
    let (status, answer) = service
        .post_signal(&user.webhook_token, &Alert::btc_usd("p-1").json())
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    let store = test.open().await;
    // The signal's last event is its notification: after it, nothing more is appended.
    let trail = eventually(
        "the concluded signal to be chained into the trail",
        || async {
            let events = store.events().load_account(&user.user_id).await.ok()?;
            let rows = audit_rows_of(&store, &user.user_id).await;
            let told = events.iter().any(|e| e.event_type == "NotificationSent");
            (told && rows.len() == events.len()).then_some(rows)
        },
    )
    .await;
    let mut plain = PgConnection::connect(&login.url).await.expect("connects");
    for role in ["", "SET ROLE ledgerhook_audit_writer"] {
        if !role.is_empty() {
            sqlx::query(role).execute(&mut plain).await.expect(role);
        }
        for attempt in [
            "UPDATE audit_log SET metadata = '{}'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "UPDATE audit_checkpoints SET signature = NULL",
            "DELETE FROM audit_checkpoints",
            "TRUNCATE audit_checkpoints",
            "DROP TRIGGER audit_log_append_only ON audit_log",
            "DROP TRIGGER audit_log_no_truncate ON audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "ALTER TABLE audit_log OWNER TO CURRENT_USER",
            "DROP TABLE audit_log",
            "SET ROLE ledgerhook_audit_owner",
            "GRANT ledgerhook_audit_owner TO CURRENT_USER",
        ] {
            let done = sqlx::query(attempt).execute(&mut plain).await;
            assert!(done.is_err(), "{role:?}: {attempt} must be refused");
        }
        sqlx::query("RESET ROLE")
            .execute(&mut plain)
            .await
            .expect("RESET ROLE");
    }
    plain.close().await.expect("closes");
    assert_eq!(audit_rows_of(&store, &user.user_id).await, trail);

    service.stop().await;
    // The chain verifies, read as the plain login too (which runs no DDL on start).
    cli(&login.url, &["audit", "verify"]).await;
}

/// The audit trail's indexes, by name, with their access method.
async fn audit_log_indexes(admin: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT i.relname::text, am.amname::text FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
          WHERE x.indrelid = 'audit_log'::regclass ORDER BY 1",
    )
    .fetch_all(admin)
    .await
    .expect("reads the catalog")
}

/// Migration 0023's indexes: no unique (aggregate_type, account_id, sequence), BRIN for time.
fn indexes_since_0023() -> Vec<(String, String)> {
    [
        ("audit_log_account", "btree"),
        ("audit_log_event_type", "btree"),
        ("audit_log_pkey", "btree"),
        ("audit_log_recorded_at", "brin"),
        ("audit_log_signal", "btree"),
    ]
    .map(|(name, method)| (name.to_owned(), method.to_owned()))
    .to_vec()
}

async fn is_audit_owner(admin: &mut PgConnection, login: &str) -> bool {
    sqlx::query_scalar("SELECT pg_has_role($1, 'ledgerhook_audit_owner', 'MEMBER')")
        .bind(login)
        .fetch_one(admin)
        .await
        .expect("reads the role")
}

fn database_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("the test database URL parses");
    url.path().trim_start_matches('/').to_owned()
}

/// README's production path: the database's owner, a login with CREATEROLE that is no
/// superuser, migrates a new database, and keeps none of the audit owner's rights after.
/// PostgreSQL 15 refused it at migration 0005 ("permission denied for schema public": the new
/// owner of the audit tables could not create in the schema) until `store::audit_roles`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_owner_with_createrole_migrates_and_keeps_no_audit_rights() {
    let test = TestStore::new(Backend::Postgres).await;
    let database = database_of(&test.url);
    let owner = PlainLogin::with(&test.url, "lh_owner", |name| {
        vec![
            format!("CREATE ROLE {name} LOGIN CREATEROLE"),
            format!("ALTER DATABASE {database} OWNER TO {name}"),
        ]
    })
    .await;

    cli(&owner.url, &["migrate"]).await;
    cli(&owner.url, &["migrate"]).await;

    let mut admin = PgConnection::connect(&test.url).await.expect("connects");
    assert!(!is_audit_owner(&mut admin, &owner.name).await);
    assert_eq!(audit_log_indexes(&mut admin).await, indexes_since_0023());
    let mut as_owner = PgConnection::connect(&owner.url).await.expect("connects");
    for attempt in [
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "UPDATE audit_log SET hash = hash",
        "SET ROLE ledgerhook_audit_owner",
    ] {
        let done = sqlx::query(attempt).execute(&mut as_owner).await;
        assert!(
            done.is_err(),
            "{attempt} must be refused to the migrating login"
        );
    }
    as_owner.close().await.expect("closes");

    // It still owns the schema, and a schema's owner may drop what is in it, the trail whole
    // included: `serve` refuses it, even without CREATEROLE.
    sqlx::query(&format!("ALTER ROLE {} NOCREATEROLE", owner.name))
        .execute(&mut admin)
        .await
        .expect("alters the login");
    let (succeeded, stderr, _) = serve_expecting_exit(&owner.url, &[]).await;
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing to serve as PostgreSQL login {}",
            owner.name
        )) && stderr.contains("owns the audit tables' schema")
            && !stderr.contains("CREATEROLE"),
        "{stderr}"
    );
}

/// An upgrade run by a login that cannot take the audit owner's role stops at migration 0023,
/// says what it needs, and changes nothing; given CREATEROLE, the same command completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_index_migration_needs_the_owners_role_and_changes_nothing_without_it() {
    let test = TestStore::new(Backend::Postgres).await;
    cli(&test.url, &["migrate"]).await;
    let mut admin = PgConnection::connect(&test.url).await.expect("connects");
    // The trail as migration 0022 left it, as a deployment that has not upgraded holds it.
    for statement in [
        "ALTER TABLE audit_log ADD CONSTRAINT audit_log_aggregate_type_account_id_sequence_key \
         UNIQUE (aggregate_type, account_id, sequence)",
        "DROP INDEX audit_log_recorded_at",
        "CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at, position)",
        "DELETE FROM _sqlx_migrations WHERE version = 23",
    ] {
        sqlx::query(statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let before = audit_log_indexes(&mut admin).await;
    assert_ne!(before, indexes_since_0023());
    let database = database_of(&test.url);
    let owner = PlainLogin::with(&test.url, "lh_owner", |name| {
        vec![
            format!("CREATE ROLE {name} LOGIN"),
            format!("ALTER DATABASE {database} OWNER TO {name}"),
            format!("GRANT ALL ON _sqlx_migrations TO {name}"),
        ]
    })
    .await;

    let refused = cli_output(&owner.url, &["migrate"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("migration 0023 changes the audit trail's indexes")
            && stderr.contains(&format!("login {} cannot take that role", owner.name))
            && stderr.contains("CREATEROLE"),
        "{stderr}"
    );
    assert_eq!(audit_log_indexes(&mut admin).await, before);
    let recorded: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&mut admin)
        .await
        .expect("reads");
    assert_eq!(recorded, 22);

    sqlx::query(&format!("ALTER ROLE {} CREATEROLE", owner.name))
        .execute(&mut admin)
        .await
        .expect("the DBA grants CREATEROLE");
    cli(&owner.url, &["migrate"]).await;
    assert_eq!(audit_log_indexes(&mut admin).await, indexes_since_0023());
    assert!(!is_audit_owner(&mut admin, &owner.name).await);
}
