//! The read side: folds over the ledger's events. Pure like the domain crate; the service feeds
//! it events it read from the store.
//!
//! Today it holds the developer's replay timeline; catch-up projections with checkpoints (positions,
//! trades, daily volume, signal status, the audit trail) join it as the read side grows.

mod timeline;

pub use timeline::{Step, Timeline};
