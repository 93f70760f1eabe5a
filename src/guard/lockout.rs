//! Progressive lockout per client address and presented credential together: after `max_failures`
//! failed authentications within `failure_window`, that address's further failures with that
//! credential are answered "locked" for `first_lock`, doubling with each further lockout up to
//! `max_lock`. A success forgets the record.
//!
//! Keyed by what the caller controls, never by the credential alone: a stranger who knows a
//! webhook uuid (it is in the URL, not a secret) can lock only themselves, not its owner.
//! Unknown credentials are counted like known ones, so being locked out says nothing about whether
//! a credential exists.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::table::{duration_nanos, BoundedTable, Entry, Key, Nanos};
use super::RetryAfter;

/// What a request presented as its credential, before anything checked it.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// `POST /api/webhook?token=...`: the token (missing counts as the empty token).
    Token(&'a str),
    /// `POST /webhooks/{webhook_uuid}`: the uuid (the secret is checked with it).
    WebhookUuid(&'a str),
    /// `Authorization: Bearer <api key>`.
    ApiKey(&'a str),
    /// The session cookie.
    Session(&'a str),
    /// A staff member's login, with a password.
    StaffLogin(&'a str),
}

impl Presented<'_> {
    pub(super) fn key(&self, client: IpAddr) -> Key {
        let address = address_bytes(client);
        match self {
            Self::Token(token) => Key::of("token", &[&address, token.as_bytes()]),
            // One key per uuid however it is spelled (case, braces), so respelling buys no tries.
            Self::WebhookUuid(raw) => match Uuid::try_parse(raw) {
                Ok(uuid) => Key::of("webhook", &[&address, uuid.as_bytes()]),
                Err(_) => Key::of("webhook-unparsed", &[&address, raw.as_bytes()]),
            },
            Self::ApiKey(key) => Key::of("api-key", &[&address, key.as_bytes()]),
            Self::Session(token) => Key::of("session", &[&address, token.as_bytes()]),
            Self::StaffLogin(login) => Key::of("staff-login", &[&address, login.as_bytes()]),
        }
    }
}

/// An address as 16 bytes (IPv4 mapped), so `1.2.3.4` and `::ffff:1.2.3.4` are one caller.
pub(super) fn address_bytes(client: IpAddr) -> [u8; 16] {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub failure_window: Duration,
    pub first_lock: Duration,
    pub max_lock: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            failure_window: Duration::from_secs(15 * 60),
            first_lock: Duration::from_secs(60),
            max_lock: Duration::from_secs(60 * 60),
        }
    }
}

impl LockoutPolicy {
    /// `first_lock * 2^earlier_lockouts`, at most `max_lock`.
    fn lock_duration(&self, earlier_lockouts: u32) -> Duration {
        let factor = 1_u32.checked_shl(earlier_lockouts).unwrap_or(u32::MAX);
        self.first_lock
            .checked_mul(factor)
            .unwrap_or(self.max_lock)
            .min(self.max_lock)
    }
}

struct FailureRecord {
    failures_in_window: u32,
    /// Lockouts so far: each doubles the next.
    lockouts: u32,
    window_started_at: Nanos,
    locked_until: Nanos,
    /// The policy's failure window, kept so the table can tell idleness on its own.
    failure_window: Nanos,
}

impl FailureRecord {
    fn new(now: Nanos, failure_window: Nanos) -> Self {
        Self {
            failures_in_window: 0,
            lockouts: 0,
            window_started_at: now,
            locked_until: 0,
            failure_window,
        }
    }

    /// The escalation is remembered for one failure window after the last lock or window ends.
    fn forgotten_at(&self) -> Nanos {
        self.locked_until
            .max(self.window_started_at)
            .saturating_add(self.failure_window)
    }
}

impl Entry for FailureRecord {
    fn is_idle(&self, now: Nanos) -> bool {
        self.forgotten_at() <= now
    }

    fn eviction_rank(&self) -> Nanos {
        self.forgotten_at()
    }
}

pub struct Lockout {
    policy: LockoutPolicy,
    table: BoundedTable<FailureRecord>,
}

impl Lockout {
    /// Credentials tracked at once; past it the records closest to being forgotten go first.
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    pub fn new(policy: LockoutPolicy, max_keys: usize, origin: Instant) -> Self {
        Self {
            policy,
            table: BoundedTable::new(max_keys, origin),
        }
    }

    /// Refuses a locked (address, credential); costs one hash and one map read, nothing else.
    pub fn check(
        &self,
        client: IpAddr,
        presented: Presented<'_>,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let now = self.table.nanos(now);
        let locked_until = self
            .table
            .get(&presented.key(client), |record| record.locked_until)
            .unwrap_or(0);
        if now < locked_until {
            return Err(RetryAfter(Duration::from_nanos(locked_until - now)));
        }
        Ok(())
    }

    /// Counts a failed authentication; returns how long the credential is now locked, if this
    /// failure locked it.
    pub fn record_failure(
        &self,
        client: IpAddr,
        presented: Presented<'_>,
        now: Instant,
    ) -> Option<RetryAfter> {
        self.record_failure_of(presented.key(client), now)
    }

    /// `record_failure` by the (address, credential) key: a failure another instance counted.
    pub(super) fn record_failure_of(&self, key: Key, now: Instant) -> Option<RetryAfter> {
        let now = self.table.nanos(now);
        let policy = self.policy;
        let window = duration_nanos(policy.failure_window);
        self.table.upsert(
            key,
            now,
            || FailureRecord::new(now, window),
            |record| {
                if record.is_idle(now) {
                    // Quiet for a whole window since the last lock: start over, escalation too.
                    *record = FailureRecord::new(now, window);
                }
                if now < record.locked_until {
                    // Raced past `check` while locked: the lock already answers for it.
                    return None;
                }
                if record.failures_in_window == 0
                    || now >= record.window_started_at.saturating_add(window)
                {
                    record.failures_in_window = 0;
                    record.window_started_at = now;
                }
                record.failures_in_window += 1;
                if record.failures_in_window < policy.max_failures {
                    return None;
                }
                let lock = policy.lock_duration(record.lockouts);
                record.lockouts = record.lockouts.saturating_add(1);
                record.failures_in_window = 0;
                record.locked_until = now.saturating_add(duration_nanos(lock));
                Some(RetryAfter(lock))
            },
        )
    }

    /// A verified credential starts from a clean record (from that address).
    pub fn record_success(&self, client: IpAddr, presented: Presented<'_>) {
        self.table.remove(&presented.key(client));
    }

    pub fn tracked_keys(&self) -> usize {
        self.table.len()
    }

    pub fn max_keys(&self) -> usize {
        self.table.max_keys()
    }

    /// Memory per tracked credential at most; `max_keys` times this bounds the whole table.
    pub fn bytes_per_key_max() -> usize {
        super::table::bytes_per_key_max::<FailureRecord>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: Presented<'static> = Presented::Token("not-a-real-token");
    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));

    fn lockout() -> (Lockout, Instant) {
        let start = Instant::now();
        (Lockout::new(LockoutPolicy::default(), 1_000, start), start)
    }

    fn fail(lockout: &Lockout, presented: Presented<'_>, times: u32, now: Instant) {
        for _ in 0..times {
            assert!(
                lockout.check(HERE, presented, now).is_ok(),
                "not locked yet"
            );
            lockout.record_failure(HERE, presented, now);
        }
    }

    #[test]
    fn five_failures_lock_for_a_minute() {
        let (lockout, start) = lockout();
        fail(&lockout, TOKEN, 4, start);
        assert!(lockout.check(HERE, TOKEN, start).is_ok());
        assert_eq!(
            lockout.record_failure(HERE, TOKEN, start),
            Some(RetryAfter(Duration::from_secs(60)))
        );
        let later = start + Duration::from_secs(20);
        assert_eq!(
            lockout.check(HERE, TOKEN, later),
            Err(RetryAfter(Duration::from_secs(40)))
        );
        assert!(lockout
            .check(HERE, TOKEN, start + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn each_further_lockout_doubles_up_to_an_hour() {
        let (lockout, start) = lockout();
        let mut now = start;
        let mut locks = Vec::new();
        for _ in 0..9 {
            fail(&lockout, TOKEN, 4, now);
            let lock = lockout.record_failure(HERE, TOKEN, now).expect("locked");
            locks.push(lock.seconds());
            now += lock.0;
        }
        assert_eq!(locks, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let (lockout, start) = lockout();
        for n in 0..20 {
            let now = start + Duration::from_secs(4 * 60) * n;
            assert!(lockout.check(HERE, TOKEN, now).is_ok(), "attempt {n}");
            assert_eq!(lockout.record_failure(HERE, TOKEN, now), None);
        }
    }

    #[test]
    fn a_success_clears_the_count() {
        let (lockout, start) = lockout();
        fail(&lockout, TOKEN, 4, start);
        lockout.record_success(HERE, TOKEN);
        fail(&lockout, TOKEN, 4, start);
        assert!(lockout.check(HERE, TOKEN, start).is_ok());
        assert_eq!(lockout.tracked_keys(), 1);
    }

    #[test]
    fn the_escalation_is_forgotten_after_a_quiet_window() {
        let (lockout, start) = lockout();
        fail(&lockout, TOKEN, 5, start);
        let quiet = start + Duration::from_secs(60 + 15 * 60);
        fail(&lockout, TOKEN, 4, quiet);
        assert_eq!(
            lockout.record_failure(HERE, TOKEN, quiet),
            Some(RetryAfter(Duration::from_secs(60))),
            "back to the first lock"
        );
    }

    #[test]
    fn credentials_are_locked_independently_and_uuids_by_value() {
        let (lockout, start) = lockout();
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        fail(&lockout, Presented::WebhookUuid(uuid), 4, start);
        lockout.record_failure(
            HERE,
            Presented::WebhookUuid("{0F8FAD5B-D9CB-469F-A165-70867728950E}"),
            start,
        );
        assert!(lockout
            .check(HERE, Presented::WebhookUuid(uuid), start)
            .is_err());
        assert!(lockout.check(HERE, TOKEN, start).is_ok());
        assert!(lockout.check(HERE, Presented::Token(uuid), start).is_ok());
        // The same uuid from another address is not locked: strangers lock only themselves.
        assert!(lockout
            .check(THERE, Presented::WebhookUuid(uuid), start)
            .is_ok());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_credentials() {
        let (lockout, start) = lockout();
        fail(&lockout, TOKEN, 5, start);
        for n in 0..50_000 {
            let token = format!("guess-{n}");
            lockout.record_failure(
                HERE,
                Presented::Token(&token),
                start + Duration::from_millis(n),
            );
        }
        assert!(lockout.tracked_keys() <= lockout.max_keys());
        // Records closest to being forgotten went first: the locked credential is still locked.
        assert!(lockout
            .check(HERE, TOKEN, start + Duration::from_secs(50))
            .is_err());
        // The claim in ARCHITECTURE.md: under 128 bytes per tracked credential.
        assert!(Lockout::bytes_per_key_max() <= 128);
    }
}
