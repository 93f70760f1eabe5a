//! Audit rows written straight into `audit_log` (the audit writer is another workstream's), and
//! staff created by the real CLI.

use chrono::{DateTime, Utc};
use serde_json::Value;

use ledgerhook::store::{recorded_at_text, AuditRow, Store};

use super::service::cli;

/// A row to put in the trail; the hashes are placeholders (these tests do not verify the chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRow {
    pub position: i64,
    pub account_id: String,
    pub event_type: String,
    pub signal_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub payload: String,
}

impl SeedRow {
    pub fn metadata(&self) -> String {
        format!(r#"{{"actor":"test","recorded_at":"{}"}}"#, self.recorded_at)
    }

    pub fn hash(&self) -> String {
        format!("{:064x}", self.position)
    }

    pub fn prev_hash(&self) -> String {
        format!("{:064x}", self.position - 1)
    }
}

pub async fn insert_audit_rows(store: &Store, rows: &[SeedRow]) {
    for row in rows {
        let aggregate_type = if row.account_id == "global" {
            "EmergencyStop"
        } else {
            "TradingAccount"
        };
        let done = match store {
            Store::Postgres(pg) => sqlx::query(
                "INSERT INTO audit_log (position, account_id, aggregate_type, sequence,
                     event_type, event_version, signal_id, recorded_at, payload, metadata,
                     prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, '2.0', $6, $7, $8, $9, $10, $11)",
            )
            .bind(row.position)
            .bind(&row.account_id)
            .bind(aggregate_type)
            .bind(row.position)
            .bind(&row.event_type)
            .bind(&row.signal_id)
            .bind(row.recorded_at)
            .bind(&row.payload)
            .bind(row.metadata())
            .bind(row.prev_hash())
            .bind(row.hash())
            .execute(pg.pool())
            .await
            .map(|_| ()),
            Store::Sqlite(lite) => sqlx::query(
                "INSERT INTO audit_log (position, account_id, aggregate_type, sequence,
                     event_type, event_version, signal_id, recorded_at, payload, metadata,
                     prev_hash, hash)
                 VALUES (?, ?, ?, ?, ?, '2.0', ?, ?, ?, ?, ?, ?)",
            )
            .bind(row.position)
            .bind(&row.account_id)
            .bind(aggregate_type)
            .bind(row.position)
            .bind(&row.event_type)
            .bind(&row.signal_id)
            .bind(recorded_at_text(row.recorded_at))
            .bind(&row.payload)
            .bind(row.metadata())
            .bind(row.prev_hash())
            .bind(row.hash())
            .execute(lite.pool())
            .await
            .map(|_| ()),
        };
        done.expect("an audit row is inserted");
    }
}

/// Which placeholders a statement is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// `INSERT INTO audit_log` of every column of an `AuditRow`, in `bind_audit_row`'s order.
pub fn insert_audit_row_sql(dialect: Dialect) -> String {
    let values = match dialect {
        Dialect::Postgres => "$1, $2, $3, $4, $5, $6, $7, $8::timestamptz, $9, $10, $11, $12",
        Dialect::Sqlite => "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?",
    };
    format!(
        "INSERT INTO audit_log (position, account_id, aggregate_type, sequence, event_type,
                                event_version, signal_id, recorded_at, payload, metadata,
                                prev_hash, hash) VALUES ({values})"
    )
}

/// Binds `row`, column by column, to `insert_audit_row_sql`'s statement.
pub fn bind_audit_row<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    row: &'q AuditRow,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(row.position)
        .bind(row.account_id.as_str())
        .bind(row.aggregate_type.as_str())
        .bind(row.sequence)
        .bind(row.event_type.as_str())
        .bind(row.event_version.as_str())
        .bind(row.signal_id.as_deref())
        .bind(row.recorded_at.as_str())
        .bind(row.payload.as_str())
        .bind(row.metadata.as_str())
        .bind(row.prev_hash.as_str())
        .bind(row.hash.as_str())
}

/// `ledgerhook staff create --name NAME --role ROLE --json`: (staff_id, api_key).
pub async fn create_staff(database_url: &str, name: &str, role: &str) -> (String, String) {
    let out = cli(
        database_url,
        &["staff", "create", "--name", name, "--role", role, "--json"],
    )
    .await;
    let json: Value = serde_json::from_str(out.trim()).expect("staff create prints JSON");
    let field = |name: &str| {
        json[name]
            .as_str()
            .unwrap_or_else(|| panic!("staff create prints {name}: {json}"))
            .to_owned()
    };
    assert_eq!(
        json.as_object().map(|object| object.len()),
        Some(2),
        "{json}"
    );
    (field("staff_id"), field("api_key"))
}
