//! Parking: an event a reader cannot decode (or upcast) is recorded in `parked_events` with an
//! error log line, and the reader goes on with the next events, so one bad event does not stop
//! every account. An operator lists them (`projections parked`) and releases (the reader retries)
//! or skips each one. Transient failures are never parked: they are retried.

use cqrs_es::persist::EventUpcaster;

use crate::ledger::{decode, DecodeError, RecordedEvent};
use crate::store::{position_label, LogPosition, LoggedEvent, NewParkedEvent, Store};

/// The event decoded, or `None` once it is parked for `reader`.
pub async fn decode_or_park(
    store: &Store,
    reader: &str,
    logged: LoggedEvent,
    upcasters: &[Box<dyn EventUpcaster>],
) -> crate::store::Result<Option<RecordedEvent>> {
    let position = logged.position;
    let version = logged.event.event_version.clone();
    match decode(&logged.event, upcasters) {
        Ok(recorded) => Ok(Some(recorded)),
        Err(error) => {
            park(store, reader, position, &version, &error).await?;
            Ok(None)
        }
    }
}

/// Records the event as parked; it is stored before the reader's checkpoint passes it, so no
/// event is ever passed over without a row.
pub async fn park(
    store: &Store,
    reader: &str,
    position: LogPosition,
    event_version: &str,
    error: &DecodeError,
) -> crate::store::Result<()> {
    tracing::error!(
        reader,
        position = %position_label(position),
        account_id = %error.account_id,
        sequence = error.sequence,
        event_type = %error.event_type,
        event_version,
        reason = %error.reason,
        "event parked: this reader cannot apply it and goes on without it until an operator \
         decides (`ledgerhook projections parked`)"
    );
    store
        .parked()
        .park_event(&NewParkedEvent {
            reader: reader.to_owned(),
            position,
            account_id: error.account_id.clone(),
            sequence: i64::try_from(error.sequence).unwrap_or(i64::MAX),
            event_type: error.event_type.clone(),
            event_version: event_version.to_owned(),
            reason: error.reason.clone(),
        })
        .await?;
    Ok(())
}
