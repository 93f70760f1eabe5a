//! The execution saga: a catch-up reader of the ledger's global order that takes every approved
//! signal through the exchange and every outcome to the trader, recording each step.
//!
//! Its progress is the ledger itself plus a checkpoint saved after each fully handled page. After
//! a crash it re-reads from the checkpoint; each step first asks the account where the signal
//! stands, and the exchange recognises a client order id it has seen, so nothing happens twice.

mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use aggregates::TradingAccount;

use crate::exchange::Exchange;
use crate::ledger::{decode, Ledger};
use crate::notify::Notifier;
use crate::store::{Lease, LogPosition, LoggedEvent};

use self::steps::Step;

pub const CHECKPOINT_NAME: &str = "execution";
/// Events read per page of the global order. Small pages keep the saga's work smooth: a large
/// page arrives as a burst of exchange calls and appends that delays acknowledgements.
const PAGE_SIZE: i64 = 256;
/// Accounts worked on at once; steps of one account run in order. Kept well under the store's
/// connection pool so the webhook path never queues behind the saga for a connection.
const MAX_CONCURRENT_ACCOUNTS: usize = 8;
/// How often the log is polled for events appended by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a standby instance tries to take over the saga.
const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Pause before re-reading a page whose handling hit a store error.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ExecutionSaga {
    ledger: Ledger,
    exchange: Arc<dyn Exchange>,
    notifier: Arc<dyn Notifier>,
}

impl ExecutionSaga {
    pub fn new(ledger: Ledger, exchange: Arc<dyn Exchange>, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            ledger,
            exchange,
            notifier,
        }
    }

    /// Runs until `shutdown` turns true; the page in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let store = self.ledger.store().clone();
        let Some(mut lease) = self.acquire_lease(&mut shutdown).await else {
            return;
        };
        let mut checkpoint = loop {
            match store.checkpoint(CHECKPOINT_NAME).await {
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
                let Some(renewed) = self.acquire_lease(&mut shutdown).await else {
                    return;
                };
                lease = renewed;
                // Another process may have moved on meanwhile.
                if let Ok(position) = store.checkpoint(CHECKPOINT_NAME).await {
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

    /// Waits until this process is the one running the saga (other instances sharing the store
    /// stand by); `None` when shutdown comes first.
    async fn acquire_lease(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Lease> {
        let mut announced = false;
        loop {
            match self.ledger.store().try_lease(CHECKPOINT_NAME).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) if !announced => {
                    tracing::info!("another instance runs the execution saga; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "cannot take the execution lease"),
            }
            if wait_or_shutdown(shutdown, LEASE_RETRY_INTERVAL).await {
                return None;
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
            .read_log(checkpoint, PAGE_SIZE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|logged| logged.position) else {
            return Ok(None);
        };
        self.handle(page).await?;
        store
            .save_checkpoint(CHECKPOINT_NAME, last)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(last))
    }

    async fn handle(&self, page: Vec<LoggedEvent>) -> Result<(), String> {
        let mut by_account: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        for logged in page {
            // The log also carries other streams (the emergency stop); the saga works accounts.
            if logged.event.aggregate_type != TradingAccount::TYPE {
                continue;
            }
            let account_id = logged.event.aggregate_id.clone();
            let recorded =
                decode(logged.event, self.ledger.upcasters()).map_err(|e| e.to_string())?;
            if let Some(step) = Step::after(&recorded.event) {
                by_account.entry(account_id).or_default().push(step);
            }
        }
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_ACCOUNTS));
        let mut accounts = JoinSet::new();
        for (account_id, steps) in by_account {
            let saga = self.clone();
            let permits = permits.clone();
            accounts.spawn(async move {
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                for step in steps {
                    step.run(&saga, &account_id).await?;
                }
                Ok::<(), String>(())
            });
        }
        let mut first_error = None;
        while let Some(joined) = accounts.join_next().await {
            let result = joined.map_err(|e| e.to_string()).and_then(|r| r);
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Sleeps for `delay`; true when shutdown was asked for meanwhile.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}
