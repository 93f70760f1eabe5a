//! What the store keeps of staff (digests only, never a key) and the append-only record of
//! compliance reads. On SQLite every write here joins the one writer queue, like every other.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Result, Store};

/// A staff member as `staff create` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStaff {
    pub staff_id: String,
    pub display_name: String,
    /// `compliance` or `operator` (the migration's check refuses anything else).
    pub role: String,
    pub api_key_sha256: String,
    pub created_at: DateTime<Utc>,
}

/// An active (not disabled) staff member, as a credential resolves to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveStaff {
    pub staff_id: String,
    pub display_name: String,
    pub role: String,
}

/// One compliance read: who, which endpoint, with which filter, when.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceRead {
    pub staff_id: String,
    pub endpoint: String,
    pub filter: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl Store {
    pub async fn insert_staff(&self, staff: &NewStaff) -> Result<()> {
        match self {
            Store::Postgres(store) => {
                sqlx::query(
                    "INSERT INTO staff (staff_id, display_name, role, api_key_sha256, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&staff.staff_id)
                .bind(&staff.display_name)
                .bind(&staff.role)
                .bind(&staff.api_key_sha256)
                .bind(staff.created_at)
                .execute(store.pool())
                .await?;
            }
            Store::Sqlite(store) => {
                let _writing = store.lock_writer().await;
                sqlx::query(
                    "INSERT INTO staff (staff_id, display_name, role, api_key_sha256, created_at)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&staff.staff_id)
                .bind(&staff.display_name)
                .bind(&staff.role)
                .bind(&staff.api_key_sha256)
                .bind(staff.created_at.to_rfc3339())
                .execute(store.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// The active staff member whose API key has this SHA-256. Not cached anywhere: a disabled
    /// key fails on its next request, in every process.
    pub async fn active_staff_by_api_key_sha256(
        &self,
        digest: &str,
    ) -> Result<Option<ActiveStaff>> {
        let found = match self {
            Store::Postgres(store) => sqlx::query(
                "SELECT staff_id, display_name, role FROM staff
                  WHERE api_key_sha256 = $1 AND disabled_at IS NULL",
            )
            .bind(digest)
            .fetch_optional(store.pool())
            .await?
            .map(|row| active_staff(&row))
            .transpose()?,
            Store::Sqlite(store) => sqlx::query(
                "SELECT staff_id, display_name, role FROM staff
                  WHERE api_key_sha256 = ? AND disabled_at IS NULL",
            )
            .bind(digest)
            .fetch_optional(store.pool())
            .await?
            .map(|row| active_staff(&row))
            .transpose()?,
        };
        Ok(found)
    }

    /// Marks the staff member disabled (kept at the first time if already); `false` if there is
    /// no such staff member.
    pub async fn disable_staff(&self, staff_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let changed = match self {
            Store::Postgres(store) => sqlx::query(
                "UPDATE staff SET disabled_at = COALESCE(disabled_at, $2) WHERE staff_id = $1",
            )
            .bind(staff_id)
            .bind(at)
            .execute(store.pool())
            .await?
            .rows_affected(),
            Store::Sqlite(store) => {
                let _writing = store.lock_writer().await;
                sqlx::query(
                    "UPDATE staff SET disabled_at = COALESCE(disabled_at, ?) WHERE staff_id = ?",
                )
                .bind(at.to_rfc3339())
                .bind(staff_id)
                .execute(store.pool())
                .await?
                .rows_affected()
            }
        };
        Ok(changed == 1)
    }

    /// Appends one compliance read; it is durable when this returns.
    pub async fn record_compliance_read(&self, read: &ComplianceRead) -> Result<()> {
        let filter = read.filter.to_string();
        match self {
            Store::Postgres(store) => {
                sqlx::query(
                    "INSERT INTO compliance_reads (staff_id, endpoint, filter, at)
                     VALUES ($1, $2, $3::jsonb, $4)",
                )
                .bind(&read.staff_id)
                .bind(&read.endpoint)
                .bind(filter)
                .bind(read.at)
                .execute(store.pool())
                .await?;
            }
            Store::Sqlite(store) => {
                let _writing = store.lock_writer().await;
                sqlx::query(
                    "INSERT INTO compliance_reads (staff_id, endpoint, filter, at)
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&read.staff_id)
                .bind(&read.endpoint)
                .bind(filter)
                .bind(read.at.to_rfc3339())
                .execute(store.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// Every compliance read, oldest first.
    pub async fn compliance_reads(&self) -> Result<Vec<ComplianceRead>> {
        match self {
            Store::Postgres(store) => sqlx::query(
                "SELECT staff_id, endpoint, filter::text AS filter, at
                   FROM compliance_reads ORDER BY id",
            )
            .fetch_all(store.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(ComplianceRead {
                    staff_id: row.try_get("staff_id")?,
                    endpoint: row.try_get("endpoint")?,
                    filter: parse_json(row.try_get("filter")?)?,
                    at: row.try_get("at")?,
                })
            })
            .collect(),
            Store::Sqlite(store) => sqlx::query(
                "SELECT staff_id, endpoint, filter, at FROM compliance_reads ORDER BY id",
            )
            .fetch_all(store.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(ComplianceRead {
                    staff_id: row.try_get("staff_id")?,
                    endpoint: row.try_get("endpoint")?,
                    filter: parse_json(row.try_get("filter")?)?,
                    at: super::audit_queries::parse_time(row.try_get("at")?)?,
                })
            })
            .collect(),
        }
    }
}

fn active_staff<R: Row>(row: &R) -> Result<ActiveStaff>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ActiveStaff {
        staff_id: row.try_get("staff_id")?,
        display_name: row.try_get("display_name")?,
        role: row.try_get("role")?,
    })
}

fn parse_json(text: String) -> Result<serde_json::Value> {
    serde_json::from_str(&text)
        .map_err(|error| super::StoreError::Database(sqlx::Error::Decode(Box::new(error))))
}
