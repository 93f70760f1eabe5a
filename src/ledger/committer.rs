//! Group commit: appends from many accounts that arrive together share one transaction, so one
//! disk flush acknowledges many signals. A batch that conflicts is retried request by request, so
//! one account's conflict never fails another account's append.
//!
//! What commits is also published in-process with its positions (`Committer::subscribe`), so the
//! catch-up readers of this process take new events as they commit instead of polling for them.

use std::sync::Arc;

use cqrs_es::persist::SerializedEvent;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};
use tokio::task::JoinSet;

use crate::store::{LoggedEvent, SignalKey, Store, StoreError};

/// Largest batch one transaction carries: bounds a transaction's size and the latency one slow
/// batch adds to the requests queued behind it.
const MAX_BATCH_EVENTS: usize = 2_000;
/// Appends waiting for a committer; a full queue makes callers wait (backpressure), not fail.
const QUEUE_CAPACITY: usize = 4_096;
/// Committed batches kept for a slow subscriber; one that falls further behind is told it lagged
/// and reads the log instead.
const PUBLISHED_CAPACITY: usize = 1_024;

/// Events one append committed, in the order of their positions.
pub type CommittedBatch = Arc<[LoggedEvent]>;

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
    /// The idempotency keys the events put to use, written with them.
    keys: Vec<SignalKey>,
    reply: oneshot::Sender<Result<(), CommitError>>,
}

pub struct Committer {
    queue: mpsc::Sender<Request>,
    published: broadcast::Sender<CommittedBatch>,
}

impl Committer {
    /// Starts `workers` committers: one is right for SQLite (a single writer), a few let
    /// PostgreSQL flush one batch while the next is being written.
    pub fn start(store: Store, workers: usize, tasks: &mut JoinSet<()>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let (published, _) = broadcast::channel(PUBLISHED_CAPACITY);
        for _ in 0..workers.max(1) {
            let worker = Worker {
                store: store.clone(),
                published: published.clone(),
            };
            tasks.spawn(worker.run(receiver.clone()));
        }
        Self { queue, published }
    }

    /// Every batch committed from now on, as it commits.
    pub fn subscribe(&self) -> broadcast::Receiver<CommittedBatch> {
        self.published.subscribe()
    }

    pub async fn append(
        &self,
        events: Vec<SerializedEvent>,
        keys: Vec<SignalKey>,
    ) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request {
                events,
                keys,
                reply,
            })
            .await
            .map_err(|_| CommitError::Closed)?;
        answer.await.map_err(|_| CommitError::Closed)?
    }
}

struct Worker {
    store: Store,
    published: broadcast::Sender<CommittedBatch>,
}

impl Worker {
    async fn run(self, receiver: Arc<Mutex<mpsc::Receiver<Request>>>) {
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
            self.commit(batch).await;
        }
    }

    async fn commit(&self, batch: Vec<Request>) {
        if batch.len() == 1 {
            for request in batch {
                self.commit_alone(request).await;
            }
            return;
        }
        // The requests' events and keys are moved into one append, not copied; each request
        // remembers how many were its own, to be committed alone after a conflict.
        let mut events = Vec::new();
        let mut keys = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch {
            replies.push((request.reply, request.events.len(), request.keys.len()));
            events.extend(request.events);
            keys.extend(request.keys);
        }
        match self.store.events().append_remembering(&events, &keys).await {
            Ok(positions) => {
                for (reply, _, _) in replies {
                    let _ = reply.send(Ok(()));
                }
                self.publish(events, positions);
            }
            Err(StoreError::Conflict) => {
                let mut events = events.into_iter();
                let mut keys = keys.into_iter();
                for (reply, event_count, key_count) in replies {
                    let request = Request {
                        events: events.by_ref().take(event_count).collect(),
                        keys: keys.by_ref().take(key_count).collect(),
                        reply,
                    };
                    self.commit_alone(request).await;
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for (reply, _, _) in replies {
                    let _ = reply.send(Err(CommitError::Failed(error.clone())));
                }
            }
        }
    }

    async fn commit_alone(&self, request: Request) {
        let appended = self
            .store
            .events()
            .append_remembering(&request.events, &request.keys)
            .await;
        match appended {
            Ok(positions) => {
                let _ = request.reply.send(Ok(()));
                self.publish(request.events, positions);
            }
            Err(error) => {
                let _ = request.reply.send(Err(to_commit_error(error)));
            }
        }
    }

    fn publish(&self, events: Vec<SerializedEvent>, positions: Vec<crate::store::LogPosition>) {
        if self.published.receiver_count() == 0 {
            return;
        }
        let batch: CommittedBatch = positions
            .into_iter()
            .zip(events)
            .map(|(position, event)| LoggedEvent {
                position,
                event: Arc::new(event),
            })
            .collect();
        let _ = self.published.send(batch);
    }
}

fn to_commit_error(error: StoreError) -> CommitError {
    match error {
        StoreError::Conflict => CommitError::Conflict,
        other => CommitError::Failed(Arc::new(other)),
    }
}
