//! The read side: folds over the ledger's events. Pure like the domain crate; the service feeds
//! it events it read from the store and keeps the rows the folds produce.
//!
//! - `timeline`, `view` and `diff`: the developer's replay of one account, with what each event
//!   changed (on a view of the state whose size does not grow with the history);
//! - `positions`, `trades`, `daily_volume`, `signals`: the trader's read models, each a fold from
//!   `Envelope`s (an account event with where it sits in its stream) into rows keyed per account.
//!   `ReadModels` holds all four, so a from-scratch rebuild is one fold over the whole log.

mod daily_volume;
mod diff;
mod envelope;
mod positions;
mod read_models;
mod signals;
mod timeline;
mod trades;
mod view;

pub use daily_volume::{DailyVolumeKey, DailyVolumeRow};
pub use diff::{diff, Change, ChangeKind};
pub use envelope::Envelope;
pub use positions::{PositionKey, PositionRow};
pub use read_models::{Projection, ReadModels, TouchedKeys};
pub use signals::{SignalEventRef, SignalKey, SignalRow};
pub use timeline::{AsOf, AsOfError, Entry, Selection, SelectionError, Step, Timeline};
pub use trades::{TradeKey, TradeRow};
pub use view::{Entries, Extent, Folded, Idempotency, StateView, Touches};

#[cfg(test)]
mod tests;
