//! Abuse controls in front of the webhook: a rate limit per user, a progressive lockout per
//! presented credential, and an optional IP allowlist. Every table here has a hard cap on keys.
//!
//! The webhook handlers call, in this order:
//! 1. [`Guard::check_lockout`] before any store lookup or body parse;
//! 2. [`Guard::record_authentication`] once the credential was verified or refused;
//! 3. [`Guard::admit`] with the authenticated user (and their own limit, if they have one).
//!
//! The allowlist runs earlier still, as a layer on the webhook routes (`src/http/guard.rs`).
//! Architecture invariant: `guard` knows nothing about HTTP; it answers with [`Refusal`]s.

mod client_ip;
mod lockout;
mod rate_limit;
mod table;

use std::time::{Duration, Instant};

pub use client_ip::{AllowlistError, IpAllowlist, TRADINGVIEW, TRADINGVIEW_ADDRESSES};
pub use lockout::{Lockout, LockoutPolicy, Presented};
pub use rate_limit::{RateLimit, RateLimitError, RateLimiter};

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
    /// The presented credential failed too often recently; it is not checked until then.
    LockedOut(RetryAfter),
}

#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// The quota of users who have none of their own.
    pub default_rate_limit: RateLimit,
    pub lockout: LockoutPolicy,
    /// `None`: every address may call the webhook.
    pub allowlist: Option<IpAllowlist>,
}

pub struct Guard {
    default_rate_limit: RateLimit,
    rate_limiter: RateLimiter,
    lockout: Lockout,
    allowlist: Option<IpAllowlist>,
}

impl Guard {
    pub fn new(config: GuardConfig) -> Self {
        let origin = Instant::now();
        Self {
            default_rate_limit: config.default_rate_limit,
            rate_limiter: RateLimiter::new(RateLimiter::DEFAULT_MAX_KEYS, origin),
            lockout: Lockout::new(config.lockout, Lockout::DEFAULT_MAX_KEYS, origin),
            allowlist: config.allowlist,
        }
    }

    pub fn allowlist(&self) -> Option<&IpAllowlist> {
        self.allowlist.as_ref()
    }

    /// Before anything costly: a credential that failed too often is refused unchecked.
    pub fn check_lockout(&self, presented: Presented<'_>) -> Result<(), Refusal> {
        self.lockout
            .check(presented, Instant::now())
            .map_err(Refusal::LockedOut)
    }

    /// After the credential was checked: a failure counts toward a lockout, a success clears it.
    /// (Not called when the check itself failed, e.g. the store was down.)
    pub fn record_authentication(&self, presented: Presented<'_>, succeeded: bool) {
        if succeeded {
            self.lockout.record_success(presented);
        } else if let Some(lock) = self.lockout.record_failure(presented, Instant::now()) {
            // No credential in the line: only that some credential was locked, and for how long.
            tracing::warn!(
                lock_seconds = lock.seconds(),
                "repeated authentication failures: credential locked"
            );
        }
    }

    /// Counts one request of an authenticated user: against `limit` (theirs), else the default.
    pub fn admit(&self, user_id: &str, limit: Option<RateLimit>) -> Result<(), Refusal> {
        let limit = limit.unwrap_or(self.default_rate_limit);
        self.rate_limiter
            .check(user_id, limit, Instant::now())
            .map_err(Refusal::RateLimited)
    }
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
        assert_eq!(guard.admit("alice", None), Ok(()));
        assert_eq!(guard.admit("alice", None), Ok(()));
        assert!(matches!(
            guard.admit("alice", None),
            Err(Refusal::RateLimited(_))
        ));
        let generous = RateLimit::new(5, Duration::from_secs(3_600)).expect("valid");
        for _ in 0..5 {
            assert_eq!(guard.admit("bob", Some(generous)), Ok(()));
        }
        assert!(guard.admit("bob", Some(generous)).is_err());
    }

    #[test]
    fn a_success_before_the_lock_saves_the_credential() {
        let guard = Guard::new(GuardConfig::default());
        let presented = Presented::Token("abc");
        for _ in 0..4 {
            guard.record_authentication(presented, false);
        }
        guard.record_authentication(presented, true);
        guard.record_authentication(presented, false);
        assert_eq!(guard.check_lockout(presented), Ok(()));
        for _ in 0..4 {
            guard.record_authentication(presented, false);
        }
        assert!(matches!(
            guard.check_lockout(presented),
            Err(Refusal::LockedOut(_))
        ));
    }

    #[test]
    fn no_allowlist_unless_configured() {
        assert!(Guard::new(GuardConfig::default()).allowlist().is_none());
    }
}
