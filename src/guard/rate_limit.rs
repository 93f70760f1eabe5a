//! Requests per user: GCRA (the generic cell rate algorithm), one 8-byte timestamp per key.
//!
//! A quota of `requests` per `window` lets a fresh user send `requests` at once, then one more every
//! `window / requests`. The quota is an argument of each check, not of the limiter, so every user
//! can have their own without the limiter knowing users.

use std::time::{Duration, Instant};

use super::table::{duration_nanos, BoundedTable, Entry, Key, Nanos};
use super::RetryAfter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    requests: u32,
    window: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateLimitError {
    #[error("a rate limit allows 1 to {} requests", RateLimit::MAX_REQUESTS)]
    Requests,
    #[error("a rate limit's window is 1 s to {} s", RateLimit::MAX_WINDOW.as_secs())]
    Window,
}

impl RateLimit {
    /// Seed 000's default: 10 requests per 60 s per webhook.
    pub const DEFAULT_REQUESTS: u32 = 10;
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
    pub const MAX_REQUESTS: u32 = 1_000_000;
    pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

    pub fn new(requests: u32, window: Duration) -> Result<Self, RateLimitError> {
        if !(1..=Self::MAX_REQUESTS).contains(&requests) {
            return Err(RateLimitError::Requests);
        }
        if !(Duration::from_secs(1)..=Self::MAX_WINDOW).contains(&window) {
            return Err(RateLimitError::Window);
        }
        Ok(Self { requests, window })
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Time between two requests once the burst is spent; at least 1 µs given the bounds above.
    fn emission_interval(&self) -> Nanos {
        duration_nanos(self.window) / u64::from(self.requests)
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests: Self::DEFAULT_REQUESTS,
            window: Self::DEFAULT_WINDOW,
        }
    }
}

/// When the key's next request would conform if it came with no burst left: GCRA's only state.
struct TheoreticalArrival(Nanos);

impl Entry for TheoreticalArrival {
    fn is_idle(&self, now: Nanos) -> bool {
        // At or before `now` the full burst is back: the same as a key never seen.
        self.0 <= now
    }

    fn eviction_rank(&self) -> Nanos {
        self.0
    }
}

pub struct RateLimiter {
    table: BoundedTable<TheoreticalArrival>,
}

impl RateLimiter {
    /// Users tracked at once before the least active are forgotten (and so get a fresh burst).
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    pub fn new(max_keys: usize, origin: Instant) -> Self {
        Self {
            table: BoundedTable::new(max_keys, origin),
        }
    }

    /// Counts one request of `user_id` against `limit`; refused requests are not counted.
    pub fn check(&self, user_id: &str, limit: RateLimit, now: Instant) -> Result<(), RetryAfter> {
        self.check_key(Key::digest("user", user_id.as_bytes()), limit, now)
    }

    /// Counts one event of `key` against `limit`; refused events are not counted.
    pub(super) fn check_key(
        &self,
        key: Key,
        limit: RateLimit,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let now = self.table.nanos(now);
        let interval = limit.emission_interval();
        let window = duration_nanos(limit.window);
        self.table.upsert(
            key,
            now,
            || TheoreticalArrival(now),
            |arrival| {
                let next = arrival.0.max(now).saturating_add(interval);
                if next - now > window {
                    let wait = next - window - now;
                    return Err(RetryAfter(Duration::from_nanos(wait)));
                }
                arrival.0 = next;
                Ok(())
            },
        )
    }

    /// Whether one more event of `key` would conform now; counts nothing.
    pub(super) fn peek_key(
        &self,
        key: &Key,
        limit: RateLimit,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let now = self.table.nanos(now);
        let next = self
            .table
            .get(key, |arrival| arrival.0)
            .unwrap_or(now)
            .max(now)
            .saturating_add(limit.emission_interval());
        let window = duration_nanos(limit.window);
        if next - now > window {
            return Err(RetryAfter(Duration::from_nanos(next - window - now)));
        }
        Ok(())
    }

    pub fn tracked_keys(&self) -> usize {
        self.table.len()
    }

    pub fn max_keys(&self) -> usize {
        self.table.max_keys()
    }

    /// Memory per tracked user at most; `max_keys` times this bounds the whole limiter.
    pub fn bytes_per_key_max() -> usize {
        super::table::bytes_per_key_max::<TheoreticalArrival>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (RateLimiter, Instant) {
        let start = Instant::now();
        (RateLimiter::new(1_000, start), start)
    }

    fn per_minute(requests: u32) -> RateLimit {
        RateLimit::new(requests, Duration::from_secs(60)).expect("a valid limit")
    }

    #[test]
    fn the_default_is_ten_per_minute() {
        assert_eq!(RateLimit::default(), per_minute(10));
    }

    #[test]
    fn a_burst_of_the_quota_passes_and_the_next_is_refused() {
        let (limiter, start) = limiter();
        for n in 0..10 {
            assert_eq!(limiter.check("alice", per_minute(10), start), Ok(()), "{n}");
        }
        let refused = limiter.check("alice", per_minute(10), start);
        assert_eq!(refused, Err(RetryAfter(Duration::from_secs(6))));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let (limiter, start) = limiter();
        for _ in 0..10 {
            limiter
                .check("alice", per_minute(10), start)
                .expect("in quota");
        }
        let later = start + Duration::from_millis(1_500);
        let refused = limiter
            .check("alice", per_minute(10), later)
            .expect_err("still over quota");
        assert_eq!(refused.0, Duration::from_millis(4_500));
        assert_eq!(refused.seconds(), 5);
        assert_eq!(RetryAfter(Duration::from_nanos(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_secs(6)).seconds(), 6);
    }

    #[test]
    fn the_quota_comes_back_with_time() {
        let (limiter, start) = limiter();
        for _ in 0..10 {
            limiter
                .check("alice", per_minute(10), start)
                .expect("in quota");
        }
        let after_one_interval = start + Duration::from_secs(6);
        assert_eq!(
            limiter.check("alice", per_minute(10), after_one_interval),
            Ok(())
        );
        assert!(limiter
            .check("alice", per_minute(10), after_one_interval)
            .is_err());
        let after_a_window = start + Duration::from_secs(66);
        for _ in 0..10 {
            assert_eq!(
                limiter.check("alice", per_minute(10), after_a_window),
                Ok(())
            );
        }
    }

    #[test]
    fn refused_requests_do_not_push_the_wait_further() {
        let (limiter, start) = limiter();
        for _ in 0..10 {
            limiter
                .check("alice", per_minute(10), start)
                .expect("in quota");
        }
        for _ in 0..100 {
            assert!(limiter.check("alice", per_minute(10), start).is_err());
        }
        assert_eq!(
            limiter.check("alice", per_minute(10), start + Duration::from_secs(6)),
            Ok(())
        );
    }

    #[test]
    fn users_are_independent_and_each_has_their_own_limit() {
        let (limiter, start) = limiter();
        for _ in 0..10 {
            limiter
                .check("alice", per_minute(10), start)
                .expect("in quota");
        }
        assert!(limiter.check("alice", per_minute(10), start).is_err());
        assert_eq!(limiter.check("bob", per_minute(10), start), Ok(()));
        for n in 0..100 {
            assert_eq!(
                limiter.check("carol", per_minute(100), start),
                Ok(()),
                "{n}"
            );
        }
        assert!(limiter.check("carol", per_minute(100), start).is_err());
        assert_eq!(
            limiter.check("dave", per_minute(1), start),
            Ok(()),
            "first request of a one-per-minute user"
        );
        assert_eq!(
            limiter.check("dave", per_minute(1), start + Duration::from_secs(1)),
            Err(RetryAfter(Duration::from_secs(59)))
        );
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_users() {
        let (limiter, start) = limiter();
        for n in 0..100_000 {
            let now = start + Duration::from_millis(n);
            let _ = limiter.check(&format!("user-{n}"), per_minute(10), now);
        }
        assert!(limiter.tracked_keys() <= limiter.max_keys());
        assert!(limiter.max_keys() < 1_100);
        // The claim in ARCHITECTURE.md: under 64 bytes per tracked user.
        assert!(RateLimiter::bytes_per_key_max() <= 64);
    }

    #[test]
    fn a_user_flood_does_not_evict_a_busy_user_before_idle_ones() {
        let (limiter, start) = limiter();
        let strict = RateLimit::new(1, Duration::from_secs(3_600)).expect("valid");
        assert_eq!(limiter.check("alice", strict, start), Ok(()));
        // Other users each send one request a minute apart: their quota is back before alice's.
        for n in 0..5_000_u64 {
            let now = start + Duration::from_millis(n);
            let _ = limiter.check(&format!("user-{n}"), per_minute(10), now);
        }
        let now = start + Duration::from_secs(61);
        for n in 5_000..10_000_u64 {
            let _ = limiter.check(&format!("user-{n}"), per_minute(10), now);
        }
        assert!(limiter.check("alice", strict, now).is_err());
    }

    #[test]
    fn limits_outside_the_bounds_are_refused() {
        assert_eq!(
            RateLimit::new(0, Duration::from_secs(60)),
            Err(RateLimitError::Requests)
        );
        assert_eq!(
            RateLimit::new(10, Duration::from_millis(10)),
            Err(RateLimitError::Window)
        );
        assert_eq!(
            RateLimit::new(10, Duration::from_secs(365 * 24 * 3600)),
            Err(RateLimitError::Window)
        );
        assert!(RateLimit::new(RateLimit::MAX_REQUESTS, Duration::from_secs(1)).is_ok());
    }
}
