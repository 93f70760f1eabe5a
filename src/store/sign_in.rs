//! What sign-in keeps: the wallets that have an account, the nonces handed out for them to sign,
//! staff passwords (argon2id PHC strings, never a password) and sessions (SHA-256 of the token,
//! never the token). Times of nonces and sessions are unix milliseconds, so both stores compare
//! them in SQL the same way.

use chrono::{DateTime, Utc};

use super::{ActiveStaff, Result, Store};

pub struct SignIn<'a> {
    pub(super) store: &'a Store,
}

/// Whose a session is: a trader's account or a staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSubject {
    Trader { user_id: String },
    Staff { staff_id: String },
}

/// A session that is live: not revoked, not expired, its owner not disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub subject: SessionSubject,
    pub expires_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: Option<String>,
    staff_id: Option<String>,
    expires_at_ms: i64,
}

/// A staff member who may sign in with a password, and its hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StaffPassword {
    pub staff_id: String,
    pub display_name: String,
    pub role: String,
    pub password_hash: String,
}

impl StaffPassword {
    pub fn into_active(self) -> ActiveStaff {
        ActiveStaff {
            staff_id: self.staff_id,
            display_name: self.display_name,
            role: self.role,
        }
    }
}

impl SignIn<'_> {
    /// Records a nonce for `address`, first deleting every expired one. `false` (nothing
    /// recorded) when `max_outstanding` unexpired nonces already wait: the table is bounded
    /// whoever asks.
    pub async fn issue_nonce(
        &self,
        nonce: &str,
        address: &str,
        issued_at_ms: i64,
        expires_at_ms: i64,
        max_outstanding: i64,
    ) -> Result<bool> {
        writing!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query("DELETE FROM sign_in_nonces WHERE expires_at_ms <= $1")
                .bind(issued_at_ms)
                .execute(&mut *transaction)
                .await?;
            let outstanding: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_nonces")
                .fetch_one(&mut *transaction)
                .await?;
            if outstanding >= max_outstanding {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO sign_in_nonces (nonce, address, issued_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(nonce)
            .bind(address)
            .bind(issued_at_ms)
            .bind(expires_at_ms)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
        });
        Ok(true)
    }

    /// Uses the nonce: `true` if it was issued for `address`, not used before and not expired at
    /// `now_ms`. One statement, so two requests racing with one nonce cannot both win; another
    /// address's message cannot use it up.
    pub async fn consume_nonce(&self, nonce: &str, address: &str, now_ms: i64) -> Result<bool> {
        let sql = "UPDATE sign_in_nonces SET used_at_ms = $3
                    WHERE nonce = $1 AND address = $2 AND used_at_ms IS NULL
                      AND expires_at_ms > $3";
        let used = writing!(self.store, pool => sqlx::query(sql)
            .bind(nonce)
            .bind(address)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(used == 1)
    }

    /// Nonces issued and not yet expired at `now_ms` (used or not).
    pub async fn outstanding_nonces(&self, now_ms: i64) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM sign_in_nonces WHERE expires_at_ms > $1";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql)
            .bind(now_ms)
            .fetch_one(pool)
            .await?))
    }

    /// Links `address` (lowercase) to `user_id`; `false` if it was linked already.
    pub async fn link_wallet(
        &self,
        address: &str,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = "INSERT INTO wallet_accounts (address, user_id, created_at) VALUES ($1, $2, $3)
                   ON CONFLICT (address) DO NOTHING";
        let inserted = writing!(self.store, pool => sqlx::query(sql)
            .bind(address)
            .bind(user_id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(inserted == 1)
    }

    pub async fn wallet_user(&self, address: &str) -> Result<Option<String>> {
        let sql = "SELECT user_id FROM wallet_accounts WHERE address = $1";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql)
            .bind(address)
            .fetch_optional(pool)
            .await?))
    }

    /// Gives the staff member a login and password hash; `false` if there is no such member.
    pub async fn set_staff_password(
        &self,
        staff_id: &str,
        login: &str,
        password_hash: &str,
    ) -> Result<bool> {
        let sql = "UPDATE staff SET login = $2, password_hash = $3 WHERE staff_id = $1";
        let changed = writing!(self.store, pool => sqlx::query(sql)
            .bind(staff_id)
            .bind(login)
            .bind(password_hash)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(changed == 1)
    }

    /// The active staff member who signs in as `login`, with their hash.
    pub async fn staff_password(&self, login: &str) -> Result<Option<StaffPassword>> {
        let sql = "SELECT staff_id, display_name, role, password_hash FROM staff
                    WHERE login = $1 AND password_hash IS NOT NULL AND disabled_at IS NULL";
        Ok(reading!(self.store, pool => sqlx::query_as(sql)
            .bind(login)
            .fetch_optional(pool)
            .await?))
    }

    pub async fn insert_session(
        &self,
        token_sha256: &str,
        subject: &SessionSubject,
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        let (user_id, staff_id) = match subject {
            SessionSubject::Trader { user_id } => (Some(user_id.as_str()), None),
            SessionSubject::Staff { staff_id } => (None, Some(staff_id.as_str())),
        };
        let sql = "INSERT INTO sessions (token_sha256, user_id, staff_id, created_at_ms,
                                         expires_at_ms)
                   VALUES ($1, $2, $3, $4, $5)";
        writing!(self.store, pool => sqlx::query(sql)
            .bind(token_sha256)
            .bind(user_id)
            .bind(staff_id)
            .bind(created_at_ms)
            .bind(expires_at_ms)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The session with this token digest if it is live at `now_ms`: not revoked, not expired,
    /// and its trader or staff member not disabled (disabling ends every session at once).
    pub async fn live_session(
        &self,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<Option<LiveSession>> {
        let sql = "SELECT s.user_id, s.staff_id, s.expires_at_ms FROM sessions s
                     LEFT JOIN users u ON u.user_id = s.user_id
                     LEFT JOIN staff m ON m.staff_id = s.staff_id
                    WHERE s.token_sha256 = $1 AND s.revoked_at_ms IS NULL
                      AND s.expires_at_ms > $2
                      AND ((s.user_id IS NOT NULL AND u.user_id IS NOT NULL
                            AND u.disabled_at IS NULL)
                        OR (s.staff_id IS NOT NULL AND m.disabled_at IS NULL))";
        let row: Option<SessionRow> = reading!(self.store, pool => sqlx::query_as(sql)
            .bind(token_sha256)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?);
        Ok(row.and_then(|row| {
            let subject = match (row.user_id, row.staff_id) {
                (Some(user_id), None) => SessionSubject::Trader { user_id },
                (None, Some(staff_id)) => SessionSubject::Staff { staff_id },
                _ => return None,
            };
            Some(LiveSession {
                subject,
                expires_at_ms: row.expires_at_ms,
            })
        }))
    }

    /// Moves a live session's expiry forward (never back).
    pub async fn extend_session(&self, token_sha256: &str, expires_at_ms: i64) -> Result<()> {
        let sql = "UPDATE sessions SET expires_at_ms = $2
                    WHERE token_sha256 = $1 AND revoked_at_ms IS NULL AND expires_at_ms < $2";
        writing!(self.store, pool => sqlx::query(sql)
            .bind(token_sha256)
            .bind(expires_at_ms)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Ends the session; `false` if it was not live.
    pub async fn revoke_session(&self, token_sha256: &str, now_ms: i64) -> Result<bool> {
        let sql = "UPDATE sessions SET revoked_at_ms = $2
                    WHERE token_sha256 = $1 AND revoked_at_ms IS NULL";
        let changed = writing!(self.store, pool => sqlx::query(sql)
            .bind(token_sha256)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(changed == 1)
    }
}
