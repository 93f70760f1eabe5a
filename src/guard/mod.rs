//! Abuse controls in front of the webhook: a rate limit per user, a limit on failed
//! authentications per client address, a progressive lockout per (client address, presented
//! credential), and an optional IP allowlist. Every table here has a hard cap on keys.
//!
//! Failures are counted by what the caller controls (their address, and what they presented from
//! it), never by the credential alone, and the credential is checked first: a request carrying the
//! right credential is never refused because of failures someone else caused. The authenticator
//! refuses unknown credentials from memory, so checking first costs no query per guess (see
//! `src/users`).
//! The webhook handlers call, in this order:
//! 1. [`Guard::client_ip`] (the TCP peer, or what trusted proxies forwarded);
//! 2. only while the authenticator cannot refuse unknown credentials from memory (more users
//!    than it indexes): [`Guard::check_failures`] before the store lookup;
//! 3. [`Guard::record_failure`] (answered 429 once over a limit, else 401) or
//!    [`Guard::record_success`] once the credential was verified or refused;
//! 4. [`Guard::admit`] with the authenticated user (and their own limit, if they have one).
//!
//! The allowlist runs earlier still, as a layer on the webhook routes (`src/http/guard.rs`).
//! Architecture invariant: `guard` knows nothing about HTTP; it answers with [`Refusal`]s.

mod client_ip;
mod lockout;
mod rate_limit;
mod table;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use client_ip::{
    AllowlistError, IpAllowlist, TrustedProxies, TRADINGVIEW, TRADINGVIEW_ADDRESSES,
};
pub use lockout::{Lockout, LockoutPolicy, Presented};
pub use rate_limit::{RateLimit, RateLimitError, RateLimiter};
pub use table::Key;

/// How long until the refused caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up (a `Retry-After` of 0 would invite an immediate retry).
    pub fn seconds(&self) -> u64 {
        let seconds = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        seconds.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user sent more than their quota.
    RateLimited(RetryAfter),
    /// The caller's address failed to authenticate too often recently (with this credential, or
    /// with any).
    LockedOut(RetryAfter),
}

impl Refusal {
    pub fn retry_after(&self) -> RetryAfter {
        match self {
            Self::RateLimited(retry_after) | Self::LockedOut(retry_after) => *retry_after,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The quota of users who have none of their own.
    pub default_rate_limit: RateLimit,
    pub lockout: LockoutPolicy,
    /// Failed authentications per client address, whatever was presented: a burst of
    /// `requests`, then one per `window / requests`.
    pub address_failures: RateLimit,
    /// `None`: every address may call the webhook.
    pub allowlist: Option<IpAllowlist>,
    /// Whose X-Forwarded-For names the client (for the allowlist and the failure counts).
    pub trusted_proxies: TrustedProxies,
}

/// The default failure budget of one address: 30 at once, then one every 2 s. TradingView sends
/// every user's alerts from four addresses, so this only ever refuses failures (a right
/// credential is checked first), never anyone's correct alerts.
pub const DEFAULT_ADDRESS_FAILURES: u32 = 30;

pub fn default_address_failures() -> RateLimit {
    RateLimit::new(DEFAULT_ADDRESS_FAILURES, Duration::from_secs(60)).unwrap_or_default()
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            default_rate_limit: RateLimit::default(),
            lockout: LockoutPolicy::default(),
            address_failures: default_address_failures(),
            allowlist: None,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// A failed authentication this instance counted, for the others to count too: the keys of the
/// address and of (address, credential), digests that hold no credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedFailure {
    pub address: Key,
    pub credential: Key,
}

pub struct Guard {
    default_rate_limit: RateLimit,
    /// Where counted failures go for other instances (`src/peer_failures.rs`); `None`: alone.
    peers: Option<tokio::sync::mpsc::Sender<CountedFailure>>,
    rate_limiter: RateLimiter,
    lockout: Lockout,
    address_failures: RateLimit,
    failures_per_address: RateLimiter,
    allowlist: Option<IpAllowlist>,
    trusted_proxies: TrustedProxies,
}

impl Guard {
    pub fn new(config: GuardConfig) -> Self {
        let origin = Instant::now();
        Self {
            default_rate_limit: config.default_rate_limit,
            peers: None,
            rate_limiter: RateLimiter::new(RateLimiter::DEFAULT_MAX_KEYS, origin),
            lockout: Lockout::new(config.lockout, Lockout::DEFAULT_MAX_KEYS, origin),
            address_failures: config.address_failures,
            failures_per_address: RateLimiter::new(RateLimiter::DEFAULT_MAX_KEYS, origin),
            allowlist: config.allowlist,
            trusted_proxies: config.trusted_proxies,
        }
    }

    /// Tells `peers` of every failure this guard counts from now on. When they cannot keep up
    /// the failure is still counted here, only not shared (the channel never blocks a request).
    pub fn share_failures_with(mut self, peers: tokio::sync::mpsc::Sender<CountedFailure>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// A failure another instance counted: counted here as if it had happened here, so an
    /// address's budget and a credential's lockout hold whichever instance a guess reaches.
    pub fn peer_failure(&self, failure: CountedFailure) {
        let now = Instant::now();
        // Over budget already: nothing more to count.
        let _ = self
            .failures_per_address
            .check_key(failure.address, self.address_failures, now);
        self.lockout.record_failure_of(failure.credential, now);
    }

    pub fn allowlist(&self) -> Option<&IpAllowlist> {
        self.allowlist.as_ref()
    }

    /// The client: the TCP peer, unless that is a trusted proxy (then what it forwarded). A
    /// trusted proxy that forwarded something unreadable counts as the client itself.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[Option<&str>]) -> IpAddr {
        self.trusted_proxies
            .client_ip(peer, forwarded_for)
            .unwrap_or_else(|| peer.to_canonical())
    }

    /// Before a check that would cost a store lookup: an address over its failure budget, or
    /// locked out with this credential, is refused unchecked. Counts nothing.
    pub fn check_failures(&self, client: IpAddr, presented: Presented<'_>) -> Result<(), Refusal> {
        let now = Instant::now();
        self.lockout
            .check(client, presented, now)
            .map_err(Refusal::LockedOut)?;
        self.failures_per_address
            .peek_key(&address_key(client), self.address_failures, now)
            .map_err(Refusal::LockedOut)
    }

    /// A failed authentication, counted against the address and against (address, credential):
    /// `Err` when the caller is now over either limit (answered 429 instead of 401).
    pub fn record_failure(&self, client: IpAddr, presented: Presented<'_>) -> Result<(), Refusal> {
        let now = Instant::now();
        let address = address_key(client);
        let over_budget = self
            .failures_per_address
            .check_key(address, self.address_failures, now);
        // The failure that locks is still answered 401; the ones after it, 429.
        let locked = self.lockout.check(client, presented, now);
        if let (Some(peers), Ok(()), Ok(())) = (&self.peers, &locked, &over_budget) {
            // Only failures that counted: once refused here, a peer has heard enough to refuse
            // too, and a flood of refused guesses costs the database nothing.
            let _ = peers.try_send(CountedFailure {
                address,
                credential: presented.key(client),
            });
        }
        if locked.is_ok() {
            if let Some(lock) = self.lockout.record_failure(client, presented, now) {
                // No credential nor address in the line: only that a lock happened.
                tracing::warn!(
                    lock_seconds = lock.seconds(),
                    "repeated authentication failures: address and credential locked"
                );
            }
        }
        locked.and(over_budget).map_err(Refusal::LockedOut)
    }

    /// A verified credential clears that address's record of it.
    pub fn record_success(&self, client: IpAddr, presented: Presented<'_>) {
        self.lockout.record_success(client, presented);
    }

    /// Counts one request of an authenticated user: against `limit` (theirs), else the default.
    /// Answers the limit it applied.
    pub fn admit(&self, user_id: &str, limit: Option<RateLimit>) -> Result<RateLimit, Refusal> {
        let limit = limit.unwrap_or(self.default_rate_limit);
        self.rate_limiter
            .check(user_id, limit, Instant::now())
            .map(|()| limit)
            .map_err(Refusal::RateLimited)
    }
}

fn address_key(client: IpAddr) -> table::Key {
    table::Key::digest("address", &lockout::address_bytes(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_without_a_limit_gets_the_default_and_one_with_gets_theirs() {
        let default = RateLimit::new(2, Duration::from_secs(3_600)).expect("valid");
        let guard = Guard::new(GuardConfig {
            default_rate_limit: default,
            ..GuardConfig::default()
        });
        assert_eq!(guard.admit("alice", None), Ok(default));
        assert_eq!(guard.admit("alice", None), Ok(default));
        assert!(matches!(
            guard.admit("alice", None),
            Err(Refusal::RateLimited(_))
        ));
        let generous = RateLimit::new(5, Duration::from_secs(3_600)).expect("valid");
        for _ in 0..5 {
            assert_eq!(guard.admit("bob", Some(generous)), Ok(generous));
        }
        assert!(guard.admit("bob", Some(generous)).is_err());
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));

    #[test]
    fn a_success_before_the_lock_saves_the_credential() {
        let guard = Guard::new(GuardConfig::default());
        let presented = Presented::Token("abc");
        for _ in 0..4 {
            assert_eq!(guard.record_failure(HERE, presented), Ok(()));
        }
        guard.record_success(HERE, presented);
        assert_eq!(guard.record_failure(HERE, presented), Ok(()));
        assert_eq!(guard.check_failures(HERE, presented), Ok(()));
        for _ in 0..4 {
            assert_eq!(guard.record_failure(HERE, presented), Ok(()));
        }
        assert!(matches!(
            guard.record_failure(HERE, presented),
            Err(Refusal::LockedOut(_))
        ));
        assert!(guard.check_failures(HERE, presented).is_err());
        assert_eq!(guard.check_failures(THERE, presented), Ok(()));
    }

    #[test]
    fn an_address_over_its_failure_budget_is_refused_and_others_are_not() {
        let guard = Guard::new(GuardConfig {
            address_failures: RateLimit::new(3, Duration::from_secs(3_600)).expect("valid"),
            ..GuardConfig::default()
        });
        for n in 0..3 {
            let guess = format!("guess-{n}");
            assert_eq!(guard.record_failure(HERE, Presented::Token(&guess)), Ok(()));
        }
        assert!(guard.record_failure(HERE, Presented::Token("x")).is_err());
        assert!(guard
            .check_failures(HERE, Presented::Token("never-tried"))
            .is_err());
        assert_eq!(guard.record_failure(THERE, Presented::Token("x")), Ok(()));
    }

    #[test]
    fn no_allowlist_unless_configured() {
        assert!(Guard::new(GuardConfig::default()).allowlist().is_none());
    }
}
