//! How long the saga keeps trying to place an order: attempts with exponential backoff, and a
//! deadline counted from the signal's approval as the ledger recorded it, so a restart, a lost
//! lease or a page read again never grants an order more time. A market order placed minutes
//! after its alert is a different trade from the one the trader asked for.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Placement attempts (the first included) before the order is recorded as failed.
    pub max_attempts: u32,
    /// Wait before the second attempt; each later wait doubles, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// After this long from approval no order is placed: the signal is abandoned unless the
    /// exchange already holds its order.
    pub deadline: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_DEADLINE_SECONDS: u64 = 120;

    /// The wait before attempt `attempt` (2 for the first retry).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(31);
        self.first_delay
            .saturating_mul(1_u32 << doublings)
            .min(self.max_delay)
    }

    /// When a signal approved at `approved_at` stops being placed; `None` when the approval's
    /// time is unknown (no deadline then, only the attempts).
    pub fn deadline_for(&self, approved_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let deadline = chrono::Duration::from_std(self.deadline).ok()?;
        approved_at?.checked_add_signed(deadline)
    }
}

impl Default for RetryPolicy {
    /// About 3 s of retries (0.2 + 0.4 + 0.8 + 1.6 s), and two minutes from approval.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(Self::DEFAULT_DEADLINE_SECONDS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(60),
        };
        let waits: Vec<u128> = (2..=6)
            .map(|attempt| policy.delay_before(attempt).as_millis())
            .collect();
        assert_eq!(waits, [200, 400, 800, 1000, 1000]);
        assert_eq!(policy.delay_before(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn the_deadline_counts_from_approval() {
        let policy = RetryPolicy::default();
        let approved = DateTime::parse_from_rfc3339("2024-03-01T09:00:00Z")
            .map(|at| at.with_timezone(&Utc))
            .ok();
        assert_eq!(
            policy.deadline_for(approved).map(|at| at.to_rfc3339()),
            Some("2024-03-01T09:02:00+00:00".to_owned())
        );
        assert_eq!(policy.deadline_for(None), None);
    }
}
