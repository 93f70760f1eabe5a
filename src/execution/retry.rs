//! Failed notifications, tried again later.
//!
//! A notification that failed in a way the channel may get over is recorded as
//! `NotificationFailed` with the time of its next attempt (`retry_at`); the account keeps the
//! signal among its undelivered ones until a retry is sent or `NOTIFICATION_ATTEMPTS` run out.
//! The saga queues each such event it reads here; `run` sends what is due, off the saga's path,
//! and records every outcome, which the saga reads in turn (a new failure queues the next
//! attempt). Nothing here touches an order.
//!
//! Exactly once is out of reach for a message: Telegram's `sendMessage` takes no idempotency key,
//! and sending and recording are two steps. Before each attempt the account is asked whether the
//! signal is still undelivered, so a notification recorded as sent is never sent again; a crash
//! (or a store failure) between a send and its record sends that one message again. For a message
//! that is the right side to err on: a repeated "filled" costs the trader a glance, a lost one
//! leaves them not knowing about a position.
//!
//! The queue lives in this process: after a restart, retries due before it are resumed only for
//! failures the saga reads again (its unfinished page).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::sync::{watch, Notify};

use aggregates::{AccountCommand, SignalId};

use super::steps::{attempt, record};
use super::ExecutionSaga;
use crate::catchup::ReaderError;
use crate::notify::messages;

/// Retries waiting at once; beyond it the oldest failures stay undelivered (and logged).
const MAX_QUEUED: usize = 100_000;
/// Retries sent at once: the notifier paces them anyway.
const CONCURRENT_RETRIES: usize = 8;
/// A retry that could not even be tried (the store failed) waits this long.
const AFTER_STORE_FAILURE: Duration = Duration::from_secs(5);

/// How long a failed notification waits for its next attempt: `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failed_before` earlier failures and this one.
    pub fn delay(&self, failed_before: u32) -> Duration {
        self.first
            .saturating_mul(2_u32.saturating_pow(failed_before.min(16)))
            .min(self.max)
    }
}

/// Retries by account and signal, each with when it is due. One entry per notification, so a
/// failure read twice (a page read again) is still tried once at a time.
#[derive(Clone, Default)]
pub struct NotificationRetries {
    due: Arc<Mutex<BTreeMap<(String, SignalId), DateTime<Utc>>>>,
    wake: Arc<Notify>,
}

impl NotificationRetries {
    pub fn schedule(&self, account_id: &str, signal_id: &SignalId, at: DateTime<Utc>) {
        let mut due = self.lock();
        let key = (account_id.to_owned(), signal_id.clone());
        if due.len() >= MAX_QUEUED && !due.contains_key(&key) {
            tracing::warn!(account_id, %signal_id, "notification retry queue full; not retried");
            return;
        }
        due.insert(key, at);
        drop(due);
        self.wake.notify_one();
    }

    /// Takes every retry due by `now`.
    fn take_due(&self, now: DateTime<Utc>) -> Vec<(String, SignalId)> {
        let mut due = self.lock();
        let ready: Vec<_> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &ready {
            due.remove(key);
        }
        ready
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock().values().min().copied()
    }

    /// A poisoned lock only means a holder panicked between two plain map operations.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, SignalId), DateTime<Utc>>> {
        self.due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sends the retries as they fall due until `shutdown` turns true.
pub async fn run(saga: ExecutionSaga, mut shutdown: watch::Receiver<bool>) {
    let retries = saga.retries.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let ready = retries.take_due(Utc::now());
        let outcomes = stream::iter(ready)
            .map(|(account_id, signal_id)| {
                let saga = saga.clone();
                async move {
                    let result = retry_one(&saga, &account_id, &signal_id).await;
                    (account_id, signal_id, result)
                }
            })
            .buffer_unordered(CONCURRENT_RETRIES)
            .collect::<Vec<_>>()
            .await;
        for (account_id, signal_id, result) in outcomes {
            if let Err(error) = result {
                tracing::warn!(account_id, %signal_id, %error, "notification retry not recorded");
                let later = Utc::now()
                    + chrono::Duration::from_std(AFTER_STORE_FAILURE)
                        .unwrap_or(chrono::Duration::MAX);
                retries.schedule(&account_id, &signal_id, later);
            }
        }
        let sleep = retries
            .next_due()
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = retries.wake.notified() => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One retry: only while the account still lists the signal as undelivered.
async fn retry_one(
    saga: &ExecutionSaga,
    account_id: &str,
    signal_id: &SignalId,
) -> Result<(), ReaderError> {
    let Some(failed_before) = saga.ledger.undelivered(account_id, signal_id).await? else {
        return Ok(());
    };
    let history: Vec<_> = saga
        .ledger
        .history(account_id)
        .await?
        .into_iter()
        .map(|recorded| recorded.event)
        .collect();
    let message = messages::from_history(&history, signal_id)
        .unwrap_or_else(|| format!("signal {signal_id} has ended"));
    let outcome = attempt(saga, account_id, &message, failed_before).await;
    let command = AccountCommand::RecordNotification {
        signal_id: signal_id.clone(),
        channel: saga.notifier.channel().to_owned(),
        outcome,
        at: Utc::now(),
    };
    record(saga, account_id, command).await
}
