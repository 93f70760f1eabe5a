//! The tamper-evident audit trail: every event of the global order, hash-chained in `audit_log`
//! (`writer`), with signed checkpoints of the chain head, and its verification (`verify`).
//!
//! - `audit_log` (migration 0005) holds one row per event of every stream, in the global order,
//!   `position` 1, 2, 3… without gaps, each `hash` covering the row and the previous row's hash.
//!   The canonical encoding (netstrings of a version tag and every column, times as RFC 3339 UTC
//!   with six fractional digits) is defined, with an example, in `chain`, so an outside tool can
//!   recompute the chain.
//! - `verify` walks the trail a page at a time beside the ledger's global order (row k records the
//!   k-th event: stream, sequence, type, payload, metadata) and names the first row that does not
//!   match; `ledgerhook audit verify` runs it, and `serve` in the background (`monitor`), whose
//!   latest report `GET /api/compliance/audit/verify` serves; its walks are paced (`pace`) to a
//!   quarter of the time, so that a long one does not starve the signals beside it.
//! - Checkpoints of the head (every `--audit-checkpoint-every` rows, every
//!   `--audit-checkpoint-interval-seconds` when rows were added, and at shutdown) go to the
//!   append-only `audit_checkpoints` and to the log (the published copy `audit verify
//!   --expect-checkpoint POSITION:HASH` checks), signed with HMAC-SHA256 under `--audit-key`.
//!   Verified with the key, an unsigned checkpoint fails, and so does a row older than
//!   `--max-unprotected-seconds` that no checkpoint covers.
//! - The writer compares the stored head with the one it wrote before each page; on a head it did
//!   not write it raises an `ALERT` (target `ledgerhook::audit::alert`) and stops, keeping its lease
//!   so that no standby chains after the foreign row.
//! - Caught: any changed byte, a removed row, a row without its event or an event without its row,
//!   history re-chained up to the latest checkpoint. Not caught by the chain alone: rows re-chained
//!   after it by someone with write access to the tables and the events (at most one checkpoint
//!   interval of rows).
//! - On PostgreSQL `ledgerhook_audit_owner` (NOLOGIN) owns the tables and the writer appends under
//!   `SET LOCAL ROLE ledgerhook_audit_writer` (INSERT and SELECT only); `serve` refuses a
//!   superuser, CREATEROLE or owning login unless `--allow-privileged-login` (development).

pub mod chain;
pub mod key;
pub mod monitor;
pub mod pace;
pub mod verify;
pub mod writer;

pub use self::key::{AuditKey, WeakKey};
pub use self::monitor::{LatestVerification, Verification};
pub use self::pace::Pace;
pub use self::verify::{
    verify, verify_from, Mismatch, PublishedCheckpoint, Verified, VerifyOptions, VerifyReport,
};
pub use self::writer::{AuditConfig, AuditWriter};
