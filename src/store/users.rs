//! What the store keeps of users and their credentials: digests only, never a secret.

use chrono::{DateTime, Utc};

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

    /// Both columns or neither: the migration's check keeps them whole; anything else (a value
    /// out of range) reads as "no setting", so the service default applies.
    pub(super) fn from_columns(requests: Option<i64>, window_seconds: Option<i64>) -> Option<Self> {
        Some(Self {
            requests: u32::try_from(requests?).ok().filter(|n| *n > 0)?,
            window_seconds: u32::try_from(window_seconds?).ok().filter(|n| *n > 0)?,
        })
    }
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDigests {
    pub webhook_token_sha256: Option<String>,
    pub webhook_uuid: Option<String>,
    pub webhook_secret_sha256: Option<String>,
    pub api_key_sha256: Option<String>,
}

/// Both dialects bind `$1` positionally, so the statement and its decoder are written once.
pub(super) const ACTIVE_CREDENTIAL_DIGESTS: &str = "SELECT webhook_token_sha256, webhook_uuid, \
     webhook_secret_sha256, api_key_sha256 FROM users WHERE disabled_at IS NULL LIMIT $1";

impl CredentialDigests {
    pub(super) fn from_row<R: sqlx::Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'r> &'r str: sqlx::ColumnIndex<R>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Self {
            webhook_token_sha256: row.try_get("webhook_token_sha256")?,
            webhook_uuid: row.try_get("webhook_uuid")?,
            webhook_secret_sha256: row.try_get("webhook_secret_sha256")?,
            api_key_sha256: row.try_get("api_key_sha256")?,
        })
    }
}

/// The PostgreSQL channel that every credential change is announced on (payload: the user id), so
/// that each service instance drops what it remembers of credentials.
pub const CREDENTIALS_CHANGED_CHANNEL: &str = "ledgerhook_credentials_changed";
