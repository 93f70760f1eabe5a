//! What the store keeps of staff (digests only, never a key) and the append-only record of
//! compliance reads. On SQLite every write here joins the one writer queue, like every other.

use chrono::{DateTime, Utc};

use super::{Credentials, Result};

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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveStaff {
    pub staff_id: String,
    pub display_name: String,
    pub role: String,
}

/// One compliance read: who, which endpoint, with which filter, when.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ComplianceRead {
    pub staff_id: String,
    pub endpoint: String,
    pub filter: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl Credentials<'_> {
    pub async fn insert_staff(&self, staff: &NewStaff) -> Result<()> {
        self.insert_staff_with_login(staff, None).await
    }

    /// Inserts the staff member and, with `login = Some((login, password_hash))`, their
    /// dashboard sign-in, in one statement: a taken login creates no one.
    pub async fn insert_staff_with_login(
        &self,
        staff: &NewStaff,
        login: Option<(&str, &str)>,
    ) -> Result<()> {
        let sql = "INSERT INTO staff (staff_id, display_name, role, api_key_sha256, created_at,
                                      login, password_hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        writing!(self.store, pool => sqlx::query(sql)
            .bind(&staff.staff_id)
            .bind(&staff.display_name)
            .bind(&staff.role)
            .bind(&staff.api_key_sha256)
            .bind(staff.created_at)
            .bind(login.map(|(login, _)| login))
            .bind(login.map(|(_, hash)| hash))
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The active staff member whose API key has this SHA-256. Not cached anywhere: a disabled
    /// key fails on its next request, in every process.
    pub async fn active_staff_by_api_key_sha256(
        &self,
        digest: &str,
    ) -> Result<Option<ActiveStaff>> {
        let sql = "SELECT staff_id, display_name, role FROM staff
                    WHERE api_key_sha256 = $1 AND disabled_at IS NULL";
        Ok(reading!(self.store, pool => sqlx::query_as(sql)
            .bind(digest)
            .fetch_optional(pool)
            .await?))
    }

    /// The active staff member with this id (a session names them by id).
    pub async fn active_staff_by_id(&self, staff_id: &str) -> Result<Option<ActiveStaff>> {
        let sql = "SELECT staff_id, display_name, role FROM staff
                    WHERE staff_id = $1 AND disabled_at IS NULL";
        Ok(reading!(self.store, pool => sqlx::query_as(sql)
            .bind(staff_id)
            .fetch_optional(pool)
            .await?))
    }

    /// Marks the staff member disabled (kept at the first time if already); `false` if there is
    /// no such staff member.
    pub async fn disable_staff(&self, staff_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE staff SET disabled_at = COALESCE(disabled_at, $2) WHERE staff_id = $1";
        let changed = writing!(self.store, pool => sqlx::query(sql)
            .bind(staff_id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(changed == 1)
    }

    /// Appends one compliance read; it is durable when this returns.
    pub async fn record_compliance_read(&self, read: &ComplianceRead) -> Result<()> {
        let sql = "INSERT INTO compliance_reads (staff_id, endpoint, filter, at)
                   VALUES ($1, $2, $3, $4)";
        writing!(self.store, pool => sqlx::query(sql)
            .bind(&read.staff_id)
            .bind(&read.endpoint)
            .bind(&read.filter)
            .bind(read.at)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Every compliance read, oldest first.
    pub async fn compliance_reads(&self) -> Result<Vec<ComplianceRead>> {
        let sql = "SELECT staff_id, endpoint, filter, at FROM compliance_reads ORDER BY id";
        Ok(reading!(self.store, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }
}
