//! The global emergency stop as the service holds it: the `EmergencyStop` stream folded into a value
//! every request can read without a query, refreshed from the store so that a stop engaged by the
//! CLI or another instance reaches this one within `REFRESH_INTERVAL`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use serde::Deserialize;
use tokio::sync::watch;

use aggregates::{
    EmergencyCommand, EmergencyError, EmergencyEvent, EmergencyStop, Halt, EMERGENCY_STOP_ID,
};

use crate::catchup::wait_or_shutdown;
use crate::ledger::{encode_for, EventContext};
use crate::store::{Store, StoreError};

/// How stale this process's view of a stop engaged elsewhere may be.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);
/// Attempts when another process changes the stop at the same moment.
const MAX_CONFLICT_RETRIES: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Refused(#[from] EmergencyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the emergency stop's events cannot be read: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the emergency stop kept changing under concurrent writers")]
    Contended,
}

pub struct EmergencySwitch {
    store: Store,
    current: watch::Sender<Option<Halt>>,
}

impl EmergencySwitch {
    pub async fn load(store: Store) -> Result<Self, SwitchError> {
        let (state, _) = load_state(&store).await?;
        Ok(Self {
            store,
            current: watch::Sender::new(state.engaged),
        })
    }

    /// The stop as last seen: `Some` while trading is stopped for everyone.
    pub fn engaged(&self) -> Option<Halt> {
        self.current.borrow().clone()
    }

    /// Engages the stop; returns false when it already was.
    pub async fn engage(
        &self,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, SwitchError> {
        let command = EmergencyCommand::Engage {
            by: by.to_owned(),
            reason: reason.to_owned(),
            at,
        };
        self.execute(command, by, at).await
    }

    /// Releases the stop; returns false when it was not engaged.
    pub async fn release(
        &self,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, SwitchError> {
        let command = EmergencyCommand::Release {
            by: by.to_owned(),
            reason: reason.to_owned(),
            at,
        };
        self.execute(command, by, at).await
    }

    /// Re-reads the stream, so a change made by another process shows here.
    pub async fn refresh(&self) -> Result<(), SwitchError> {
        let (state, _) = load_state(&self.store).await?;
        self.current.send_if_modified(|current| {
            let changed = *current != state.engaged;
            *current = state.engaged;
            changed
        });
        Ok(())
    }

    /// Refreshes every `REFRESH_INTERVAL` until `shutdown` turns true.
    pub async fn keep_refreshed(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "emergency stop not refreshed; keeping the last state seen");
            }
            if wait_or_shutdown(&mut shutdown, REFRESH_INTERVAL).await {
                return;
            }
        }
    }

    async fn execute(
        &self,
        command: EmergencyCommand,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, SwitchError> {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            let (mut state, version) = load_state(&self.store).await?;
            let events = state.decide(command.clone())?;
            if events.is_empty() {
                self.current.send_replace(state.engaged);
                return Ok(false);
            }
            let context = EventContext::new(actor, at);
            let serialized =
                encode_for::<EmergencyStop>(EMERGENCY_STOP_ID, version + 1, &events, &context)?;
            match self.store.events().append(&serialized).await {
                Ok(_) => {
                    for event in &events {
                        state.evolve(event);
                    }
                    self.current.send_replace(state.engaged);
                    return Ok(true);
                }
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(SwitchError::Contended)
    }
}

/// The stop's state and version (its last sequence).
async fn load_state(store: &Store) -> Result<(EmergencyStop, usize), SwitchError> {
    let stored = store.events().load_emergency_stop().await?;
    let mut state = EmergencyStop::default();
    let mut version = 0;
    for event in stored {
        version = event.sequence;
        state.evolve(&decode(&event)?);
    }
    Ok((state, version))
}

pub(crate) fn decode(event: &SerializedEvent) -> Result<EmergencyEvent, serde_json::Error> {
    EmergencyEvent::deserialize(&event.payload)
}
