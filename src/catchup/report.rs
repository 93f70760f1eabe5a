//! `projections status` and `projections parked`, read from the store by another process than the
//! one running the readers: every reader's checkpoint, lag and parked count, and what the instance
//! running it last reported (state, restarts, last error).

use std::collections::BTreeMap;

use serde::Serialize;

use projections::Projection;

use super::status::lag_after;
use crate::store::{position_label, ReaderRun, Store, TableSet};

#[derive(Debug, Clone, Serialize)]
pub struct StoredReaderStatus {
    /// `execution`, `audit`, or a read model (run by the `projections` reader).
    pub name: String,
    /// The reader that runs it (its lease, its parked events).
    pub reader: String,
    pub checkpoint: String,
    pub lag_events: i64,
    pub lag_seconds: i64,
    pub parked: i64,
    /// As last reported by the instance running it; `None` if none ever did.
    pub run: Option<ReaderRun>,
}

pub async fn stored_statuses(store: &Store) -> crate::store::Result<Vec<StoredReaderStatus>> {
    let parked: BTreeMap<String, i64> = store
        .parked()
        .open_parked_counts()
        .await?
        .into_iter()
        .collect();
    let runs: BTreeMap<String, ReaderRun> = store
        .parked()
        .reader_runs()
        .await?
        .into_iter()
        .map(|run| (run.reader.clone(), run))
        .collect();
    let mut checkpoints = vec![
        (
            crate::execution::CHECKPOINT_NAME.to_owned(),
            crate::execution::CHECKPOINT_NAME,
            store
                .events()
                .checkpoint(crate::execution::CHECKPOINT_NAME)
                .await?,
        ),
        (
            crate::audit::writer::CHECKPOINT_NAME.to_owned(),
            crate::audit::writer::CHECKPOINT_NAME,
            store
                .events()
                .checkpoint(crate::audit::writer::CHECKPOINT_NAME)
                .await?,
        ),
    ];
    let projections = store.read_models().checkpoints(TableSet::Live).await?;
    for projection in Projection::ALL {
        if let Some(checkpoint) = projections.get(&projection) {
            checkpoints.push((
                projection.name().to_owned(),
                crate::readside::LEASE_NAME,
                *checkpoint,
            ));
        }
    }
    let mut statuses = Vec::new();
    for (name, reader, checkpoint) in checkpoints {
        let (lag_events, lag_seconds) = lag_after(store, checkpoint).await?;
        statuses.push(StoredReaderStatus {
            name,
            reader: reader.to_owned(),
            checkpoint: position_label(checkpoint),
            lag_events,
            lag_seconds,
            parked: parked.get(reader).copied().unwrap_or(0),
            run: runs.get(reader).cloned(),
        });
    }
    Ok(statuses)
}
