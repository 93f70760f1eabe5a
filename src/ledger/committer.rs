//! Group commit: appends from many accounts that arrive together share one transaction, so one
//! disk flush acknowledges many signals. A batch that conflicts is retried request by request, so
//! one account's conflict never fails another account's append.

use std::sync::Arc;

use cqrs_es::persist::SerializedEvent;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinSet;

use crate::store::{Store, StoreError};

/// Largest batch one transaction carries: bounds a transaction's size and the latency one slow
/// batch adds to the requests queued behind it.
const MAX_BATCH_EVENTS: usize = 2_000;
/// Appends waiting for a committer; a full queue makes callers wait (backpressure), not fail.
const QUEUE_CAPACITY: usize = 4_096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("another writer appended to the account first")]
    Conflict,
    #[error("{0}")]
    Failed(Arc<StoreError>),
    #[error("the ledger is shutting down")]
    Closed,
}

struct Request {
    events: Vec<SerializedEvent>,
    reply: oneshot::Sender<Result<(), CommitError>>,
}

pub struct Committer {
    queue: mpsc::Sender<Request>,
}

impl Committer {
    /// Starts `workers` committers: one is right for SQLite (a single writer), a few let
    /// PostgreSQL flush one batch while the next is being written.
    pub fn start(store: Store, workers: usize, tasks: &mut JoinSet<()>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            tasks.spawn(run_worker(store.clone(), receiver.clone()));
        }
        Self { queue }
    }

    pub async fn append(&self, events: Vec<SerializedEvent>) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { events, reply })
            .await
            .map_err(|_| CommitError::Closed)?;
        answer.await.map_err(|_| CommitError::Closed)?
    }
}

async fn run_worker(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Request>>>) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut size = first.events.len();
            let mut batch = vec![first];
            while size < MAX_BATCH_EVENTS {
                match receiver.try_recv() {
                    Ok(next) => {
                        size += next.events.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        commit(&store, batch).await;
    }
}

async fn commit(store: &Store, batch: Vec<Request>) {
    if batch.len() == 1 {
        for request in batch {
            let result = store.append(&request.events).await.map_err(to_commit_error);
            let _ = request.reply.send(result);
        }
        return;
    }
    let events: Vec<SerializedEvent> = batch
        .iter()
        .flat_map(|request| request.events.iter().cloned())
        .collect();
    match store.append(&events).await {
        Ok(()) => {
            for request in batch {
                let _ = request.reply.send(Ok(()));
            }
        }
        Err(StoreError::Conflict) => {
            for request in batch {
                let result = store.append(&request.events).await.map_err(to_commit_error);
                let _ = request.reply.send(result);
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for request in batch {
                let _ = request.reply.send(Err(CommitError::Failed(error.clone())));
            }
        }
    }
}

fn to_commit_error(error: StoreError) -> CommitError {
    match error {
        StoreError::Conflict => CommitError::Conflict,
        other => CommitError::Failed(Arc::new(other)),
    }
}
