//! The compensating step: a signal's order filled, but a later step failed critically (its TP/SL
//! bracket could not be placed), so the position the fill opened is closed with a reduce-only
//! order of its own client id (`lh-<signal id>-close`).
//!
//! Safe after a crash at any point: the step starts from the account (`AwaitingCompensation`
//! until the close is recorded), and asks the exchange for the close's client id before sending
//! it, and again before every retry, so the close is placed at most once. It is not held back by
//! a halt or the emergency stop: it only lowers risk.

use chrono::Utc;
use futures::stream::{self, StreamExt};

use aggregates::{AccountCommand, CompensationReport, Fill, OrderType, SignalId, SignalStage};

use super::steps::{first_error, record, retry_placement, Placed, MAX_CONCURRENT_STEPS};
use super::{ExecutionSaga, Origin};
use crate::catchup::ReaderError;
use crate::exchange::{OrderOutcome, OrderRequest};
use crate::ledger::LedgerError;

/// Closes and records each signal's unprotected position that is still awaiting its close;
/// returns how many it parked (their account's history cannot be read).
pub async fn compensate_all(
    saga: &ExecutionSaga,
    required: Vec<(String, SignalId, Origin)>,
) -> Result<usize, ReaderError> {
    let done = stream::iter(required)
        .map(|(account_id, signal_id, origin)| {
            let saga = saga.clone();
            async move {
                match compensate(&saga, &account_id, signal_id).await {
                    Err(ReaderError::Ledger(LedgerError::Decode(error))) => {
                        saga.park_refused(&account_id, &origin, &error).await?;
                        Ok(1)
                    }
                    other => other.map(|()| 0),
                }
            }
        })
        .buffer_unordered(MAX_CONCURRENT_STEPS)
        .collect::<Vec<_>>()
        .await;
    Ok(first_error(done)?.into_iter().sum())
}

async fn compensate(
    saga: &ExecutionSaga,
    account_id: &str,
    signal_id: SignalId,
) -> Result<(), ReaderError> {
    let standing = saga
        .ledger
        .in_flight_with_halt(account_id, &signal_id)
        .await?;
    let Some((in_flight, _)) = standing else {
        return Ok(());
    };
    let (SignalStage::AwaitingCompensation, Some(close)) =
        (in_flight.stage, in_flight.compensation)
    else {
        // Recorded already (a page read again), or never required.
        return Ok(());
    };
    let order = OrderRequest {
        account_id: account_id.to_owned(),
        client_order_id: close.client_order_id.clone(),
        market: close.market,
        side: close.side,
        size: close.size,
        reduce_only: true,
        order_type: OrderType::Market,
        take_profit: None,
        stop_loss: None,
    };
    let report = match close_once(saga, &order).await {
        Ok((exchange_order_id, fill)) => CompensationReport::Closed {
            signal_id,
            client_order_id: close.client_order_id,
            exchange_order_id,
            fill,
            at: Utc::now(),
        },
        Err(reason) => CompensationReport::Failed {
            signal_id,
            client_order_id: close.client_order_id,
            reason,
            at: Utc::now(),
        },
    };
    record(saga, account_id, AccountCommand::RecordCompensation(report)).await
}

/// The close's fill, or why there is none. Asked for first: a close sent before a crash is
/// found, never sent again. A close has no deadline: an open position without protection is
/// worse late than never closed.
async fn close_once(saga: &ExecutionSaga, order: &OrderRequest) -> Result<(String, Fill), String> {
    let (error, attempts) = match saga.exchange.find_placed(order).await {
        Ok(Some(outcome)) => return closed(outcome),
        Ok(None) => match saga.exchange.place_order(order).await {
            Ok(outcome) => return closed(outcome),
            Err(error) => (error, 1),
        },
        Err(error) => (error, 0),
    };
    match retry_placement(saga, order, None, error, attempts).await {
        Placed::Answered(outcome) => closed(outcome),
        Placed::Failed(error) => Err(error.to_string()),
        Placed::Abandoned(reason) => Err(reason),
    }
}

fn closed(outcome: OrderOutcome) -> Result<(String, Fill), String> {
    match outcome {
        OrderOutcome::Filled {
            exchange_order_id,
            fill,
        }
        | OrderOutcome::PartiallyFilled {
            exchange_order_id,
            fill,
            ..
        }
        | OrderOutcome::FilledUnprotected {
            exchange_order_id,
            fill,
            ..
        } => Ok((exchange_order_id, fill)),
        OrderOutcome::Rejected { reason } => {
            Err(format!("the exchange refused the close: {reason}"))
        }
        // A close is a reduce-only market order: it never rests on a book.
        OrderOutcome::Resting { .. } | OrderOutcome::Expired { .. } => {
            Err("the exchange did not fill the close at once".to_owned())
        }
    }
}
