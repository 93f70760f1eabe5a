//! `projections rebuild`: replays the log from scratch into the `rebuild_*` copy of the tables with
//! the same runner the service uses, then compares it with the live tables at the same log
//! position. Also `projections status`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use projections::{Projection, ReadModels};

use super::{ReadSideError, Runner, LEASE_NAME};
use crate::store::{LogPosition, Store, TableSet};

/// How long the comparison waits for a running service to bring the live copy to the rebuild's
/// position.
const LIVE_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
const LIVE_POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub projection: Projection,
    /// Where both copies were compared.
    pub position: LogPosition,
    pub rows: usize,
    /// Rows present in one copy and not the other, or different in both.
    pub differing_rows: usize,
}

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events_read: u64,
    pub elapsed: Duration,
    pub verdicts: Vec<Verdict>,
}

impl RebuildReport {
    pub fn all_equal(&self) -> bool {
        self.verdicts
            .iter()
            .all(|verdict| verdict.differing_rows == 0)
    }

    pub fn events_per_second(&self) -> f64 {
        self.events_read as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Rebuilds `selected` from scratch and checks them against the live copy. `total` hears how many
/// events the log holds, `progress` of every page applied.
pub async fn rebuild(
    store: &Store,
    selected: &[Projection],
    total: &mut (dyn FnMut(u64) + Send),
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<RebuildReport, ReadSideError> {
    // When no service runs the projections, bring the live copy up to date first, so it is
    // compared as of now; otherwise the service keeps it current and is waited for below.
    let lease = store.try_lease(LEASE_NAME).await?;
    let mut live = Runner::new(store.clone(), TableSet::Live, selected);
    if lease.is_some() {
        live.catch_up(None, &mut |_| {}).await?;
    }
    for projection in selected {
        store
            .read_models()
            .reset(TableSet::Rebuild, *projection)
            .await?;
    }
    total(u64::try_from(store.events().count_after(LogPosition::default()).await?).unwrap_or(0));
    let started = Instant::now();
    let mut events_read = 0u64;
    let mut fresh = Runner::new(store.clone(), TableSet::Rebuild, selected);
    fresh
        .catch_up(None, &mut |read| {
            events_read += read as u64;
            progress(read);
        })
        .await?;
    let elapsed = started.elapsed();
    let mut verdicts = Vec::new();
    for projection in selected {
        verdicts.push(compare(store, *projection, lease.is_some()).await?);
    }
    drop(lease);
    Ok(RebuildReport {
        events_read,
        elapsed,
        verdicts,
    })
}

/// Brings both copies of one projection to the same position, then compares their rows.
async fn compare(
    store: &Store,
    projection: Projection,
    live_is_ours: bool,
) -> Result<Verdict, ReadSideError> {
    let deadline = Instant::now() + LIVE_CATCH_UP_TIMEOUT;
    let mut fresh = Runner::new(store.clone(), TableSet::Rebuild, &[projection]);
    let mut live = Runner::new(store.clone(), TableSet::Live, &[projection]);
    loop {
        let (live_at, live_rows) = store.read_models().rows(TableSet::Live, projection).await?;
        let (fresh_at, fresh_rows) = store
            .read_models()
            .rows(TableSet::Rebuild, projection)
            .await?;
        if live_at == fresh_at {
            return Ok(Verdict {
                projection,
                position: live_at,
                rows: row_count(&fresh_rows),
                differing_rows: differing_rows(&live_rows, &fresh_rows),
            });
        }
        if live_at > fresh_at {
            fresh.catch_up(Some(live_at), &mut |_| {}).await?;
        } else if live_is_ours {
            live.catch_up(Some(fresh_at), &mut |_| {}).await?;
        } else if Instant::now() < deadline {
            // The service is catching up; it gets there on its own.
            tokio::time::sleep(LIVE_POLL_INTERVAL).await;
        } else {
            return Err(ReadSideError::LiveBehind {
                projection: projection.name(),
            });
        }
    }
}

fn row_count(models: &ReadModels) -> usize {
    models.positions.len() + models.trades.len() + models.daily_volume.len() + models.signals.len()
}

fn differing_rows(a: &ReadModels, b: &ReadModels) -> usize {
    differing(&a.positions, &b.positions)
        + differing(&a.trades, &b.trades)
        + differing(&a.daily_volume, &b.daily_volume)
        + differing(&a.signals, &b.signals)
}

fn differing<K: Ord, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> usize {
    let only_or_changed = |x: &BTreeMap<K, V>, y: &BTreeMap<K, V>| {
        x.iter()
            .filter(|(key, value)| y.get(key) != Some(value))
            .count()
    };
    only_or_changed(a, b) + b.keys().filter(|key| !a.contains_key(key)).count()
}
