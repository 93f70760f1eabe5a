//! The loop every catch-up reader runs: take its lease, load where it stands, read a page, apply
//! it, wait for new events (handed over by this process's committer, a poll for other processes',
//! or shutdown), retake a lost
//! lease, retry released parked events. An error ends the run: the supervisor restarts it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};

use super::feed::Feed;
use super::status::{ReaderRegistry, ReaderState};
use super::{acquire_lease, wait_or_shutdown, CatchUpReader, ReaderError, Retried};
use crate::ledger::Ledger;
use crate::store::{parse_position_label, Lease, LogPosition, LoggedEvent, Store};

/// How often the log is polled for events appended by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Pause before a page that failed in the store is tried again in place.
const STORE_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Failures in a row tried again in place before the supervisor restarts the reader.
const MAX_STORE_RETRIES_IN_PLACE: u32 = 10;
/// How often a reader looks for parked events an operator released.
const RELEASE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a busy reader asks whether it still holds its lease (a round trip on the lease's
/// connection). Not before every page: a page's writes are safe without it (checkpoints move by
/// compare-and-set, each saga step asks the account first), and a failed page asks at once.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a run needs besides its reader.
#[derive(Clone)]
pub struct Context {
    /// For its store and its notice of new appends; readers do not read through it.
    pub ledger: Ledger,
    pub shutdown: watch::Receiver<bool>,
    pub registry: Arc<ReaderRegistry>,
    /// Test-only fault: armed, the next page panics the run (see `serve --fault-panic-reader`).
    pub panic_once: Arc<AtomicBool>,
}

/// One run of `reader`, until shutdown (`Ok`) or an error.
pub async fn run<R: CatchUpReader>(
    reader: Arc<Mutex<R>>,
    mut cx: Context,
) -> Result<(), ReaderError> {
    let mut reader = reader.lock().await;
    let name = reader.name();
    let store = cx.ledger.store().clone();
    let registry = cx.registry.clone();
    let standing_by = || registry.update(name, |status| status.state = ReaderState::Standby);
    let Some(lease) = acquire_lease(&store, name, &mut cx.shutdown, &standing_by).await else {
        return Ok(());
    };
    // Subscribed before the checkpoint is read: every later commit is either in the store by then
    // or handed over.
    let mut feed = Feed::new(Some(cx.ledger.committed()));
    let Some((mut lease, mut after)) = resume(&mut *reader, lease, &mut cx, &store).await? else {
        return Ok(());
    };
    let mut released_checked: Option<Instant> = None;
    let mut lease_checked = Instant::now();
    let mut store_failures = 0;
    // A page failed because the lease's connection is gone: retake it before the next page.
    let mut lease_lost = false;
    while !*cx.shutdown.borrow() {
        let lease_check_due = store_failures > 0 || lease_checked.elapsed() >= LEASE_CHECK_INTERVAL;
        if lease_check_due {
            lease_checked = Instant::now();
        }
        if lease_lost || (lease_check_due && !lease.is_held().await) {
            lease_lost = false;
            tracing::warn!(reader = name, "lost its lease; waiting to take it again");
            let Some(renewed) = acquire_lease(&store, name, &mut cx.shutdown, &standing_by).await
            else {
                return Ok(());
            };
            // Another instance may have moved on meanwhile.
            let Some(resumed) = resume(&mut *reader, renewed, &mut cx, &store).await? else {
                return Ok(());
            };
            (lease, after) = resumed;
        }
        if released_checked.is_none_or(|at| at.elapsed() >= RELEASE_CHECK_INTERVAL) {
            retry_released(&mut *reader, &store).await?;
            released_checked = Some(Instant::now());
        }
        let page = match feed.next_page(&store, after, reader.page_size()).await {
            Ok(page) => page,
            Err(error) => {
                // A store that does not answer for a moment: the page is read again in place,
                // rather than restarting the reader with a growing backoff.
                tracing::warn!(reader = name, %error, "reading the log failed; reading again");
                if wait_or_shutdown(&mut cx.shutdown, STORE_RETRY_PAUSE).await {
                    break;
                }
                continue;
            }
        };
        if page.is_empty() {
            reader.idle().await;
            let shutdown = &mut cx.shutdown;
            feed.wait(POLL_INTERVAL, async {
                let _ = shutdown.changed().await;
            })
            .await;
            continue;
        }
        if cx.panic_once.swap(false, Ordering::SeqCst) {
            panic!(
                "fault injected: the {name} reader panics on its first page (--fault-panic-reader)"
            );
        }
        let short_page = i64::try_from(page.len()).is_ok_and(|read| read < reader.page_size());
        match reader.apply(after, page).await {
            Ok(next) => {
                after = next;
                cx.registry.set_position(name, next);
                let linger = reader.linger();
                if short_page
                    && !linger.is_zero()
                    && wait_or_shutdown(&mut cx.shutdown, linger).await
                {
                    break;
                }
            }
            // The lease's connection died with the page's (a database restart), or another
            // instance took over and moved on: retake the lease and reload where the reader
            // stands, since what it committed last may not have survived.
            Err(error) if !lease.is_held().await => {
                tracing::warn!(reader = name, %error, "page failed after the lease was lost");
                lease_lost = true;
                continue;
            }
            Err(error) if error.is_halt() => {
                return halt(
                    &mut *reader,
                    lease,
                    &cx.registry,
                    &store,
                    &mut cx.shutdown,
                    error,
                )
                .await
            }
            Err(ReaderError::Store(error)) if store_failures < MAX_STORE_RETRIES_IN_PLACE => {
                store_failures += 1;
                tracing::warn!(reader = name, %error, "the page failed in the store; trying it again");
                if wait_or_shutdown(&mut cx.shutdown, STORE_RETRY_PAUSE).await {
                    break;
                }
                // Where the page's transaction left the reader (it committed whole or not at all).
                let Some(resumed) = resume(&mut *reader, lease, &mut cx, &store).await? else {
                    return Ok(());
                };
                (lease, after) = resumed;
                continue;
            }
            Err(error) => return Err(error),
        }
        store_failures = 0;
    }
    reader.finish().await;
    Ok(())
}

/// Where the reader stands once it holds its lease, reported as running; `None` when it halted
/// itself instead (it then kept the lease until shutdown).
async fn resume<R: CatchUpReader>(
    reader: &mut R,
    lease: Lease,
    cx: &mut Context,
    store: &Store,
) -> Result<Option<(Lease, LogPosition)>, ReaderError> {
    match reader.resume().await {
        Err(error) if error.is_halt() => {
            halt(reader, lease, &cx.registry, store, &mut cx.shutdown, error).await?;
            Ok(None)
        }
        Err(error) => Err(error),
        Ok(after) => {
            running(cx, store, reader.name(), after).await;
            Ok(Some((lease, after)))
        }
    }
}

/// The reader stopped itself on purpose: down until shutdown, keeping the lease, so that no
/// standby instance goes on in its place either.
async fn halt<R: CatchUpReader>(
    reader: &mut R,
    lease: Lease,
    registry: &ReaderRegistry,
    store: &Store,
    shutdown: &mut watch::Receiver<bool>,
    error: ReaderError,
) -> Result<(), ReaderError> {
    let name = reader.name();
    reader.on_halt();
    registry.update(name, |status| {
        status.state = ReaderState::Down;
        status.last_error = Some(error.to_string());
    });
    registry.persist(store, name).await;
    let _ = shutdown.wait_for(|stop| *stop).await;
    drop(lease);
    Ok(())
}

async fn running(cx: &Context, store: &Store, name: &'static str, at: LogPosition) {
    cx.registry
        .update(name, |status| status.state = ReaderState::Running);
    cx.registry.set_position(name, at);
    cx.registry.persist(store, name).await;
}

/// Tries every event an operator released for this reader again; settles those it applied.
async fn retry_released<R: CatchUpReader>(
    reader: &mut R,
    store: &Store,
) -> Result<(), ReaderError> {
    let name = reader.name();
    for parked in store.parked().released_events(name).await? {
        let Some(position) = parse_position_label(&parked.position) else {
            tracing::error!(reader = name, position = %parked.position, "a parked event's position cannot be read");
            continue;
        };
        let Some(event) = store
            .parked()
            .account_event(&parked.account_id, parked.sequence)
            .await?
        else {
            tracing::error!(reader = name, position = %parked.position, "a released event is not in the store");
            continue;
        };
        let event = Arc::new(event);
        match reader.retry(LoggedEvent { position, event }).await? {
            Retried::Applied => {
                tracing::info!(reader = name, position = %parked.position, "released event applied");
                store.parked().settle_parked(name, &parked.position).await?;
            }
            Retried::ParkedAgain | Retried::Later => {}
        }
    }
    Ok(())
}
