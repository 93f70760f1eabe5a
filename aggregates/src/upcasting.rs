//! Bringing stored events written by older versions of this crate up to `EVENT_VERSION`.
//!
//! Every event is stored with its schema version. When an event's shape changes, its old version
//! gets an upcaster here that rewrites the stored JSON on load; the list is applied by the store on
//! every read path (command loads, catch-up readers, replay).

use cqrs_es::persist::EventUpcaster;

/// The upcasters for every stored event version older than `EVENT_VERSION`. Version 1.0 is the
/// first, so none are needed yet; the store's upcasting path is exercised by its tests.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}
