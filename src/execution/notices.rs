//! Account notices: the trader is told of an operator's halt or resume and of a drift found or
//! cleared, whoever recorded it (the CLI, an HTTP call, another instance, the reconciler). Each
//! is keyed by the told event's sequence in the account's stream; the account records the outcome
//! (`NoticeSent`/`NoticeFailed`) and refuses to record one twice. An account's notices are tried
//! in the order of its events (the account keeps a high-water mark, so its state stays bounded);
//! before each the account is asked whether it was told already, so a page read again after a
//! crash, or by the next holder of the lease, tells nothing twice. As for signals, a crash between
//! a send and its record sends that one message again. Failures the channel may get over are
//! retried by `notification_retry`.

use std::collections::BTreeMap;

use chrono::Utc;
use futures::stream::{self, StreamExt};

use aggregates::{AccountCommand, EmergencyEvent};

use super::steps::{attempt, first_error, record, MAX_CONCURRENT_STEPS};
use super::{ExecutionSaga, Origin};
use crate::catchup::ReaderError;
use crate::ledger::{decode, LedgerError};
use crate::notify::messages;

/// An account notice as the saga read it.
pub struct Notice {
    pub account_id: String,
    pub origin: Origin,
    pub event: aggregates::AccountEvent,
}

/// Tells each account's notices, one account's in order, accounts side by side; how many it
/// parked (their account's history cannot be read).
pub async fn tell_all(saga: &ExecutionSaga, notices: Vec<Notice>) -> Result<usize, ReaderError> {
    let mut by_account: BTreeMap<String, Vec<Notice>> = BTreeMap::new();
    for notice in notices {
        by_account
            .entry(notice.account_id.clone())
            .or_default()
            .push(notice);
    }
    let told = stream::iter(by_account.into_values())
        .map(|notices| {
            let saga = saga.clone();
            async move {
                let mut parked = 0;
                for notice in notices {
                    let account_id = notice.account_id.clone();
                    let origin = notice.origin.clone();
                    match tell(&saga, notice).await {
                        Err(ReaderError::Ledger(LedgerError::Decode(error))) => {
                            saga.park_refused(&account_id, &origin, &error).await?;
                            parked += 1;
                        }
                        other => other?,
                    }
                }
                Ok::<_, ReaderError>(parked)
            }
        })
        .buffer_unordered(MAX_CONCURRENT_STEPS)
        .collect::<Vec<_>>()
        .await;
    Ok(first_error(told)?.into_iter().sum())
}

/// The first attempt at one notice, unless the account has recorded it (or a later one).
async fn tell(saga: &ExecutionSaga, notice: Notice) -> Result<(), ReaderError> {
    let Notice {
        account_id,
        origin,
        event,
    } = notice;
    let about_sequence = sequence(&origin);
    if !saga
        .ledger
        .notice_untold(&account_id, about_sequence)
        .await?
    {
        return Ok(());
    }
    let Some(message) = messages::notice(&event) else {
        return Ok(());
    };
    let outcome = attempt(saga, &account_id, &message, 0).await;
    let command = AccountCommand::RecordNotice {
        about_sequence,
        channel: saga.notifier.channel().to_owned(),
        outcome,
        at: Utc::now(),
    };
    record(saga, &account_id, command).await
}

/// A retry of a notice that failed, while the account still lists it as undelivered.
pub(super) async fn retry(
    saga: &ExecutionSaga,
    account_id: &str,
    about_sequence: u64,
) -> Result<(), ReaderError> {
    let Some(failed_before) = saga
        .ledger
        .undelivered_notice(account_id, about_sequence)
        .await?
    else {
        return Ok(());
    };
    let after = usize::try_from(about_sequence.saturating_sub(1)).unwrap_or(usize::MAX);
    let told = saga
        .ledger
        .store()
        .events()
        .load_account_page(account_id, after, 1)
        .await?
        .into_iter()
        .next()
        .map(|stored| decode(&stored, saga.ledger.upcasters()))
        .transpose()
        .map_err(LedgerError::from)?;
    let Some(message) = told.and_then(|told| messages::notice(&told.event)) else {
        tracing::warn!(
            account_id,
            about_sequence,
            "the event an undelivered notice tells is not a notice"
        );
        return Ok(());
    };
    let outcome = attempt(saga, account_id, &message, failed_before).await;
    let command = AccountCommand::RecordNotice {
        about_sequence,
        channel: saga.notifier.channel().to_owned(),
        outcome,
        at: Utc::now(),
    };
    record(saga, account_id, command).await
}

/// The told event's sequence in its account, as the notice is keyed.
fn sequence(origin: &Origin) -> u64 {
    u64::try_from(origin.sequence).unwrap_or(u64::MAX)
}

/// An engagement or release of the global emergency stop, as the saga read it.
pub struct EmergencyStopChange {
    stop_sequence: u64,
    engaged: bool,
    by: String,
    reason: String,
    at: chrono::DateTime<Utc>,
}

/// The change an event of the emergency stop's stream records; `None` (logged) when it cannot be
/// read: the switch itself refuses such a stream, so trading stays as it was.
pub fn emergency_stop(logged: crate::store::LoggedEvent) -> Option<EmergencyStopChange> {
    let stop_sequence = u64::try_from(logged.event.sequence).ok()?;
    match crate::emergency::decode(&logged.event) {
        Ok(EmergencyEvent::EmergencyStopEngaged { by, reason, at }) => Some(EmergencyStopChange {
            stop_sequence,
            engaged: true,
            by,
            reason,
            at,
        }),
        Ok(EmergencyEvent::EmergencyStopReleased { by, reason, at }) => Some(EmergencyStopChange {
            stop_sequence,
            engaged: false,
            by,
            reason,
            at,
        }),
        Err(error) => {
            tracing::error!(%error, stop_sequence, "an emergency stop event cannot be read; not told");
            None
        }
    }
}

/// Hands each change of the emergency stop to every account, which notes it once
/// (`EmergencyStopNoted`); the note is then told as any notice. A page read again notes nothing
/// twice.
pub async fn note_emergency_stops(
    saga: &ExecutionSaga,
    changes: Vec<EmergencyStopChange>,
) -> Result<(), ReaderError> {
    if changes.is_empty() {
        return Ok(());
    }
    let accounts = saga.ledger.store().credentials().user_ids().await?;
    for change in changes {
        let noted = stream::iter(accounts.clone())
            .map(|account_id| {
                let command = AccountCommand::NoteEmergencyStop {
                    stop_sequence: change.stop_sequence,
                    engaged: change.engaged,
                    by: change.by.clone(),
                    reason: change.reason.clone(),
                    at: change.at,
                };
                let saga = saga.clone();
                async move { record(&saga, &account_id, command).await }
            })
            .buffer_unordered(MAX_CONCURRENT_STEPS)
            .collect::<Vec<_>>()
            .await;
        first_error(noted)?;
    }
    Ok(())
}
