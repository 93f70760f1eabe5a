//! The saga's steps, each safe to run again after a crash: place an approved order, close the
//! position of a fill left unprotected, tell the trader (of a signal's outcome here, of an
//! account's notices in `notices`).

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use aggregates::{
    AccountCommand, AccountEvent, ExecutionReport, NotificationOutcome, OrderType, SignalId,
    SignalStage,
};

use super::{ExecutionSaga, Origin};
use crate::catchup::ReaderError;
use crate::exchange::{ExchangeError, OrderOutcome, OrderRequest};
use crate::ledger::{decode, EventContext, LedgerError};
use crate::notify::messages::{self, OrderSummary};

const ACTOR: &str = "execution";
/// Lookups, placements and records in progress at once: a busy page's records in one round,
/// which the accounts' batching and the group committer turn into a few transactions. They work
/// on cached accounts and the committer's connection; only an account not yet cached takes a
/// store connection to load, as a webhook would.
pub(super) const MAX_CONCURRENT_STEPS: usize = 256;
/// Events read at a time when looking for those recorded with a conclusion (a command records a
/// handful).
const BESIDE_PAGE: i64 = 8;

pub enum Step {
    /// Place the approved signal's order and record what the exchange did.
    Execute { signal_id: SignalId },
    /// Close, reduce-only, the position a fill left without protection, and record it.
    Compensate { signal_id: SignalId },
    /// Tell the trader how the signal ended and record whether that worked. The text is written
    /// from the concluding event and those recorded beside it (`notify::messages`).
    Notify { signal_id: SignalId, tell: Tell },
    /// A notification failed for now: queue its next attempt.
    RetryNotification {
        signal_id: SignalId,
        at: DateTime<Utc>,
    },
    /// Tell the trader of an account-level event (`aggregates::is_notice`) and record whether that
    /// worked, keyed by the event's sequence (`notices`).
    Notice,
    /// An account notice failed for now: queue its next attempt.
    RetryNotice {
        about_sequence: u64,
        at: DateTime<Utc>,
    },
}

/// What a notification is about, which decides whether it is the signal's to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    /// How the order ended (filled, partially filled, rejected, failed, abandoned, cancelled, a
    /// fill that is not the order's). An automatic halt recorded with it is added to the text.
    Outcome,
    /// The outcome of a compensating close: it alone is sent for a signal that needed one (its
    /// fill's own message would say the position stands), with any automatic halt added.
    Compensation,
    /// A limit order came to rest on the book: told once, before its outcome.
    Resting,
}

impl Tell {
    /// Which notification a concluding event calls for; `None` for any other event.
    fn of(event: &AccountEvent) -> Option<Self> {
        match event {
            AccountEvent::PositionCompensated { .. } | AccountEvent::CompensationFailed { .. } => {
                Some(Self::Compensation)
            }
            AccountEvent::OrderResting { .. } => Some(Self::Resting),
            concluding if messages::concludes(concluding) => Some(Self::Outcome),
            _ => None,
        }
    }
}

impl Step {
    /// The step an event calls for, if any.
    pub fn after(event: &AccountEvent) -> Option<Self> {
        match event {
            AccountEvent::RiskApproved { signal_id, .. } => Some(Self::Execute {
                signal_id: signal_id.clone(),
            }),
            AccountEvent::CompensationRequired { signal_id, .. } => Some(Self::Compensate {
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
            AccountEvent::NoticeFailed {
                about_sequence,
                retry_at: Some(at),
                ..
            } => Some(Self::RetryNotice {
                about_sequence: *about_sequence,
                at: *at,
            }),
            notice if aggregates::is_notice(notice) => Some(Self::Notice),
            concluding => Some(Self::Notify {
                tell: Tell::of(concluding)?,
                signal_id: concluding.signal_id()?.clone(),
            }),
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
    pub tell: Tell,
}

/// What the saga does with an approved signal's order.
enum Plan {
    /// Place it unless the exchange already has it, until the deadline.
    Place(SignalId, OrderRequest, Option<DateTime<Utc>>),
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
                            let deadline = saga.retry.deadline_for(in_flight.approved_at);
                            match halt {
                                Some(reason) => Plan::Cancel(signal_id, order, reason),
                                None => Plan::Place(signal_id, order, deadline),
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
    let mut to_cancel = Vec::new();
    for plan in plans {
        match plan {
            Plan::Place(signal_id, order, deadline) => {
                to_place.push((signal_id, (order, deadline)));
            }
            Plan::Cancel(signal_id, order, reason) => to_cancel.push((signal_id, order, reason)),
        }
    }
    if !to_cancel.is_empty() {
        reports.extend(cancel_unless_placed(saga, to_cancel).await);
    }
    if !to_place.is_empty() {
        let (signals, pending): (Vec<SignalId>, Vec<Pending>) = to_place.into_iter().unzip();
        let outcomes = place_once(saga, &pending).await;
        crash_here_if_asked();
        for ((signal_id, (order, _)), placed) in signals.into_iter().zip(pending).zip(outcomes) {
            let report = report(signal_id, &order, placed);
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

/// Cancels approved orders a halt caught before placement, unless the venue already has them:
/// an earlier run (or another instance, before it lost the lease) may have sent one before the
/// halt, and its outcome is then what is recorded.
async fn cancel_unless_placed(
    saga: &ExecutionSaga,
    to_cancel: Vec<(SignalId, OrderRequest, String)>,
) -> Vec<(String, ExecutionReport)> {
    let orders: Vec<OrderRequest> = to_cancel
        .iter()
        .map(|(_, order, _)| order.clone())
        .collect();
    let mut found = saga.exchange.find_orders(&orders).await.into_iter();
    to_cancel
        .into_iter()
        .map(|(signal_id, order, reason)| {
            let reason = match found.next().unwrap_or_else(no_answer) {
                Ok(Some(outcome)) => {
                    let report = report(signal_id, &order, Placed::Answered(outcome));
                    return (order.account_id, report);
                }
                Ok(None) => reason,
                Err(error) => format!(
                    "{reason} (whether the venue took it earlier could not be confirmed: {error})"
                ),
            };
            let report = ExecutionReport::Cancelled {
                signal_id,
                client_order_id: order.client_order_id,
                reason,
                at: Utc::now(),
            };
            (order.account_id, report)
        })
        .collect()
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
pub(super) fn first_error<T>(results: Vec<Result<T, ReaderError>>) -> Result<Vec<T>, ReaderError> {
    results.into_iter().collect()
}

/// An order to place, with the deadline it must be sent by.
type Pending = (OrderRequest, Option<DateTime<Utc>>);

/// How a placement ended.
pub(super) enum Placed {
    /// The exchange has the order: this is what became of it.
    Answered(OrderOutcome),
    /// Every attempt failed, and the exchange does not show the order.
    Failed(ExchangeError),
    /// The deadline passed first; why, in words.
    Abandoned(String),
}

/// Places each pending order at most once: the exchange is asked for the page's client ids
/// first (an earlier run, or another instance before it lost the lease, may have sent them),
/// only orders it does not know are sent, and failures are retried under the policy.
async fn place_once(saga: &ExecutionSaga, pending: &[Pending]) -> Vec<Placed> {
    let orders: Vec<OrderRequest> = pending.iter().map(|(order, _)| order.clone()).collect();
    let mut found = saga.exchange.find_orders(&orders).await.into_iter();
    let now = Utc::now();
    let mut placed: Vec<Option<Placed>> = pending.iter().map(|_| None).collect();
    let mut to_send = Vec::new();
    // (index, the error, placements tried so far)
    let mut to_retry = Vec::new();
    for (index, (_, deadline)) in pending.iter().enumerate() {
        match found.next().unwrap_or_else(no_answer) {
            Ok(Some(outcome)) => placed[index] = Some(Placed::Answered(outcome)),
            Ok(None) if deadline.is_some_and(|deadline| now >= deadline) => {
                placed[index] = Some(Placed::Abandoned(format!(
                    "its deadline of {} s from approval passed before the order was sent",
                    saga.retry.deadline.as_secs()
                )));
            }
            Ok(None) => to_send.push(index),
            Err(error) => to_retry.push((index, error, 0)),
        }
    }
    if !to_send.is_empty() {
        let orders: Vec<OrderRequest> = to_send
            .iter()
            .map(|&index| pending[index].0.clone())
            .collect();
        let mut answers = saga.exchange.place_orders(&orders).await.into_iter();
        for index in to_send {
            match answers.next().unwrap_or_else(no_answer) {
                Ok(outcome) => placed[index] = Some(Placed::Answered(outcome)),
                Err(error) => to_retry.push((index, error, 1)),
            }
        }
    }
    let retried = stream::iter(to_retry)
        .map(|(index, error, attempts)| {
            let saga = saga.clone();
            let (order, deadline) = pending[index].clone();
            async move {
                let placed = retry_placement(&saga, &order, deadline, error, attempts).await;
                (index, placed)
            }
        })
        .buffer_unordered(MAX_CONCURRENT_STEPS)
        .collect::<Vec<_>>()
        .await;
    for (index, outcome) in retried {
        placed[index] = Some(outcome);
    }
    placed
        .into_iter()
        .map(|placed| {
            placed.unwrap_or_else(|| {
                Placed::Failed(ExchangeError::Unavailable("no answer for the order".into()))
            })
        })
        .collect()
}

/// An exchange that answers fewer orders than it was asked: the rest are unknown.
fn no_answer<T>() -> Result<T, ExchangeError> {
    Err(ExchangeError::Unavailable("no answer for the order".into()))
}

/// Retries a placement whose last try failed (`attempts` placements so far): before every retry
/// asks the exchange whether an earlier try got through, waits double each time, and stops at
/// the policy's attempts or the signal's deadline, whichever comes first.
pub(super) async fn retry_placement(
    saga: &ExecutionSaga,
    order: &OrderRequest,
    deadline: Option<DateTime<Utc>>,
    mut error: ExchangeError,
    mut attempts: u32,
) -> Placed {
    let policy = saga.retry;
    let client_order_id = &order.client_order_id;
    loop {
        let delay = policy.delay_before(attempts.saturating_add(1));
        let out_of_time = deadline.is_some_and(|deadline| {
            chrono::Duration::from_std(delay)
                .ok()
                .and_then(|delay| Utc::now().checked_add_signed(delay))
                .is_none_or(|wake| wake >= deadline)
        });
        if out_of_time || attempts >= policy.max_attempts {
            // No try left: only ask whether an earlier one got through.
            let found = saga.exchange.find_placed(order).await;
            if let Ok(Some(outcome)) = found {
                return Placed::Answered(outcome);
            }
            // A limit order sent earlier may yet reach the book and rest there long after the
            // signal is given up: it is cancelled (nothing happens if it never got there).
            if found.is_err() && matches!(order.order_type, OrderType::Limit { .. }) {
                if let Err(cancel) = saga.exchange.cancel_resting(order).await {
                    tracing::warn!(%cancel, %client_order_id, "a possibly resting order not cancelled");
                }
            }
            if !out_of_time {
                return Placed::Failed(error);
            }
            let known = match found {
                Ok(_) => format!("the exchange has no order {client_order_id}"),
                Err(lookup) => format!(
                    "whether the exchange took order {client_order_id} could not be confirmed \
                     ({lookup})"
                ),
            };
            return Placed::Abandoned(format!(
                "its deadline of {} s from approval passed after {attempts} attempts; {known}; \
                 the last error: {error}",
                policy.deadline.as_secs()
            ));
        }
        tracing::warn!(%error, attempts, %client_order_id, "placement failed, retrying");
        tokio::time::sleep(delay).await;
        attempts = attempts.saturating_add(1);
        let result = match saga.exchange.find_placed(order).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => saga.exchange.place_order(order).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(outcome) => return Placed::Answered(outcome),
            Err(failed) => error = failed,
        }
    }
}

pub(crate) fn report(signal_id: SignalId, order: &OrderRequest, placed: Placed) -> ExecutionReport {
    let client_order_id = order.client_order_id.clone();
    let at = Utc::now();
    match placed {
        Placed::Answered(OrderOutcome::Filled {
            exchange_order_id,
            fill,
        }) => ExecutionReport::Filled {
            signal_id,
            client_order_id,
            exchange_order_id,
            fill,
            at,
        },
        Placed::Answered(OrderOutcome::PartiallyFilled {
            exchange_order_id,
            fill,
            unfilled,
        }) => ExecutionReport::PartiallyFilled {
            signal_id,
            client_order_id,
            exchange_order_id,
            fill,
            unfilled,
            at,
        },
        Placed::Answered(OrderOutcome::FilledUnprotected {
            exchange_order_id,
            fill,
            reason,
        }) => ExecutionReport::FilledUnprotected {
            signal_id,
            client_order_id,
            exchange_order_id,
            fill,
            reason,
            at,
        },
        Placed::Answered(OrderOutcome::Resting {
            exchange_order_id,
            good_til,
            ..
        }) => ExecutionReport::Resting {
            signal_id,
            client_order_id,
            exchange_order_id,
            good_til,
            at,
        },
        Placed::Answered(OrderOutcome::Expired {
            exchange_order_id,
            reason,
        }) => ExecutionReport::Expired {
            signal_id,
            client_order_id,
            exchange_order_id,
            reason,
            at,
        },
        Placed::Answered(OrderOutcome::Rejected { reason }) => ExecutionReport::Rejected {
            signal_id,
            client_order_id,
            reason,
            at,
        },
        Placed::Failed(error) => ExecutionReport::Failed {
            signal_id,
            client_order_id,
            reason: error.to_string(),
            at,
        },
        Placed::Abandoned(reason) => ExecutionReport::Abandoned {
            signal_id,
            client_order_id,
            reason,
            at,
        },
    }
}

/// The first attempt at telling the trader. Sending and recording are two steps: a crash between
/// them sends the message again when the page is read again (at least once, see
/// `notification_retry`).
async fn notify(saga: &ExecutionSaga, concluded: Concluded) -> Result<(), ReaderError> {
    let Concluded {
        account_id,
        signal_id,
        origin,
        conclusion,
        beside,
        maybe_more,
        tell,
    } = concluded;
    // Taken first, whether or not anything is told, so what the saga kept before it goes too.
    let kept = saga.recent.take(&account_id, origin.sequence);
    if tell == Tell::Resting {
        return notify_resting(saga, &account_id, signal_id).await;
    }
    let Some(in_flight) = saga
        .ledger
        .in_flight(&account_id, &signal_id)
        .await?
        .filter(|in_flight| in_flight.stage == SignalStage::AwaitingNotification)
    else {
        return Ok(());
    };
    // A signal whose fill needed a compensating close is told once, by the close's outcome.
    if in_flight.compensation.is_some() != (tell == Tell::Compensation) {
        return Ok(());
    }
    let mut events = vec![conclusion];
    events.extend(beside);
    let last_known = origin.sequence + events.len() - 1;
    // Usually the account has nothing after what the page showed (the cached version says so
    // without a query); otherwise the rest of the conclusion's events are those this saga kept
    // when it recorded them, or else in the store.
    if maybe_more && saga.ledger.version(&account_id).await? > last_known {
        match kept {
            Some(kept) if kept.len() >= events.len() => {
                let known = events.len();
                let rest = kept.into_iter().skip(known);
                events.extend(rest.take_while(|event| messages::recorded_with(event, &signal_id)));
            }
            _ => events.extend(
                recorded_beside(saga, &account_id, &signal_id, &origin, events.len()).await?,
            ),
        }
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

/// Tells the trader their limit order rests on the book, unless they were told already (or it
/// has ended since: its outcome is told instead).
async fn notify_resting(
    saga: &ExecutionSaga,
    account_id: &str,
    signal_id: SignalId,
) -> Result<(), ReaderError> {
    let Some(in_flight) = saga.ledger.in_flight(account_id, &signal_id).await? else {
        return Ok(());
    };
    let Some(resting) = in_flight
        .resting
        .as_ref()
        .filter(|resting| in_flight.stage == SignalStage::Resting && !resting.told)
    else {
        return Ok(());
    };
    let order = OrderSummary {
        market: in_flight.market.clone(),
        side: in_flight.side,
        size: in_flight.size,
    };
    let message = messages::resting(&order, &in_flight.order_type, resting.good_til, &signal_id);
    let outcome = attempt(saga, account_id, &message, 0).await;
    let command = AccountCommand::RecordRestingNotice {
        signal_id,
        channel: saga.notifier.channel().to_owned(),
        outcome,
        at: Utc::now(),
    };
    record(saga, account_id, command).await
}

/// Sends one message and says what to record: sent, failed for good, or failed until `retry_at`.
/// `failed_before` counts this notification's earlier failed attempts (for the backoff).
pub(super) async fn attempt(
    saga: &ExecutionSaga,
    account_id: &str,
    message: &str,
    failed_before: u32,
) -> NotificationOutcome {
    match saga.notifier.notify(account_id, message).await {
        Ok(()) => NotificationOutcome::Sent,
        Err(error) => {
            tracing::warn!(account_id, %error, "notification failed");
            crate::telemetry::notification_error(saga.notifier.channel(), error.kind());
            match error.retry_after() {
                None => NotificationOutcome::Failed {
                    reason: error.to_string(),
                },
                Some(at_least) => {
                    let wait = saga.notification_retry.delay(failed_before).max(at_least);
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
    let mut after = origin.sequence + known - 1;
    let mut beside = Vec::new();
    // A few at a time: the saga may be far behind, with much of the account's history since.
    loop {
        let stored = saga
            .ledger
            .store()
            .events()
            .load_account_page(account_id, after, BESIDE_PAGE)
            .await?;
        let read = stored.len();
        for event in stored {
            let recorded = decode(&event, saga.ledger.upcasters()).map_err(LedgerError::from)?;
            if !messages::recorded_with(&recorded.event, signal_id) {
                return Ok(beside);
            }
            after = recorded.sequence;
            beside.push(recorded.event);
        }
        if i64::try_from(read).map_or(true, |read| read < BESIDE_PAGE) {
            return Ok(beside);
        }
    }
}

pub(super) async fn record(
    saga: &ExecutionSaga,
    account_id: &str,
    command: AccountCommand,
) -> Result<(), ReaderError> {
    let context = EventContext::new(ACTOR, Utc::now());
    match saga.ledger.execute(account_id, command, &context).await {
        Ok(committed) => {
            saga.recent.keep(account_id, &committed);
            Ok(())
        }
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
