//! The canonical encoding of an audit row and of a checkpoint, and their digests. This is the
//! whole definition an outside tool needs to recompute the chain (ARCHITECTURE.md repeats it):
//!
//! * Each field is written as a netstring: its length in bytes as ASCII decimal (no leading zeros,
//!   `0` for empty), `:`, the UTF-8 bytes, `,`. Integers are ASCII decimal; a NULL `signal_id` is
//!   the empty string (the writer never stores an empty `signal_id`, and verification rejects one).
//! * Row hash = lowercase hex SHA-256 over the netstrings of, in this order: the tag
//!   `ledgerhook-audit-row-v1`, position, account_id, aggregate_type, sequence, event_type,
//!   event_version, signal_id, recorded_at (RFC 3339 UTC, exactly six fractional digits, `Z`),
//!   payload, metadata, prev_hash (the previous row's hash; 64 `0`s for position 1).
//! * Checkpoint signature = lowercase hex HMAC-SHA256 under the audit key over the netstrings of
//!   the tag `ledgerhook-audit-checkpoint-v1`, position, hash, at (as recorded_at).

use sha2::{Digest, Sha256};

use crate::store::AuditRow;

use super::key::AuditKey;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const ROW_TAG: &str = "ledgerhook-audit-row-v1";
const CHECKPOINT_TAG: &str = "ledgerhook-audit-checkpoint-v1";

/// The canonical text of a time: what PostgreSQL's microseconds keep, in one spelling — the same
/// text SQLite stores and compliance filters compare with.
pub use crate::store::recorded_at_text as canonical_time;

/// The bytes the row's hash is taken over (everything but `hash` itself).
pub fn row_encoding(row: &AuditRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.payload.len() + row.metadata.len() + 256);
    for field in [
        ROW_TAG,
        &row.position.to_string(),
        &row.account_id,
        &row.aggregate_type,
        &row.sequence.to_string(),
        &row.event_type,
        &row.event_version,
        row.signal_id.as_deref().unwrap_or(""),
        &row.recorded_at,
        &row.payload,
        &row.metadata,
        &row.prev_hash,
    ] {
        netstring(&mut out, field);
    }
    out
}

pub fn row_hash(row: &AuditRow) -> String {
    hex::encode(Sha256::digest(row_encoding(row)))
}

/// The bytes a checkpoint's signature is taken over.
pub fn checkpoint_encoding(position: i64, hash: &str, at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    for field in [CHECKPOINT_TAG, &position.to_string(), hash, at] {
        netstring(&mut out, field);
    }
    out
}

pub fn checkpoint_signature(key: &AuditKey, position: i64, hash: &str, at: &str) -> String {
    key.sign(&checkpoint_encoding(position, hash, at))
}

fn netstring(out: &mut Vec<u8>, field: &str) {
    out.extend_from_slice(field.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(field.as_bytes());
    out.push(b',');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn row() -> AuditRow {
        AuditRow {
            position: 1,
            account_id: "acct".into(),
            aggregate_type: "TradingAccount".into(),
            sequence: 1,
            event_type: "AccountOpened".into(),
            event_version: "2.0".into(),
            signal_id: None,
            recorded_at: "2024-05-01T12:00:00.000000Z".into(),
            payload: "{}".into(),
            metadata: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn the_encoding_is_a_sequence_of_netstrings() {
        let expected = "23:ledgerhook-audit-row-v1,1:1,4:acct,14:TradingAccount,1:1,\
                        13:AccountOpened,3:2.0,0:,27:2024-05-01T12:00:00.000000Z,2:{},2:{},\
                        64:0000000000000000000000000000000000000000000000000000000000000000,";
        assert_eq!(String::from_utf8(row_encoding(&row())).unwrap(), expected);
        assert_eq!(
            row_hash(&row()),
            hex::encode(Sha256::digest(expected.as_bytes()))
        );
    }

    #[test]
    fn moving_a_byte_between_fields_changes_the_hash() {
        let mut shifted = row();
        shifted.account_id = "acc".into();
        shifted.aggregate_type = "tTradingAccount".into();
        assert_ne!(row_hash(&row()), row_hash(&shifted));
    }

    #[test]
    fn canonical_time_keeps_six_digits() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456789+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(canonical_time(at), "2024-05-01T10:00:00.123456Z");
    }
}
