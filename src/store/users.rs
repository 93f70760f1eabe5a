//! What the store keeps of users and their credentials: digests only, never a secret. One
//! statement text per operation serves both dialects; only PostgreSQL announces changes.

use chrono::{DateTime, Utc};

use super::vault::{put_sealed, upsert_sql};
use super::{decode, CredentialListener, Result, SealedSecret, Store};

/// A user as `users create` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub user_id: String,
    pub display_name: String,
    pub webhook: WebhookDigests,
    pub api_key_sha256: String,
    pub created_at: DateTime<Utc>,
}

/// Both webhook schemes' credentials as stored: the uuid (an identifier) and SHA-256 digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDigests {
    pub webhook_token_sha256: String,
    pub webhook_uuid: String,
    pub webhook_secret_sha256: String,
}

/// A per-user request budget for the rate limiter: `requests` per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_seconds: u32,
}

impl RateLimit {
    /// Seed 000's default, for users without settings of their own.
    pub const SERVICE_DEFAULT: Self = Self {
        requests: 10,
        window_seconds: 60,
    };
}

/// An active (not disabled) user, as a credential resolves to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveUser {
    pub user_id: String,
    /// `None`: the service default applies.
    pub rate_limit: Option<RateLimit>,
}

/// An active user found by webhook uuid, with the digest its secret must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoFactorUser {
    pub user: ActiveUser,
    pub webhook_secret_sha256: String,
}

/// What may be shown about a user's credentials: identifiers and state, no digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub user_id: String,
    pub display_name: String,
    /// `None` for users created before two-factor credentials existed and not yet rotated.
    pub webhook_uuid: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<RateLimit>,
}

/// One active user's credential digests, as the authenticator's index of known credentials holds
/// them (so an unknown credential is refused without a query). `None`: not issued yet.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CredentialDigests {
    pub webhook_token_sha256: Option<String>,
    pub webhook_uuid: Option<String>,
    pub webhook_secret_sha256: Option<String>,
    pub api_key_sha256: Option<String>,
}

/// The PostgreSQL channel that every credential change is announced on (payload: the user id), so
/// that each service instance drops what it remembers of credentials.
pub const CREDENTIALS_CHANGED_CHANNEL: &str = "ledgerhook_credentials_changed";

/// Users and staff: `Store::credentials`.
pub struct Credentials<'a> {
    pub(super) store: &'a Store,
}

/// A user's rate-limit columns and whatever else a query selects beside them.
#[derive(sqlx::FromRow)]
struct UserRow {
    user_id: String,
    rate_limit_requests: Option<i64>,
    rate_limit_window_seconds: Option<i64>,
    #[sqlx(default)]
    webhook_secret_sha256: Option<String>,
    #[sqlx(default)]
    display_name: String,
    #[sqlx(default)]
    webhook_uuid: Option<String>,
    #[sqlx(default)]
    disabled_at: Option<DateTime<Utc>>,
}

impl UserRow {
    /// Both columns or neither (the migration's check keeps them whole, and positive).
    fn rate_limit(&self) -> Result<Option<RateLimit>> {
        let positive = |what, value: i64| -> Result<u32> {
            let value: u32 = decode::int(what, value)?;
            if value == 0 {
                return Err(decode::error(what, value));
            }
            Ok(value)
        };
        match (self.rate_limit_requests, self.rate_limit_window_seconds) {
            (Some(requests), Some(window)) => Ok(Some(RateLimit {
                requests: positive("a rate limit's requests", requests)?,
                window_seconds: positive("a rate limit's window", window)?,
            })),
            (None, None) => Ok(None),
            (requests, window) => Err(decode::error(
                "a rate limit",
                format!("{requests:?} per {window:?} s"),
            )),
        }
    }

    fn active_user(&self) -> Result<ActiveUser> {
        Ok(ActiveUser {
            user_id: self.user_id.clone(),
            rate_limit: self.rate_limit()?,
        })
    }
}

/// The rate-limit columns are `integer` on PostgreSQL: widened so one decoder reads both.
const ACTIVE_USER_COLUMNS: &str = "user_id, CAST(rate_limit_requests AS BIGINT) AS \
     rate_limit_requests, CAST(rate_limit_window_seconds AS BIGINT) AS rate_limit_window_seconds";

impl Credentials<'_> {
    /// Stores the user and its sealed secrets (webhook token and secret) in one transaction.
    /// Announced on PostgreSQL like every change.
    pub async fn insert_user(&self, user: &NewUser, secrets: &[SealedSecret]) -> Result<()> {
        let sql = self.announced(
            "INSERT INTO users (user_id, display_name, webhook_token_sha256, webhook_uuid,
                                webhook_secret_sha256, api_key_sha256, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        let upsert = upsert_sql(self.store);
        writing!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query(&sql)
                .bind(&user.user_id)
                .bind(&user.display_name)
                .bind(&user.webhook.webhook_token_sha256)
                .bind(&user.webhook.webhook_uuid)
                .bind(&user.webhook.webhook_secret_sha256)
                .bind(&user.api_key_sha256)
                .bind(user.created_at)
                .fetch_all(&mut *transaction)
                .await?;
            for secret in secrets {
                put_sealed!(&upsert, secret, &mut *transaction)?;
            }
            transaction.commit().await?;
        });
        Ok(())
    }

    /// Every user's id, disabled ones too (their positions still need watching), in id order.
    pub async fn user_ids(&self) -> Result<Vec<String>> {
        let sql = "SELECT user_id FROM users ORDER BY user_id";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql).fetch_all(pool).await?))
    }

    /// Every active user's credential digests, at most `limit` of them.
    pub async fn active_credential_digests(&self, limit: i64) -> Result<Vec<CredentialDigests>> {
        let sql = "SELECT webhook_token_sha256, webhook_uuid, webhook_secret_sha256, api_key_sha256
                     FROM users WHERE disabled_at IS NULL LIMIT $1";
        Ok(reading!(self.store, pool => sqlx::query_as(sql).bind(limit).fetch_all(pool).await?))
    }

    /// A number that changes with every change to `users` by any process and any path (bumped by
    /// a trigger: migration 0007 on SQLite, 0008 on PostgreSQL).
    pub async fn version(&self) -> Result<i64> {
        let sql = "SELECT version FROM credentials_version WHERE id = 1";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql).fetch_one(pool).await?))
    }

    /// The active user whose webhook token has this SHA-256.
    pub async fn active_user_by_token_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        self.active_user("webhook_token_sha256", digest).await
    }

    /// The active user whose API key has this SHA-256.
    pub async fn active_user_by_api_key_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        self.active_user("api_key_sha256", digest).await
    }

    /// `column` is one of the two digest columns above, never input.
    async fn active_user(&self, column: &str, digest: &str) -> Result<Option<ActiveUser>> {
        let sql = format!(
            "SELECT {ACTIVE_USER_COLUMNS} FROM users WHERE {column} = $1 AND disabled_at IS NULL"
        );
        let row: Option<UserRow> = reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(digest)
            .fetch_optional(pool)
            .await?);
        row.as_ref().map(UserRow::active_user).transpose()
    }

    /// The active user with this webhook uuid, and the digest its secret must match.
    pub async fn active_user_by_webhook_uuid(&self, uuid: &str) -> Result<Option<TwoFactorUser>> {
        let sql = format!(
            "SELECT {ACTIVE_USER_COLUMNS}, webhook_secret_sha256 FROM users
              WHERE webhook_uuid = $1 AND disabled_at IS NULL"
        );
        let row: Option<UserRow> = reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(uuid)
            .fetch_optional(pool)
            .await?);
        row.map(|row| {
            Ok(TwoFactorUser {
                user: row.active_user()?,
                webhook_secret_sha256: row
                    .webhook_secret_sha256
                    .ok_or_else(|| decode::error("a webhook secret digest", "NULL"))?,
            })
        })
        .transpose()
    }

    pub async fn user_profile(&self, user_id: &str) -> Result<Option<UserProfile>> {
        let sql = format!(
            "SELECT {ACTIVE_USER_COLUMNS}, display_name, webhook_uuid, disabled_at
               FROM users WHERE user_id = $1"
        );
        let row: Option<UserRow> = reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(user_id)
            .fetch_optional(pool)
            .await?);
        row.map(|row| {
            Ok(UserProfile {
                rate_limit: row.rate_limit()?,
                user_id: row.user_id,
                display_name: row.display_name,
                webhook_uuid: row.webhook_uuid,
                disabled_at: row.disabled_at,
            })
        })
        .transpose()
    }

    // Every change below is one statement; on PostgreSQL it also announces itself: NOTIFY is
    // delivered when (and only if) the change commits, so no instance can miss a committed change
    // while its listener is up, nor hear of one that rolled back (what remembered credentials
    // rely on). The embedded store announces nothing: its one service remembers no user. Neither
    // store's index of known credentials relies on announcements: it rereads `version`.

    /// Replaces the token, uuid and secret at once, with their sealed copies in the same
    /// transaction (the URL shown again is always the one that works); `false` if there is no
    /// such user (nothing written).
    pub async fn replace_webhook_credentials(
        &self,
        user_id: &str,
        webhook: &WebhookDigests,
        secrets: &[SealedSecret],
    ) -> Result<bool> {
        let sql = self.announced(
            "UPDATE users SET webhook_token_sha256 = $2, webhook_uuid = $3,
                              webhook_secret_sha256 = $4
              WHERE user_id = $1",
        );
        let upsert = upsert_sql(self.store);
        let changed = writing!(self.store, pool => {
            let mut transaction = pool.begin().await?;
            let changed = sqlx::query(&sql)
                .bind(user_id)
                .bind(&webhook.webhook_token_sha256)
                .bind(&webhook.webhook_uuid)
                .bind(&webhook.webhook_secret_sha256)
                .fetch_all(&mut *transaction)
                .await?
                .len();
            if changed == 1 {
                for secret in secrets {
                    put_sealed!(&upsert, secret, &mut *transaction)?;
                }
                transaction.commit().await?;
            }
            changed
        });
        Ok(changed == 1)
    }

    /// Replaces the API key; `false` if there is no such user.
    pub async fn replace_api_key(&self, user_id: &str, api_key_sha256: &str) -> Result<bool> {
        let sql = self.announced("UPDATE users SET api_key_sha256 = $2 WHERE user_id = $1");
        let changed = writing!(self.store, pool => sqlx::query(&sql)
            .bind(user_id)
            .bind(api_key_sha256)
            .fetch_all(pool)
            .await?
            .len());
        Ok(changed == 1)
    }

    /// Marks the user disabled (kept at the first time if already); `false` if there is no such
    /// user.
    pub async fn disable_user(&self, user_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let sql = self.announced(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE user_id = $1",
        );
        let changed = writing!(self.store, pool => sqlx::query(&sql)
            .bind(user_id)
            .bind(at)
            .fetch_all(pool)
            .await?
            .len());
        Ok(changed == 1)
    }

    /// Sets (or, with `None`, clears) the user's rate limit; `false` if there is no such user.
    /// Announced, since the authenticated user carries it.
    pub async fn set_rate_limit(&self, user_id: &str, limit: Option<RateLimit>) -> Result<bool> {
        let sql = self.announced(
            "UPDATE users SET rate_limit_requests = CAST($2 AS INTEGER),
                              rate_limit_window_seconds = CAST($3 AS INTEGER)
              WHERE user_id = $1",
        );
        let changed = writing!(self.store, pool => sqlx::query(&sql)
            .bind(user_id)
            .bind(limit.map(|l| i64::from(l.requests)))
            .bind(limit.map(|l| i64::from(l.window_seconds)))
            .fetch_all(pool)
            .await?
            .len());
        Ok(changed == 1)
    }

    /// Sets where the user's signals trade (`paper` or `dydx`); `false` if there is no such user.
    pub async fn set_venue(&self, user_id: &str, venue: &str) -> Result<bool> {
        let sql = "UPDATE users SET venue = $2 WHERE user_id = $1 RETURNING user_id";
        let changed = writing!(self.store, pool => sqlx::query(sql)
            .bind(user_id)
            .bind(venue)
            .fetch_all(pool)
            .await?
            .len());
        Ok(changed == 1)
    }

    /// Where the user's signals trade; `None` if there is no such user.
    pub async fn venue_of(&self, user_id: &str) -> Result<Option<String>> {
        let sql = "SELECT venue FROM users WHERE user_id = $1";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql)
            .bind(user_id)
            .fetch_optional(pool)
            .await?))
    }

    /// Where each of `user_ids` trades, in one query whatever their number (a page of orders asks
    /// once, not once per order); users that do not exist are left out.
    pub async fn venues_of(&self, user_ids: &[&str]) -> Result<Vec<(String, String)>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match self.store {
            Store::Postgres(store) => {
                let sql = "SELECT user_id, venue FROM users WHERE user_id = ANY($1)";
                sqlx::query_as(sql)
                    .bind(user_ids)
                    .fetch_all(store.pool())
                    .await?
            }
            Store::Sqlite(_) => {
                // One statement text for any number of ids: the list goes as one JSON array.
                let sql = "SELECT user_id, venue FROM users
                            WHERE user_id IN (SELECT value FROM json_each($1))";
                let ids = serde_json::Value::from(user_ids.to_vec()).to_string();
                reading!(self.store, pool => sqlx::query_as(sql)
                    .bind(ids)
                    .fetch_all(pool)
                    .await?)
            }
        })
    }

    /// A listener for credential changes made by any process: `None` on SQLite, which has no
    /// announcements.
    pub async fn listen_for_changes(&self) -> Result<Option<CredentialListener>> {
        match self.store {
            Store::Postgres(store) => Ok(Some(store.listen_for_credential_changes().await?)),
            Store::Sqlite(_) => Ok(None),
        }
    }

    pub async fn count_users(&self) -> Result<i64> {
        let sql = "SELECT count(*) FROM users";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql).fetch_one(pool).await?))
    }

    /// `change` returning one row per changed user: on PostgreSQL each row is the NOTIFY of
    /// `CREDENTIALS_CHANGED_CHANNEL`, sent as the statement commits.
    fn announced(&self, change: &str) -> String {
        match self.store {
            Store::Postgres(_) => format!(
                "WITH changed AS ({change} RETURNING user_id)
                 SELECT pg_notify('{CREDENTIALS_CHANGED_CHANNEL}', user_id) FROM changed"
            ),
            Store::Sqlite(_) => format!("{change} RETURNING user_id"),
        }
    }
}
