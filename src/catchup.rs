//! What every catch-up reader of the log (the execution saga, the audit writer, the read models)
//! shares: one holder of its lease among the processes sharing the store, and pauses that end early
//! when shutdown is asked for.

pub mod feed;

use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Lease, Store};

/// How often a standby instance tries to take a reader's lease over.
pub const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Pause before a reader re-reads a page whose handling hit a store error.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Waits until this process holds the lease `name` (other instances sharing the store stand by);
/// `None` when shutdown comes first. `what` names the reader in log lines.
pub async fn acquire_lease(
    store: &Store,
    name: &str,
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Lease> {
    let mut announced = false;
    loop {
        match store.try_lease(name).await {
            Ok(Some(lease)) => return Some(lease),
            Ok(None) if !announced => {
                tracing::info!("another instance runs {what}; standing by");
                announced = true;
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, lease = name, "cannot take the lease"),
        }
        if wait_or_shutdown(shutdown, LEASE_RETRY_INTERVAL).await {
            return None;
        }
    }
}

/// Sleeps for `delay`; true when shutdown was asked for meanwhile.
pub async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}
