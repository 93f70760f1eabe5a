//! The guard's failure counts, shared by the instances on one PostgreSQL.
//!
//! Each instance keeps its rate limits and lockouts in memory (`src/guard`), so that a flood of
//! guesses costs no query. Alone, two instances would each give a guesser the whole budget. So
//! every failure an instance *counts* is announced (NOTIFY, batched, never stored) and counted by
//! the others as their own: the address's budget and the (address, credential) lockout then hold
//! whichever instance a guess reaches, within the few milliseconds a notification takes. Failures
//! refused as over a limit are not announced: every instance has already heard enough to refuse
//! them too, and the database never sees the flood.
//!
//! Not shared, on purpose: successes (a right credential is checked before any lockout, so a
//! lockout never refuses its owner) and the per-user rate limit (the account enforces the user's
//! quota itself, exactly, across instances: `aggregates` quota.rs). SQLite has one instance.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::guard::{CountedFailure, Guard, Key};
use crate::store::{PostgresStore, Store};

pub const CHANNEL: &str = "ledgerhook_auth_failures";
/// Failures waiting to be announced; past it they are counted here only.
const QUEUE: usize = 10_000;
/// Failures per announcement: 65 bytes each, well inside NOTIFY's 8,000-byte payload.
const BATCH: usize = 100;
/// Pause before listening again after the connection could not be made.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// `guard`, sharing its failures with the other instances when the store is PostgreSQL, and the
/// tasks that do it (they stop with `shutdown`).
pub fn share(
    store: &Store,
    guard: Guard,
    shutdown: watch::Receiver<bool>,
) -> (Arc<Guard>, Vec<JoinHandle<()>>) {
    let Store::Postgres(store) = store else {
        return (Arc::new(guard), Vec::new());
    };
    let instance = Uuid::new_v4().simple().to_string();
    let (sender, receiver) = mpsc::channel(QUEUE);
    let guard = Arc::new(guard.share_failures_with(sender));
    let tasks = vec![
        tokio::spawn(announce(
            store.clone(),
            instance.clone(),
            receiver,
            shutdown.clone(),
        )),
        tokio::spawn(listen(store.clone(), instance, guard.clone(), shutdown)),
    ];
    (guard, tasks)
}

async fn announce(
    store: PostgresStore,
    instance: String,
    mut failures: mpsc::Receiver<CountedFailure>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            received = failures.recv_many(&mut batch, BATCH) => if received == 0 { return },
        }
        match store.announce(CHANNEL, &payload(&instance, &batch)).await {
            Ok(()) => crate::telemetry::peer_failures("announced", batch.len()),
            Err(error) => {
                tracing::warn!(%error, failures = batch.len(), "authentication failures not shared with the other instances")
            }
        }
        batch.clear();
    }
}

async fn listen(
    store: PostgresStore,
    instance: String,
    guard: Arc<Guard>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let listening = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            listening = store.listen(CHANNEL) => listening,
        };
        let mut announcements = match listening {
            Ok(announcements) => announcements,
            Err(error) => {
                tracing::warn!(%error, "cannot hear the other instances' authentication failures yet");
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(RELISTEN_AFTER) => continue,
                }
            }
        };
        loop {
            let heard = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                heard = announcements.next() => heard,
            };
            match heard {
                Ok(payload) => {
                    let failures = from_peer(&instance, &payload);
                    for failure in &failures {
                        guard.peer_failure(*failure);
                    }
                    if !failures.is_empty() {
                        crate::telemetry::peer_failures("heard", failures.len());
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "lost the other instances' authentication failures; listening again");
                    break;
                }
            }
        }
    }
}

/// `<instance> <address><credential> …`, each key 32 hex digits.
fn payload(instance: &str, failures: &[CountedFailure]) -> String {
    let mut payload = String::with_capacity(32 + failures.len() * 65);
    payload.push_str(instance);
    for failure in failures {
        payload.push(' ');
        payload.push_str(&failure.address.to_hex());
        payload.push_str(&failure.credential.to_hex());
    }
    payload
}

/// The failures in a payload another instance sent; none from this one's own, nothing unreadable.
fn from_peer(instance: &str, payload: &str) -> Vec<CountedFailure> {
    let mut words = payload.split(' ');
    if words.next().is_none_or(|sender| sender == instance) {
        return Vec::new();
    }
    words
        .filter_map(|word| {
            let (address, credential) = word.split_at_checked(32)?;
            Some(CountedFailure {
                address: Key::from_hex(address)?,
                credential: Key::from_hex(credential)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(n: u8) -> CountedFailure {
        CountedFailure {
            address: Key::digest("address", &[n]),
            credential: Key::digest("token", &[n]),
        }
    }

    #[test]
    fn a_batch_travels_whole_and_fits_a_notification() {
        let batch: Vec<_> = (0..BATCH as u8).map(failure).collect();
        let sent = payload("a".repeat(32).as_str(), &batch);
        assert!(sent.len() <= 8_000, "{} bytes", sent.len());
        assert_eq!(from_peer(&"b".repeat(32), &sent), batch);
    }

    #[test]
    fn an_instance_ignores_its_own_announcements_and_garbage() {
        let own = "c".repeat(32);
        assert!(from_peer(&own, &payload(&own, &[failure(1)])).is_empty());
        let garbled = format!("{} zz {}x", "d".repeat(32), "e".repeat(64));
        assert!(from_peer(&own, &garbled).is_empty());
        assert!(from_peer(&own, "").is_empty());
    }
}
