//! The saga's two steps, each safe to run again after a crash.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use aggregates::{
    AccountCommand, AccountEvent, ExecutionReport, NotificationOutcome, SignalId, SignalStage,
};

use super::{ExecutionSaga, Origin};
use crate::catchup::ReaderError;
use crate::exchange::{ExchangeError, OrderOutcome, OrderRequest};
use crate::ledger::{decode, EventContext, LedgerError};
use crate::notify::messages::{self, OrderSummary};

/// Placement attempts before the order is recorded as failed.
const MAX_PLACEMENT_ATTEMPTS: u32 = 5;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

const ACTOR: &str = "execution";
/// Lookups, placements and records in progress at once: enough for the group committer to batch
/// a page's records into a few transactions, few enough to leave the store's connections to the
/// webhook path.
const MAX_CONCURRENT_STEPS: usize = 16;

pub enum Step {
    /// Place the approved signal's order and record what the exchange did.
    Execute { signal_id: SignalId },
    /// Tell the trader how the signal ended and record whether that worked.
    Notify { signal_id: SignalId },
    /// A notification failed for now: queue its next attempt.
    RetryNotification {
        signal_id: SignalId,
        at: DateTime<Utc>,
    },
}

impl Step {
    /// The step an event calls for, if any.
    pub fn after(event: &AccountEvent) -> Option<Self> {
        match event {
            AccountEvent::RiskApproved { signal_id, .. } => Some(Self::Execute {
                signal_id: signal_id.clone(),
            }),
            AccountEvent::NotificationFailed {
                signal_id,
                retry_at: Some(at),
                ..
            } => Some(Self::RetryNotification {
                signal_id: signal_id.clone(),
                at: *at,
            }),
            concluding if messages::concludes(concluding) => Some(Self::Notify {
                signal_id: concluding.signal_id()?.clone(),
            }),
            _ => None,
        }
    }
}

/// A signal's conclusion as the saga read it, with what was recorded beside it.
pub struct Concluded {
    pub account_id: String,
    pub signal_id: SignalId,
    pub origin: Origin,
    pub conclusion: AccountEvent,
    /// The events after the conclusion in the same page, about the same signal.
    pub beside: Vec<AccountEvent>,
    /// `beside` ran to the page's end: the rest may be in the store only.
    pub maybe_more: bool,
}

/// What the saga does with an approved signal's order.
enum Plan {
    Place(SignalId, OrderRequest),
    /// A halt (the account's or the emergency stop) was engaged after approval.
    Cancel(SignalId, OrderRequest, String),
}

/// Places the orders of every signal in `approved` that still awaits execution, as one batch, and
/// records each outcome. Signals already executed (a page re-read after a crash) are skipped;
/// under a halt the order is cancelled instead of placed.
/// Returns how many it parked (their account's history cannot be read).
pub async fn execute_all(
    saga: &ExecutionSaga,
    approved: Vec<(String, SignalId, Origin)>,
) -> Result<usize, ReaderError> {
    let lookups = stream::iter(approved)
        .map(|(account_id, signal_id, origin)| {
            let saga = saga.clone();
            async move {
                let pending = match saga
                    .ledger
                    .awaiting_execution(&account_id, &signal_id)
                    .await
                {
                    Err(LedgerError::Decode(error)) => {
                        saga.park_refused(&account_id, &origin, &error).await?;
                        return Ok(Lookup::Parked);
                    }
                    other => other?,
                };
                Ok::<_, ReaderError>(
                    pending
                        .map(|(in_flight, account_halt)| {
                            let order = OrderRequest {
                                account_id,
                                client_order_id: in_flight.client_order_id,
                                market: in_flight.market,
                                side: in_flight.side,
                                size: in_flight.size,
                                reduce_only: in_flight.reduce_only,
                                order_type: in_flight.order_type,
                                take_profit: in_flight.take_profit,
                                stop_loss: in_flight.stop_loss,
                            };
                            let halt = saga
                                .emergency
                                .engaged()
                                .map(|stop| {
                                    format!(
                                        "emergency stop engaged by {}: {}",
                                        stop.by, stop.reason
                                    )
                                })
                                .or_else(|| {
                                    account_halt.map(|halt| {
                                        format!("trading halted by {}: {}", halt.by, halt.reason)
                                    })
                                });
                            match halt {
                                Some(reason) => Plan::Cancel(signal_id, order, reason),
                                None => Plan::Place(signal_id, order),
                            }
                        })
                        .map_or(Lookup::Done, Lookup::Planned),
                )
            }
        })
        .buffered(MAX_CONCURRENT_STEPS)
        .collect::<Vec<_>>()
        .await;
    let mut to_place = Vec::new();
    let mut reports = Vec::new();
    let mut parked = 0;
    let mut plans = Vec::new();
    for lookup in first_error(lookups)? {
        match lookup {
            Lookup::Planned(plan) => plans.push(plan),
            Lookup::Parked => parked += 1,
            Lookup::Done => {}
        }
    }
    for plan in plans {
        match plan {
            Plan::Place(signal_id, order) => to_place.push((signal_id, order)),
            Plan::Cancel(signal_id, order, reason) => reports.push((
                order.account_id,
                ExecutionReport::Cancelled {
                    signal_id,
                    client_order_id: order.client_order_id,
                    reason,
                    at: Utc::now(),
                },
            )),
        }
    }
    if !to_place.is_empty() {
        let (signals, orders): (Vec<SignalId>, Vec<OrderRequest>) = to_place.into_iter().unzip();
        let answers = saga.exchange.place_orders(&orders).await;
        let outcomes = stream::iter(orders.clone().into_iter().zip(answers))
            .map(|(order, answer)| {
                let saga = saga.clone();
                async move {
                    match answer {
                        Err(error) => retry_placement(&saga, &order, error).await,
                        answered => answered,
                    }
                }
            })
            .buffered(MAX_CONCURRENT_STEPS)
            .collect::<Vec<_>>()
            .await;
        crash_here_if_asked();
        for ((signal_id, order), outcome) in signals.into_iter().zip(orders).zip(outcomes) {
            let report = report(signal_id, &order, outcome);
            reports.push((order.account_id, report));
        }
    }
    let recorded = stream::iter(reports)
        .map(|(account_id, report)| {
            let saga = saga.clone();
            async move {
                let command = AccountCommand::RecordExecution(report);
                record(&saga, &account_id, command).await
            }
        })
        .buffer_unordered(MAX_CONCURRENT_STEPS)
        .collect::<Vec<_>>()
        .await;
    first_error(recorded)?;
    Ok(parked)
}

/// What a signal's lookup found.
enum Lookup {
    Planned(Plan),
    /// Already executed (a page read again).
    Done,
    Parked,
}

/// Tells each trader how their signal ended and records it; how many it parked.
pub async fn notify_all(
    saga: &ExecutionSaga,
    concluded: Vec<Concluded>,
) -> Result<usize, ReaderError> {
    let notified = stream::iter(concluded)
        .map(|concluded| {
            let saga = saga.clone();
            async move {
                let account_id = concluded.account_id.clone();
                let origin = concluded.origin.clone();
                match notify(&saga, concluded).await {
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
    Ok(first_error(notified)?.into_iter().sum())
}

/// Every result is awaited before failing, so no step is abandoned halfway through an append.
fn first_error<T>(results: Vec<Result<T, ReaderError>>) -> Result<Vec<T>, ReaderError> {
    results.into_iter().collect()
}

fn report(
    signal_id: SignalId,
    order: &OrderRequest,
    placed: Result<OrderOutcome, ExchangeError>,
) -> ExecutionReport {
    let client_order_id = order.client_order_id.clone();
    match placed {
        Ok(OrderOutcome::Filled {
            exchange_order_id,
            fill,
        }) => ExecutionReport::Filled {
            signal_id,
            client_order_id,
            exchange_order_id,
            fill,
            at: Utc::now(),
        },
        Ok(OrderOutcome::Rejected { reason }) => ExecutionReport::Rejected {
            signal_id,
            client_order_id,
            reason,
            at: Utc::now(),
        },
        Err(error) => ExecutionReport::Failed {
            signal_id,
            client_order_id,
            reason: error.to_string(),
            at: Utc::now(),
        },
    }
}

/// Retries a placement whose first answer was an error; before every retry asks the exchange
/// whether an earlier try got through.
async fn retry_placement(
    saga: &ExecutionSaga,
    order: &OrderRequest,
    first: ExchangeError,
) -> Result<OrderOutcome, ExchangeError> {
    let mut delay = FIRST_RETRY_DELAY;
    let mut error = first;
    for attempt in 2..=MAX_PLACEMENT_ATTEMPTS {
        tracing::warn!(%error, attempt, client_order_id = %order.client_order_id, "placement failed, retrying");
        tokio::time::sleep(delay).await;
        delay *= 2;
        let result = match saga.exchange.find_order(&order.client_order_id).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => saga.exchange.place_order(order).await,
            Err(error) => Err(error),
        };
        match result {
            Err(failed) => error = failed,
            answered => return answered,
        }
    }
    Err(error)
}

/// The first attempt at telling the trader. Sending and recording are two steps: a crash between
/// them sends the message again when the page is read again (at least once, see `retry`).
async fn notify(saga: &ExecutionSaga, concluded: Concluded) -> Result<(), ReaderError> {
    let Concluded {
        account_id,
        signal_id,
        origin,
        conclusion,
        beside,
        maybe_more,
    } = concluded;
    let Some(in_flight) = saga
        .ledger
        .in_flight(&account_id, &signal_id)
        .await?
        .filter(|in_flight| in_flight.stage == SignalStage::AwaitingNotification)
    else {
        return Ok(());
    };
    let mut events = vec![conclusion];
    events.extend(beside);
    let last_known = origin.sequence + events.len() - 1;
    // Usually the account has nothing after what the page showed (the cached version says so
    // without a query); otherwise the rest of the conclusion's events are in the store.
    if maybe_more && saga.ledger.version(&account_id).await? > last_known {
        events.extend(recorded_beside(saga, &account_id, &signal_id, &origin, events.len()).await?);
    }
    let order = OrderSummary {
        market: in_flight.market,
        side: in_flight.side,
        size: in_flight.size,
    };
    let message = messages::signal_outcome(Some(&order), &events)
        .unwrap_or_else(|| format!("signal {signal_id} has ended"));
    let outcome = attempt(saga, &account_id, &message, 0).await;
    let command = AccountCommand::RecordNotification {
        signal_id,
        channel: saga.notifier.channel().to_owned(),
        outcome,
        at: Utc::now(),
    };
    record(saga, &account_id, command).await
}

/// Sends one message and says what to record: sent, failed for good, or failed until `retry_at`.
/// `failed_before` counts this notification's earlier failed attempts (for the backoff).
pub async fn attempt(
    saga: &ExecutionSaga,
    account_id: &str,
    message: &str,
    failed_before: u32,
) -> NotificationOutcome {
    match saga.notifier.notify(account_id, message).await {
        Ok(()) => NotificationOutcome::Sent,
        Err(error) => {
            tracing::warn!(account_id, %error, "notification failed");
            match error.retry_after() {
                None => NotificationOutcome::Failed {
                    reason: error.to_string(),
                },
                Some(at_least) => {
                    let wait = saga.retry_policy.delay(failed_before).max(at_least);
                    NotificationOutcome::Deferred {
                        reason: error.to_string(),
                        retry_at: Utc::now()
                            + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    }
                }
            }
        }
    }
}

/// The events recorded with a conclusion that lay beyond the page: read from the account's
/// stream, right after the `known` events from the conclusion on.
async fn recorded_beside(
    saga: &ExecutionSaga,
    account_id: &str,
    signal_id: &SignalId,
    origin: &Origin,
    known: usize,
) -> Result<Vec<AccountEvent>, ReaderError> {
    let after = origin.sequence + known - 1;
    let stored = saga
        .ledger
        .store()
        .events()
        .load_account_after(account_id, after)
        .await?;
    let mut beside = Vec::new();
    for event in stored {
        let recorded = decode(event, saga.ledger.upcasters()).map_err(LedgerError::from)?;
        if !messages::recorded_with(&recorded.event, signal_id) {
            break;
        }
        beside.push(recorded.event);
    }
    Ok(beside)
}

pub async fn record(
    saga: &ExecutionSaga,
    account_id: &str,
    command: AccountCommand,
) -> Result<(), ReaderError> {
    let context = EventContext::new(ACTOR, Utc::now());
    match saga.ledger.execute(account_id, command, &context).await {
        Ok(_) => Ok(()),
        // Another instance's saga got there first: the step is done either way.
        Err(LedgerError::Rejected(refusal)) => {
            tracing::warn!(account_id, %refusal, "saga step refused by the account");
            Ok(())
        }
        Err(error) => Err(error.into()),
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
