//! The ledger's storage on PostgreSQL or SQLite. `Store` is the connection; each concern is a small
//! repository reached from it: `events()` (the log, global order, snapshots, checkpoints),
//! `credentials()` (users and staff), `audit()`, `read_models()` and `vault()`. SQL is written once wherever
//! the dialects agree (`reading!` / `writing!`); per-dialect code is only where they differ:
//! appends and the global order, roles and NOTIFY, leases, the single SQLite writer.
//!
//! Architecture invariant: only this module (and the paper exchange's own book, through
//! `writing!`) writes SQL.

/// Runs `$body` with `$pool` bound to the store's pool, instantiated once per dialect: one
/// statement text (sqlx binds `$N` on SQLite too) and one decoder serve both. For reads.
/// `$db`, when named, is the dialect's `sqlx::Database` (for a `QueryBuilder`).
macro_rules! reading {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::store::on_pool!($store, $pool, _Db, None, pool => $body)
    };
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        $crate::store::on_pool!($store, $pool, $db, None, pool => $body)
    };
}

/// Like `reading!`, for writes to the ledger's own tables: on SQLite `$body` runs in its turn on
/// this process's queue of the ledger file's writers (`SqliteStore::lock_writer`).
macro_rules! writing {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::store::on_pool!($store, $pool, _Db, Ledger, pool => $body)
    };
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        $crate::store::on_pool!($store, $pool, $db, Ledger, pool => $body)
    };
}

/// What `reading!`, `writing!` and `writing_derived!` expand to: `$queue` names the writer queue
/// taken on SQLite (`WriterQueue`), and `$sqlite_pool` which of the SQLite store's pools `$body`
/// gets.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $db:ident, $queue:ident, $sqlite_pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Postgres(store) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                let $pool = store.pool();
                $body
            }
            $crate::store::Store::Sqlite(store) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                let _turn = store.turn($crate::store::WriterQueue::$queue).await;
                let $pool = store.$sqlite_pool();
                $body
            }
        }
    };
}

/// Like `writing!`, for what readers derive from the ledger (their rows, checkpoints and the audit
/// trail), which a crash of the whole machine may take back: the process dies with it and its
/// readers resume from what survived. On SQLite these tables live in the derived file
/// (`sqlite::derived_file`), whose writers queue apart from the ledger's; `$body` gets the
/// connection that commits there without waiting for the flush (`synchronous=NORMAL`). On
/// PostgreSQL the store's pool, where the transaction decides (`derived_commit_sql`), because the
/// server can crash while the service lives on.
macro_rules! writing_derived {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::store::on_pool!($store, $pool, _Db, Derived, derived_pool => $body)
    };
}

/// Like `writing_derived!`, for a derived record kept with the flush (an audit checkpoint): on
/// SQLite in the derived file's turn, on a connection that flushes both files.
macro_rules! writing_derived_flushed {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::store::on_pool!($store, $pool, _Db, Derived, pool => $body)
    };
}

pub(crate) use {on_pool, reading, writing};

mod announcements;
mod audit;
mod audit_queries;
mod audit_roles;
pub(crate) mod bulk;
pub(crate) mod decode;
mod derived;
mod dydx_sends;
mod events;
mod failover;
mod hosts;
mod postgres;
mod readmodels;
mod sign_in;
mod signal_keys;
mod sqlite;
mod staff;
mod unavailable;
pub mod upkeep;
mod users;
mod vault;
mod wal;

use cqrs_es::persist::PersistenceError;

pub use self::announcements::Announcements;
pub use self::audit::{Audit, AuditCheckpoint, AuditRow, ChainHead, AUDIT_WRITER_ROLE};
pub use self::audit_queries::{recorded_at_text, AuditFilter, MAX_AUDIT_PAGE};
pub use self::derived::RecreatedDerivedFile;
pub use self::dydx_sends::{DydxSend, DydxSends};
pub use self::events::{Events, LogPosition, LoggedEvent, Snapshot};
pub use self::postgres::LoginPrivileges;
pub use self::postgres::{CredentialListener, PostgresStore};
pub use self::readmodels::{PageOutcome, ProjectionWrite, ReadModelTables, TableSet, TradePage};
pub use self::sign_in::{LiveSession, SessionSubject, SignIn, StaffPassword};
pub use self::signal_keys::{SignalKey, SignalKeys, FORGET_AFTER, FORGET_BATCH};
pub(crate) use self::sqlite::WriterQueue;
pub use self::sqlite::{derived_file, ServiceLock, SqliteStore};
pub use self::staff::{ActiveStaff, ComplianceRead, NewStaff};
pub use self::users::{
    ActiveUser, CredentialDigests, Credentials, NewUser, RateLimit, TwoFactorUser, UserProfile,
    WebhookDigests, CREDENTIALS_CHANGED_CHANNEL,
};
pub use self::vault::{SealedSecret, SecretKey, VaultTable};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to one of the same accounts first (optimistic concurrency).
    #[error("another writer appended to the account first")]
    Conflict,
    /// A checkpoint of the audit chain is already recorded at this position and differs from the
    /// one being recorded: someone else wrote one (see `Store::insert_audit_checkpoint`).
    #[error("a different audit checkpoint is already recorded at position {0}")]
    AuditCheckpointConflict(i64),
    /// A stored value out of range or unreadable (never replaced by a default).
    #[error("{what} out of range or unreadable: {value}")]
    Decode { what: &'static str, value: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("event store error: {0}")]
    Persistence(PersistenceError),
    #[error("one append holds events of more than one aggregate type")]
    MixedBatch,
    #[error("unsupported database url (expected postgres://... or sqlite://...)")]
    UnsupportedUrl,
    /// A multi-host URL that cannot be read (`hosts.rs`).
    #[error(transparent)]
    HostList(#[from] hosts::HostsError),
    /// What failed, where and why, said at once (never the URL: it may hold a password).
    #[error("cannot connect to PostgreSQL at {address}: {reason}")]
    PostgresUnreachable { address: String, reason: String },
    #[error("cannot open the SQLite database {path}: {reason}")]
    SqliteUnopenable { path: String, reason: String },
    #[error(
        "another `ledgerhook serve` is already running on the SQLite database {database} (it \
         holds {lock}{holder}); stop it, or give this one a database of its own"
    )]
    AlreadyServing {
        database: String,
        lock: String,
        holder: String,
    },
    /// The embedded store's derived file is gone while its ledger needs one (`derived.rs`).
    #[error("the SQLite store's derived file {path} is missing or empty: {remedy}")]
    DerivedFileMissing { path: String, remedy: &'static str },
    /// The derived file has read further than the ledger holds: not this ledger's (`derived.rs`).
    #[error(
        "the SQLite store's derived file {path} is ahead of its ledger (it has read to position \
         {derived_head}, the ledger ends at {ledger_head}): {remedy}"
    )]
    DerivedFileAhead {
        path: String,
        derived_head: i64,
        ledger_head: i64,
        remedy: &'static str,
    },
    #[error("nothing to recreate: {why}")]
    NothingToRecreate { why: String },
}

/// Why a connection failed, in a few words: the OS's reason, or the server's message.
pub(crate) fn connect_reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(error) => io_reason(error),
        sqlx::Error::Database(error) => error.message().to_owned(),
        sqlx::Error::Tls(error) => format!("TLS failed: {error}"),
        other => other.to_string(),
    }
}

pub(crate) fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::ConnectionReset => "connection reset".to_owned(),
        ErrorKind::TimedOut => "timed out".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::NotADirectory => "not a directory".to_owned(),
        ErrorKind::AlreadyExists => "a file of that name is in the way".to_owned(),
        _ => error.to_string(),
    }
}

impl From<PersistenceError> for StoreError {
    fn from(error: PersistenceError) -> Self {
        match error {
            PersistenceError::OptimisticLockError => Self::Conflict,
            other => Self::Persistence(other),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connections of a store's pool: open, idle among them, and the most it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// The two supported stores behind one set of operations.
#[derive(Clone)]
pub enum Store {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

impl Store {
    /// Connects to `postgres://...` or `sqlite://...` (the SQLite file is created if missing).
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PostgresStore::connect(url).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Users and staff, their credentials' digests, and the record of compliance reads.
    pub fn credentials(&self) -> Credentials<'_> {
        Credentials { store: self }
    }

    /// The event log, snapshots and the catch-up readers' checkpoints.
    pub fn events(&self) -> Events<'_> {
        Events { store: self }
    }

    /// The audit trail: the hash chain, its checkpoints, and the compliance reads of it.
    pub fn audit(&self) -> Audit<'_> {
        Audit { store: self }
    }

    /// The orders the dYdX adapter sent, with the last block each can execute in.
    pub fn dydx_sends(&self) -> DydxSends<'_> {
        DydxSends { store: self }
    }

    /// Events the catch-up readers parked, and what each reader's instance reports of it.
    /// Wallets, sign-in nonces, staff passwords and sessions.
    pub fn sign_in(&self) -> SignIn<'_> {
        SignIn { store: self }
    }

    /// The idempotency keys each account has used, beside its events.
    pub fn signal_keys(&self) -> SignalKeys<'_> {
        SignalKeys { store: self }
    }

    /// The planner's statistics and dead rows, where the server leaves them (PostgreSQL).
    pub fn upkeep(&self) -> upkeep::Upkeep<'_> {
        upkeep::Upkeep { store: self }
    }

    pub fn parked(&self) -> Parked<'_> {
        Parked { store: self }
    }

    /// The trader's read models: rows by key, pages written with their checkpoints.
    pub fn read_models(&self) -> ReadModelTables<'_> {
        ReadModelTables { store: self }
    }

    /// The vault's sealed values (ciphertext only; `src/vault` holds the keys).
    pub fn vault(&self) -> VaultTable<'_> {
        VaultTable { store: self }
    }

    /// The connection pool as it stands, for `/metrics`.
    pub fn pool_status(&self) -> PoolStatus {
        let (size, idle, max) = match self {
            Self::Postgres(store) => {
                let pool = store.pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            Self::Sqlite(store) => {
                let pool = store.pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
        };
        PoolStatus {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations and checks the applied ones (`ledgerhook migrate`).
    pub async fn migrate(&self) -> Result<()> {
        if let Store::Sqlite(store) = self {
            store.check_derived_file().await?;
        }
        writing!(self, pool => pool.run_migrations().await)
    }

    /// Like `migrate`, but on PostgreSQL issues no DDL when every migration is already applied
    /// unchanged, so a service login without CREATE rights can start on a migrated database.
    pub async fn migrate_if_pending(&self) -> Result<()> {
        match self {
            Store::Postgres(store) if !store.migrations_pending().await? => Ok(()),
            _ => self.migrate().await,
        }
    }

    /// See `SqliteStore::lock_for_service`; `None` on PostgreSQL, which many instances share.
    pub fn lock_for_service(&self) -> Result<Option<ServiceLock>> {
        match self {
            Store::Postgres(_) => Ok(None),
            Store::Sqlite(store) => store.lock_for_service(),
        }
    }

    /// What the PostgreSQL login may do that could undo the audit trail's guarantees; `None` on
    /// SQLite, which has no logins.
    pub async fn login_privileges(&self) -> Result<Option<LoginPrivileges>> {
        match self {
            Store::Postgres(store) => Ok(Some(store.login_privileges().await?)),
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// Opens connections before traffic arrives (PostgreSQL; SQLite opens files lazily and cheaply).
    pub async fn warm_up(&self, connections: usize) -> Result<()> {
        match self {
            Store::Postgres(store) => store.warm_up(connections).await,
            Store::Sqlite(_) => Ok(()),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        reading!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Tries to become the one holder of `name` among every process sharing the store, so that a
    /// single execution saga works the log at a time. `None` while another process holds it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>> {
        match self {
            Store::Postgres(store) => Ok(store.try_lease(name).await?.map(Lease::Postgres)),
            // An embedded store belongs to one process.
            Store::Sqlite(_) => Ok(Some(Lease::Embedded)),
        }
    }
}

/// What each dialect does its own way, as a method of its pool, so that `writing!` runs it like
/// any other write.
#[allow(async_fn_in_trait)]
trait Dialect {
    async fn run_migrations(&self) -> Result<()>;
    /// Appends a batch, all or none; each event's position, in order.
    async fn append_events(
        &self,
        events: &[cqrs_es::persist::SerializedEvent],
        sequences: Vec<i64>,
        keys: &[SignalKey],
    ) -> Result<Vec<LogPosition>>;
}

/// The first statement of a reader's transaction on PostgreSQL: commit without waiting for the
/// flush to disk. What readers write is derived from the ledger, in the transaction that moves
/// their checkpoint: a crash can lose only whole recent transactions, which the reader does again
/// from its checkpoint — a running reader finds its checkpoint went back when its next
/// compare-and-set fails (the read side) or does not depend on it (the saga). The ledger's own
/// appends keep waiting for the flush (they are what an acknowledgement promises), as do the paper
/// venue's book (a venue, not a fold) and the audit trail (its writer chains onto the head it
/// remembers). SQLite has one writer and no per-transaction setting: `None`.
fn derived_commit_sql(store: &Store) -> Option<&'static str> {
    match store {
        Store::Postgres(_) => Some("SET LOCAL synchronous_commit = off"),
        Store::Sqlite(_) => None,
    }
}

/// The time of writing, in the column type the dialect keeps it in (SQLite: RFC 3339 text).
fn now_sql(store: &Store) -> &'static str {
    match store {
        Store::Postgres(_) => "now()",
        Store::Sqlite(_) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    }
}

/// Held while it lives; on PostgreSQL it is a session advisory lock, released when its connection
/// closes — also when the process dies.
pub enum Lease {
    Postgres(postgres::AdvisoryLease),
    Embedded,
}

impl Lease {
    /// Whether the lease is still held (its connection still alive).
    pub async fn is_held(&mut self) -> bool {
        match self {
            Lease::Postgres(lease) => lease.is_held().await,
            Lease::Embedded => true,
        }
    }
}

// Parked events and reader runs (the catch-up runtime's tables): their own module, migration 0009.
mod parked;
pub use self::parked::{
    parse_position_label, position_label, reported_now, NewParkedEvent, Parked, ParkedDecision,
    ParkedEvent, ReaderRun,
};

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    /// What an operator reads when the store cannot be opened: the cause in a few plain words,
    /// the operating system's own text for anything else.
    #[test]
    fn a_store_that_cannot_be_opened_is_explained_in_plain_words() {
        let cases = [
            (ErrorKind::ConnectionRefused, "connection refused"),
            (ErrorKind::ConnectionReset, "connection reset"),
            (ErrorKind::TimedOut, "timed out"),
            (ErrorKind::PermissionDenied, "permission denied"),
            (ErrorKind::NotADirectory, "not a directory"),
            (
                ErrorKind::AlreadyExists,
                "a file of that name is in the way",
            ),
        ];
        for (kind, reason) in cases {
            assert_eq!(io_reason(&Error::new(kind, "os text")), reason);
            let sqlx = sqlx::Error::Io(Error::new(kind, "os text"));
            assert_eq!(connect_reason(&sqlx), reason);
        }
        assert_eq!(io_reason(&Error::other("disk on fire")), "disk on fire");
        assert!(connect_reason(&sqlx::Error::Tls("bad certificate".into())).contains("TLS failed"));
        assert_eq!(
            connect_reason(&sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolTimedOut.to_string()
        );
    }

    #[test]
    fn a_lost_optimistic_lock_is_a_conflict_to_retry() {
        assert!(matches!(
            StoreError::from(PersistenceError::OptimisticLockError),
            StoreError::Conflict
        ));
    }
}
