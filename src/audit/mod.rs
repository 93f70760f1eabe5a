//! The tamper-evident audit trail: every event of the global order, hash-chained in `audit_log`
//! (`writer`), with signed checkpoints of the chain head, and its verification (`verify`). The
//! canonical encoding is defined in `chain` and repeated in ARCHITECTURE.md, "Audit trail".

pub mod chain;
pub mod key;
pub mod monitor;
pub mod verify;
pub mod writer;

pub use self::key::{AuditKey, WeakKey};
pub use self::monitor::{LatestVerification, Verification};
pub use self::verify::{verify, Mismatch, PublishedCheckpoint, VerifyOptions, VerifyReport};
pub use self::writer::{AuditConfig, AuditWriter};
