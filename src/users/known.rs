//! Every active user's credential digests in memory, so that an unknown webhook token, webhook
//! uuid (or a known uuid with a wrong secret) or API key is refused without a query: guesses never
//! reach the pool the ledger writes through.
//!
//! The index only ever refuses. A credential it holds goes on to the authenticator's usual check
//! (remembered on PostgreSQL, else the store), so a revoked credential still in the index is
//! refused there; the index must only never *miss* a valid one. So before a miss is final it
//! waits for a read of `credentials_version` (a counter kept by a trigger on `users`, on both
//! stores) that began after the request arrived, and for a reload if the counter moved. Users are
//! changed by other processes (the CLI, other instances) and by any SQL at all, so only a read
//! made after the request arrived proves the index current. Not NOTIFY: it is delivered some time
//! after the commit, so a user created by the CLI could send before the service heard of it.
//!
//! Reloads and version reads go one at a time and at least `MIN_REFRESH_SPACING` apart; every miss
//! that arrives meanwhile shares the next one. A flood of guesses therefore costs the store at most
//! a few small queries a second, whatever its rate.
//!
//! Memory is bounded: at most `MAX_INDEXED_USERS` users (about 160 B each, ~40 MB; a reload
//! briefly holds its rows and the old index beside it). With more, the index cannot decide and every credential goes to the store as before (the guard then limits failing
//! addresses before the lookup).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::store::{CredentialDigests, Store, StoreError};

/// Users indexed at most: about 40 MB. Past it the index stands aside (see the module doc).
pub const MAX_INDEXED_USERS: usize = 250_000;
/// Least time between two refreshes' starts.
const MIN_REFRESH_SPACING: Duration = Duration::from_millis(50);

/// The first 128 bits of a SHA-256: enough to tell 2^64 credentials apart, half the memory.
type Prefix = [u8; 16];

/// Compared against for an unknown uuid, so that costs what a known one with a wrong secret does.
const NO_SUCH_SECRET: Prefix = [0; 16];

/// A presented credential, by its SHA-256 (hex).
#[derive(Debug, Clone, Copy)]
pub enum Probe<'a> {
    Token(&'a str),
    TwoFactor(Uuid, &'a str),
    ApiKey(&'a str),
}

#[derive(Default)]
struct Sets {
    tokens: HashSet<Prefix>,
    two_factor: HashMap<Uuid, Prefix>,
    api_keys: HashSet<Prefix>,
}

impl Sets {
    fn new(users: &[CredentialDigests]) -> Self {
        let mut sets = Self::default();
        for user in users {
            if let Some(token) = user.webhook_token_sha256.as_deref().and_then(prefix) {
                sets.tokens.insert(token);
            }
            let uuid = user
                .webhook_uuid
                .as_deref()
                .and_then(|uuid| Uuid::try_parse(uuid).ok());
            let secret = user.webhook_secret_sha256.as_deref().and_then(prefix);
            if let (Some(uuid), Some(secret)) = (uuid, secret) {
                sets.two_factor.insert(uuid, secret);
            }
            if let Some(key) = user.api_key_sha256.as_deref().and_then(prefix) {
                sets.api_keys.insert(key);
            }
        }
        sets
    }

    fn holds(&self, probe: Probe<'_>) -> bool {
        match probe {
            Probe::Token(digest) => prefix(digest).is_some_and(|p| self.tokens.contains(&p)),
            Probe::ApiKey(digest) => prefix(digest).is_some_and(|p| self.api_keys.contains(&p)),
            Probe::TwoFactor(uuid, digest) => {
                let (expected, known) = match self.two_factor.get(&uuid) {
                    Some(expected) => (expected, true),
                    None => (&NO_SUCH_SECRET, false),
                };
                let presented = prefix(digest).unwrap_or([0xff; 16]);
                bool::from(presented.ct_eq(expected)) && known
            }
        }
    }
}

fn prefix(hex_digest: &str) -> Option<Prefix> {
    let mut prefix = [0_u8; 16];
    hex::decode_to_slice(hex_digest.get(..32)?, &mut prefix).ok()?;
    Some(prefix)
}

struct Loaded {
    /// `None`: more active users than `MAX_INDEXED_USERS`; the index cannot decide.
    sets: Option<Sets>,
}

/// What the index says of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No active user has it: refuse without a query.
    Unknown,
    /// Go on to the usual check (it is indexed, or the index cannot decide).
    MaybeKnown,
}

enum Lookup {
    Held,
    Missed,
    Undecided,
}

#[derive(Default)]
pub struct KnownCredentials {
    loaded: RwLock<Option<Loaded>>,
    refresh: Mutex<Refresh>,
    queries: AtomicU64,
}

#[derive(Default)]
struct Refresh {
    /// When the latest refresh that succeeded began.
    last_started: Option<Instant>,
    /// When the latest attempt began, failed or not (for the spacing).
    last_attempt: Option<Instant>,
    /// `credentials_version` as of the installed load.
    version: Option<i64>,
}

impl KnownCredentials {
    /// Whether `probe` may belong to an active user. A miss waits for a refresh that began after
    /// `arrived`.
    pub async fn verdict(
        &self,
        probe: Probe<'_>,
        arrived: Instant,
        store: &Store,
    ) -> Result<Verdict, StoreError> {
        if !matches!(self.lookup(probe), Lookup::Missed) {
            return Ok(Verdict::MaybeKnown);
        }
        self.refresh_since(arrived, store).await?;
        Ok(match self.lookup(probe) {
            Lookup::Held | Lookup::Undecided => Verdict::MaybeKnown,
            Lookup::Missed => Verdict::Unknown,
        })
    }

    /// Loads the index now (at start), so the first guesses do not wait for it.
    pub async fn preload(&self, store: &Store) -> Result<(), StoreError> {
        let mut refresh = self.refresh.lock().await;
        let started = Instant::now();
        refresh.last_attempt = Some(started);
        // Read before the load: a change meanwhile leaves the load ahead of it, never behind.
        let version = self.read_version(store).await?;
        self.load(store).await?;
        refresh.version = Some(version);
        refresh.last_started = Some(started);
        Ok(())
    }

    /// Whether a miss can be answered from memory (loaded, and not too many users to index).
    pub fn decides(&self) -> bool {
        matches!(self.read().as_ref(), Some(Loaded { sets: Some(_), .. }))
    }

    /// Queries this index has made (loads and version reads).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn lookup(&self, probe: Probe<'_>) -> Lookup {
        let loaded = self.read();
        let Some(loaded) = loaded.as_ref() else {
            return Lookup::Missed;
        };
        let Some(sets) = &loaded.sets else {
            return Lookup::Undecided;
        };
        if sets.holds(probe) {
            Lookup::Held
        } else {
            Lookup::Missed
        }
    }

    /// One refresh at a time: whoever waited while another ran finds its work done if that one
    /// began after they arrived.
    async fn refresh_since(&self, arrived: Instant, store: &Store) -> Result<(), StoreError> {
        let mut refresh = self.refresh.lock().await;
        if refresh
            .last_started
            .is_some_and(|started| started >= arrived)
        {
            return Ok(());
        }
        if let Some(last) = refresh.last_attempt {
            tokio::time::sleep_until((last + MIN_REFRESH_SPACING).into()).await;
        }
        let started = Instant::now();
        refresh.last_attempt = Some(started);
        // Read before the load: a change meanwhile leaves the load ahead of it, never behind.
        let version = self.read_version(store).await?;
        if refresh.version != Some(version) || self.read().is_none() {
            self.load(store).await?;
            refresh.version = Some(version);
        }
        // Only now: whoever waited on a refresh that failed tries again rather than trusting it.
        refresh.last_started = Some(started);
        Ok(())
    }

    async fn read_version(&self, store: &Store) -> Result<i64, StoreError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        store.credentials().version().await
    }

    async fn load(&self, store: &Store) -> Result<(), StoreError> {
        let limit = i64::try_from(MAX_INDEXED_USERS + 1).unwrap_or(i64::MAX);
        self.queries.fetch_add(1, Ordering::Relaxed);
        let users = store.credentials().active_credential_digests(limit).await?;
        let sets = if users.len() > MAX_INDEXED_USERS {
            tracing::warn!(
                max = MAX_INDEXED_USERS,
                "more active users than the credential index holds: every credential is checked in the store"
            );
            None
        } else {
            Some(Sets::new(&users))
        };
        let mut loaded = self
            .loaded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *loaded = Some(Loaded { sets });
        Ok(())
    }

    // A panic while holding the lock cannot leave a half-built index: it is replaced whole.
    fn read(&self) -> RwLockReadGuard<'_, Option<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::credentials::sha256_hex;

    fn digests(token: &str, uuid: &Uuid, secret: &str, key: &str) -> CredentialDigests {
        CredentialDigests {
            webhook_token_sha256: Some(sha256_hex(token)),
            webhook_uuid: Some(uuid.to_string()),
            webhook_secret_sha256: Some(sha256_hex(secret)),
            api_key_sha256: Some(sha256_hex(key)),
        }
    }

    #[test]
    fn the_sets_hold_exactly_the_issued_credentials() {
        let uuid = Uuid::new_v4();
        let sets = Sets::new(&[digests("t", &uuid, "s", "k")]);
        assert!(sets.holds(Probe::Token(&sha256_hex("t"))));
        assert!(!sets.holds(Probe::Token(&sha256_hex("u"))));
        assert!(sets.holds(Probe::TwoFactor(uuid, &sha256_hex("s"))));
        assert!(!sets.holds(Probe::TwoFactor(uuid, &sha256_hex("t"))));
        assert!(!sets.holds(Probe::TwoFactor(Uuid::new_v4(), &sha256_hex("s"))));
        assert!(sets.holds(Probe::ApiKey(&sha256_hex("k"))));
        assert!(!sets.holds(Probe::ApiKey(&sha256_hex("t"))));
        assert!(!sets.holds(Probe::Token("not hex")));
    }

    #[test]
    fn users_without_some_credential_index_the_rest() {
        let sets = Sets::new(&[CredentialDigests {
            webhook_token_sha256: Some(sha256_hex("t")),
            webhook_uuid: None,
            webhook_secret_sha256: None,
            api_key_sha256: None,
        }]);
        assert!(sets.holds(Probe::Token(&sha256_hex("t"))));
        assert!(sets.two_factor.is_empty() && sets.api_keys.is_empty());
    }

    #[test]
    fn a_miss_is_never_final_before_a_refresh() {
        let known = KnownCredentials::default();
        let probe = Probe::Token("00");
        assert!(matches!(known.lookup(probe), Lookup::Missed));
        *known.loaded.write().expect("unpoisoned") = Some(Loaded {
            sets: Some(Sets::default()),
        });
        assert!(matches!(known.lookup(probe), Lookup::Missed));
    }

    #[test]
    fn an_overfull_index_decides_nothing() {
        let known = KnownCredentials::default();
        *known.loaded.write().expect("unpoisoned") = Some(Loaded { sets: None });
        assert!(!known.decides());
        assert!(matches!(
            known.lookup(Probe::Token("00")),
            Lookup::Undecided
        ));
    }
}
