//! Runs a reader, and runs it again after it fails or panics: after 1 s, doubling up to 30 s (back
//! to the first delay after a run that lasted longer than the cap). Meanwhile the reader is `down`
//! in the registry, which `/readyz` reports.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::runtime::{self, Context};
use super::status::ReaderState;
use super::{wait_or_shutdown, CatchUpReader};

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Test-only: the reader of this name panics once, on its first page.
    pub fault_panic_reader: Option<String>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            fault_panic_reader: None,
        }
    }
}

/// How a supervised reader ended (at shutdown).
#[derive(Debug, Clone)]
pub struct ReaderExit {
    pub reader: &'static str,
    pub restarts: u32,
    /// The last failure, if it was down when shutdown came.
    pub down_with: Option<String>,
}

/// Runs `reader` until shutdown, restarting it after every failure or panic.
pub async fn supervise<R: CatchUpReader>(
    reader: R,
    cx: Context,
    config: SupervisorConfig,
) -> ReaderExit {
    let name = reader.name();
    let store = cx.ledger.store().clone();
    let mut shutdown = cx.shutdown.clone();
    let armed = config.fault_panic_reader.as_deref() == Some(name);
    let cx = Context {
        panic_once: Arc::new(AtomicBool::new(armed)),
        ..cx
    };
    // Shared with every run, so that a panicking run leaves it to the next one.
    let reader = Arc::new(Mutex::new(reader));
    let mut backoff = config.first_backoff;
    let mut restarts = 0u32;
    loop {
        let started = Instant::now();
        let outcome = tokio::spawn(runtime::run(reader.clone(), cx.clone())).await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(join) if join.is_panic() => Some(format!("panicked: {}", panic_message(join))),
            Err(join) => Some(join.to_string()),
        };
        let Some(failure) = failure.filter(|_| !*shutdown.borrow()) else {
            // Reported only by the instance that ran it: a standby's stop says nothing of it.
            let ran_it = cx.registry.get(name).is_some_and(|status| {
                matches!(status.state, ReaderState::Running | ReaderState::Down)
            });
            cx.registry
                .update(name, |status| status.state = ReaderState::Stopped);
            if ran_it {
                cx.registry.persist(&store, name).await;
            }
            return ReaderExit {
                reader: name,
                restarts,
                down_with: None,
            };
        };
        restarts += 1;
        if started.elapsed() > config.max_backoff {
            backoff = config.first_backoff;
        }
        tracing::error!(reader = name, error = %failure, restarts, backoff_ms = backoff.as_millis() as u64, "catch-up reader failed; restarting it");
        cx.registry.update(name, |status| {
            status.state = ReaderState::Down;
            status.restarts = restarts;
            status.last_error = Some(failure.clone());
        });
        cx.registry.persist(&store, name).await;
        if wait_or_shutdown(&mut shutdown, backoff).await {
            return ReaderExit {
                reader: name,
                restarts,
                down_with: Some(failure),
            };
        }
        backoff = (backoff * 2).min(config.max_backoff.max(config.first_backoff));
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Runs one reader on its own (no registry shared with anything else): tests and tools.
pub async fn run_alone<R: CatchUpReader>(
    reader: R,
    ledger: crate::ledger::Ledger,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let cx = Context {
        ledger,
        shutdown,
        registry: Arc::default(),
        panic_once: Arc::default(),
    };
    let exit = supervise(reader, cx, SupervisorConfig::default()).await;
    if let Some(error) = exit.down_with {
        tracing::error!(reader = exit.reader, %error, "reader was down at shutdown");
    }
}
