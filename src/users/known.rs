//! Every active user's credential digests in memory, so that an unknown webhook token, webhook
//! uuid (or a known uuid with a wrong secret) or API key is refused without a query: guesses never
//! reach the pool the ledger writes through.
//!
//! The index only ever refuses. A credential it holds goes on to the authenticator's usual check
//! (remembered on PostgreSQL, else the store), so a revoked credential still in the index is
//! refused there; the index must only never *miss* a valid one. So before a miss is final:
//! - PostgreSQL: the index must be current, i.e. loaded after every change this process has heard
//!   of (a NOTIFY, a change made through this process, the listener going up or down — all bump
//!   the generation). A miss on a stale index waits for a reload. While the listener is down the
//!   generation is bumped every second, so new users get in within a second.
//! - SQLite: no announcements, and the CLI writes from another process, so a miss waits for a
//!   read of `credentials_version` (a trigger-kept counter) that began after the request arrived,
//!   and a reload if it moved.
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
    /// The change generation this load is known to include.
    generation: u64,
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
    Missed { final_answer: bool },
    Undecided,
}

pub struct KnownCredentials {
    /// PostgreSQL: changes are announced, so a current index's miss is final.
    announced: bool,
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
    /// SQLite: `credentials_version` as of the installed load.
    version: Option<i64>,
}

impl KnownCredentials {
    pub fn new(announced: bool) -> Self {
        Self {
            announced,
            loaded: RwLock::new(None),
            refresh: Mutex::new(Refresh::default()),
            queries: AtomicU64::new(0),
        }
    }

    /// Whether `probe` may belong to an active user. `generation` is the caller's count of the
    /// changes it has heard of (PostgreSQL); a miss on an index loaded before the latest one, or
    /// any miss on SQLite, waits for a refresh that began after `arrived`.
    pub async fn verdict(
        &self,
        probe: Probe<'_>,
        arrived: Instant,
        store: &Store,
        generation: impl Fn() -> u64,
    ) -> Result<Verdict, StoreError> {
        match self.lookup(probe, generation()) {
            Lookup::Held | Lookup::Undecided => return Ok(Verdict::MaybeKnown),
            Lookup::Missed { final_answer: true } => return Ok(Verdict::Unknown),
            Lookup::Missed {
                final_answer: false,
            } => {}
        }
        self.refresh_since(arrived, store, &generation).await?;
        Ok(match self.lookup(probe, generation()) {
            Lookup::Held | Lookup::Undecided => Verdict::MaybeKnown,
            Lookup::Missed { .. } => Verdict::Unknown,
        })
    }

    /// Loads the index now (at start, and when the listener comes up), so the first guesses do
    /// not wait for it. `generation` as in `verdict`.
    pub async fn preload(&self, store: &Store, generation: u64) -> Result<(), StoreError> {
        let mut refresh = self.refresh.lock().await;
        let started = Instant::now();
        refresh.last_attempt = Some(started);
        let version = store.credentials().version().await?;
        if version.is_some() {
            self.queries.fetch_add(1, Ordering::Relaxed);
        }
        self.load(store, generation).await?;
        refresh.version = version;
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

    fn lookup(&self, probe: Probe<'_>, generation: u64) -> Lookup {
        let loaded = self.read();
        let Some(loaded) = loaded.as_ref() else {
            return Lookup::Missed {
                final_answer: false,
            };
        };
        let Some(sets) = &loaded.sets else {
            return Lookup::Undecided;
        };
        if sets.holds(probe) {
            return Lookup::Held;
        }
        Lookup::Missed {
            final_answer: self.announced && loaded.generation == generation,
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.read()
            .as_ref()
            .is_some_and(|loaded| loaded.generation == generation)
    }

    /// One refresh at a time: whoever waited while another ran finds its work done if that one
    /// began after they arrived.
    async fn refresh_since(
        &self,
        arrived: Instant,
        store: &Store,
        generation: &impl Fn() -> u64,
    ) -> Result<(), StoreError> {
        let mut refresh = self.refresh.lock().await;
        if refresh
            .last_started
            .is_some_and(|started| started >= arrived)
        {
            return Ok(());
        }
        if self.announced && self.is_current(generation()) {
            return Ok(());
        }
        if let Some(last) = refresh.last_attempt {
            tokio::time::sleep_until((last + MIN_REFRESH_SPACING).into()).await;
        }
        let started = Instant::now();
        refresh.last_attempt = Some(started);
        // Read before the queries: a change heard of meanwhile leaves the load stale, not lost.
        let generation = generation();
        let version = store.credentials().version().await?;
        if version.is_some() {
            self.queries.fetch_add(1, Ordering::Relaxed);
        }
        if version.is_none() || version != refresh.version || self.read().is_none() {
            self.load(store, generation).await?;
            refresh.version = version;
        }
        // Only now: whoever waited on a refresh that failed tries again rather than trusting it.
        refresh.last_started = Some(started);
        Ok(())
    }

    async fn load(&self, store: &Store, generation: u64) -> Result<(), StoreError> {
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
        *loaded = Some(Loaded { sets, generation });
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
    fn a_miss_is_final_only_on_a_current_announced_index() {
        let known = KnownCredentials::new(true);
        let probe = Probe::Token("00");
        assert!(matches!(
            known.lookup(probe, 0),
            Lookup::Missed {
                final_answer: false
            }
        ));
        *known.loaded.write().expect("unpoisoned") = Some(Loaded {
            sets: Some(Sets::default()),
            generation: 3,
        });
        assert!(matches!(
            known.lookup(probe, 3),
            Lookup::Missed { final_answer: true }
        ));
        assert!(matches!(
            known.lookup(probe, 4),
            Lookup::Missed {
                final_answer: false
            }
        ));
        let unannounced = KnownCredentials::new(false);
        *unannounced.loaded.write().expect("unpoisoned") = Some(Loaded {
            sets: Some(Sets::default()),
            generation: 0,
        });
        assert!(matches!(
            unannounced.lookup(probe, 0),
            Lookup::Missed {
                final_answer: false
            }
        ));
    }

    #[test]
    fn an_overfull_index_decides_nothing() {
        let known = KnownCredentials::new(true);
        *known.loaded.write().expect("unpoisoned") = Some(Loaded {
            sets: None,
            generation: 0,
        });
        assert!(!known.decides());
        assert!(matches!(
            known.lookup(Probe::Token("00"), 0),
            Lookup::Undecided
        ));
    }
}
