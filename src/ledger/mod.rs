//! The write side: runs commands on `TradingAccount`s and durably appends their events.
//!
//! A command takes its account's lock, decides on the cached state (loaded once from the store),
//! appends through the group committer, and only then updates the cache and returns. An append
//! that conflicts with another process reloads the account's new events and decides again, a
//! bounded number of times. A signal is first told what the store remembers of its idempotency
//! key (read under the lock); the keys its events use are written by the same append.

mod cache;
mod codec;
mod committer;
mod known_keys;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use tokio::sync::{oneshot, OwnedMutexGuard};
use tokio::task::JoinSet;

use aggregates::{
    AccountCommand, AccountError, AccountEvent, Halt, InFlight, SeenKey, SignalId, SignalStage,
    STATE_VERSION,
};

use self::cache::AccountCache;
pub use self::cache::LoadedAccount;
pub use self::codec::{decode, encode, encode_for, DecodeError, EventContext, RecordedEvent};
pub use self::committer::CommitError;
pub use self::committer::CommittedBatch;
use self::committer::Committer;
use self::known_keys::KnownKeys;
use crate::store::{SignalKey, Snapshot, Store, StoreError};

/// A snapshot is stored once an account has this many events (up to twice this, see
/// `snapshot_interval`; more for a large state, see `snapshot_if_due`) beyond its last one: a load
/// then reads a bounded tail, whatever the length of the history.
pub const SNAPSHOT_INTERVAL_EVENTS: usize = 256;

/// Attempts after the first when another process appended to the same account meanwhile.
pub const MAX_CONFLICT_RETRIES: u32 = 8;
/// Upper bound of the random pause before the first retry; doubles with each further retry, so
/// two processes racing on one account stop colliding.
const CONFLICT_BACKOFF_MS: u64 = 2;

#[derive(Debug, Clone)]
pub struct LedgerOptions {
    pub cached_accounts: usize,
    pub committers: usize,
    /// Idempotency-key hashes kept in memory per cached account (`known_keys::MAX_KEPT`).
    pub known_keys_kept: usize,
}

impl LedgerOptions {
    pub fn for_store(store: &Store) -> Self {
        Self {
            cached_accounts: 50_000,
            known_keys_kept: known_keys::MAX_KEPT,
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
    Store(#[from] StoreError),
    /// The group committer failed the append (shared by every request of its batch).
    #[error("the ledger could not record the events: {0}")]
    Commit(#[from] CommitError),
    #[error("the events could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The task carrying the command stopped before answering (a panic or a shutdown).
    #[error("the command's task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The batch deciding the command stopped before answering (a panic).
    #[error("the account's batch of commands stopped before answering")]
    Abandoned,
    /// What failed a whole batch (its account could not be loaded), told to each command in it.
    #[error(transparent)]
    Shared(Arc<LedgerError>),
}

/// A command waiting for its account.
pub(crate) struct Queued {
    build: Box<dyn Fn(usize) -> AccountCommand + Send + Sync>,
    /// The idempotency key of a signal, looked up in the store before the batch is decided.
    key: Option<String>,
    context: EventContext,
    answer: oneshot::Sender<Result<Committed, LedgerError>>,
}

/// What a batch decided: each command's answer should its events land, the events to append,
/// the account's version after them, and the executions to count once they are committed.
struct Decided {
    outcomes: Vec<Result<Committed, LedgerError>>,
    appended: Vec<cqrs_es::persist::SerializedEvent>,
    /// The keys the appended events put to use, by key (a key used twice keeps its last use).
    keys: BTreeMap<String, SignalKey>,
    version: usize,
    executions: Vec<(&'static str, Option<chrono::DateTime<chrono::Utc>>)>,
}

/// Decides each command on the state the ones before it left, applying their events to
/// `account` as it goes: the caller forgets the state if they do not land. `recalled` is what the
/// store remembers of the batch's keys; the batch's own uses are added to it as they are decided.
fn decide_in_order(
    account_id: &str,
    account: &mut LoadedAccount,
    batch: &[Queued],
    mut recalled: HashMap<String, SeenKey>,
) -> Decided {
    let mut decided = Decided {
        outcomes: Vec::with_capacity(batch.len()),
        appended: Vec::new(),
        keys: BTreeMap::new(),
        version: account.version,
        executions: Vec::new(),
    };
    for queued in batch {
        let version = decided.version;
        let mut command = (queued.build)(version + 1);
        if let AccountCommand::ReceiveSignal(intent) = &mut command {
            intent.earlier_use = recalled.get(&intent.idempotency_key).cloned();
        }
        let outcome = account
            .state
            .decide(command)
            .map_err(LedgerError::from)
            .and_then(|events| {
                let serialized = encode(account_id, version + 1, &events, &queued.context)?;
                Ok((events, serialized))
            });
        let (events, serialized) = match outcome {
            Ok(decided_events) => decided_events,
            Err(error) => {
                decided.outcomes.push(Err(error));
                continue;
            }
        };
        decided
            .executions
            .extend(executions(&account.state, &events));
        for event in &events {
            account.state.apply(event.clone());
            if let Some(used) = event.remembered_key() {
                let seen = SeenKey {
                    signal_id: used.signal_id.clone(),
                    expires_at: used.expires_at,
                };
                recalled.insert(used.key.clone(), seen);
                // Like the state, forgotten with the account if the append does not land.
                account.known_keys.insert(&used.key, used.expires_at);
                let stored = SignalKey {
                    account_id: account_id.to_owned(),
                    key: used.key.clone(),
                    signal_id: used.signal_id.0,
                    expires_at: used.expires_at,
                };
                decided.keys.insert(used.key, stored);
            }
        }
        decided.version += events.len();
        decided.appended.extend(serialized);
        decided.outcomes.push(Ok(Committed {
            version: decided.version,
            events,
        }));
    }
    decided
}

fn answer_each(batch: Vec<Queued>, outcomes: Vec<Result<Committed, LedgerError>>) {
    for (queued, outcome) in batch.into_iter().zip(outcomes) {
        // A caller that went away no longer needs its answer.
        let _ = queued.answer.send(outcome);
    }
}

/// The same outcome for every command of a batch that failed as one.
fn answer_all(batch: Vec<Queued>, outcome: impl Fn() -> Result<Committed, LedgerError>) {
    for queued in batch {
        let _ = queued.answer.send(outcome());
    }
}

impl LedgerError {
    /// The store could not be reached or written just now: nothing new is recorded for sure but
    /// for a commit whose answer was lost, which a retry finds as a duplicate.
    pub fn is_store_unavailable(&self) -> bool {
        match self {
            Self::Store(error) => error.is_unavailable(),
            Self::Commit(CommitError::Failed(error)) => error.is_unavailable(),
            Self::Shared(error) => error.is_store_unavailable(),
            _ => false,
        }
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
    known_keys_kept: usize,
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
                known_keys_kept: options.known_keys_kept,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn upcasters(&self) -> &[Box<dyn EventUpcaster>] {
        &self.inner.upcasters
    }

    /// The events this process commits from now on, with their positions, as they commit.
    pub fn committed(&self) -> tokio::sync::broadcast::Receiver<CommittedBatch> {
        self.inner.committer.subscribe()
    }

    /// Runs `command` on the account and returns once its events are durably committed.
    pub async fn execute(
        &self,
        account_id: &str,
        command: AccountCommand,
        context: &EventContext,
    ) -> Result<Committed, LedgerError> {
        let key = match &command {
            AccountCommand::ReceiveSignal(intent) => Some(intent.idempotency_key.clone()),
            _ => None,
        };
        self.execute_numbered(account_id, key, move |_| command.clone(), context)
            .await
    }

    /// Runs the command `build` makes from the sequence its first event will be stored at. It is
    /// called under the account's lock, again after every conflict, so what it derives from the
    /// sequence (a signal's id) is unique in the account for good: no two events share a sequence.
    /// `key` is a signal's idempotency key, what the store is asked about before it is decided.
    ///
    /// Commands that arrive while the account is busy wait in its queue; whoever takes the lock
    /// next decides them all, in arrival order, each on the state the ones before it left, and
    /// appends them in one commit. One busy account thus pays one commit per batch, not per
    /// command.
    pub async fn execute_numbered(
        &self,
        account_id: &str,
        key: Option<String>,
        build: impl Fn(usize) -> AccountCommand + Send + Sync + 'static,
        context: &EventContext,
    ) -> Result<Committed, LedgerError> {
        let slot = self.inner.accounts.slot(account_id);
        let (answer, answered) = oneshot::channel();
        slot.enqueue(Queued {
            build: Box::new(build),
            key,
            context: context.clone(),
            answer,
        });
        // The wait for the lock and the batch run in a task of their own: a caller that goes
        // away (a cancelled HTTP request) neither strands its command in the queue nor leaves a
        // batch half done, and needs no task of its own around this call.
        let ledger = self.clone();
        let account_id = account_id.to_owned();
        tokio::spawn(async move {
            let account = slot.account.clone().lock_owned().await;
            // An earlier holder of the lock may have decided this command with its own.
            let batch = slot.take_waiting();
            if !batch.is_empty() {
                ledger.decide_batch(&account_id, account, batch).await;
            }
        });
        answered.await.unwrap_or(Err(LedgerError::Abandoned))
    }

    /// Decides `batch` in order on the account's state, appends what it decided in one commit,
    /// and answers each command; after a conflict, reloads and decides them all again.
    async fn decide_batch(
        &self,
        account_id: &str,
        mut slot: OwnedMutexGuard<Option<LoadedAccount>>,
        batch: Vec<Queued>,
    ) {
        for attempt in 0..=MAX_CONFLICT_RETRIES {
            // Out of the slot while the batch is applied to it tentatively: a panic, or a commit
            // that never answers, leaves the slot empty and the next command reloads, rather than
            // deciding on events that never landed.
            let mut account = match slot.take() {
                Some(account) => account,
                None => match self.load(account_id).await {
                    Ok(loaded) => loaded,
                    Err(error) => {
                        let error = Arc::new(error);
                        return answer_all(batch, || Err(LedgerError::Shared(error.clone())));
                    }
                },
            };
            let recalled = match self.recall_keys(account_id, &account, &batch).await {
                Ok(recalled) => recalled,
                Err(error) => {
                    // Forgotten, as after a failed load: the next command starts afresh.
                    let error = Arc::new(error);
                    return answer_all(batch, || Err(LedgerError::Shared(error.clone())));
                }
            };
            let decided = decide_in_order(account_id, &mut account, &batch, recalled);
            if decided.appended.is_empty() {
                *slot = Some(account);
                return answer_each(batch, decided.outcomes);
            }
            let keys = decided.keys.into_values().collect();
            match self.inner.committer.append(decided.appended, keys).await {
                Ok(()) => {
                    account.version = decided.version;
                    account.known_keys.sweep(chrono::Utc::now());
                    for (outcome, received_at) in decided.executions {
                        crate::telemetry::execution_recorded(outcome, received_at);
                    }
                    self.snapshot_if_due(account_id, &mut account);
                    *slot = Some(account);
                    return answer_each(batch, decided.outcomes);
                }
                // The state holds what did not land, decided on what was stale: reloaded.
                Err(CommitError::Conflict) => {
                    let ceiling_ms = CONFLICT_BACKOFF_MS << attempt.min(6);
                    let pause_ms = rand::random_range(0..=ceiling_ms);
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                }
                // The append may or may not have landed: the cached state is forgotten.
                Err(error) => {
                    return answer_all(batch, || Err(LedgerError::Commit(error.clone())));
                }
            }
        }
        answer_all(batch, || Err(LedgerError::Contended));
    }

    /// What the store remembers of the batch's idempotency keys that the account may have used
    /// (`known_keys.rs`): a key it has not used is new, and costs no query. Read on every
    /// attempt: after a conflict, another instance may have used one of them.
    async fn recall_keys(
        &self,
        account_id: &str,
        account: &LoadedAccount,
        batch: &[Queued],
    ) -> Result<HashMap<String, SeenKey>, LedgerError> {
        let keys: Vec<String> = batch
            .iter()
            .filter_map(|queued| queued.key.clone())
            .filter(|key| account.known_keys.may_hold(key))
            .collect();
        Ok(self
            .inner
            .store
            .signal_keys()
            .recall(account_id, &keys)
            .await?)
    }

    /// Where one signal of the account stands, if it still has work to do.
    pub async fn in_flight(
        &self,
        account_id: &str,
        signal_id: &SignalId,
    ) -> Result<Option<InFlight>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot
            .as_ref()
            .and_then(|account| account.state.in_flight.get(signal_id).cloned()))
    }

    /// A signal with work still to do, with the account's halt if one is engaged: what the saga's
    /// later steps (compensation, notification) need.
    pub async fn in_flight_with_halt(
        &self,
        account_id: &str,
        signal_id: &SignalId,
    ) -> Result<Option<(InFlight, Option<Halt>)>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot.as_ref().and_then(|account| {
            let in_flight = account.state.in_flight.get(signal_id)?;
            Some((in_flight.clone(), account.state.halt.clone()))
        }))
    }

    /// The venue the account chose in its ledger, `None` if it never chose one there.
    pub async fn venue(&self, account_id: &str) -> Result<Option<aggregates::Venue>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot.as_ref().and_then(|account| account.state.venue()))
    }

    /// The account's own size for alerts that give none, if it set one.
    pub async fn default_order_usd(
        &self,
        account_id: &str,
    ) -> Result<Option<rust_decimal::Decimal>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot
            .as_ref()
            .and_then(|account| account.state.default_order_usd()))
    }

    /// The account's settings, `None` if it is not open.
    pub async fn settings(
        &self,
        account_id: &str,
    ) -> Result<Option<aggregates::AccountSettings>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot.as_ref().and_then(|account| account.state.settings()))
    }

    /// The account's version: the sequence of its last event (0 before any).
    pub async fn version(&self, account_id: &str) -> Result<usize, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot.as_ref().map_or(0, |account| account.version))
    }

    /// How many times the signal's notification has failed, while another attempt is due.
    pub async fn undelivered(
        &self,
        account_id: &str,
        signal_id: &SignalId,
    ) -> Result<Option<u32>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot
            .as_ref()
            .and_then(|account| account.state.undelivered.get(signal_id).copied()))
    }

    /// Whether the account notice about its event at `about_sequence` is yet to be tried: no
    /// notice at or after it is recorded.
    pub async fn notice_untold(
        &self,
        account_id: &str,
        about_sequence: u64,
    ) -> Result<bool, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot
            .as_ref()
            .is_some_and(|account| account.state.notices_through < about_sequence))
    }

    /// How many times the account notice about its event at `about_sequence` has failed, while
    /// another attempt is due.
    pub async fn undelivered_notice(
        &self,
        account_id: &str,
        about_sequence: u64,
    ) -> Result<Option<u32>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot.as_ref().and_then(|account| {
            account
                .state
                .undelivered_notices
                .get(&about_sequence)
                .copied()
        }))
    }

    /// A signal still awaiting its order, with the account's halt if one is engaged: what the
    /// saga needs to decide between placing and cancelling.
    pub async fn awaiting_execution(
        &self,
        account_id: &str,
        signal_id: &SignalId,
    ) -> Result<Option<(InFlight, Option<Halt>)>, LedgerError> {
        let slot = self.locked_account(account_id).await?;
        Ok(slot.as_ref().and_then(|account| {
            let in_flight = account.state.in_flight.get(signal_id)?;
            (in_flight.stage == SignalStage::AwaitingExecution)
                .then(|| (in_flight.clone(), account.state.halt.clone()))
        }))
    }

    /// The account's cache slot, locked, with the account loaded into it.
    async fn locked_account(
        &self,
        account_id: &str,
    ) -> Result<OwnedMutexGuard<Option<LoadedAccount>>, LedgerError> {
        let mut slot = self
            .inner
            .accounts
            .slot(account_id)
            .account
            .clone()
            .lock_owned()
            .await;
        if slot.is_none() {
            *slot = Some(self.load(account_id).await?);
        }
        Ok(slot)
    }

    /// Loads an account from the store (not the cache): from its snapshot when there is a
    /// usable one, then the events after it.
    pub async fn load(&self, account_id: &str) -> Result<LoadedAccount, LedgerError> {
        let store = &self.inner.store;
        let mut account = match store.events().snapshot(account_id).await {
            Ok(Some(snapshot)) => restore(snapshot).unwrap_or_default(),
            Ok(None) => LoadedAccount::default(),
            Err(error) => {
                tracing::warn!(%error, account_id, "snapshot unreadable; replaying all events");
                LoadedAccount::default()
            }
        };
        let stored = store
            .events()
            .load_account_after(account_id, account.version)
            .await?;
        self.fold(&mut account, stored)?;
        self.load_known_keys(account_id, &mut account).await?;
        Ok(account)
    }

    /// Read after the events, so they hold at least every key of the version loaded.
    async fn load_known_keys(
        &self,
        account_id: &str,
        account: &mut LoadedAccount,
    ) -> Result<(), LedgerError> {
        account.known_keys = KnownKeys::with_room(self.inner.known_keys_kept);
        let live = self
            .inner
            .store
            .signal_keys()
            .live(
                account_id,
                chrono::Utc::now() - chrono::Duration::seconds(known_keys::EXPIRY_MARGIN_SECONDS),
            )
            .await?;
        for (key, expires_at) in live {
            account.known_keys.insert(&key, expires_at);
        }
        Ok(())
    }

    /// Loads an account by replaying every event, ignoring snapshots.
    pub async fn load_from_events(&self, account_id: &str) -> Result<LoadedAccount, LedgerError> {
        let mut account = LoadedAccount::default();
        let stored = self.inner.store.events().load_account(account_id).await?;
        self.fold(&mut account, stored)?;
        self.load_known_keys(account_id, &mut account).await?;
        Ok(account)
    }

    /// Stores the account's state in the background once enough events have passed. Failing to
    /// store one costs only a longer load later.
    ///
    /// A snapshot is taken no more often than every twice the state's entries, so each event pays
    /// a bounded share of it however large the state: one busy account whose saga is behind holds
    /// thousands of signals in flight, and serializing them every few hundred events took a fifth
    /// of the service's CPU (issue 13).
    fn snapshot_if_due(&self, account_id: &str, account: &mut LoadedAccount) {
        let due_after = snapshot_interval(account_id).max(account.state.entries() * 2);
        if account.version - account.snapshot_version < due_after {
            return;
        }
        let state = match serde_json::to_value(&account.state) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, account_id, "account state not serializable");
                return;
            }
        };
        account.snapshot_version = account.version;
        let snapshot = Snapshot {
            version: account.version,
            state_version: snapshot_state_version(),
            state,
        };
        let store = self.inner.store.clone();
        let account_id = account_id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = store.events().save_snapshot(&account_id, &snapshot).await {
                tracing::warn!(%error, account_id, "snapshot not stored");
            }
        });
    }

    /// Every event of an account, upcast and decoded, in sequence order.
    pub async fn history(&self, account_id: &str) -> Result<Vec<RecordedEvent>, LedgerError> {
        let stored = self.inner.store.events().load_account(account_id).await?;
        stored
            .into_iter()
            .map(|event| decode(&event, &self.inner.upcasters).map_err(LedgerError::from))
            .collect()
    }

    /// Up to `limit` of an account's events after `sequence`, upcast and decoded, in order: a
    /// long history read a page at a time.
    pub async fn history_page(
        &self,
        account_id: &str,
        sequence: usize,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let stored = self
            .inner
            .store
            .events()
            .load_account_page(account_id, sequence, limit)
            .await?;
        stored
            .iter()
            .map(|event| decode(event, &self.inner.upcasters).map_err(LedgerError::from))
            .collect()
    }

    fn fold(
        &self,
        account: &mut LoadedAccount,
        stored: Vec<cqrs_es::persist::SerializedEvent>,
    ) -> Result<(), LedgerError> {
        for event in stored {
            let recorded = decode(&event, &self.inner.upcasters)?;
            account.version = recorded.sequence;
            account.state.apply(recorded.event);
        }
        Ok(())
    }
}

/// Between `SNAPSHOT_INTERVAL_EVENTS` and twice that, fixed per account: accounts that trade in
/// step (one strategy's alerts to many users) would otherwise all snapshot in the same instant.
fn snapshot_interval(account_id: &str) -> usize {
    let spread = account_id.bytes().fold(0_usize, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(usize::from(byte))
    });
    SNAPSHOT_INTERVAL_EVENTS + spread % SNAPSHOT_INTERVAL_EVENTS
}

/// Who may trust a snapshot: the same state schema, written by the same release.
fn snapshot_state_version() -> String {
    format!("{STATE_VERSION}/{}", env!("CARGO_PKG_VERSION"))
}

/// The account a snapshot holds, if this code may trust it.
fn restore(snapshot: Snapshot) -> Option<LoadedAccount> {
    if snapshot.state_version != snapshot_state_version() {
        return None;
    }
    let state = serde_json::from_value(snapshot.state).ok()?;
    Some(LoadedAccount {
        state,
        version: snapshot.version,
        snapshot_version: snapshot.version,
        known_keys: KnownKeys::default(),
    })
}

/// The execution outcomes in `events` (not yet applied), to count once committed: a fill's signal
/// is still in flight in `before`, with the time its receipt was recorded.
fn executions(
    before: &aggregates::TradingAccount,
    events: &[AccountEvent],
) -> Vec<(&'static str, Option<chrono::DateTime<chrono::Utc>>)> {
    let mut executions = Vec::new();
    for event in events {
        let Some(outcome) = crate::telemetry::execution_outcome(event) else {
            continue;
        };
        let received_at = match event {
            AccountEvent::OrderFilled { signal_id, .. }
            | AccountEvent::OrderPartiallyFilled { signal_id, .. } => before
                .in_flight
                .get(signal_id)
                .and_then(|in_flight| in_flight.approved_at),
            _ => None,
        };
        executions.push((outcome, received_at));
    }
    executions
}
