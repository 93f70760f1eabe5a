//! The saga's two steps, each safe to run again after a crash.

use std::time::Duration;

use chrono::Utc;

use aggregates::{
    AccountCommand, AccountEvent, ExecutionReport, NotificationOutcome, SignalId, SignalStage,
};

use super::ExecutionSaga;
use crate::exchange::{ExchangeError, OrderOutcome, OrderRequest};
use crate::ledger::{EventContext, LedgerError};

/// Placement attempts before the order is recorded as failed.
const MAX_PLACEMENT_ATTEMPTS: u32 = 5;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

const ACTOR: &str = "execution";

pub enum Step {
    /// Place the approved signal's order and record what the exchange did.
    Execute { signal_id: SignalId },
    /// Tell the trader how the signal ended and record whether that worked.
    Notify {
        signal_id: SignalId,
        message: String,
    },
}

impl Step {
    /// The step an event calls for, if any.
    pub fn after(event: &AccountEvent) -> Option<Self> {
        match event {
            AccountEvent::RiskApproved { signal_id, .. } => Some(Self::Execute {
                signal_id: signal_id.clone(),
            }),
            AccountEvent::OrderFilled {
                signal_id,
                market,
                side,
                size,
                price,
                ..
            } => Some(Self::Notify {
                signal_id: signal_id.clone(),
                message: format!("filled: {} {size} {market} at {price}", side.as_str()),
            }),
            AccountEvent::OrderRejected {
                signal_id, reason, ..
            } => Some(Self::Notify {
                signal_id: signal_id.clone(),
                message: format!("order rejected by the exchange: {reason}"),
            }),
            AccountEvent::OrderFailed {
                signal_id, reason, ..
            } => Some(Self::Notify {
                signal_id: signal_id.clone(),
                message: format!("order could not be placed: {reason}"),
            }),
            _ => None,
        }
    }

    pub async fn run(self, saga: &ExecutionSaga, account_id: &str) -> Result<(), String> {
        match self {
            Self::Execute { signal_id } => execute(saga, account_id, signal_id).await,
            Self::Notify { signal_id, message } => {
                notify(saga, account_id, signal_id, &message).await
            }
        }
    }
}

async fn execute(
    saga: &ExecutionSaga,
    account_id: &str,
    signal_id: SignalId,
) -> Result<(), String> {
    let Some(in_flight) = saga
        .ledger
        .in_flight(account_id, &signal_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    if in_flight.stage != SignalStage::AwaitingExecution {
        return Ok(());
    }
    let order = OrderRequest {
        account_id: account_id.to_owned(),
        client_order_id: in_flight.client_order_id.clone(),
        market: in_flight.market.clone(),
        side: in_flight.side,
        size: in_flight.size,
    };
    let placed = place_with_retries(saga, &order).await;
    crash_here_if_asked();
    let report = match placed {
        Ok(OrderOutcome::Filled {
            exchange_order_id,
            fill,
        }) => ExecutionReport::Filled {
            signal_id,
            client_order_id: order.client_order_id,
            exchange_order_id,
            fill,
            at: Utc::now(),
        },
        Ok(OrderOutcome::Rejected { reason }) => ExecutionReport::Rejected {
            signal_id,
            client_order_id: order.client_order_id,
            reason,
            at: Utc::now(),
        },
        Err(error) => ExecutionReport::Failed {
            signal_id,
            client_order_id: order.client_order_id,
            reason: error.to_string(),
            at: Utc::now(),
        },
    };
    record(saga, account_id, AccountCommand::RecordExecution(report)).await
}

/// Places the order; before every retry asks the exchange whether the first try got through.
async fn place_with_retries(
    saga: &ExecutionSaga,
    order: &OrderRequest,
) -> Result<OrderOutcome, ExchangeError> {
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1;
    loop {
        let result = match attempt {
            1 => saga.exchange.place_order(order).await,
            _ => match saga.exchange.find_order(&order.client_order_id).await {
                Ok(Some(outcome)) => Ok(outcome),
                Ok(None) => saga.exchange.place_order(order).await,
                Err(error) => Err(error),
            },
        };
        match result {
            Err(error) if attempt < MAX_PLACEMENT_ATTEMPTS => {
                tracing::warn!(%error, attempt, client_order_id = %order.client_order_id, "placement failed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn notify(
    saga: &ExecutionSaga,
    account_id: &str,
    signal_id: SignalId,
    message: &str,
) -> Result<(), String> {
    let in_flight = saga
        .ledger
        .in_flight(account_id, &signal_id)
        .await
        .map_err(|e| e.to_string())?;
    if in_flight.map(|f| f.stage) != Some(SignalStage::AwaitingNotification) {
        return Ok(());
    }
    let outcome = match saga.notifier.notify(account_id, message).await {
        Ok(()) => NotificationOutcome::Sent,
        Err(error) => NotificationOutcome::Failed {
            reason: error.to_string(),
        },
    };
    let command = AccountCommand::RecordNotification {
        signal_id,
        channel: saga.notifier.channel().to_owned(),
        outcome,
        at: Utc::now(),
    };
    record(saga, account_id, command).await
}

async fn record(
    saga: &ExecutionSaga,
    account_id: &str,
    command: AccountCommand,
) -> Result<(), String> {
    let context = EventContext::new(ACTOR, Utc::now());
    match saga.ledger.execute(account_id, command, &context).await {
        Ok(_) => Ok(()),
        // Another instance's saga got there first: the step is done either way.
        Err(LedgerError::Rejected(refusal)) => {
            tracing::warn!(account_id, %refusal, "saga step refused by the account");
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Fault injection for the crash-recovery tests: with `LEDGERHOOK_CRASH_AFTER_PLACEMENT=1` the
/// process dies the moment an order is placed and before its outcome is recorded, the window in
/// which a careless saga would place the order twice.
fn crash_here_if_asked() {
    if std::env::var_os("LEDGERHOOK_CRASH_AFTER_PLACEMENT").is_some_and(|value| value == "1") {
        eprintln!("LEDGERHOOK_CRASH_AFTER_PLACEMENT: aborting after placement");
        std::process::abort();
    }
}
