//! Resolves credentials to active users.
//!
//! Webhook credentials that have succeeded are remembered so the hot path costs no query. A
//! remembered credential must never outlive its rotation or its user's disabling, so memory is
//! only trusted while it can hear of every change:
//! - PostgreSQL (several instances, plus the CLI in other processes): every change is announced by
//!   NOTIFY in its own transaction, and each authenticator LISTENs on a connection of its own.
//!   Before memory is consulted, the announcements that have already reached the process are read
//!   (a non-blocking poll of that connection) and each one forgets everything; so a request that
//!   arrives after an announcement never sees what it revoked, however the tasks are scheduled.
//!   While the listening connection is down, memory is bypassed altogether (fail closed).
//! - SQLite (one embedded service, plus the CLI): nothing is remembered; an indexed lookup in the
//!   local file is microseconds, and always current.
//!
//! Before any of that, every credential is looked up in the index of known credentials
//! (`known.rs`): one that no active user has is refused there, without a query per guess, on both
//! stores (the index rereads a trigger-kept change counter, not announcements, before refusing).
//!
//! Failures are indistinguishable from outside: every one is `Ok(None)`, and an unknown webhook
//! uuid costs the same hash and constant-time comparison as a known one with a wrong secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::credentials::{is_well_formed_api_key, is_well_formed_secret, sha256_hex};
use super::known::{KnownCredentials, Probe, Verdict};
use crate::store::{ActiveUser, CredentialListener, RateLimit, Store, StoreError, UserProfile};

/// Credentials remembered at most; past it memory is cleared and refilled from the store.
const MAX_REMEMBERED: usize = 100_000;
/// Pause between attempts to re-establish the change listener.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);
/// How often the listening connection is checked, and how long it may take to answer.
const PING_INTERVAL: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Compared against when a webhook uuid is unknown, so that case costs what a wrong secret costs.
/// No secret hashes to it (it is not a hex digest of anything: it is all `x`).
const NO_SUCH_DIGEST: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `POST /api/webhook?token=...`
    WebhookToken,
    /// `POST /webhooks/{uuid}` with `secret` in the body.
    TwoFactor,
    /// `Authorization: Bearer <api key>` on the trader's own endpoints.
    ApiKey,
    /// The session cookie of a wallet sign-in.
    Session,
}

/// An active user, as a credential resolved to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub user_id: String,
    /// The user's own request budget; `None`: the service default (`RateLimit::SERVICE_DEFAULT`).
    pub rate_limit: Option<RateLimit>,
    pub scheme: Scheme,
}

impl AuthenticatedUser {
    fn new(user: ActiveUser, scheme: Scheme) -> Self {
        Self {
            user_id: user.user_id,
            rate_limit: user.rate_limit,
            scheme,
        }
    }

    pub fn rate_limit_or_default(&self) -> RateLimit {
        self.rate_limit.unwrap_or(RateLimit::SERVICE_DEFAULT)
    }
}

pub struct Authenticator {
    store: Store,
    memory: Arc<Memory>,
    known: Arc<KnownCredentials>,
    /// Store lookups of credentials made so far (the index counts its own loads).
    lookups: AtomicU64,
    /// PostgreSQL only: where changes are heard.
    changes: Option<Arc<Changes>>,
    /// The task that first loads the index, and (PostgreSQL) the one that (re)connects the
    /// listener.
    background: Vec<JoinHandle<()>>,
}

/// The listening connection, `None` while it is down, and a signal for the connector once a
/// lookup has found it lost.
#[derive(Default)]
struct Changes {
    listener: Mutex<Option<CredentialListener>>,
    lost: Notify,
}

impl Changes {
    /// Puts the listener in place; `going_live` (a new connection) first forgets everything, as
    /// changes made while none was listening went unheard. `false` if the lock is poisoned.
    fn install(&self, listener: CredentialListener, memory: &Memory, going_live: bool) -> bool {
        let Ok(mut slot) = self.listener.lock() else {
            return false;
        };
        *slot = Some(listener);
        if going_live {
            memory.go_live();
        }
        true
    }

    /// Takes the listener out (memory is bypassed meanwhile, not forgotten: the connection and
    /// what it has heard are kept), checks it answers, and puts it back; if it does not, memory
    /// goes dark. Whether it is still up.
    async fn ping(&self, memory: &Memory) -> bool {
        let taken = match self.listener.lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let Some(mut listener) = taken else {
            return false;
        };
        let answered = matches!(
            tokio::time::timeout(PING_TIMEOUT, listener.ping()).await,
            Ok(Ok(()))
        );
        if answered {
            self.install(listener, memory, false)
        } else {
            memory.go_dark();
            tracing::warn!(
                "credential change listener stopped answering; every credential is checked in the store until it is back"
            );
            false
        }
    }
}

impl Authenticator {
    /// On PostgreSQL this starts listening for credential changes (memory is bypassed until the
    /// listener is up); on SQLite nothing is remembered. Needs a Tokio runtime.
    pub fn new(store: Store) -> Self {
        let memory = Arc::new(Memory::default());
        let known = Arc::new(KnownCredentials::default());
        let preload = {
            let (store, known) = (store.clone(), known.clone());
            // Only a head start: a failed load is retried by the first request that misses.
            tokio::spawn(async move {
                if let Err(error) = known.preload(&store).await {
                    tracing::warn!(%error, "cannot load the index of known credentials yet");
                }
            })
        };
        let mut background = vec![preload];
        let changes = match &store {
            Store::Postgres(_) => {
                let changes = Arc::new(Changes::default());
                background.push(tokio::spawn(keep_listening(
                    store.clone(),
                    changes.clone(),
                    memory.clone(),
                )));
                Some(changes)
            }
            Store::Sqlite(_) => None,
        };
        Self {
            store,
            memory,
            known,
            lookups: AtomicU64::new(0),
            changes,
            background,
        }
    }

    /// Whether any active user has the credential: `false` is final and cost no query (see
    /// `known.rs`).
    async fn may_be_known(&self, probe: Probe<'_>) -> Result<bool, StoreError> {
        let verdict = self
            .known
            .verdict(probe, Instant::now(), &self.store)
            .await?;
        Ok(verdict == Verdict::MaybeKnown)
    }

    /// Whether an unknown credential is refused from memory (else each costs a store lookup, and
    /// the guard should limit failing addresses before it).
    pub fn refuses_unknown_in_memory(&self) -> bool {
        self.known.decides()
    }

    /// Queries made to authenticate so far: lookups of credentials and the index's own loads.
    pub fn credential_queries(&self) -> u64 {
        self.lookups
            .load(Ordering::Relaxed)
            .wrapping_add(self.known.queries())
    }

    fn counted<T>(&self, lookup: T) -> T {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        lookup
    }

    /// Reads every announcement that has reached this process, forgetting on each; whether memory
    /// may be trusted now. Never waits: whatever has not arrived yet was not announced before this
    /// request arrived either.
    fn catch_up_with_changes(&self) -> bool {
        let Some(changes) = &self.changes else {
            return false;
        };
        // Held only for non-blocking polls; a poisoned lock means a poll panicked: bypass memory.
        let Ok(mut slot) = changes.listener.lock() else {
            return false;
        };
        let Some(listener) = slot.as_mut() else {
            return false;
        };
        loop {
            match listener.next_change().now_or_never() {
                None => return true,
                // Changes are rare: forgetting everything is simpler than per-user bookkeeping
                // and obviously complete.
                Some(Ok(Some(_user_id))) => self.memory.forget_all(),
                Some(Ok(None)) | Some(Err(_)) => {
                    *slot = None;
                    self.memory.go_dark();
                    changes.lost.notify_one();
                    tracing::warn!(
                        "credential change listener lost; every credential is checked in the store until it is back"
                    );
                    return false;
                }
            }
        }
    }

    /// The remembered user for `key`, if memory may be trusted and holds it.
    fn recall(&self, key: &str) -> Option<AuthenticatedUser> {
        if !self.catch_up_with_changes() {
            return None;
        }
        self.memory.recall(key)
    }

    /// Scheme 1: the webhook token from the query string.
    pub async fn authenticate_token(
        &self,
        token: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        if !is_well_formed_secret(token) {
            return Ok(None);
        }
        let digest = sha256_hex(token);
        if !self.may_be_known(Probe::Token(&digest)).await? {
            return Ok(None);
        }
        let key = format!("token:{digest}");
        if let Some(user) = self.recall(&key) {
            return Ok(Some(user));
        }
        let epoch = self.memory.epoch();
        // A lookup by the digest of a 256-bit random value: the index compares digests, and
        // timing that reveals something about a digest reveals nothing about a token.
        let found = self
            .counted(
                self.store
                    .credentials()
                    .active_user_by_token_sha256(&digest),
            )
            .await?;
        let user = found.map(|user| AuthenticatedUser::new(user, Scheme::WebhookToken));
        if let Some(user) = &user {
            self.memory.remember(epoch, key, user.clone());
        }
        Ok(user)
    }

    /// Scheme 2: the webhook uuid from the path and the secret from the body.
    pub async fn authenticate_two_factor(
        &self,
        webhook_uuid: &str,
        secret: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        let Ok(webhook_uuid) = Uuid::parse_str(webhook_uuid) else {
            return Ok(None);
        };
        if !is_well_formed_secret(secret) {
            return Ok(None);
        }
        let digest = sha256_hex(secret);
        if !self
            .may_be_known(Probe::TwoFactor(webhook_uuid, &digest))
            .await?
        {
            return Ok(None);
        }
        // Only a pair that succeeded is remembered, so a known uuid with a wrong secret goes to
        // the store just like an unknown uuid does.
        let key = format!("two-factor:{webhook_uuid}:{digest}");
        if let Some(user) = self.recall(&key) {
            return Ok(Some(user));
        }
        let epoch = self.memory.epoch();
        let found = self
            .counted(
                self.store
                    .credentials()
                    .active_user_by_webhook_uuid(&webhook_uuid.to_string()),
            )
            .await?;
        let (expected, user) = match found {
            Some(found) => (found.webhook_secret_sha256, Some(found.user)),
            None => (NO_SUCH_DIGEST.to_owned(), None),
        };
        let matches = bool::from(digest.as_bytes().ct_eq(expected.as_bytes()));
        match user {
            Some(user) if matches => {
                let user = AuthenticatedUser::new(user, Scheme::TwoFactor);
                self.memory.remember(epoch, key, user.clone());
                Ok(Some(user))
            }
            _ => Ok(None),
        }
    }

    /// An API key from `Authorization: Bearer ...`. Not remembered: the endpoints it opens are
    /// not on the hot path, and so a rotated or disabled key fails with no propagation at all.
    pub async fn authenticate_api_key(
        &self,
        api_key: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        if !is_well_formed_api_key(api_key) {
            return Ok(None);
        }
        let digest = sha256_hex(api_key);
        if !self.may_be_known(Probe::ApiKey(&digest)).await? {
            return Ok(None);
        }
        let found = self
            .counted(
                self.store
                    .credentials()
                    .active_user_by_api_key_sha256(&digest),
            )
            .await?;
        Ok(found.map(|user| AuthenticatedUser::new(user, Scheme::ApiKey)))
    }

    /// What may be shown to the user about their own credentials.
    pub async fn profile(&self, user_id: &str) -> Result<Option<UserProfile>, StoreError> {
        self.store.credentials().user_profile(user_id).await
    }

    /// Drops every remembered credential now. Called after a change made in this process, so it
    /// takes effect here without waiting for the announcement to come back.
    pub fn forget_all(&self) {
        self.memory.forget_all();
    }

    /// Whether remembered credentials are currently trusted (PostgreSQL with its listener up).
    pub fn is_remembering(&self) -> bool {
        self.catch_up_with_changes()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Keeps a listening connection installed: connects, hands it over, checks it now and then, and
/// connects again once it is found lost.
async fn keep_listening(store: Store, changes: Arc<Changes>, memory: Arc<Memory>) {
    loop {
        match store.credentials().listen_for_changes().await {
            Ok(Some(listener)) => {
                if !changes.install(listener, &memory, true) {
                    return;
                }
                tracing::debug!("listening for credential changes; remembering credentials");
                loop {
                    tokio::select! {
                        () = changes.lost.notified() => break,
                        () = tokio::time::sleep(PING_INTERVAL) => {
                            if !changes.ping(&memory).await {
                                break;
                            }
                        }
                    }
                }
            }
            // The store has no announcements: nothing may be remembered.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for credential changes; retrying");
                memory.go_dark();
                tokio::time::sleep(RELISTEN_DELAY).await;
            }
        }
    }
}

/// Credentials that succeeded, trusted only while `live`. `epoch` advances on every forget, so a
/// lookup that began before a change cannot store its (possibly stale) answer after it.
#[derive(Default)]
struct Memory {
    state: RwLock<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    live: bool,
    epoch: u64,
    known: HashMap<String, AuthenticatedUser>,
}

impl Memory {
    fn recall(&self, key: &str) -> Option<AuthenticatedUser> {
        let state = self.read();
        if !state.live {
            return None;
        }
        state.known.get(key).cloned()
    }

    /// To be read before the store lookup whose answer is then passed to `remember`.
    fn epoch(&self) -> u64 {
        self.read().epoch
    }

    fn remember(&self, epoch_before_lookup: u64, key: String, user: AuthenticatedUser) {
        let mut state = self.write();
        if !state.live || state.epoch != epoch_before_lookup {
            return;
        }
        if state.known.len() >= MAX_REMEMBERED {
            state.known.clear();
        }
        state.known.insert(key, user);
    }

    fn forget_all(&self) {
        let mut state = self.write();
        state.epoch = state.epoch.wrapping_add(1);
        state.known.clear();
    }

    /// The listener is up: changes from now on will be heard.
    fn go_live(&self) {
        let mut state = self.write();
        state.epoch = state.epoch.wrapping_add(1);
        state.known.clear();
        state.live = true;
    }

    /// The listener is down: changes may go unheard, so nothing remembered may be trusted.
    fn go_dark(&self) {
        let mut state = self.write();
        state.live = false;
        state.epoch = state.epoch.wrapping_add(1);
        state.known.clear();
    }

    // A panic while holding the lock cannot leave the map half-updated in a way that matters
    // (worst case an entry is missing), so a poisoned lock is used as is.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> AuthenticatedUser {
        AuthenticatedUser {
            user_id: id.to_owned(),
            rate_limit: None,
            scheme: Scheme::WebhookToken,
        }
    }

    #[test]
    fn nothing_is_remembered_until_the_listener_is_up() {
        let memory = Memory::default();
        let epoch = memory.epoch();
        memory.remember(epoch, "k".into(), user("a"));
        memory.go_live();
        assert_eq!(memory.recall("k"), None);
    }

    #[test]
    fn a_remembered_credential_is_recalled_while_live() {
        let memory = Memory::default();
        memory.go_live();
        let epoch = memory.epoch();
        memory.remember(epoch, "k".into(), user("a"));
        assert_eq!(memory.recall("k"), Some(user("a")));
        assert_eq!(memory.recall("other"), None);
    }

    #[test]
    fn a_change_forgets_everything() {
        let memory = Memory::default();
        memory.go_live();
        memory.remember(memory.epoch(), "k".into(), user("a"));
        memory.forget_all();
        assert_eq!(memory.recall("k"), None);
    }

    #[test]
    fn a_lookup_that_raced_a_change_is_not_remembered() {
        let memory = Memory::default();
        memory.go_live();
        let epoch = memory.epoch();
        // The store answered with the old credential, but the change was heard meanwhile.
        memory.forget_all();
        memory.remember(epoch, "k".into(), user("a"));
        assert_eq!(memory.recall("k"), None);
    }

    #[test]
    fn losing_the_listener_fails_closed() {
        let memory = Memory::default();
        memory.go_live();
        memory.remember(memory.epoch(), "k".into(), user("a"));
        memory.go_dark();
        assert_eq!(memory.recall("k"), None);
        memory.remember(memory.epoch(), "k".into(), user("a"));
        assert_eq!(memory.recall("k"), None, "nothing is stored while dark");
        memory.go_live();
        assert_eq!(memory.recall("k"), None, "nothing from before survives");
    }

    #[test]
    fn a_lookup_across_a_listener_outage_is_not_remembered() {
        let memory = Memory::default();
        memory.go_live();
        let epoch = memory.epoch();
        memory.go_dark();
        memory.go_live();
        memory.remember(epoch, "k".into(), user("a"));
        assert_eq!(memory.recall("k"), None);
    }

    #[test]
    fn memory_is_bounded() {
        let memory = Memory::default();
        memory.go_live();
        for i in 0..=MAX_REMEMBERED {
            memory.remember(memory.epoch(), format!("k{i}"), user("a"));
        }
        assert!(memory.read().known.len() <= MAX_REMEMBERED);
    }

    #[test]
    fn the_unknown_uuid_digest_matches_no_secret() {
        assert_eq!(NO_SUCH_DIGEST.len(), sha256_hex("x").len());
        assert!(!NO_SUCH_DIGEST.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
