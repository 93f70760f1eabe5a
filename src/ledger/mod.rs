//! The write side: runs commands on `TradingAccount`s and durably appends their events.
//!
//! A command takes its account's lock, decides on the cached state (loaded once from the store),
//! appends through the group committer, and only then updates the cache and returns. An append
//! that conflicts with another process reloads the account's new events and decides again, a
//! bounded number of times.

mod cache;
mod codec;
mod committer;

use std::sync::Arc;

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use aggregates::{AccountCommand, AccountError, AccountEvent, InFlight, SignalId, TradingAccount};

use self::cache::AccountCache;
pub use self::cache::LoadedAccount;
pub use self::codec::{decode, encode, DecodeError, EventContext, RecordedEvent};
use self::committer::{CommitError, Committer};
use crate::store::{Store, StoreError};

/// Attempts after the first when another process appended to the same account meanwhile.
pub const MAX_CONFLICT_RETRIES: u32 = 8;
/// Upper bound of the random pause before the first retry; doubles with each further retry, so
/// two processes racing on one account stop colliding.
const CONFLICT_BACKOFF_MS: u64 = 2;

#[derive(Debug, Clone)]
pub struct LedgerOptions {
    pub cached_accounts: usize,
    pub committers: usize,
}

impl LedgerOptions {
    pub fn for_store(store: &Store) -> Self {
        Self {
            cached_accounts: 50_000,
            committers: match store {
                Store::Postgres(_) => 4,
                Store::Sqlite(_) => 1,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The account refused the command: a user-level error, nothing was written.
    #[error(transparent)]
    Rejected(#[from] AccountError),
    #[error("the account kept changing under concurrent writers; nothing was written")]
    Contended,
    #[error("the ledger could not record the events: {0}")]
    Store(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<StoreError> for LedgerError {
    fn from(error: StoreError) -> Self {
        Self::Store(error.to_string())
    }
}

/// What a command appended.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The account's version (last sequence) after the command.
    pub version: usize,
    pub events: Vec<AccountEvent>,
}

#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    accounts: AccountCache,
    committer: Committer,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    appended: Notify,
}

impl Ledger {
    /// Starts the ledger's committers in `tasks`; they end when the last `Ledger` clone is dropped.
    pub fn start(
        store: Store,
        options: LedgerOptions,
        upcasters: Vec<Box<dyn EventUpcaster>>,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let committer = Committer::start(store.clone(), options.committers, tasks);
        Self {
            inner: Arc::new(Inner {
                store,
                accounts: AccountCache::new(options.cached_accounts),
                committer,
                upcasters,
                appended: Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn upcasters(&self) -> &[Box<dyn EventUpcaster>] {
        &self.inner.upcasters
    }

    /// Woken after every append by this process, so catch-up readers need not poll hard.
    pub fn appended(&self) -> &Notify {
        &self.inner.appended
    }

    /// Runs `command` on the account and returns once its events are durably committed.
    pub async fn execute(
        &self,
        account_id: &str,
        command: AccountCommand,
        context: &EventContext,
    ) -> Result<Committed, LedgerError> {
        let slot = self.inner.accounts.slot(account_id);
        let mut slot = slot.lock().await;
        if slot.is_none() {
            *slot = Some(self.load(account_id).await?);
        }
        for attempt in 0..=MAX_CONFLICT_RETRIES {
            let Some(account) = slot.as_mut() else {
                break;
            };
            let events = account.state.decide(command.clone())?;
            if events.is_empty() {
                return Ok(Committed {
                    version: account.version,
                    events,
                });
            }
            let serialized = encode(account_id, account.version + 1, &events, context)
                .map_err(|error| LedgerError::Store(error.to_string()))?;
            match self.inner.committer.append(serialized).await {
                Ok(()) => {
                    for event in &events {
                        account.state.apply(event.clone());
                    }
                    account.version += events.len();
                    self.inner.appended.notify_waiters();
                    return Ok(Committed {
                        version: account.version,
                        events,
                    });
                }
                Err(CommitError::Conflict) => {
                    let ceiling_ms = CONFLICT_BACKOFF_MS << attempt.min(6);
                    let pause_ms = rand::random_range(0..=ceiling_ms);
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                    let newer = self
                        .inner
                        .store
                        .load_account_after(account_id, account.version)
                        .await?;
                    self.fold(account, newer)?;
                }
                Err(error) => {
                    // The append may or may not have landed: forget the cached state.
                    *slot = None;
                    return Err(LedgerError::Store(error.to_string()));
                }
            }
        }
        Err(LedgerError::Contended)
    }

    /// Where one signal of the account stands, if it still has work to do.
    pub async fn in_flight(
        &self,
        account_id: &str,
        signal_id: &SignalId,
    ) -> Result<Option<InFlight>, LedgerError> {
        let slot = self.inner.accounts.slot(account_id);
        let mut slot = slot.lock().await;
        if slot.is_none() {
            *slot = Some(self.load(account_id).await?);
        }
        Ok(slot
            .as_ref()
            .and_then(|account| account.state.in_flight.get(signal_id).cloned()))
    }

    /// Loads an account from the store (not the cache): its state and version.
    pub async fn load(&self, account_id: &str) -> Result<LoadedAccount, LedgerError> {
        let mut account = LoadedAccount {
            state: TradingAccount::default(),
            version: 0,
        };
        let stored = self.inner.store.load_account(account_id).await?;
        self.fold(&mut account, stored)?;
        Ok(account)
    }

    /// Every event of an account, upcast and decoded, in sequence order.
    pub async fn history(&self, account_id: &str) -> Result<Vec<RecordedEvent>, LedgerError> {
        let stored = self.inner.store.load_account(account_id).await?;
        stored
            .into_iter()
            .map(|event| decode(event, &self.inner.upcasters).map_err(LedgerError::from))
            .collect()
    }

    fn fold(
        &self,
        account: &mut LoadedAccount,
        stored: Vec<cqrs_es::persist::SerializedEvent>,
    ) -> Result<(), LedgerError> {
        for event in stored {
            let recorded = decode(event, &self.inner.upcasters)?;
            account.version = recorded.sequence;
            account.state.apply(recorded.event);
        }
        Ok(())
    }
}
