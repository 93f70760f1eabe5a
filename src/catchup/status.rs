//! Where each catch-up reader of this process stands, shared by the supervisors (who write it), the
//! lag monitor (which measures it) and `/readyz` (which reads it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use super::wait_or_shutdown;
use crate::store::{position_label, reported_now, LogPosition, ReaderRun, Store};

/// How often lag is measured, and how often at most a reader that is behind is logged.
const MEASURE_INTERVAL: Duration = Duration::from_secs(1);
const LAG_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReaderState {
    Starting,
    Running,
    /// Another instance sharing the store holds its lease (PostgreSQL): not a fault.
    Standby,
    /// Failed or panicked and waiting to be restarted, or halted on purpose.
    Down,
    Stopped,
}

impl ReaderState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Standby => "standby",
            Self::Down => "down",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReaderStatus {
    pub reader: &'static str,
    pub state: ReaderState,
    pub restarts: u32,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub position: Option<LogPosition>,
    pub checkpoint: Option<String>,
    /// Log positions after its checkpoint: its events still to read, and any holes among them.
    pub lag_events: Option<i64>,
    /// Age of the oldest event it has not applied.
    pub lag_seconds: Option<i64>,
    /// Its parked events awaiting a decision.
    pub parked: i64,
}

impl ReaderStatus {
    fn new(reader: &'static str) -> Self {
        Self {
            reader,
            state: ReaderState::Starting,
            restarts: 0,
            last_error: None,
            position: None,
            checkpoint: None,
            lag_events: None,
            lag_seconds: None,
            parked: 0,
        }
    }
}

/// How far behind a running reader may be before the instance reports itself not ready.
#[derive(Debug, Clone, Copy)]
pub struct ReadinessLimits {
    pub max_lag_events: i64,
    pub max_lag_seconds: i64,
}

impl Default for ReadinessLimits {
    fn default() -> Self {
        Self {
            max_lag_events: 10_000,
            max_lag_seconds: 30,
        }
    }
}

#[derive(Debug, Default)]
pub struct ReaderRegistry {
    readers: Mutex<BTreeMap<&'static str, ReaderStatus>>,
    limits: ReadinessLimits,
}

impl ReaderRegistry {
    pub fn new(limits: ReadinessLimits) -> Self {
        Self {
            readers: Mutex::default(),
            limits,
        }
    }

    pub fn update(&self, reader: &'static str, change: impl FnOnce(&mut ReaderStatus)) {
        let mut readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(
            readers
                .entry(reader)
                .or_insert_with(|| ReaderStatus::new(reader)),
        );
    }

    pub fn get(&self, reader: &'static str) -> Option<ReaderStatus> {
        let readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        readers.get(reader).cloned()
    }

    pub fn snapshot(&self) -> Vec<ReaderStatus> {
        let readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        readers.values().cloned().collect()
    }

    pub fn set_position(&self, reader: &'static str, position: LogPosition) {
        self.update(reader, |status| {
            status.position = Some(position);
            status.checkpoint = Some(position_label(position));
        });
    }

    /// The first reader that makes this instance not ready, and why: one that is down, or running
    /// further behind than the limits. Parked events alone do not: they are visible, not a fault.
    pub fn unready(&self) -> Option<(ReaderStatus, String)> {
        let limits = self.limits;
        self.snapshot().into_iter().find_map(|status| {
            let why = match status.state {
                ReaderState::Down => Some(format!(
                    "down: {}",
                    status.last_error.as_deref().unwrap_or("stopped")
                )),
                ReaderState::Running if status.lag_events.unwrap_or(0) > limits.max_lag_events => {
                    Some(format!("{} events behind", status.lag_events.unwrap_or(0)))
                }
                ReaderState::Running
                    if status.lag_seconds.unwrap_or(0) > limits.max_lag_seconds =>
                {
                    Some(format!("{} s behind", status.lag_seconds.unwrap_or(0)))
                }
                _ => None,
            };
            why.map(|why| (status, why))
        })
    }

    /// Writes what this process knows of `reader` to the store, for `projections status`.
    pub async fn persist(&self, store: &Store, reader: &'static str) {
        let Some(status) = self.get(reader) else {
            return;
        };
        let run = ReaderRun {
            reader: reader.to_owned(),
            state: status.state.as_str().to_owned(),
            restarts: i64::from(status.restarts),
            last_error: status.last_error,
            updated_at: reported_now(),
        };
        if let Err(error) = store.parked().report_reader_run(&run).await {
            tracing::warn!(%error, reader, "cannot record the reader's state");
        }
    }
}

/// How far `after` is behind the log: positions after it, and the age of the first event there.
pub async fn lag_after(store: &Store, after: LogPosition) -> crate::store::Result<(i64, i64)> {
    let head = store.events().head().await?;
    lag_behind(store, after, head).await
}

/// How far `after` is behind `head`. Measured from positions, not by counting rows: a count
/// costs in proportion to the lag, so a reader far behind would slow the database the further it
/// fell. A rolled-back append's hole counts as one; there are few.
async fn lag_behind(
    store: &Store,
    after: LogPosition,
    head: LogPosition,
) -> crate::store::Result<(i64, i64)> {
    let positions = head.global_seq.saturating_sub(after.global_seq).max(0);
    if positions == 0 {
        return Ok((0, 0));
    }
    let next = store.events().read_log(after, 1).await?;
    let oldest = next
        .first()
        .and_then(|logged| logged.event.metadata.get("recorded_at"))
        .and_then(|at| at.as_str())
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| (Utc::now() - at.with_timezone(&Utc)).num_seconds().max(0));
    Ok((positions, oldest.unwrap_or(0)))
}

/// Measures every running reader's lag and parked count every second until shutdown; logs a reader
/// that is behind at most every ten seconds.
pub async fn monitor_lag(
    store: Store,
    registry: std::sync::Arc<ReaderRegistry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut logged_at: BTreeMap<&'static str, Instant> = BTreeMap::new();
    loop {
        let parked: BTreeMap<String, i64> = store
            .parked()
            .open_parked_counts()
            .await
            .map(|counts| counts.into_iter().collect())
            .unwrap_or_default();
        let head = store.events().head().await.ok();
        for status in registry.snapshot() {
            let reader = status.reader;
            let measured = match (status.state, status.position, head) {
                (ReaderState::Running, Some(position), Some(head)) => {
                    lag_behind(&store, position, head).await.ok()
                }
                _ => None,
            };
            let parked = parked.get(reader).copied().unwrap_or(0);
            registry.update(reader, |status| {
                status.parked = parked;
                if let Some((events, seconds)) = measured {
                    status.lag_events = Some(events);
                    status.lag_seconds = Some(seconds);
                }
            });
            if let Some((events, seconds)) = measured {
                let due = logged_at
                    .get(reader)
                    .is_none_or(|at| at.elapsed() >= LAG_LOG_INTERVAL);
                if seconds >= 1 && due {
                    tracing::info!(
                        reader,
                        lag_events = events,
                        lag_seconds = seconds,
                        "reader is behind the log"
                    );
                    logged_at.insert(reader, Instant::now());
                }
            }
        }
        if wait_or_shutdown(&mut shutdown, MEASURE_INTERVAL).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> ReaderRegistry {
        ReaderRegistry::new(ReadinessLimits {
            max_lag_events: 10,
            max_lag_seconds: 30,
        })
    }

    #[test]
    fn a_standby_reader_or_parked_events_leave_the_instance_ready() {
        let readers = registry();
        readers.update("execution", |s| s.state = ReaderState::Standby);
        readers.update("projections", |s| {
            s.state = ReaderState::Running;
            s.parked = 3;
            s.lag_events = Some(10);
        });
        assert!(readers.unready().is_none());
    }

    #[test]
    fn a_reader_down_or_too_far_behind_is_named() {
        let readers = registry();
        readers.update("audit", |s| {
            s.state = ReaderState::Down;
            s.last_error = Some("panicked: boom".to_owned());
        });
        let (status, why) = readers.unready().expect("not ready");
        assert_eq!(
            (status.reader, why.as_str()),
            ("audit", "down: panicked: boom")
        );

        let readers = registry();
        readers.update("execution", |s| {
            s.state = ReaderState::Running;
            s.lag_events = Some(2);
            s.lag_seconds = Some(31);
        });
        let (status, why) = readers.unready().expect("not ready");
        assert_eq!((status.reader, why.as_str()), ("execution", "31 s behind"));
    }
}
