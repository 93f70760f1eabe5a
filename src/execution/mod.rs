//! The execution saga: a catch-up reader of the ledger's global order that takes every approved
//! signal through the exchange and every outcome to the trader, recording each step.
//!
//! Its progress is the ledger itself plus a checkpoint saved after each fully handled page. After
//! a crash it re-reads from the checkpoint; each step first asks the account where the signal
//! stands, and asks the exchange for the order's client id before sending it (and before every
//! retry), so nothing is sent twice. The catch-up runtime's lease keeps one saga running at a
//! time across instances. Failures: retries under a `RetryPolicy` with a deadline from approval
//! (`ExecutionAbandoned` past it), the account's automatic halt after repeated failures, and a
//! reduce-only close of a position a fill left unprotected (`compensate`).

mod compensate;
mod retry;
mod steps;

pub use self::retry::RetryPolicy;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use std::sync::Arc;
use tokio::sync::watch;

use aggregates::TradingAccount;

use crate::catchup::parking::{decode_or_park, park};
use crate::catchup::{CatchUpReader, ReaderError, Retried};
use crate::emergency::EmergencySwitch;
use crate::exchange::Exchange;
use crate::ledger::{Ledger, RecordedEvent};
use crate::notify::Notifier;
use crate::store::{LogPosition, LoggedEvent};

use self::steps::Step;

pub const CHECKPOINT_NAME: &str = "execution";
/// Events read per page of the global order. Small pages keep the saga's work smooth: a large
/// page arrives as a burst of exchange calls and appends that delays acknowledgements.
const PAGE_SIZE: i64 = 256;

#[derive(Clone)]
pub struct ExecutionSaga {
    ledger: Ledger,
    exchange: Arc<dyn Exchange>,
    notifier: Arc<dyn Notifier>,
    emergency: Arc<EmergencySwitch>,
    retry: RetryPolicy,
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
        }
    }

    /// Replaces the default retries and deadline (`serve --order-deadline-seconds`, tests).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Runs under the catch-up runtime, on its own, until `shutdown` turns true (tests; `serve`
    /// supervises it beside the other readers).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let ledger = self.ledger.clone();
        crate::catchup::supervisor::run_alone(self, ledger, shutdown).await;
    }

    /// Executes the page's approved signals as one batch, closes the positions its fills left
    /// unprotected, then notifies its concluded signals.
    async fn handle(&self, page: Vec<LoggedEvent>) -> Result<(), ReaderError> {
        let mut approved = Vec::new();
        let mut compensations = Vec::new();
        let mut concluded = Vec::new();
        for logged in page {
            // The log also carries other streams (the emergency stop); the saga works accounts.
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
            match Step::after(&recorded.event) {
                Some(Step::Execute { signal_id }) => approved.push((account_id, signal_id, origin)),
                Some(Step::Compensate { signal_id }) => {
                    compensations.push((account_id, signal_id, origin));
                }
                Some(Step::Notify {
                    signal_id,
                    message,
                    tell,
                }) => {
                    concluded.push((account_id, signal_id, message, tell, origin));
                }
                None => {}
            }
        }
        let executed = steps::execute_all(self, approved).await;
        let compensated = compensate::compensate_all(self, compensations).await;
        let notified = steps::notify_all(self, concluded).await;
        executed.and(compensated).and(notified).map(drop)
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

    async fn resume(&mut self) -> Result<LogPosition, ReaderError> {
        Ok(self
            .ledger
            .store()
            .events()
            .checkpoint(CHECKPOINT_NAME)
            .await?)
    }

    /// The checkpoint moves after the whole page: after a crash the page is handled again, and
    /// every step first asks the account where the signal stands.
    async fn apply(&mut self, page: Vec<LoggedEvent>) -> Result<LogPosition, ReaderError> {
        let Some(last) = page.last().map(|logged| logged.position) else {
            return self.resume().await;
        };
        self.handle(page).await?;
        self.ledger
            .store()
            .events()
            .save_checkpoint(CHECKPOINT_NAME, last)
            .await?;
        Ok(last)
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
            Some(Step::Notify {
                signal_id,
                message,
                tell,
            }) => {
                steps::notify_all(self, vec![(account_id, signal_id, message, tell, origin)])
                    .await?
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
