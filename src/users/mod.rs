//! Users and their credentials: issuing them (`create_user`, rotation), disabling users, and
//! resolving credentials to users (`Authenticator`). Secrets are shown when issued; the store
//! looks them up by SHA-256 (see `credentials`), and the vault keeps the webhook token and secret
//! encrypted (written in the same transaction) so that the owner can see their URL again.
//!
//! - Per user: a webhook token (scheme 1), a webhook uuid + secret (scheme 2) and an API key
//!   (Bearer, for the trader's own endpoints). Each is 256 random bits. **SHA-256, not argon2:** a
//!   256-bit random value cannot be guessed, so a slow hash would only add latency against
//!   TradingView's 3 s budget; argon2id is for secrets people choose (staff passwords).
//! - **Guesses never reach the database** (`known`): every active user's credential digests (first
//!   128 bits) are held in memory and a credential not there is refused without a query. The
//!   index only refuses, so it must never miss a valid credential: on both stores a trigger counts
//!   every change to `users` (by any process or path) and a miss waits for a read of that counter
//!   begun after it arrived (not `NOTIFY`: it lags the commit). Counter reads and reloads go one at
//!   a time, ≥ 50 ms apart, shared by every waiting miss.
//!   Hard cap 250,000 users (~40 MB); past it the index stands aside and every credential is
//!   looked up. `/metrics` counts credential queries.
//! - Tokens and keys are looked up by digest; the two-factor secret's digest is compared in
//!   constant time (`subtle`), an unknown uuid against a dummy digest. Every failure is one 401.
//! - Webhook credentials that succeeded are remembered in process; on PostgreSQL each service
//!   `LISTEN`s and bypasses memory while the listener is down (fail closed). API keys are never
//!   remembered.
//! - A disabled user fails authentication; a *halted* account still authenticates, and its alerts
//!   are recorded and answered 200 "rejected" with a reason code only (`halted`,
//!   `emergency_stop`, `risk_rejected` + rule, ...): who halted and why stay in the ledger.

mod authenticator;
pub mod credentials;
mod known;
pub mod urls;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use aggregates::{AccountCommand, AccountError, RiskLimits};

pub use self::authenticator::{AuthenticatedUser, Authenticator, Scheme};
pub use self::credentials::WebhookCredentials;
use self::credentials::{generate_api_key, sha256_hex};
use crate::ledger::{EventContext, Ledger, LedgerError};
pub use crate::store::RateLimit;
use crate::store::{NewUser, SealedSecret, Store, StoreError, WebhookDigests};
use crate::vault::{Field, Vault, VaultError};

/// Everything a new user authenticates with, shown once.
#[derive(Clone)]
pub struct Credentials {
    pub user_id: String,
    pub webhook: WebhookCredentials,
    pub api_key: String,
}

// Secrets must not reach a log line through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("webhook", &self.webhook)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Opens the user's account in the ledger first, then stores the credential: a crash in between
/// leaves an account nobody can reach, never a credential without an account.
pub async fn create_user(
    ledger: &Ledger,
    vault: &Vault,
    display_name: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Credentials, UserError> {
    let user_id = Uuid::new_v4().to_string();
    open_account(ledger, vault, &user_id, display_name, actor, now)
        .await?
        .ok_or_else(|| UserError::NoSuchUser(user_id))
}

/// The account of `user_id` opened and given fresh credentials, or `None` if it already has them.
/// Safe to repeat and to race: a second attempt finds the account open (and carries on), or the
/// credentials stored (and gives up its own). Wallet sign-in derives `user_id` from the address,
/// so a sign-in that crashed halfway is completed by the next.
pub async fn open_account(
    ledger: &Ledger,
    vault: &Vault,
    user_id: &str,
    display_name: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<Credentials>, UserError> {
    if ledger
        .store()
        .credentials()
        .user_profile(user_id)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let webhook = WebhookCredentials::generate();
    let api_key = generate_api_key();
    let command = AccountCommand::OpenAccount {
        display_name: display_name.to_owned(),
        limits: RiskLimits::default(),
        opened_at: now,
    };
    match ledger
        .execute(user_id, command, &EventContext::new(actor, now))
        .await
    {
        Ok(_) | Err(LedgerError::Rejected(AccountError::AlreadyOpened)) => {}
        Err(error) => return Err(error.into()),
    }
    let sealed = sealed(vault, user_id, &webhook)?;
    let inserted = ledger
        .store()
        .credentials()
        .insert_user(
            &NewUser {
                user_id: user_id.to_owned(),
                display_name: display_name.to_owned(),
                webhook: digests(&webhook),
                api_key_sha256: sha256_hex(&api_key),
                created_at: now,
            },
            &sealed,
        )
        .await;
    match inserted {
        Ok(()) => Ok(Some(Credentials {
            user_id: user_id.to_owned(),
            webhook,
            api_key,
        })),
        Err(StoreError::Database(sqlx::Error::Database(error))) if error.is_unique_violation() => {
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Issues a new webhook token, uuid and secret; the old ones stop working at once (on
/// PostgreSQL every service instance hears of it as it commits; see `Authenticator`).
pub async fn rotate_webhook(vault: &Vault, user_id: &str) -> Result<WebhookCredentials, UserError> {
    let webhook = WebhookCredentials::generate();
    let sealed = sealed(vault, user_id, &webhook)?;
    found(
        vault
            .store()
            .credentials()
            .replace_webhook_credentials(user_id, &digests(&webhook), &sealed)
            .await?,
        user_id,
    )?;
    Ok(webhook)
}

/// Issues a new API key; the old one stops working at once.
pub async fn rotate_api_key(store: &Store, user_id: &str) -> Result<String, UserError> {
    let api_key = generate_api_key();
    found(
        store
            .credentials()
            .replace_api_key(user_id, &sha256_hex(&api_key))
            .await?,
        user_id,
    )?;
    Ok(api_key)
}

/// Every credential of the user stops working; the account and its ledger stay.
pub async fn disable_user(
    store: &Store,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<(), UserError> {
    found(
        store.credentials().disable_user(user_id, now).await?,
        user_id,
    )
}

/// The user's own request budget, or `None` for the service default.
pub async fn set_rate_limit(
    store: &Store,
    user_id: &str,
    limit: Option<RateLimit>,
) -> Result<(), UserError> {
    found(
        store.credentials().set_rate_limit(user_id, limit).await?,
        user_id,
    )
}

/// The same changes made from inside a service process: they take effect in this process's
/// authenticator before returning, not only once the announcement comes back.
impl Authenticator {
    pub async fn rotate_webhook(
        &self,
        vault: &Vault,
        user_id: &str,
    ) -> Result<WebhookCredentials, UserError> {
        let issued = rotate_webhook(vault, user_id).await;
        self.forget_all();
        issued
    }

    pub async fn disable_user(&self, user_id: &str, now: DateTime<Utc>) -> Result<(), UserError> {
        let disabled = disable_user(self.store(), user_id, now).await;
        self.forget_all();
        disabled
    }

    pub async fn set_rate_limit(
        &self,
        user_id: &str,
        limit: Option<RateLimit>,
    ) -> Result<(), UserError> {
        let set = set_rate_limit(self.store(), user_id, limit).await;
        self.forget_all();
        set
    }
}

fn found(changed: bool, user_id: &str) -> Result<(), UserError> {
    if changed {
        Ok(())
    } else {
        Err(UserError::NoSuchUser(user_id.to_owned()))
    }
}

fn digests(webhook: &WebhookCredentials) -> WebhookDigests {
    WebhookDigests {
        webhook_token_sha256: sha256_hex(&webhook.webhook_token),
        webhook_uuid: webhook.webhook_uuid.to_string(),
        webhook_secret_sha256: sha256_hex(&webhook.webhook_secret),
    }
}

/// The token and the secret sealed for the vault, to be written with the digests.
fn sealed(
    vault: &Vault,
    user_id: &str,
    webhook: &WebhookCredentials,
) -> Result<Vec<SealedSecret>, VaultError> {
    Ok(vec![
        vault.seal_only(user_id, Field::WebhookToken, &webhook.webhook_token)?,
        vault.seal_only(user_id, Field::WebhookSecret, &webhook.webhook_secret)?,
    ])
}
