//! The user's signal quota, decided by the account itself.
//!
//! The webhook's in-memory limiter (`src/guard`) sheds floods early, but it is one process's
//! memory: with two instances behind a balancer a user would get twice their quota. The account
//! is the one place every instance agrees on — a decision only becomes true when its append
//! lands on the account's latest version — so the quota is also checked here, on the times of the
//! signals the account recorded:
//! - a signal admitted on a stale cache appends at a stale version, is refused by the store,
//!   reloaded and decided again, now counting the other instance's signals;
//! - a signal refused on a stale cache is refused on fewer signals than there really were.
//!
//! Either way no more than the quota is ever recorded, across any number of instances.
//!
//! The account remembers at most `REMEMBERED` receipt times, whatever the quota, so its state stays
//! bounded (12 KB at most, and only for an account that sent that many). A quota of more signals
//! than that is held to the same rate over a shorter window: at most `REMEMBERED` in
//! `window × REMEMBERED / signals` (stricter on bursts, equal in rate). It was 100, which refused
//! a burst of 101 signals to a quota of 1,000 a minute when they came within 6 s: the busy account
//! of issue 13 at 256 connections answered hundreds of 429s well under its quota.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Receipt times an account keeps for its quota.
pub const REMEMBERED: usize = 1_000;

/// At most `signals` recorded in any `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalQuota {
    pub signals: u32,
    pub window_seconds: u32,
}

impl SignalQuota {
    /// The quota as the account can hold it: (signals counted, over this window).
    fn enforced(self) -> Option<(usize, Duration)> {
        if self.signals == 0 || self.window_seconds == 0 {
            return None;
        }
        let signals = usize::try_from(self.signals).ok()?;
        let window_ms = i64::from(self.window_seconds) * 1_000;
        if signals <= REMEMBERED {
            return Some((signals, Duration::milliseconds(window_ms)));
        }
        // Same rate, fewer remembered: REMEMBERED signals per proportionally shorter window.
        let scaled_ms = window_ms * REMEMBERED as i64 / i64::from(self.signals);
        Some((REMEMBERED, Duration::milliseconds(scaled_ms.max(1))))
    }
}

/// When the most recent signals arrived, oldest first, at most `REMEMBERED`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentSignals(VecDeque<DateTime<Utc>>);

impl RecentSignals {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn record(&mut self, received_at: DateTime<Utc>) {
        if self.0.len() == REMEMBERED {
            self.0.pop_front();
        }
        self.0.push_back(received_at);
    }

    /// How long until one more signal fits in `quota`, if it does not now.
    pub(crate) fn wait_for(&self, quota: SignalQuota, now: DateTime<Utc>) -> Option<Duration> {
        let (signals, window) = quota.enforced()?;
        // The signal `signals` places back: while it is inside the window, the window is full.
        let index = self.0.len().checked_sub(signals)?;
        let frees_at = *self.0.get(index)? + window;
        (frees_at > now).then(|| frees_at - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("in range")
    }

    fn recent(seconds: &[i64]) -> RecentSignals {
        let mut recent = RecentSignals::default();
        for second in seconds {
            recent.record(at(*second));
        }
        recent
    }

    const THREE_PER_MINUTE: SignalQuota = SignalQuota {
        signals: 3,
        window_seconds: 60,
    };

    #[test]
    fn the_quota_admits_exactly_its_signals_in_a_window() {
        assert_eq!(recent(&[0, 1]).wait_for(THREE_PER_MINUTE, at(2)), None);
        assert_eq!(
            recent(&[0, 1, 2]).wait_for(THREE_PER_MINUTE, at(3)),
            Some(Duration::seconds(57))
        );
    }

    #[test]
    fn a_signal_leaves_the_window_exactly_one_window_after_it_arrived() {
        let full = recent(&[0, 1, 2]);
        assert_eq!(
            full.wait_for(THREE_PER_MINUTE, at(59)),
            Some(Duration::seconds(1))
        );
        assert_eq!(full.wait_for(THREE_PER_MINUTE, at(60)), None);
    }

    #[test]
    fn only_the_newest_signals_count() {
        let window = recent(&[0, 1, 2, 50, 55]);
        // Three within the last minute at 61 s: 2, 50 and 55.
        assert_eq!(
            window.wait_for(THREE_PER_MINUTE, at(61)),
            Some(Duration::seconds(1))
        );
        assert_eq!(window.wait_for(THREE_PER_MINUTE, at(62)), None);
    }

    #[test]
    fn memory_is_bounded_and_a_large_quota_keeps_its_rate() {
        let mut busy = RecentSignals::default();
        for second in 0..10_000 {
            busy.record(at(second));
        }
        assert_eq!(busy.0.len(), REMEMBERED);
        // 10,000 a minute is held as 1,000 in 6 s: the newest 1,000 arrived over 999 s, so it fits.
        let large = SignalQuota {
            signals: 10_000,
            window_seconds: 60,
        };
        assert_eq!(busy.wait_for(large, at(10_000)), None);
        let mut burst = RecentSignals::default();
        for _ in 0..REMEMBERED {
            burst.record(at(0));
        }
        assert_eq!(burst.wait_for(large, at(5)), Some(Duration::seconds(1)));
        assert_eq!(burst.wait_for(large, at(6)), None);
    }

    #[test]
    fn a_burst_up_to_a_thousand_is_held_to_the_quota_itself() {
        let thousand_a_minute = SignalQuota {
            signals: 1_000,
            window_seconds: 60,
        };
        let mut burst = RecentSignals::default();
        for _ in 0..999 {
            burst.record(at(0));
        }
        // The quota's own window, not a tenth of it: the thousandth fits, the next waits a minute.
        assert_eq!(burst.wait_for(thousand_a_minute, at(0)), None);
        burst.record(at(0));
        assert_eq!(
            burst.wait_for(thousand_a_minute, at(6)),
            Some(Duration::seconds(54))
        );
        assert_eq!(burst.wait_for(thousand_a_minute, at(60)), None);
    }

    #[test]
    fn an_empty_quota_limits_nothing() {
        let none = SignalQuota {
            signals: 0,
            window_seconds: 60,
        };
        assert_eq!(recent(&[0, 0, 0]).wait_for(none, at(0)), None);
        // A window of nothing is no quota either, even for a quota held over a scaled window:
        // a full memory of signals all at one instant must not be made to wait a millisecond.
        let no_window = SignalQuota {
            signals: 1_000,
            window_seconds: 0,
        };
        let same_instant = recent(&[0; REMEMBERED]);
        assert_eq!(same_instant.wait_for(no_window, at(0)), None);
    }
}
