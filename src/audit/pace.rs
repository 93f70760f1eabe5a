//! How hard a walk of the trail may press on the machine. After each page a paced walk rests in
//! proportion to the time the page took, so it is busy at most a set share of the time however
//! many rows it has to walk: the signals beside it keep their CPU and their database. A burst of
//! five minutes' rows at full speed put the SQLite soak 12,000 events behind (benches/README,
//! twelfth session).

use std::time::{Duration, Instant};

/// The share of the time a walk may be busy: one part busy in `1 + rest_per_busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    rest_per_busy: u32,
}

impl Pace {
    /// No rest: `ledgerhook audit verify`, which someone is waiting for.
    pub const FULL_SPEED: Pace = Pace { rest_per_busy: 0 };

    /// Busy at most one part in `1 + rest_per_busy` of the time.
    pub const fn resting(rest_per_busy: u32) -> Self {
        Self { rest_per_busy }
    }

    /// The rest owed for a page that kept the walk busy for `busy`.
    pub fn rest_after(self, busy: Duration) -> Duration {
        busy.saturating_mul(self.rest_per_busy)
    }

    /// Rests for what the page begun at `page_started` owes.
    pub async fn rest_since(self, page_started: Instant) {
        let rest = self.rest_after(page_started.elapsed());
        if !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_walk_rests_in_proportion_to_its_work() {
        let busy = Duration::from_millis(40);
        assert_eq!(Pace::FULL_SPEED.rest_after(busy), Duration::ZERO);
        assert_eq!(
            Pace::resting(3).rest_after(busy),
            Duration::from_millis(120)
        );
        assert_eq!(
            Pace::resting(u32::MAX).rest_after(Duration::MAX),
            Duration::MAX,
            "saturates"
        );
    }
}
