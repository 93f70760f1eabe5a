//! One account event as the read side folds it: the event and where it sits in its stream.

use aggregates::AccountEvent;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub account_id: String,
    /// The event's sequence in its account's stream (1, 2, 3...).
    pub sequence: usize,
    /// When the ledger recorded it (from the event's metadata); `None` for events written without.
    pub recorded_at: Option<DateTime<Utc>>,
    pub event: AccountEvent,
}
