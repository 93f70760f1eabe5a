//! The resting-order watcher: brings every limit order resting on a venue's book to its end.
//!
//! Every `--resting-check-seconds` it reads the signals in `SignalStage::Resting` of each account
//! the read model lists with one (every account, every `FULL_SCAN_EVERY` rounds), asks
//! the venue where each order stands (`Exchange::order_status`) and records an end it finds —
//! filled, partially filled then expired or cancelled, or expired with nothing — through the
//! account, which takes one end per signal: a second watcher (another instance) or a report read
//! again after a restart records nothing. The saga then tells the trader, as for any conclusion.
//! It only reads the venue — but for a halted account (or under the emergency stop), whose resting
//! orders it cancels: a cancel of an order already gone changes nothing, so two instances are
//! harmless.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use aggregates::{AccountCommand, SignalStage};

use super::steps::{report, Placed};
use crate::emergency::EmergencySwitch;
use crate::exchange::{Exchange, OrderOutcome, OrderRequest};
use crate::ledger::{EventContext, Ledger, LedgerError};
use crate::store::StoreError;

const ACTOR: &str = "resting-orders";
/// Every this many rounds the watcher checks every account, not only those the read model shows
/// (5 minutes at the default 10 s).
const FULL_SCAN_EVERY: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct RestingWatcher {
    ledger: Ledger,
    exchange: Arc<dyn Exchange>,
    emergency: Arc<EmergencySwitch>,
}

impl RestingWatcher {
    pub fn new(
        ledger: Ledger,
        exchange: Arc<dyn Exchange>,
        emergency: Arc<EmergencySwitch>,
    ) -> Self {
        Self {
            ledger,
            exchange,
            emergency,
        }
    }

    /// Checks one account's resting orders; how many ends it recorded.
    pub async fn account(&self, account_id: &str) -> Result<usize, WatchError> {
        let state = self.ledger.load(account_id).await?.state;
        // A halt stops trading: what rests on the book is cancelled.
        let halted = state.halt.is_some() || self.emergency.engaged().is_some();
        let mut recorded = 0;
        for (signal_id, in_flight) in state
            .in_flight
            .iter()
            .filter(|(_, in_flight)| in_flight.stage == SignalStage::Resting)
        {
            let order = OrderRequest {
                account_id: account_id.to_owned(),
                client_order_id: in_flight.client_order_id.clone(),
                market: in_flight.market.clone(),
                side: in_flight.side,
                size: in_flight.size,
                reduce_only: in_flight.reduce_only,
                order_type: in_flight.order_type.clone(),
                take_profit: in_flight.take_profit,
                stop_loss: in_flight.stop_loss,
            };
            let Some(exchange_order_id) = in_flight
                .resting
                .as_ref()
                .map(|resting| resting.exchange_order_id.clone())
            else {
                continue;
            };
            let mut status = self.exchange.order_status(&order, &exchange_order_id).await;
            if halted && matches!(status, Ok(Some(OrderOutcome::Resting { .. }))) {
                match self.exchange.cancel_resting(&order).await {
                    Ok(()) => {
                        status = self.exchange.order_status(&order, &exchange_order_id).await;
                    }
                    Err(error) => {
                        tracing::warn!(account_id, %signal_id, %error, "resting order not cancelled");
                    }
                }
            }
            let outcome = match status {
                Ok(Some(OrderOutcome::Resting { .. })) => continue,
                Ok(Some(outcome)) => outcome,
                // Not listed any more (or never): nothing is recorded on a guess; the operator
                // sees the warning and the signal stays resting.
                Ok(None) => {
                    tracing::warn!(
                        account_id,
                        %signal_id,
                        "the venue does not list a resting order; it stays resting"
                    );
                    continue;
                }
                Err(error) => {
                    tracing::warn!(account_id, %signal_id, %error, "resting order not checked");
                    continue;
                }
            };
            let report = report(signal_id.clone(), &order, Placed::Answered(outcome));
            let context = EventContext::new(ACTOR, Utc::now());
            match self
                .ledger
                .execute(
                    account_id,
                    AccountCommand::RecordExecution(report),
                    &context,
                )
                .await
            {
                Ok(committed) => recorded += usize::from(!committed.events.is_empty()),
                // Another instance recorded it first: it ended either way.
                Err(LedgerError::Rejected(refusal)) => {
                    tracing::warn!(account_id, %refusal, "resting order's end refused");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(recorded)
    }

    /// Checks every account; one account's failure does not stop the others.
    pub async fn all(&self) -> Result<usize, WatchError> {
        let accounts = self.ledger.store().credentials().user_ids().await?;
        self.each(accounts).await
    }

    /// Checks the accounts the read model shows with a resting order: cheap, but as late as the
    /// read model (and blind to what it parked), so `run` also checks every account now and then.
    pub async fn indexed(&self) -> Result<usize, WatchError> {
        let accounts = self
            .ledger
            .store()
            .read_models()
            .accounts_with_resting_orders()
            .await?;
        self.each(accounts).await
    }

    async fn each(&self, accounts: Vec<String>) -> Result<usize, WatchError> {
        let mut recorded = 0;
        for account_id in accounts {
            match self.account(&account_id).await {
                Ok(count) => recorded += count,
                Err(error) => {
                    tracing::warn!(account_id, %error, "resting orders not checked");
                }
            }
        }
        Ok(recorded)
    }

    /// Checks the indexed accounts every `every`, and every account every
    /// `FULL_SCAN_EVERY` rounds, until `shutdown` turns true.
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut round: u32 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            round = round.wrapping_add(1);
            let checked = if round % FULL_SCAN_EVERY == 0 {
                self.all().await
            } else {
                self.indexed().await
            };
            match checked {
                Ok(0) => {}
                Ok(ended) => tracing::info!(ended, "resting orders ended"),
                Err(error) => tracing::warn!(%error, "resting orders could not list accounts"),
            }
        }
    }
}
