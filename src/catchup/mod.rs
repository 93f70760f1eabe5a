//! The one runtime of the catch-up readers of the log (the execution saga, the audit writer, the
//! read models): each implements `CatchUpReader` (its page logic only), and `supervisor::supervise`
//! runs it — lease, checkpoint, pages, waiting for new events, restarts with backoff after an
//! error or a panic — reporting to a shared `ReaderRegistry` that `/readyz` and the lag log read.
//! An event a reader cannot decode is parked (`parking.rs`) instead of stopping the reader.

pub mod feed;
mod lease;
pub mod parking;
pub mod report;
mod runtime;
pub mod status;
pub mod supervisor;

use async_trait::async_trait;

use crate::exchange::ExchangeError;
use crate::ledger::{DecodeError, LedgerError};
use crate::store::{LogPosition, LoggedEvent, StoreError};

pub use self::lease::{acquire_lease, wait_or_shutdown, LEASE_RETRY_INTERVAL};
pub use self::runtime::Context;
pub use self::status::{ReaderRegistry, ReaderState, ReaderStatus, ReadinessLimits};
pub use self::supervisor::{supervise, ReaderExit, SupervisorConfig};

/// Why a reader could not go on with a page.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// Transient as a rule (the store did not answer, a conflict): the page is read again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raised only where parking is impossible; readers park what they cannot decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The reader stopped itself on purpose (the audit writer on a head it did not write): it
    /// keeps its lease and stays down until an operator steps in; no restart.
    #[error("{0}")]
    Halted(String),
}

impl ReaderError {
    pub fn is_halt(&self) -> bool {
        matches!(self, Self::Halted(_))
    }
}

/// What became of a released parked event the reader tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    Applied,
    /// It still cannot be applied: open again.
    ParkedAgain,
    /// Not now (another runner moved on meanwhile): tried again later.
    Later,
}

/// A catch-up reader's own logic; the runtime does the rest. The reader records its checkpoint
/// itself, so that a reader writing rows can move it in the same transaction (exactly once).
#[async_trait]
pub trait CatchUpReader: Send + 'static {
    /// Its lease, checkpoint and status name.
    fn name(&self) -> &'static str;
    fn page_size(&self) -> i64;
    /// How long to let events gather after a page shorter than `page_size` before reading the
    /// next: under load, fewer and larger transactions, for readers whose output may lag a little
    /// (read models, the audit trail; never the saga, which places orders).
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Reads from the store where it stands: at start, after a restart, after retaking its lease.
    async fn resume(&mut self) -> Result<LogPosition, ReaderError>;
    /// Applies a page (never empty), read after `after` (where it last said it stands), and
    /// records that it is past it; where to read next. Events it cannot decode are parked, not
    /// errors.
    async fn apply(
        &mut self,
        after: LogPosition,
        page: Vec<LoggedEvent>,
    ) -> Result<LogPosition, ReaderError>;
    /// Applies one released parked event again, out of order; the checkpoint does not move.
    async fn retry(&mut self, event: LoggedEvent) -> Result<Retried, ReaderError>;
    /// Called whenever it has caught up with the log (before waiting for more): timed work.
    async fn idle(&mut self) {}
    /// Told when the runtime halts it (`ReaderError::Halted`) while it still holds its lease.
    fn on_halt(&self) {}
    /// At shutdown, after the last page.
    async fn finish(&mut self) {}
}
