//! Users and their webhook credentials. A token is 256 random bits: far beyond guessing, so one
//! SHA-256 is the right hash for it (argon2's cost is for low-entropy secrets such as passwords)
//! and a lookup by hash compares nothing secret in variable time.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use aggregates::{AccountCommand, RiskLimits};

use crate::ledger::{EventContext, Ledger, LedgerError};
use crate::store::{NewUser, Store, StoreError};

const TOKEN_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: String,
    pub webhook_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the user's account in the ledger first, then stores the credential: a crash in between
/// leaves an account nobody can reach, never a credential without an account.
pub async fn create_user(
    ledger: &Ledger,
    display_name: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Credentials, UserError> {
    let user_id = Uuid::new_v4().to_string();
    let webhook_token = new_token();
    let command = AccountCommand::OpenAccount {
        display_name: display_name.to_owned(),
        limits: RiskLimits::default(),
        opened_at: now,
    };
    ledger
        .execute(&user_id, command, &EventContext::new(actor, now))
        .await?;
    ledger
        .store()
        .insert_user(&NewUser {
            user_id: user_id.clone(),
            display_name: display_name.to_owned(),
            webhook_token_sha256: token_sha256(&webhook_token),
            created_at: now,
        })
        .await?;
    Ok(Credentials {
        user_id,
        webhook_token,
    })
}

/// Resolves webhook tokens to users. Known tokens are remembered so the webhook path costs no
/// query; unknown ones always ask the store (a token issued by another instance works at once).
/// Nothing revokes a token yet; when rotation arrives it must evict here (and notify other
/// instances) before its old token may be considered dead.
pub struct Authenticator {
    store: Store,
    known: RwLock<HashMap<String, String>>,
}

/// Tokens remembered at most; past it the memory is cleared and refilled from the store.
const MAX_REMEMBERED_TOKENS: usize = 100_000;

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// The user a webhook token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Option<String>, StoreError> {
        if token.len() != TOKEN_BYTES * 2 {
            return Ok(None);
        }
        let digest = token_sha256(token);
        if let Some(user_id) = self.read_known().get(&digest) {
            return Ok(Some(user_id.clone()));
        }
        let found = self.store.user_by_token_sha256(&digest).await?;
        if let Some(user_id) = &found {
            let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
            if known.len() >= MAX_REMEMBERED_TOKENS {
                known.clear();
            }
            known.insert(digest, user_id.clone());
        }
        Ok(found)
    }

    fn read_known(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn new_token() -> String {
    let mut bytes = [0_u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
