//! Failed notifications, tried again later: a signal's outcome, or an account notice (`notices`).
//!
//! A notification that failed in a way the channel may get over is recorded as
//! `NotificationFailed` (a notice: `NoticeFailed`) with the time of its next attempt
//! (`retry_at`); the account keeps it among its undelivered ones until a retry is sent or
//! `NOTIFICATION_ATTEMPTS` run out.
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
//! The queue lives in the process whose saga holds the lease. Beside the saga's checkpoint it
//! keeps a low-water mark in the log (`RETRY_CHECKPOINT`: just before the oldest failure still
//! queued, 0 when none is), saved with the saga's pages; when a saga takes the lease it reads the
//! failures between the two again and queues them, so a restart or a move to another instance
//! loses no retry. An instance that lost the lease may still send what it had queued: at least
//! once again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::sync::{watch, Notify};

use aggregates::{AccountCommand, AccountEvent, SignalId, TradingAccount};
use cqrs_es::Aggregate;

use super::steps::{attempt, record};
use super::{notices, ExecutionSaga};
use crate::catchup::ReaderError;
use crate::ledger::decode;
use crate::notify::messages;
use crate::store::LogPosition;

/// Where the oldest queued failure lies in the log (0: none queued).
pub const RETRY_CHECKPOINT: &str = "execution-notification-retries";
/// Events read at a time when the queue is rebuilt.
const RECOVERY_PAGE: i64 = 1_024;

/// Retries waiting at once; beyond it the oldest failures stay undelivered (and logged).
const MAX_QUEUED: usize = 100_000;
/// Retries sent at once: the notifier paces them anyway.
const CONCURRENT_RETRIES: usize = 8;
/// A retry that could not even be tried (the store failed) waits this long.
const AFTER_STORE_FAILURE: Duration = Duration::from_secs(5);

/// How long a failed notification waits for its next attempt: `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct NotificationRetryPolicy {
    pub first: Duration,
    pub max: Duration,
}

impl Default for NotificationRetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl NotificationRetryPolicy {
    /// The wait after `failed_before` earlier failures and this one.
    pub fn delay(&self, failed_before: u32) -> Duration {
        self.first
            .saturating_mul(2_u32.saturating_pow(failed_before.min(16)))
            .min(self.max)
    }
}

/// What a retry tells: a signal's outcome, or the account notice about the event at a sequence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    Signal(SignalId),
    Notice(u64),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signal(signal_id) => write!(f, "signal {signal_id}"),
            Self::Notice(about_sequence) => write!(f, "notice of event {about_sequence}"),
        }
    }
}

type Key = (String, Subject);

/// A queued retry: when it is due, and the failure's place in the log.
#[derive(Debug, Clone, Copy)]
struct Entry {
    due: DateTime<Utc>,
    failed_at: LogPosition,
}

/// Stands for "being sent now": such an entry stays queued (it holds the low-water mark) and is
/// never taken twice.
const IN_PROGRESS: DateTime<Utc> = DateTime::<Utc>::MAX_UTC;

/// Retries by account and subject. One entry per notification, so a failure read twice (a page
/// read again) is still tried once at a time.
#[derive(Clone, Default)]
pub struct NotificationRetries {
    queue: Arc<Mutex<BTreeMap<Key, Entry>>>,
    wake: Arc<Notify>,
    /// The low-water mark last saved (`None`: not yet in this process).
    saved: Arc<Mutex<Option<LogPosition>>>,
}

impl NotificationRetries {
    /// Queues the attempt a failure recorded at `failed_at` planned for `at`.
    pub fn schedule(
        &self,
        account_id: &str,
        subject: Subject,
        at: DateTime<Utc>,
        failed_at: LogPosition,
    ) {
        let mut queue = self.lock();
        let key = (account_id.to_owned(), subject);
        if queue.len() >= MAX_QUEUED && !queue.contains_key(&key) {
            let subject = &key.1;
            tracing::warn!(account_id, %subject, "notification retry queue full; not retried");
            return;
        }
        // The same failure read again (a page re-read, a recovery) changes nothing, least of all
        // an attempt in progress; a newer failure means the last attempt was recorded.
        if queue
            .get(&key)
            .is_some_and(|queued| queued.failed_at >= failed_at)
        {
            return;
        }
        queue.insert(key, Entry { due: at, failed_at });
        drop(queue);
        self.wake.notify_one();
    }

    /// Marks every retry due by `now` as being sent, and returns them.
    fn take_due(&self, now: DateTime<Utc>) -> Vec<Key> {
        let mut queue = self.lock();
        let mut ready = Vec::new();
        for (key, entry) in queue.iter_mut() {
            if entry.due <= now {
                entry.due = IN_PROGRESS;
                ready.push(key.clone());
            }
        }
        ready
    }

    /// The retry was sent or recorded: forget it, unless a newer failure queued it again meanwhile.
    fn done(&self, key: &Key) {
        let mut queue = self.lock();
        if queue.get(key).is_some_and(|entry| entry.due == IN_PROGRESS) {
            queue.remove(key);
        }
    }

    /// The retry could not be tried: again at `at`.
    fn postpone(&self, key: &Key, at: DateTime<Utc>) {
        if let Some(entry) = self.lock().get_mut(key) {
            if entry.due == IN_PROGRESS {
                entry.due = at;
            }
        }
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock()
            .values()
            .map(|entry| entry.due)
            .filter(|due| *due != IN_PROGRESS)
            .min()
    }

    /// Just before the oldest failure queued; the start of the log (0) when none is. A failure is
    /// never an account's first event, so a queued one never makes it 0.
    fn low_water(&self) -> LogPosition {
        self.lock()
            .values()
            .map(|entry| entry.failed_at)
            .min()
            .map_or(LogPosition::default(), |oldest| LogPosition {
                global_seq: oldest.global_seq.saturating_sub(1).max(1),
            })
    }

    /// A poisoned lock only means a holder panicked between two plain map operations.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Saves the low-water mark after the saga handled a page, when it moved.
pub async fn save_low_water(saga: &ExecutionSaga) -> Result<(), ReaderError> {
    let retries = &saga.retries;
    let low_water = retries.low_water();
    let saved = *retries
        .saved
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if saved == Some(low_water) {
        return Ok(());
    }
    saga.ledger
        .store()
        .events()
        .save_checkpoint(RETRY_CHECKPOINT, low_water)
        .await?;
    *retries
        .saved
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(low_water);
    Ok(())
}

/// Queues again the failures recorded between the low-water mark and the saga's checkpoint
/// `resumed_at`: what an earlier holder of the lease had queued. Those since sent or given up
/// are skipped when they fall due (the account no longer lists them).
pub async fn recover(saga: &ExecutionSaga, resumed_at: LogPosition) -> Result<(), ReaderError> {
    let events = saga.ledger.store().events();
    let mut after = events.checkpoint(RETRY_CHECKPOINT).await?;
    if after == LogPosition::default() {
        return Ok(());
    }
    let mut queued = 0_usize;
    while after < resumed_at {
        let page = events.read_log(after, RECOVERY_PAGE).await?;
        let Some(last) = page.last().map(|logged| logged.position) else {
            break;
        };
        for logged in page {
            if logged.position > resumed_at {
                break;
            }
            let event = &logged.event;
            if event.aggregate_type != TradingAccount::TYPE
                || !matches!(
                    event.event_type.as_str(),
                    "NotificationFailed" | "NoticeFailed"
                )
            {
                continue;
            }
            let position = logged.position;
            // The saga parks what it cannot read; here it is only skipped.
            let Ok(recorded) = decode(&logged.event, saga.ledger.upcasters()) else {
                continue;
            };
            let due = match &recorded.event {
                AccountEvent::NotificationFailed {
                    signal_id,
                    retry_at: Some(at),
                    ..
                } => Some((Subject::Signal(signal_id.clone()), *at)),
                AccountEvent::NoticeFailed {
                    about_sequence,
                    retry_at: Some(at),
                    ..
                } => Some((Subject::Notice(*about_sequence), *at)),
                _ => None,
            };
            if let Some((subject, at)) = due {
                saga.retries
                    .schedule(&recorded.account_id, subject, at, position);
                queued += 1;
            }
        }
        after = last;
    }
    if queued > 0 {
        tracing::info!(queued, "notification retries queued again after resuming");
    }
    Ok(())
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
            .map(|key| {
                let saga = saga.clone();
                async move {
                    let result = retry_one(&saga, &key.0, &key.1).await;
                    (key, result)
                }
            })
            .buffer_unordered(CONCURRENT_RETRIES)
            .collect::<Vec<_>>()
            .await;
        for (key, result) in outcomes {
            match result {
                Ok(()) => retries.done(&key),
                Err(error) => {
                    let (account_id, subject) = &key;
                    tracing::warn!(account_id, %subject, %error, "notification retry not recorded");
                    let later = Utc::now()
                        + chrono::Duration::from_std(AFTER_STORE_FAILURE)
                            .unwrap_or(chrono::Duration::MAX);
                    retries.postpone(&key, later);
                }
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

/// One retry: only while the account still lists it as undelivered.
async fn retry_one(
    saga: &ExecutionSaga,
    account_id: &str,
    subject: &Subject,
) -> Result<(), ReaderError> {
    match subject {
        Subject::Signal(signal_id) => retry_signal(saga, account_id, signal_id).await,
        Subject::Notice(about_sequence) => notices::retry(saga, account_id, *about_sequence).await,
    }
}

async fn retry_signal(
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
