//! Reconciliation: each account's positions in the ledger compared with what its venue says it
//! holds. The account decides what is a drift (`RecordReconciliation`); this module fetches the
//! venue's side and records the decision; the execution saga tells the trader of each recorded
//! drift, whoever recorded it (`ledgerhook reconcile` runs it once; `serve` every
//! `--reconcile-interval-seconds`).
//!
//! Any number of instances may run it: an unchanged drift records nothing, and the ledger's
//! optimistic concurrency orders two instances' records of the same account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::watch;

use aggregates::{AccountCommand, AccountEvent, Drift, Market};

use crate::exchange::{Exchange, ExchangeError};
use crate::ledger::{EventContext, Ledger, LedgerError};
use crate::store::StoreError;

const ACTOR: &str = "reconciliation";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the venue did not report the account's positions: {0}")]
    Venue(#[from] ExchangeError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one account's reconciliation found and recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountReport {
    pub account_id: String,
    /// `in_sync`, `drift` (some market still differs) or `failed`.
    pub outcome: &'static str,
    /// Every market that differs after this run, recorded now or earlier.
    pub drifts: BTreeMap<Market, Drift>,
    /// What this run recorded: drifts that appeared or changed, and clearances.
    pub recorded: Vec<AccountEvent>,
    /// Why the account could not be reconciled.
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Reconciler {
    ledger: Ledger,
    exchange: Arc<dyn Exchange>,
}

impl Reconciler {
    pub fn new(ledger: Ledger, exchange: Arc<dyn Exchange>) -> Self {
        Self { ledger, exchange }
    }

    /// Reconciles one account and records what changed (the saga tells the trader).
    pub async fn account(&self, account_id: &str) -> Result<Vec<AccountEvent>, ReconcileError> {
        let venue = self.exchange.venue_for(account_id).await?;
        let venue_positions = self.exchange.positions(account_id).await?;
        let at = Utc::now();
        let command = AccountCommand::RecordReconciliation {
            venue: venue.to_owned(),
            venue_positions,
            at,
        };
        let committed = self
            .ledger
            .execute(account_id, command, &EventContext::new(ACTOR, at))
            .await?;
        Ok(committed.events)
    }

    /// Reconciles every account, one after another; one account's failure does not stop the
    /// others.
    pub async fn all(&self) -> Result<Vec<AccountReport>, ReconcileError> {
        let accounts = self.ledger.store().credentials().user_ids().await?;
        let mut reports = Vec::with_capacity(accounts.len());
        for account_id in accounts {
            reports.push(self.report(account_id).await);
        }
        Ok(reports)
    }

    pub async fn report(&self, account_id: String) -> AccountReport {
        let reconciled = match self.account(&account_id).await {
            Ok(recorded) => self
                .ledger
                .load(&account_id)
                .await
                .map(|loaded| (recorded, loaded.state.drift))
                .map_err(ReconcileError::from),
            Err(error) => Err(error),
        };
        match reconciled {
            Ok((recorded, drifts)) => AccountReport {
                outcome: if drifts.is_empty() {
                    "in_sync"
                } else {
                    "drift"
                },
                account_id,
                drifts,
                recorded,
                error: None,
            },
            Err(error) => AccountReport {
                account_id,
                outcome: "failed",
                drifts: BTreeMap::new(),
                recorded: Vec::new(),
                error: Some(error.to_string()),
            },
        }
    }

    /// Reconciles every account every `every` until `shutdown` turns true.
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            match self.all().await {
                Ok(reports) => {
                    let drifted = reports.iter().filter(|r| r.outcome == "drift").count();
                    let failed = reports.iter().filter(|r| r.outcome == "failed").count();
                    tracing::info!(accounts = reports.len(), drifted, failed, "reconciled");
                }
                Err(error) => tracing::warn!(%error, "reconciliation could not list accounts"),
            }
        }
    }
}
