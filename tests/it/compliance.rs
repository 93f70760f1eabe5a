//! Staff and the compliance API over the real binary, on both stores: `staff create`, filters and
//! cursor pages of `GET /api/compliance/audit`, exports equal to the pages, every read recorded,
//! roles, credentials that never cross between staff and traders, and a trader's own
//! `GET /api/audit` that never shows another account's rows.
//!
//! The audit writer is another workstream's: rows are written straight into `audit_log`.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

use ledgerhook::store::Store;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::answer::assert_invalid_token;
use crate::support::audit::{create_staff, insert_audit_rows, SeedRow};
use crate::support::service::{create_user, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

const AUDIT: &str = "/api/compliance/audit";
const VERIFY: &str = "/api/compliance/audit/verify";
const OWN_AUDIT: &str = "/api/audit";
const TYPES: [&str; 3] = ["SignalReceived", "RiskApproved", "OrderFilled"];
/// Needs quoting in CSV and encoding in a URL.
const TRICKY_SIGNAL: &str = "tricky, \"sig\"";

/// Query string pairs.
type Query<'a> = Vec<(&'a str, &'a str)>;

struct Trail {
    test: TestStore,
    store: Store,
    service: Service,
    alice: User,
    bob: User,
    compliance_id: String,
    compliance_key: String,
    operator_key: String,
    rows: Vec<SeedRow>,
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 10, 6, 0, 0)
        .single()
        .expect("a valid time")
}

/// 48 rows: alice, alice, bob, global in turn; event types in turn; three rows per signal; times
/// 90 s and 1 µs apart (so microsecond bounds matter); payloads with commas, quotes, newlines.
async fn trail(backend: Backend) -> Trail {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let (compliance_id, compliance_key) =
        create_staff(&test.url, "Carol Compliance", "compliance").await;
    let (_, operator_key) = create_staff(&test.url, "Oscar Operator", "operator").await;
    let rows: Vec<SeedRow> = (1..=48_i64)
        .map(|position| {
            let account_id = match position % 4 {
                1 | 2 => alice.user_id.clone(),
                3 => bob.user_id.clone(),
                _ => "global".to_owned(),
            };
            let signal_id = match position {
                _ if account_id == "global" => None,
                7..=9 => Some(TRICKY_SIGNAL.to_owned()),
                // Each account's signals are its own.
                _ => Some(format!("sig-{}-{}", &account_id[..8], position / 3)),
            };
            SeedRow {
                position,
                account_id,
                event_type: TYPES[(position % 3) as usize].to_owned(),
                signal_id,
                recorded_at: base_time()
                    + Duration::seconds(90 * position)
                    + Duration::microseconds(position),
                payload: format!(
                    "{{\n  \"n\": {position},\n  \"note\": \"a, \\\"quoted\\\" word\"\n}}"
                ),
            }
        })
        .collect();
    let store = test.open().await;
    insert_audit_rows(&store, &rows).await;
    // The seeded trail records none of the ledger's events, so no audit writer may run: it would
    // chain the ledger's events (the users' AccountOpened, the reads recorded) after it. (Until
    // migration 0023 dropped the index, a unique (account, sequence) refused its first row.)
    let service = Service::start(
        &test.url,
        Options {
            args: vec!["--no-read-side".into()],
            ..Options::ingest_only()
        },
    )
    .await;
    Trail {
        test,
        store,
        service,
        alice,
        bob,
        compliance_id,
        compliance_key,
        operator_key,
        rows,
    }
}

fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The row as every endpoint must show it.
fn expected(row: &SeedRow) -> Value {
    json!({
        "position": row.position,
        "account_id": row.account_id,
        "aggregate_type": if row.account_id == "global" { "EmergencyStop" } else { "TradingAccount" },
        "sequence": row.position,
        "event_type": row.event_type,
        "event_version": "2.0",
        "signal_id": row.signal_id,
        "recorded_at": time_text(row.recorded_at),
        "payload": row.payload,
        "metadata": row.metadata(),
        "prev_hash": row.prev_hash(),
        "hash": row.hash(),
    })
}

fn expected_where(rows: &[SeedRow], keep: impl Fn(&SeedRow) -> bool) -> Vec<Value> {
    rows.iter().filter(|row| keep(row)).map(expected).collect()
}

impl Trail {
    async fn get(&self, key: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        self.service
            .send(
                self.service
                    .client()
                    .get(format!("{}{path}", self.service.base_url))
                    .query(query)
                    .bearer_auth(key),
            )
            .await
    }

    /// Status, Content-Type and body text.
    async fn get_text(
        &self,
        key: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> (u16, String, String) {
        let response = self
            .service
            .client()
            .get(format!("{}{path}", self.service.base_url))
            .query(query)
            .bearer_auth(key)
            .send()
            .await
            .expect("the service answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            content_type,
            response.text().await.expect("a text body"),
        )
    }

    /// Every row of `query`, following `next_cursor` with pages of `limit`.
    async fn all_pages(
        &self,
        key: &str,
        path: &str,
        query: &[(&str, &str)],
        limit: usize,
    ) -> Vec<Value> {
        let limit_text = limit.to_string();
        let mut cursor: Option<String> = None;
        let mut rows = Vec::new();
        for _ in 0..1000 {
            let mut pairs: Vec<(&str, &str)> = query.to_vec();
            pairs.push(("limit", &limit_text));
            if let Some(cursor) = &cursor {
                pairs.push(("cursor", cursor));
            }
            let (status, body) = self.get(key, path, &pairs).await;
            assert_eq!(status, 200, "{query:?}: {body}");
            let page = body["rows"].as_array().expect("rows").clone();
            assert!(page.len() <= limit, "a page holds at most `limit` rows");
            rows.extend(page);
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return rows,
            }
        }
        panic!("pages never ended for {query:?}");
    }

    async fn reads(&self) -> Vec<(String, String, Value)> {
        self.store
            .credentials()
            .compliance_reads()
            .await
            .expect("compliance reads load")
            .into_iter()
            .map(|read| (read.staff_id, read.endpoint, read.filter))
            .collect()
    }
}

/// RFC 4180: quoted fields may hold commas, doubled quotes and line breaks; records end in CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "the CSV ends with a full record"
    );
    records
}

const CSV_HEADER: [&str; 12] = [
    "position",
    "account_id",
    "aggregate_type",
    "sequence",
    "event_type",
    "event_version",
    "signal_id",
    "recorded_at",
    "payload",
    "metadata",
    "prev_hash",
    "hash",
];

/// A JSON row as its CSV record: numbers and strings as text, null as an empty field.
fn as_csv_record(row: &Value) -> Vec<String> {
    CSV_HEADER
        .iter()
        .map(|column| match &row[*column] {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect()
}

async fn staff_create_issues_a_staff_key_kept_only_as_its_digest(backend: Backend) {
    let trail = trail(backend).await;
    assert!(
        trail.compliance_key.starts_with("lhs_"),
        "a staff key prefix"
    );
    assert_eq!(trail.compliance_key.len(), 4 + 64, "256 bits, hex");
    assert!(uuid::Uuid::parse_str(&trail.compliance_id).is_ok());
    let digest = ledgerhook::users::credentials::sha256_hex(&trail.compliance_key);
    let found = trail
        .store
        .credentials()
        .active_staff_by_api_key_sha256(&digest)
        .await
        .expect("the staff table reads")
        .expect("the key's digest is stored");
    assert_eq!(found.staff_id, trail.compliance_id);
    assert_eq!(
        (found.display_name.as_str(), found.role.as_str()),
        ("Carol Compliance", "compliance")
    );
    // The key itself is nowhere in the database.
    let stored =
        match &trail.store {
            Store::Postgres(pg) => {
                sqlx::query_scalar::<_, String>("SELECT row_to_json(staff)::text FROM staff")
                    .fetch_all(pg.pool())
                    .await
            }
            Store::Sqlite(lite) => sqlx::query_scalar::<_, String>(
                "SELECT staff_id || display_name || role || ifnull(api_key_sha256, '') FROM staff",
            )
            .fetch_all(lite.pool())
            .await,
        }
        .expect("the staff table reads");
    assert_eq!(stored.len(), 2);
    assert!(stored
        .iter()
        .all(|row| !row.contains(&trail.compliance_key[4..])));
    trail.service.stop().await;
}
on_both_stores!(staff_create_issues_a_staff_key_kept_only_as_its_digest);

async fn each_filter_selects_exactly_the_matching_rows(backend: Backend) {
    let trail = trail(backend).await;
    let rows = &trail.rows;
    let key = trail.compliance_key.clone();
    let alice = trail.alice.user_id.clone();
    let from_row = &rows[9];
    let to_row = &rows[30];
    // Bounds a microsecond either side of a row's time: the row is in [t, ..) and not in [.., t).
    let from = time_text(from_row.recorded_at);
    let to = time_text(to_row.recorded_at);
    let some_signal = rows[13].signal_id.clone().expect("a signal");
    let just_after_to = time_text(to_row.recorded_at + Duration::microseconds(1));
    let in_offset = from_row
        .recorded_at
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("an offset"))
        .to_rfc3339_opts(SecondsFormat::Micros, false);
    let cases: Vec<(&str, Query<'_>, Vec<Value>)> = vec![
        ("everything", vec![], expected_where(rows, |_| true)),
        (
            "one account",
            vec![("account_id", &alice)],
            expected_where(rows, |row| row.account_id == alice),
        ),
        (
            "the emergency stop",
            vec![("account_id", "global")],
            expected_where(rows, |row| row.account_id == "global"),
        ),
        ("an unknown account", vec![("account_id", "nobody")], vec![]),
        (
            "a half-open time range",
            vec![("from", &from), ("to", &to)],
            expected_where(rows, |row| {
                row.recorded_at >= from_row.recorded_at && row.recorded_at < to_row.recorded_at
            }),
        ),
        (
            "to one microsecond later includes its row",
            vec![("from", &from), ("to", &just_after_to)],
            expected_where(rows, |row| {
                row.recorded_at >= from_row.recorded_at && row.recorded_at <= to_row.recorded_at
            }),
        ),
        (
            "from in another offset",
            vec![("from", &in_offset)],
            expected_where(rows, |row| row.recorded_at >= from_row.recorded_at),
        ),
        (
            "an empty range",
            vec![("from", &from), ("to", &from)],
            vec![],
        ),
        (
            "one event type",
            vec![("event_type", "OrderFilled")],
            expected_where(rows, |row| row.event_type == "OrderFilled"),
        ),
        (
            "event types repeated",
            vec![
                ("event_type", "OrderFilled"),
                ("event_type", "RiskApproved"),
            ],
            expected_where(rows, |row| row.event_type != "SignalReceived"),
        ),
        (
            "event types as a comma list",
            vec![("event_type", "OrderFilled,RiskApproved")],
            expected_where(rows, |row| row.event_type != "SignalReceived"),
        ),
        (
            "a signal id",
            vec![("signal_id", &some_signal)],
            expected_where(rows, |row| row.signal_id == Some(some_signal.clone())),
        ),
        (
            "a signal id with a comma and quotes",
            vec![("signal_id", TRICKY_SIGNAL)],
            expected_where(rows, |row| row.signal_id.as_deref() == Some(TRICKY_SIGNAL)),
        ),
        (
            "all filters at once",
            vec![
                ("account_id", &alice),
                ("from", &from),
                ("to", &to),
                ("event_type", "SignalReceived,OrderFilled"),
            ],
            expected_where(rows, |row| {
                row.account_id == alice
                    && row.recorded_at >= from_row.recorded_at
                    && row.recorded_at < to_row.recorded_at
                    && row.event_type != "RiskApproved"
            }),
        ),
    ];
    for (case, query, want) in cases {
        let mut query = query;
        query.push(("limit", "1000"));
        let (status, body) = trail.get(&key, AUDIT, &query).await;
        assert_eq!(status, 200, "{case}: {body}");
        assert_eq!(body["rows"], Value::Array(want), "{case}");
        assert_eq!(body["next_cursor"], Value::Null, "{case}");
    }

    // Bad filters: a 400 naming the parameter, and nothing read (so nothing recorded).
    let reads_before = trail.reads().await.len();
    for (query, parameter) in [
        (vec![("from", "yesterday")], "`from`"),
        (vec![("to", "2024-06-10 06:00:00")], "`to`"),
        (vec![("from", to.as_str()), ("to", from.as_str())], "`to`"),
        (vec![("limit", "1001")], "`limit`"),
        (vec![("limit", "0")], "`limit`"),
        (vec![("cursor", "not-a-cursor")], "`cursor`"),
        (vec![("event_type", "Order Filled")], "`event_type`"),
        (vec![("format", "xlsx")], "`format`"),
        (vec![("acount_id", "x")], "`acount_id`"),
        (
            vec![("account_id", "a"), ("account_id", "b")],
            "`account_id`",
        ),
    ] {
        let (status, body) = trail.get(&key, AUDIT, &query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["code"], "INVALID_PARAMETER", "{query:?}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(parameter), "{query:?}: {message}");
    }
    assert_eq!(
        trail.reads().await.len(),
        reads_before,
        "refused requests read nothing"
    );
    trail.service.stop().await;
}
on_both_stores!(each_filter_selects_exactly_the_matching_rows);

async fn cursor_pages_return_every_row_exactly_once_in_order(backend: Backend) {
    let trail = trail(backend).await;
    let key = trail.compliance_key.clone();
    let everything = expected_where(&trail.rows, |_| true);
    for limit in [1, 7, 48, 1000] {
        let rows = trail.all_pages(&key, AUDIT, &[], limit).await;
        assert_eq!(rows, everything, "pages of {limit}");
    }
    // The default page is 100 rows, and an exact last page has no next cursor.
    let (_, body) = trail.get(&key, AUDIT, &[]).await;
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(48));
    assert_eq!(body["next_cursor"], Value::Null);
    let (_, body) = trail.get(&key, AUDIT, &[("limit", "48")]).await;
    assert_eq!(body["next_cursor"], Value::Null);

    // Filtered pages too; and a cursor stays valid while rows are appended after it.
    let bob = trail.bob.user_id.clone();
    let query = [
        ("account_id", bob.as_str()),
        ("event_type", "SignalReceived,OrderFilled"),
    ];
    let (_, first) = trail
        .get(&key, AUDIT, &[query[0], query[1], ("limit", "2")])
        .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let appended = SeedRow {
        position: 49,
        account_id: bob.clone(),
        event_type: "OrderFilled".into(),
        signal_id: Some("sig-late".into()),
        recorded_at: base_time() + Duration::hours(5),
        payload: "{}".into(),
    };
    insert_audit_rows(&trail.store, std::slice::from_ref(&appended)).await;
    let (_, rest) = trail
        .get(
            &key,
            AUDIT,
            &[query[0], query[1], ("cursor", &cursor), ("limit", "1000")],
        )
        .await;
    let mut seen = first["rows"].as_array().expect("rows").clone();
    seen.extend(rest["rows"].as_array().expect("rows").iter().cloned());
    let mut all_rows = trail.rows.clone();
    all_rows.push(appended);
    let want = expected_where(&all_rows, |row| {
        row.account_id == bob && row.event_type != "RiskApproved"
    });
    assert_eq!(seen, want);
    trail.service.stop().await;
}
on_both_stores!(cursor_pages_return_every_row_exactly_once_in_order);

async fn csv_and_json_lines_exports_equal_the_json_pages(backend: Backend) {
    let trail = trail(backend).await;
    let key = trail.compliance_key.clone();
    let alice = trail.alice.user_id.clone();
    let queries: [Vec<(&str, &str)>; 3] = [
        vec![],
        vec![
            ("account_id", &alice),
            ("event_type", "OrderFilled,SignalReceived"),
        ],
        vec![("signal_id", "no-such-signal")],
    ];
    for query in queries {
        let pages = trail.all_pages(&key, AUDIT, &query, 5).await;

        let mut jsonl_query = query.clone();
        jsonl_query.push(("format", "jsonl"));
        let (status, content_type, text) = trail.get_text(&key, AUDIT, &jsonl_query).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(content_type, "application/x-ndjson");
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(lines, pages, "JSON Lines for {query:?}");

        let mut csv_query = query.clone();
        csv_query.push(("format", "csv"));
        let (status, content_type, text) = trail.get_text(&key, AUDIT, &csv_query).await;
        assert_eq!(status, 200, "{text}");
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        let records = parse_csv(&text);
        assert_eq!(
            records.first().map(Vec::as_slice),
            Some(CSV_HEADER.map(String::from).as_slice())
        );
        let want: Vec<Vec<String>> = pages.iter().map(as_csv_record).collect();
        assert_eq!(records[1..], want[..], "CSV for {query:?}");
    }
    // An export may start from a cursor, as a page does.
    let (_, first) = trail.get(&key, AUDIT, &[("limit", "10")]).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let (_, _, text) = trail
        .get_text(&key, AUDIT, &[("format", "jsonl"), ("cursor", &cursor)])
        .await;
    assert_eq!(text.lines().count(), 38);
    trail.service.stop().await;
}
on_both_stores!(csv_and_json_lines_exports_equal_the_json_pages);

async fn every_compliance_read_is_recorded_before_it_is_answered(backend: Backend) {
    let trail = trail(backend).await;
    let key = trail.compliance_key.clone();
    let alice = trail.alice.user_id.clone();
    assert!(trail.reads().await.is_empty());

    let (status, _) = trail
        .get(
            &key,
            AUDIT,
            &[
                ("account_id", &alice),
                ("event_type", "OrderFilled"),
                ("limit", "3"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = trail
        .get_text(
            &key,
            AUDIT,
            &[("format", "csv"), ("from", "2024-06-10T06:00:00Z")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = trail.get(&key, VERIFY, &[]).await;
    // The seeded rows carry placeholder hashes: the verification names the first one.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["intact"], false, "{body}");
    assert_eq!(body["first_mismatch"]["position"], 1, "{body}");

    let reads = trail.reads().await;
    let id = trail.compliance_id.clone();
    assert_eq!(
        reads,
        vec![
            (
                id.clone(),
                AUDIT.to_owned(),
                json!({
                    "account_id": alice, "from": null, "to": null, "event_type": ["OrderFilled"],
                    "signal_id": null, "after_position": 0, "limit": 3, "format": "json",
                })
            ),
            (
                id.clone(),
                AUDIT.to_owned(),
                json!({
                    "account_id": null, "from": "2024-06-10T06:00:00.000000Z", "to": null,
                    "event_type": [], "signal_id": null, "after_position": 0, "limit": null,
                    "format": "csv",
                })
            ),
            (id, VERIFY.to_owned(), json!({})),
        ]
    );

    // The record is append-only in the database itself.
    let (update, delete) = match &trail.store {
        Store::Postgres(pg) => (
            sqlx::query("UPDATE compliance_reads SET endpoint = 'x'")
                .execute(pg.pool())
                .await
                .is_err(),
            sqlx::query("DELETE FROM compliance_reads")
                .execute(pg.pool())
                .await
                .is_err(),
        ),
        Store::Sqlite(lite) => (
            sqlx::query("UPDATE compliance_reads SET endpoint = 'x'")
                .execute(lite.pool())
                .await
                .is_err(),
            sqlx::query("DELETE FROM compliance_reads")
                .execute(lite.pool())
                .await
                .is_err(),
        ),
    };
    assert!(
        update && delete,
        "UPDATE and DELETE of compliance_reads are refused"
    );
    assert_eq!(trail.reads().await.len(), 3);
    trail.service.stop().await;
}
on_both_stores!(every_compliance_read_is_recorded_before_it_is_answered);

async fn operators_verify_but_do_not_read_the_trail(backend: Backend) {
    let trail = trail(backend).await;
    for format in ["json", "jsonl", "csv"] {
        let (status, body) = trail
            .get(&trail.operator_key, AUDIT, &[("format", format)])
            .await;
        assert_eq!(
            (status, &body["code"]),
            (403, &json!("FORBIDDEN")),
            "{format}: {body}"
        );
    }
    // The answer comes from the background verification (`pending` until its first report).
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let body = crate::support::eventually("a background verification report", || async {
        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (status, body) = trail.get(&trail.operator_key, VERIFY, &[]).await;
        assert_eq!(status, 200, "{body}");
        (body["status"] != "pending").then_some(body)
    })
    .await;
    assert!(body["rows"].as_u64().is_some(), "{body}");
    assert!(body["verified_at"].as_str().is_some(), "{body}");
    // Only the verifications were reads.
    let reads = trail.reads().await;
    assert_eq!(reads.len(), asked.into_inner());
    assert!(reads.iter().all(|read| read.1 == VERIFY), "{reads:?}");
    trail.service.stop().await;
}
on_both_stores!(operators_verify_but_do_not_read_the_trail);

async fn staff_and_trader_credentials_never_open_each_others_doors(backend: Backend) {
    let trail = trail(backend).await;
    let service = &trail.service;
    let base = &service.base_url;
    let alice = &trail.alice;
    let alert = Alert::demo("x").json();
    for staff_key in [&trail.compliance_key, &trail.operator_key] {
        let (status, body) = service.post_signal(staff_key, &alert).await;
        assert_invalid_token("a staff key as a webhook token", status, &body);
        let secret_body = Alert::demo("y").secret(staff_key).json();
        let (status, body) = service
            .post_two_factor(&alice.webhook_uuid, &secret_body)
            .await;
        assert_invalid_token("a staff key as a two-factor secret", status, &body);
        // A real staff key is known, and the access table admits no staff here.
        for path in ["/api/config/webhook", OWN_AUDIT] {
            let (status, body) = trail.get(staff_key, path, &[]).await;
            assert_eq!(
                (status, &body["code"]),
                (403, &json!("FORBIDDEN")),
                "a staff key on {path}: {body}"
            );
        }
        let (status, body) = service
            .send(
                service
                    .client()
                    .post(format!("{base}/api/webhook"))
                    .bearer_auth(staff_key)
                    .body(alert.clone()),
            )
            .await;
        assert_invalid_token("a staff key as Bearer on the webhook", status, &body);
    }
    for path in [AUDIT, VERIFY] {
        let (status, body) = trail.get(&alice.api_key, path, &[]).await;
        assert_eq!(
            (status, &body["code"]),
            (403, &json!("FORBIDDEN")),
            "a trader's API key on {path}: {body}"
        );
        for (case, credential) in [
            ("a webhook token", alice.webhook_token.as_str()),
            ("a two-factor secret", alice.webhook_secret.as_str()),
            (
                "a staff key with a trader prefix",
                &format!("lhk_{}", &trail.compliance_key[4..]),
            ),
            (
                "a staff key with one character changed",
                &format!("{}0", &trail.compliance_key[..67]),
            ),
            ("garbage", "lhs_"),
        ] {
            if credential == trail.compliance_key {
                continue;
            }
            let (status, body) = trail.get(credential, path, &[]).await;
            assert_invalid_token(&format!("{case} on {path}"), status, &body);
        }
        let (status, body) = service
            .send(service.client().get(format!("{base}{path}")))
            .await;
        assert_invalid_token(&format!("no credential on {path}"), status, &body);
    }
    // A disabled staff member's key stops working at once, in the running service.
    crate::support::service::cli(&trail.test.url, &["staff", "disable", &trail.compliance_id])
        .await;
    let (status, body) = trail.get(&trail.compliance_key, AUDIT, &[]).await;
    assert_invalid_token("a disabled staff key", status, &body);
    trail.service.stop().await;
}
on_both_stores!(staff_and_trader_credentials_never_open_each_others_doors);

async fn a_trader_reads_only_their_own_trail(backend: Backend) {
    let trail = trail(backend).await;
    for (me, other) in [(&trail.alice, &trail.bob), (&trail.bob, &trail.alice)] {
        let mine = expected_where(&trail.rows, |row| row.account_id == me.user_id);
        assert!(!mine.is_empty());
        assert_eq!(trail.all_pages(&me.api_key, OWN_AUDIT, &[], 3).await, mine);
        // Filters narrow within the account, never beyond it.
        let (status, body) = trail
            .get(
                &me.api_key,
                OWN_AUDIT,
                &[("event_type", "OrderFilled"), ("limit", "1000")],
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["rows"],
            Value::Array(expected_where(&trail.rows, |row| {
                row.account_id == me.user_id && row.event_type == "OrderFilled"
            }))
        );
        let (status, body) = trail
            .get(
                &me.api_key,
                OWN_AUDIT,
                &[("account_id", &me.user_id), ("limit", "1000")],
            )
            .await;
        assert_eq!((status, &body["rows"]), (200, &Value::Array(mine.clone())));
        // Another account's signal finds nothing; naming another account is refused.
        let their_signal = trail
            .rows
            .iter()
            .find(|row| row.account_id == other.user_id)
            .and_then(|row| row.signal_id.clone())
            .expect("the other account has a signal");
        let (status, body) = trail
            .get(&me.api_key, OWN_AUDIT, &[("signal_id", &their_signal)])
            .await;
        assert_eq!((status, &body["rows"]), (200, &json!([])));
        for account in [other.user_id.as_str(), "global"] {
            let (status, body) = trail
                .get(&me.api_key, OWN_AUDIT, &[("account_id", account)])
                .await;
            assert_eq!(
                (status, &body["code"]),
                (403, &json!("FORBIDDEN")),
                "{body}"
            );
        }
        // The exports hold the same rows and nothing else.
        let (status, _, text) = trail
            .get_text(&me.api_key, OWN_AUDIT, &[("format", "jsonl")])
            .await;
        assert_eq!(status, 200);
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        assert_eq!(lines, mine);
        let (_, _, text) = trail
            .get_text(&me.api_key, OWN_AUDIT, &[("format", "csv")])
            .await;
        assert!(!text.contains(&other.user_id) && !text.contains(",global,"));
        assert_eq!(parse_csv(&text).len(), mine.len() + 1);
    }
    // A trader's reads of their own trail are not compliance reads.
    assert!(trail.reads().await.is_empty());
    trail.service.stop().await;
}
on_both_stores!(a_trader_reads_only_their_own_trail);

/// A `/proc/<pid>/status` figure in kB (`VmHWM`: peak resident set; `VmRSS`: now).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Streams a CSV export to the end, counting rows and bytes; the highest VmRSS seen on the way.
async fn stream_csv(http: &reqwest::Client, url: &str, key: &str, pid: u32) -> (u64, u64, u64) {
    let mut response = http
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .expect("the export starts");
    assert_eq!(response.status().as_u16(), 200);
    let (mut lines, mut bytes, mut rss_max_kb, mut chunks) = (0_u64, 0_u64, 0_u64, 0_u64);
    while let Some(chunk) = response.chunk().await.expect("the export streams") {
        bytes += chunk.len() as u64;
        // Payloads hold no line breaks here, so records are lines.
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        chunks += 1;
        if chunks % 64 == 0 {
            rss_max_kb = rss_max_kb.max(proc_status_kb(pid, "VmRSS"));
        }
    }
    (lines, bytes, rss_max_kb)
}

/// The measurement behind benches/README.md, "Compliance export": 1,000,000 audit rows exported
/// as CSV from PostgreSQL through the real binary, with the server's peak RSS before and after.
/// `cargo test --test it compliance::export_a_million_rows -- --ignored --nocapture`
/// (`--release` for the release binary's time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: ~1 min, 1 GB of PostgreSQL; run by hand"]
async fn export_a_million_rows_from_postgres_with_flat_memory() {
    const ROWS: i64 = 1_000_000;
    let test = TestStore::new(Backend::Postgres).await;
    let store = test.open().await;
    let Store::Postgres(pg) = &store else {
        unreachable!("a PostgreSQL test store")
    };
    // Rows shaped like the trail's: ~250-byte payloads, ~100-byte metadata, 1,000 accounts.
    sqlx::query(
        "INSERT INTO audit_log (position, account_id, aggregate_type, sequence, event_type,
             event_version, signal_id, recorded_at, payload, metadata, prev_hash, hash)
         SELECT g, 'account-' || (g % 1000), 'TradingAccount', g / 1000,
                (ARRAY['SignalReceived', 'RiskApproved', 'OrderFilled'])[1 + g % 3], '2.0',
                'signal-' || (g / 3), timestamptz '2024-01-01 00:00:00Z' + g * interval '1 second',
                '{\"OrderFilled\":{\"client_order_id\":\"' || md5(g::text) || '\",\"market\":\"BTC-USD\",'
                    || '\"side\":\"buy\",\"size\":\"0.0100\",\"price\":\"65000.5\",\"fee_usd\":\"0.3250\",'
                    || '\"exchange_order_id\":\"paper-' || g || '\",\"filled_at\":\"2024-01-01T00:00:00Z\"}}',
                '{\"actor\":\"webhook\",\"recorded_at\":\"2024-01-01T00:00:00+00:00\",\"request_id\":\"'
                    || md5((g + 1)::text) || '\"}',
                lpad(to_hex(g - 1), 64, '0'), lpad(to_hex(g), 64, '0')
           FROM generate_series(1, $1) AS g",
    )
    .bind(ROWS)
    .execute(pg.pool())
    .await
    .expect("a million audit rows");
    sqlx::query("ANALYZE audit_log")
        .execute(pg.pool())
        .await
        .expect("statistics");
    let (_, key) = create_staff(&test.url, "Bench Compliance", "compliance").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let pid = service.pid().expect("the service runs");
    let http = reqwest::Client::new();
    let url = format!("{}{AUDIT}?format=csv", service.base_url);

    let started_kb = proc_status_kb(pid, "VmHWM");
    let small = format!("{url}&account_id=account-7");
    let (small_lines, _, _) = stream_csv(&http, &small, &key, pid).await;
    assert_eq!(small_lines, 1 + 1000);
    let after_small_kb = proc_status_kb(pid, "VmHWM");

    let clock = std::time::Instant::now();
    let (lines, bytes, rss_max_kb) = stream_csv(&http, &url, &key, pid).await;
    let elapsed = clock.elapsed();
    let after_full_kb = proc_status_kb(pid, "VmHWM");
    assert_eq!(lines, 1 + ROWS as u64, "a header and every row");

    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "compliance export, PostgreSQL, {} build: {ROWS} rows, {:.0} MiB of CSV in {:.1} s \
         ({:.0} rows/s, {:.1} MiB/s); server VmHWM {:.1} MiB at start, {:.1} MiB after a \
         1,000-row export, {:.1} MiB after the 1,000,000-row export (VmRSS max seen while \
         streaming {:.1} MiB)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        mib(bytes / 1024),
        elapsed.as_secs_f64(),
        ROWS as f64 / elapsed.as_secs_f64(),
        mib(bytes / 1024) / elapsed.as_secs_f64(),
        mib(started_kb),
        mib(after_small_kb),
        mib(after_full_kb),
        mib(rss_max_kb),
    );
    // Flat: the full export may not cost more than a few pages beyond the small one.
    assert!(
        after_full_kb < after_small_kb + 64 * 1024,
        "peak RSS grew from {after_small_kb} kB to {after_full_kb} kB"
    );
    service.stop().await;
}
