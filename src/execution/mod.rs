//! The execution saga: a catch-up reader of the ledger's global order that takes every approved
//! signal through the exchange and every outcome to the trader, and tells the trader of the
//! account's notices (an operator's halt or resume, a drift: `notices`), recording each step.
//!
//! Its progress is the ledger itself plus a checkpoint saved after each fully handled page. After
//! a crash it re-reads from the checkpoint; each step first asks the account where the signal
//! stands, and asks the exchange for the order's client id before sending it (and before every
//! retry), so nothing is sent twice. The catch-up runtime's lease keeps one saga running at a
//! time across instances. Failures: retries under a `RetryPolicy` with a deadline from approval
//! (`ExecutionAbandoned` past it), the account's automatic halt after repeated failures, and a
//! reduce-only close of a position a fill left unprotected (`compensate`).
//!
//! A limit order that rests on the book is recorded as `OrderResting` (the trader told once);
//! `resting::RestingWatcher`, beside the saga, records how it ends.
//!
//! A notification (or notice) that failed in a way the channel may get over is tried again later by
//! `notification_retry::run`, beside the saga, under a `NotificationRetryPolicy`, so that
//! neither a trade nor the next page waits for it.

mod compensate;
mod notices;
pub mod notification_retry;
mod recent;
mod resting;
mod retry;
mod steps;

pub use self::notification_retry::NotificationRetryPolicy;
pub use self::resting::{RestingWatcher, WatchError};
pub use self::retry::RetryPolicy;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use aggregates::{AccountEvent, EmergencyStop, TradingAccount};

use crate::catchup::parking::{decode_or_park, park};
use crate::catchup::{CatchUpReader, ReaderError, Retried};
use crate::emergency::EmergencySwitch;
use crate::exchange::Exchange;
use crate::ledger::{Ledger, RecordedEvent};
use crate::notify::{messages, Notifier};
use crate::store::{LogPosition, LoggedEvent};

use self::notices::Notice;
use self::notification_retry::{NotificationRetries, Subject};
use self::steps::{Concluded, Step};

pub const CHECKPOINT_NAME: &str = "execution";
/// Events read per page of the global order. A page costs a few round trips whatever its size
/// (the venue asked for its client ids, one placement, a round of records), so a saga that fell
/// behind catches up by pages: at 256 it filled about 525 signals a second while 1,100 arrived
/// and never caught up; at 2,048 it keeps up (benches/README, issue 13). Under live load a page
/// is what committed since the last one, far less.
const PAGE_SIZE: i64 = 2048;
/// How often a busy saga records where it stands. Not after every page: a page handled again
/// after a crash does nothing twice (each step asks the account first), so a checkpoint a moment
/// old costs a re-read, while one per page cost a transaction per commit.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ExecutionSaga {
    ledger: Ledger,
    exchange: Arc<dyn Exchange>,
    notifier: Arc<dyn Notifier>,
    emergency: Arc<EmergencySwitch>,
    /// Placement retries and the deadline from approval.
    retry: RetryPolicy,
    /// Failed notifications waiting for their next attempt (shared by clones).
    retries: NotificationRetries,
    notification_retry: NotificationRetryPolicy,
    /// What this saga recorded lately, for the notifications of its conclusions (shared by clones).
    recent: Arc<recent::RecentlyRecorded>,
    /// Handled but not yet recorded as the checkpoint, and when it was last recorded.
    unsaved: Option<LogPosition>,
    saved_at: Option<Instant>,
}

impl ExecutionSaga {
    pub fn new(
        ledger: Ledger,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
        emergency: Arc<EmergencySwitch>,
    ) -> Self {
        Self {
            ledger,
            exchange,
            notifier,
            emergency,
            retry: RetryPolicy::default(),
            retries: NotificationRetries::default(),
            notification_retry: NotificationRetryPolicy::default(),
            recent: Arc::default(),
            unsaved: None,
            saved_at: None,
        }
    }

    /// Records the checkpoint (and the retries' low-water mark) when `force`d or due.
    async fn save_progress(&mut self, force: bool) -> Result<(), ReaderError> {
        let Some(position) = self.unsaved else {
            return Ok(());
        };
        let due = self
            .saved_at
            .is_none_or(|at| at.elapsed() >= CHECKPOINT_INTERVAL);
        if !force && !due {
            return Ok(());
        }
        self.ledger
            .store()
            .events()
            .save_checkpoint(CHECKPOINT_NAME, position)
            .await?;
        notification_retry::save_low_water(self).await?;
        self.unsaved = None;
        self.saved_at = Some(Instant::now());
        Ok(())
    }

    /// Replaces the default placement retries and deadline (`serve --order-deadline-seconds`,
    /// tests).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long a failed notification waits for its next attempt (`serve
    /// --notification-retry-seconds`, tests).
    pub fn with_notification_retry_policy(mut self, policy: NotificationRetryPolicy) -> Self {
        self.notification_retry = policy;
        self
    }

    /// Retries failed notifications until `shutdown` turns true. `serve` and `run` start it beside
    /// the saga; only the notifications this saga read as failed are queued for it.
    pub async fn retry_notifications(self, shutdown: watch::Receiver<bool>) {
        notification_retry::run(self, shutdown).await;
    }

    /// Runs under the catch-up runtime, on its own, until `shutdown` turns true (tests; `serve`
    /// supervises it beside the other readers).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let ledger = self.ledger.clone();
        let retries = tokio::spawn(self.clone().retry_notifications(shutdown.clone()));
        crate::catchup::supervisor::run_alone(self, ledger, shutdown).await;
        if let Err(error) = retries.await {
            tracing::error!(%error, "the notification retries stopped abnormally");
        }
    }

    /// Executes the page's approved signals as one batch and closes the positions its fills left
    /// unprotected, while it notifies its concluded signals; queues the retries of notifications
    /// that failed.
    async fn handle(&self, page: Vec<LoggedEvent>) -> Result<(), ReaderError> {
        let mut approved = Vec::new();
        let mut compensations = Vec::new();
        let mut decoded = Vec::new();
        let mut stops = Vec::new();
        for logged in page {
            // The emergency stop's engagements and releases are handed to every account, to be
            // told as notices; other streams are not the saga's.
            if logged.event.aggregate_type == EmergencyStop::TYPE {
                stops.extend(notices::emergency_stop(logged));
                continue;
            }
            if logged.event.aggregate_type != TradingAccount::TYPE {
                continue;
            }
            let account_id = logged.event.aggregate_id.clone();
            let position = logged.position;
            let store = self.ledger.store();
            let upcasters = self.ledger.upcasters();
            // An undecodable event is parked: it stays listed until an operator decides, so no
            // execution is dropped silently, and every other account goes on.
            let Some(recorded) = decode_or_park(store, CHECKPOINT_NAME, logged, upcasters).await?
            else {
                continue;
            };
            let origin = Origin::of(position, &recorded);
            decoded.push((account_id, origin, recorded.event));
        }
        let mut concluded = Vec::new();
        let mut notices = Vec::new();
        for (index, (account_id, origin, event)) in decoded.iter().enumerate() {
            match Step::after(event) {
                Some(Step::Execute { signal_id }) => {
                    approved.push((account_id.clone(), signal_id, origin.clone()));
                }
                Some(Step::Compensate { signal_id }) => {
                    compensations.push((account_id.clone(), signal_id, origin.clone()));
                }
                Some(Step::Notify { signal_id, tell }) => {
                    // The events recorded with the conclusion (the position's change) come next
                    // in the account's stream; other accounts' appends may sit between them in
                    // the log, and a run reaching the account's last event in the page may go on
                    // in the next page.
                    let later: Vec<&(String, Origin, AccountEvent)> = decoded[index + 1..]
                        .iter()
                        .filter(|(account, _, _)| account == account_id)
                        .collect();
                    let beside: Vec<AccountEvent> = later
                        .iter()
                        .zip(origin.sequence + 1..)
                        .take_while(|((_, next, event), expected)| {
                            next.sequence == *expected && messages::recorded_with(event, &signal_id)
                        })
                        .map(|((_, _, event), _)| event.clone())
                        .collect();
                    let maybe_more = beside.len() == later.len();
                    concluded.push(Concluded {
                        account_id: account_id.clone(),
                        signal_id,
                        origin: origin.clone(),
                        conclusion: event.clone(),
                        beside,
                        maybe_more,
                        tell,
                    });
                }
                Some(Step::RetryNotification { signal_id, at }) => {
                    let subject = Subject::Signal(signal_id);
                    self.retries
                        .schedule(account_id, subject, at, origin.position);
                }
                Some(Step::Notice) => notices.push(Notice {
                    account_id: account_id.clone(),
                    origin: origin.clone(),
                    event: event.clone(),
                }),
                Some(Step::RetryNotice { about_sequence, at }) => {
                    let subject = Subject::Notice(about_sequence);
                    self.retries
                        .schedule(account_id, subject, at, origin.position);
                }
                None => {}
            }
        }
        // Closes come after the page's placements, as one sequence; a notification waits for
        // neither (its step checks the signal's stage, so running beside them is safe).
        let (trades, notified, told) = tokio::join!(
            async {
                let executed = steps::execute_all(self, approved).await;
                let compensated = compensate::compensate_all(self, compensations).await;
                executed.and(compensated)
            },
            steps::notify_all(self, concluded),
            notices::tell_all(self, notices),
        );
        trades.and(notified).and(told)?;
        notices::note_emergency_stops(self, stops).await
    }

    /// Parks the event that calls for a step the account refuses for good: its history cannot be
    /// read. It stays listed until an operator decides, so no execution is dropped silently.
    async fn park_refused(
        &self,
        account_id: &str,
        origin: &Origin,
        error: &crate::ledger::DecodeError,
    ) -> Result<(), ReaderError> {
        let refusal = crate::ledger::DecodeError {
            account_id: account_id.to_owned(),
            sequence: origin.sequence,
            event_type: origin.event_type.clone(),
            reason: format!("the account's history cannot be read: {error}"),
        };
        park(
            self.ledger.store(),
            CHECKPOINT_NAME,
            origin.position,
            &origin.event_version,
            &refusal,
        )
        .await?;
        Ok(())
    }
}

/// The event a step came from, to park it by if the step is refused for good.
#[derive(Debug, Clone)]
pub struct Origin {
    position: LogPosition,
    sequence: usize,
    event_type: String,
    event_version: String,
}

impl Origin {
    fn of(position: LogPosition, recorded: &RecordedEvent) -> Self {
        Self {
            position,
            sequence: recorded.sequence,
            event_type: recorded.event_type.clone(),
            event_version: recorded.stored_version.clone(),
        }
    }
}

#[async_trait]
impl CatchUpReader for ExecutionSaga {
    fn name(&self) -> &'static str {
        CHECKPOINT_NAME
    }

    fn page_size(&self) -> i64 {
        PAGE_SIZE
    }

    /// Also queues again the notification retries an earlier holder of the lease left.
    async fn resume(&mut self) -> Result<LogPosition, ReaderError> {
        self.unsaved = None;
        let position = self
            .ledger
            .store()
            .events()
            .checkpoint(CHECKPOINT_NAME)
            .await?;
        notification_retry::recover(self, position).await?;
        Ok(position)
    }

    /// The checkpoint moves after whole pages (at most every `CHECKPOINT_INTERVAL` while busy):
    /// after a crash those pages are handled again, and every step first asks the account where
    /// the signal stands.
    async fn apply(
        &mut self,
        _after: LogPosition,
        page: Vec<LoggedEvent>,
    ) -> Result<LogPosition, ReaderError> {
        let Some(last) = page.last().map(|logged| logged.position) else {
            return self.resume().await;
        };
        self.handle(page).await?;
        self.unsaved = Some(last);
        self.save_progress(false).await?;
        Ok(last)
    }

    /// Caught up: what was handled is recorded once its interval has passed.
    async fn idle(&mut self) {
        if let Err(error) = self.save_progress(false).await {
            tracing::warn!(%error, "the saga could not record its checkpoint; it will try again");
        }
    }

    async fn finish(&mut self) {
        if let Err(error) = self.save_progress(true).await {
            tracing::error!(%error, "the saga could not record its checkpoint at shutdown");
        }
    }

    async fn retry(&mut self, event: LoggedEvent) -> Result<Retried, ReaderError> {
        let event_position = event.position;
        let store = self.ledger.store();
        let Some(recorded) =
            decode_or_park(store, CHECKPOINT_NAME, event, self.ledger.upcasters()).await?
        else {
            return Ok(Retried::ParkedAgain);
        };
        let account_id = recorded.account_id.clone();
        let origin = Origin::of(event_position, &recorded);
        let parked = match Step::after(&recorded.event) {
            Some(Step::Execute { signal_id }) => {
                steps::execute_all(self, vec![(account_id, signal_id, origin)]).await?
            }
            Some(Step::Compensate { signal_id }) => {
                compensate::compensate_all(self, vec![(account_id, signal_id, origin)]).await?
            }
            Some(Step::Notify { signal_id, tell }) => {
                let concluded = Concluded {
                    account_id,
                    signal_id,
                    origin,
                    conclusion: recorded.event,
                    beside: Vec::new(),
                    maybe_more: true,
                    tell,
                };
                steps::notify_all(self, vec![concluded]).await?
            }
            Some(Step::RetryNotification { signal_id, at }) => {
                let subject = Subject::Signal(signal_id);
                self.retries
                    .schedule(&account_id, subject, at, event_position);
                0
            }
            Some(Step::Notice) => {
                let notice = Notice {
                    account_id,
                    origin,
                    event: recorded.event,
                };
                notices::tell_all(self, vec![notice]).await?
            }
            Some(Step::RetryNotice { about_sequence, at }) => {
                let subject = Subject::Notice(about_sequence);
                self.retries
                    .schedule(&account_id, subject, at, event_position);
                0
            }
            None => 0,
        };
        Ok(if parked > 0 {
            Retried::ParkedAgain
        } else {
            Retried::Applied
        })
    }
}
