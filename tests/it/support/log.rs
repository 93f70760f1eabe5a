//! The global order of events, read whole through the store's paging.

use ledgerhook::store::{LogPosition, LoggedEvent, Store};

/// Every event of the log, in the global order, read `page` events at a time.
pub async fn whole_log(store: &Store, page: i64) -> Vec<LoggedEvent> {
    let mut events: Vec<LoggedEvent> = Vec::new();
    loop {
        let after = events
            .last()
            .map_or_else(LogPosition::default, |last| last.position);
        let read = store
            .events()
            .read_log(after, page)
            .await
            .expect("the log reads");
        if read.is_empty() {
            return events;
        }
        events.extend(read);
    }
}
