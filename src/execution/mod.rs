//! The execution saga: a catch-up reader of the ledger's global order that takes every approved
//! signal through the exchange and every outcome to the trader, recording each step.
//!
//! Its progress is the ledger itself plus a checkpoint saved after each fully handled page. After
//! a crash it re-reads from the checkpoint; each step first asks the account where the signal
//! stands, and the exchange recognises a client order id it has seen, so nothing happens twice.

mod steps;

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use tokio::sync::watch;

use aggregates::TradingAccount;

use crate::catchup::{acquire_lease, wait_or_shutdown, ERROR_BACKOFF};
use crate::emergency::EmergencySwitch;
use crate::exchange::Exchange;
use crate::ledger::{decode, Ledger};
use crate::notify::Notifier;
use crate::store::{LogPosition, LoggedEvent};

use self::steps::Step;

pub const CHECKPOINT_NAME: &str = "execution";
/// Events read per page of the global order. Small pages keep the saga's work smooth: a large
/// page arrives as a burst of exchange calls and appends that delays acknowledgements.
const PAGE_SIZE: i64 = 256;
/// How often the log is polled for events appended by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ExecutionSaga {
    ledger: Ledger,
    exchange: Arc<dyn Exchange>,
    notifier: Arc<dyn Notifier>,
    emergency: Arc<EmergencySwitch>,
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
        }
    }

    /// Runs until `shutdown` turns true; the page in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let store = self.ledger.store().clone();
        let Some(mut lease) = acquire_lease(
            self.ledger.store(),
            CHECKPOINT_NAME,
            "the execution saga",
            &mut shutdown,
        )
        .await
        else {
            return;
        };
        let mut checkpoint = loop {
            match store.events().checkpoint(CHECKPOINT_NAME).await {
                Ok(position) => break position,
                Err(error) => {
                    tracing::error!(%error, "execution saga cannot read its checkpoint");
                    if wait_or_shutdown(&mut shutdown, ERROR_BACKOFF).await {
                        return;
                    }
                }
            }
        };
        while !*shutdown.borrow() {
            if !lease.is_held().await {
                tracing::warn!("execution saga lost its lease; waiting to take it again");
                let Some(renewed) = acquire_lease(
                    self.ledger.store(),
                    CHECKPOINT_NAME,
                    "the execution saga",
                    &mut shutdown,
                )
                .await
                else {
                    return;
                };
                lease = renewed;
                // Another process may have moved on meanwhile.
                if let Ok(position) = store.events().checkpoint(CHECKPOINT_NAME).await {
                    checkpoint = checkpoint.max(position);
                }
            }
            let appended = self.ledger.appended().notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            match self.handle_next_page(checkpoint).await {
                Ok(Some(next)) => checkpoint = next,
                Ok(None) => {
                    tokio::select! {
                        _ = appended => {}
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "execution saga will retry its page");
                    if wait_or_shutdown(&mut shutdown, ERROR_BACKOFF).await {
                        return;
                    }
                }
            }
        }
    }

    /// Handles the page after `checkpoint`; returns the new checkpoint, or `None` when the log
    /// holds nothing new.
    pub async fn handle_next_page(
        &self,
        checkpoint: LogPosition,
    ) -> Result<Option<LogPosition>, String> {
        let store = self.ledger.store();
        let page = store
            .events()
            .read_log(checkpoint, PAGE_SIZE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|logged| logged.position) else {
            return Ok(None);
        };
        self.handle(page).await?;
        store
            .events()
            .save_checkpoint(CHECKPOINT_NAME, last)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(last))
    }

    /// Executes the page's approved signals as one batch, then notifies its concluded ones.
    async fn handle(&self, page: Vec<LoggedEvent>) -> Result<(), String> {
        let mut approved = Vec::new();
        let mut concluded = Vec::new();
        for logged in page {
            // The log also carries other streams (the emergency stop); the saga works accounts.
            if logged.event.aggregate_type != TradingAccount::TYPE {
                continue;
            }
            let account_id = logged.event.aggregate_id.clone();
            let recorded =
                decode(logged.event, self.ledger.upcasters()).map_err(|e| e.to_string())?;
            match Step::after(&recorded.event) {
                Some(Step::Execute { signal_id }) => approved.push((account_id, signal_id)),
                Some(Step::Notify { signal_id, message }) => {
                    concluded.push((account_id, signal_id, message));
                }
                None => {}
            }
        }
        let executed = steps::execute_all(self, approved).await;
        let notified = steps::notify_all(self, concluded).await;
        executed.and(notified)
    }
}
