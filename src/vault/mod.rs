//! The vault: credentials the service must use in plain text (dYdX mnemonics or permissioned
//! trading keys, Telegram chat ids and bot token, each user's webhook token and secret so their
//! URL can be shown again), encrypted at rest.
//!
//! - `keys`: the master key file (`--vault-key-file`, lines `VERSION:BASE64`; the highest
//!   version seals). `source` finds it, or makes the embedded demo's own.
//! - `cipher`: AES-256-GCM-SIV, a random nonce per value, owner + field + key version as
//!   associated data (a ciphertext moved to another owner or field does not open).
//! - `field`: the closed list of fields, who owns each, and their shapes.
//! - `rotate`: `keys rotate`, row by row, compare-and-swap, beside a running service.
//!
//! Every `reveal` is recorded in the ledger before anything is decrypted: which field, whose,
//! for what, by whom, under which key version — never the value. A user's fields are recorded in
//! their account's stream (`CredentialAccessed`); the service's in the `ServiceCredentials`
//! stream. Plaintext is returned only in `Zeroizing` buffers (wiped on drop): use it at once and
//! never format it (`Zeroizing`'s own `Debug` shows its content).

mod cipher;
mod field;
mod keys;
mod rotate;
mod source;
mod telegram;

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use aggregates::{
    AccountCommand, CredentialAccess, ServiceCredentials, ServiceCredentialsCommand,
    SERVICE_OWNER_ID,
};

pub use self::cipher::OpenError;
pub use self::field::{Field, Ownership, UnknownField};
pub use self::keys::{create_key_file, generate_line, KeyFileError, Keyring, MasterKey};
pub use self::rotate::{rotate, Rotation};
pub use self::source::{demo_key_file, load_keyring, KeySource, KeySourceError, DEMO_DATABASE_URL};
use crate::ledger::{encode_for, EventContext, Ledger, LedgerError};
use crate::store::{SealedSecret, Store, StoreError};

/// Attempts when another process records a service-wide access at the same moment.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// Why a value is revealed, and to whom: recorded with the access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// What the value is for: `place order`, `send notification`, `show webhook url`, ...
    pub purpose: &'static str,
    /// Who asks: a user id, `execution`, `notifier`, an operator.
    pub by: String,
}

impl Access {
    pub fn new(purpose: &'static str, by: impl Into<String>) -> Self {
        Self {
            purpose,
            by: by.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{field} belongs to {expected}, not to owner {owner}")]
    WrongOwner {
        owner: String,
        field: Field,
        expected: &'static str,
    },
    #[error("{field} of {owner} was sealed under key version {version}, which the vault key file does not hold (it has {held:?})")]
    KeyVersionAbsent {
        owner: String,
        field: String,
        version: u32,
        held: Vec<u32>,
    },
    #[error("{field} of {owner} cannot be opened: {reason}")]
    Unopenable {
        owner: String,
        field: String,
        reason: OpenError,
    },
    #[error("the credential access could not be recorded, so nothing was decrypted: {0}")]
    NotRecorded(#[from] LedgerError),
    #[error("the credential access could not be recorded, so nothing was decrypted: {0}")]
    ServiceStreamNotRecorded(String),
    #[error("this process keeps no ledger to record credential access in, so it reveals nothing")]
    NoLedger,
    #[error("the vault's store failed: {0}")]
    Store(#[from] StoreError),
}

/// Seals and reveals credentials. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keys: Arc<Keyring>,
    ledger: Option<Ledger>,
    /// The last sequence of the `ServiceCredentials` stream this process knows of.
    service_stream: Mutex<usize>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keys", &self.inner.keys)
            .finish()
    }
}

impl Vault {
    /// A vault that seals (and rotates) but cannot reveal: for commands without a ledger.
    pub fn new(store: Store, keys: Arc<Keyring>) -> Self {
        Self::build(store, keys, None)
    }

    /// A vault that also reveals, recording each access through `ledger`.
    pub fn with_ledger(ledger: Ledger, keys: Arc<Keyring>) -> Self {
        Self::build(ledger.store().clone(), keys, Some(ledger))
    }

    fn build(store: Store, keys: Arc<Keyring>, ledger: Option<Ledger>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                ledger,
                service_stream: Mutex::new(0),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn keys(&self) -> &Keyring {
        &self.inner.keys
    }

    /// Encrypts `plaintext` for `owner`'s `field` under the newest key, without storing it (for
    /// writes that must commit with other rows).
    pub fn seal_only(
        &self,
        owner: &str,
        field: Field,
        plaintext: &str,
    ) -> Result<SealedSecret, VaultError> {
        check_owner(owner, field)?;
        let (version, key) = self.inner.keys.current();
        Ok(cipher::seal(key, version, owner, field.name(), plaintext))
    }

    /// Encrypts and stores `plaintext` as `owner`'s `field`, replacing any previous value.
    pub async fn seal(&self, owner: &str, field: Field, plaintext: &str) -> Result<(), VaultError> {
        let sealed = self.seal_only(owner, field, plaintext)?;
        self.inner.store.vault().put(&sealed).await?;
        Ok(())
    }

    /// Whether a value is stored for `owner`'s `field`: nothing is decrypted, so nothing is
    /// recorded.
    pub async fn holds(&self, owner: &str, field: Field) -> Result<bool, VaultError> {
        check_owner(owner, field)?;
        Ok(self
            .inner
            .store
            .vault()
            .get(owner, field.name())
            .await?
            .is_some())
    }

    /// Removes `owner`'s `field`; `false` if none was stored. Nothing is decrypted.
    pub async fn clear(&self, owner: &str, field: Field) -> Result<bool, VaultError> {
        check_owner(owner, field)?;
        Ok(self.inner.store.vault().delete(owner, field.name()).await?)
    }

    /// The fields stored for `owner`, by name only: nothing is decrypted, so nothing is recorded.
    pub async fn held(&self, owner: &str) -> Result<Vec<Field>, VaultError> {
        let names = self.inner.store.vault().fields_of(owner).await?;
        Ok(names
            .iter()
            .filter_map(|name| name.parse::<Field>().ok())
            .collect())
    }

    /// A value that changes whenever any of `owner`'s `fields` is set, replaced, cleared or
    /// re-sealed, so what was derived from the old values can be told stale. Nothing is
    /// decrypted, so nothing is recorded.
    pub async fn revision(&self, owner: &str, fields: &[Field]) -> Result<Vec<u8>, VaultError> {
        let rows = self.inner.store.vault().nonces_of(owner).await?;
        let mut revision = Vec::new();
        for (field, nonce) in rows {
            if fields.iter().any(|wanted| wanted.name() == field) {
                revision.extend_from_slice(field.as_bytes());
                revision.push(0);
                revision.extend_from_slice(&nonce);
            }
        }
        Ok(revision)
    }

    /// The sealed row of `owner`'s `field` as stored (ciphertext: opening it needs the key), to
    /// put back if a change must be undone.
    pub async fn sealed(
        &self,
        owner: &str,
        field: Field,
    ) -> Result<Option<SealedSecret>, VaultError> {
        check_owner(owner, field)?;
        Ok(self.inner.store.vault().get(owner, field.name()).await?)
    }

    /// Puts back a row read by `sealed` (or removes the field when there was none).
    pub async fn restore(
        &self,
        owner: &str,
        field: Field,
        previous: Option<&SealedSecret>,
    ) -> Result<(), VaultError> {
        check_owner(owner, field)?;
        match previous {
            Some(sealed) => self.inner.store.vault().put(sealed).await?,
            None => {
                self.inner.store.vault().delete(owner, field.name()).await?;
            }
        }
        Ok(())
    }

    /// `owner`'s `field` in plain text, `None` if none is stored. The access is recorded in the
    /// ledger first; if it cannot be, nothing is decrypted.
    pub async fn reveal(
        &self,
        owner: &str,
        field: Field,
        access: Access,
    ) -> Result<Option<Zeroizing<String>>, VaultError> {
        check_owner(owner, field)?;
        let Some(sealed) = self.inner.store.vault().get(owner, field.name()).await? else {
            return Ok(None);
        };
        let key = self.key_for(owner, field, sealed.key_version)?;
        self.record(owner, field, sealed.key_version, access)
            .await?;
        cipher::open(key, &sealed)
            .map(Some)
            .map_err(|reason| VaultError::Unopenable {
                owner: owner.to_owned(),
                field: field.name().to_owned(),
                reason,
            })
    }

    fn key_for(&self, owner: &str, field: Field, version: u32) -> Result<&MasterKey, VaultError> {
        self.inner
            .keys
            .get(version)
            .ok_or_else(|| VaultError::KeyVersionAbsent {
                owner: owner.to_owned(),
                field: field.name().to_owned(),
                version,
                held: self.inner.keys.versions(),
            })
    }

    async fn record(
        &self,
        owner: &str,
        field: Field,
        key_version: u32,
        access: Access,
    ) -> Result<(), VaultError> {
        let ledger = self.inner.ledger.as_ref().ok_or(VaultError::NoLedger)?;
        let at = Utc::now();
        let context = EventContext::new(&access.by, at);
        let record = CredentialAccess {
            field: field.name().to_owned(),
            purpose: access.purpose.to_owned(),
            by: access.by,
            key_version,
            at,
        };
        match field.ownership() {
            Ownership::User => {
                let command = AccountCommand::RecordCredentialAccess(record);
                ledger.execute(owner, command, &context).await?;
                Ok(())
            }
            Ownership::Service => self.record_for_service(record, &context).await,
        }
    }

    /// Appends to the service's own stream, catching up on what other processes appended.
    async fn record_for_service(
        &self,
        record: CredentialAccess,
        context: &EventContext,
    ) -> Result<(), VaultError> {
        let failed = |reason: String| VaultError::ServiceStreamNotRecorded(reason);
        let events = ServiceCredentials
            .decide(ServiceCredentialsCommand::RecordCredentialAccess(record))
            .map_err(|error| failed(error.to_string()))?;
        let mut version = self.inner.service_stream.lock().await;
        for _ in 0..=MAX_CONFLICT_RETRIES {
            let newer = self
                .inner
                .store
                .events()
                .load_service_credentials_after(*version)
                .await?;
            if let Some(last) = newer.last() {
                *version = last.sequence;
            }
            let serialized =
                encode_for::<ServiceCredentials>(SERVICE_OWNER_ID, *version + 1, &events, context)
                    .map_err(|error| failed(error.to_string()))?;
            match self.inner.store.events().append(&serialized).await {
                Ok(_) => {
                    *version += events.len();
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(failed(
            "the service's credential stream kept changing under concurrent writers".into(),
        ))
    }
}

fn check_owner(owner: &str, field: Field) -> Result<(), VaultError> {
    if field.fits_owner(owner) {
        return Ok(());
    }
    Err(VaultError::WrongOwner {
        owner: owner.chars().take(64).collect(),
        field,
        expected: match field.ownership() {
            Ownership::Service => "the service (owner `service`)",
            Ownership::User => "a user",
        },
    })
}
