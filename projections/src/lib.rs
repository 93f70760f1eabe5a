//! The read side: folds over the ledger's events. Pure like the domain crate; the service feeds
//! it events it read from the store.
//!
//! Today it holds the developer's replay timeline and its state diff; catch-up projections with checkpoints (positions,
//! trades, daily volume, signal status, the audit trail) join it as the read side grows.

mod diff;
mod timeline;

pub use diff::{diff, Change, ChangeKind};
pub use timeline::{AsOf, AsOfError, Entry, Selection, SelectionError, Step, Timeline};
