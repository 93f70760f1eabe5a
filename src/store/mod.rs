//! The ledger's storage: cqrs-es 0.5.0's event tables on PostgreSQL or SQLite, plus what those
//! crates lack — a gap-safe global order, batched appends, checkpoints — and the few plain tables
//! the service keeps beside the ledger (users, the paper exchange's book).
//!
//! Architecture invariant: only this module writes SQL.

mod audit;
mod audit_queries;
mod postgres;
mod readmodels;
mod sqlite;
mod staff;
mod users;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{PersistenceError, SerializedEvent};

pub use self::audit::{AuditCheckpoint, AuditRow, ChainHead, AUDIT_WRITER_ROLE};
pub use self::audit_queries::{recorded_at_text, AuditFilter, MAX_AUDIT_PAGE};
pub use self::postgres::LoginPrivileges;
pub use self::postgres::{CredentialListener, PostgresStore};
pub use self::readmodels::{PageOutcome, ProjectionStep, TableSet, TradePage};
pub use self::sqlite::{ServiceLock, SqliteStore};
pub use self::staff::{ActiveStaff, ComplianceRead, NewStaff};
pub use self::users::{
    ActiveUser, CredentialDigests, NewUser, RateLimit, TwoFactorUser, UserProfile, WebhookDigests,
    CREDENTIALS_CHANGED_CHANNEL,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to one of the same accounts first (optimistic concurrency).
    #[error("another writer appended to the account first")]
    Conflict,
    /// A checkpoint of the audit chain is already recorded at this position and differs from the
    /// one being recorded: someone else wrote one (see `Store::insert_audit_checkpoint`).
    #[error("a different audit checkpoint is already recorded at position {0}")]
    AuditCheckpointConflict(i64),
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

/// A place in the global order of all events. On PostgreSQL it is (writing transaction id, insert
/// order); on SQLite, where commits are serial, `tx_id` is always 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub tx_id: i64,
    pub global_seq: i64,
}

/// One event as a catch-up reader sees it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub position: LogPosition,
    pub event: SerializedEvent,
}

/// An account's state as of `version`, serialized by the code named by `state_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: usize,
    pub state_version: String,
    pub state: serde_json::Value,
}

/// An order as the paper exchange booked it. Amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperOrder {
    pub client_order_id: String,
    pub account_id: String,
    pub market: String,
    pub side: String,
    pub size: String,
    pub price: String,
    pub fee: String,
    pub exchange_order_id: String,
    pub placed_at: DateTime<Utc>,
}

/// The two supported stores behind one set of operations.
#[derive(Clone)]
pub enum Store {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Postgres(store) => store.$method($($arg),*).await,
            Store::Sqlite(store) => store.$method($($arg),*).await,
        }
    };
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

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations and checks the applied ones (`ledgerhook migrate`).
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self.migrate())
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
        dispatch!(self.ping())
    }

    /// Every event of one account, in sequence order, as stored (not yet upcast).
    pub async fn load_account(&self, account_id: &str) -> Result<Vec<SerializedEvent>> {
        dispatch!(self.load_account(account_id))
    }

    /// The global emergency stop's events, in sequence order.
    pub async fn load_emergency_stop(&self) -> Result<Vec<SerializedEvent>> {
        dispatch!(self.load_emergency_stop())
    }

    /// The events of one account after `sequence`.
    pub async fn load_account_after(
        &self,
        account_id: &str,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>> {
        dispatch!(self.load_account_after(account_id, sequence))
    }

    /// Appends events of one or more accounts in one transaction: all or none. Fails with
    /// `StoreError::Conflict` when any (account, sequence) already exists.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<()> {
        dispatch!(self.append(events))
    }

    /// Up to `limit` events after `after` in the global order. Never returns an event while an
    /// earlier one may still commit, so a reader that resumes from the last position it saw
    /// misses nothing.
    pub async fn read_log(&self, after: LogPosition, limit: i64) -> Result<Vec<LoggedEvent>> {
        dispatch!(self.read_log(after, limit))
    }

    pub async fn snapshot(&self, account_id: &str) -> Result<Option<Snapshot>> {
        dispatch!(self.snapshot(account_id))
    }

    /// Stores a snapshot unless a newer one is already stored.
    pub async fn save_snapshot(&self, account_id: &str, snapshot: &Snapshot) -> Result<()> {
        dispatch!(self.save_snapshot(account_id, snapshot))
    }

    pub async fn checkpoint(&self, name: &str) -> Result<LogPosition> {
        dispatch!(self.checkpoint(name))
    }

    pub async fn save_checkpoint(&self, name: &str, position: LogPosition) -> Result<()> {
        dispatch!(self.save_checkpoint(name, position))
    }

    pub async fn insert_user(&self, user: &NewUser) -> Result<()> {
        dispatch!(self.insert_user(user))
    }

    /// Every active user's credential digests, at most `limit` of them.
    pub async fn active_credential_digests(&self, limit: i64) -> Result<Vec<CredentialDigests>> {
        dispatch!(self.active_credential_digests(limit))
    }

    /// SQLite: a number that changes with every change to `users` by any process. PostgreSQL
    /// announces changes instead (`CREDENTIALS_CHANGED_CHANNEL`): `None`, no query.
    pub async fn credentials_version(&self) -> Result<Option<i64>> {
        match self {
            Store::Postgres(_) => Ok(None),
            Store::Sqlite(store) => Ok(Some(store.credentials_version().await?)),
        }
    }

    /// PostgreSQL: credential changes made through this store in this process, counted as they
    /// return (before their announcement comes back). SQLite: 0 (see `credentials_version`).
    pub fn local_credential_changes(&self) -> u64 {
        match self {
            Store::Postgres(store) => store.local_credential_changes(),
            Store::Sqlite(_) => 0,
        }
    }

    /// The active user whose webhook token has this SHA-256.
    pub async fn active_user_by_token_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        dispatch!(self.active_user_by_token_sha256(digest))
    }

    /// The active user whose API key has this SHA-256.
    pub async fn active_user_by_api_key_sha256(&self, digest: &str) -> Result<Option<ActiveUser>> {
        dispatch!(self.active_user_by_api_key_sha256(digest))
    }

    /// The active user with this webhook uuid, and the digest its secret must match.
    pub async fn active_user_by_webhook_uuid(&self, uuid: &str) -> Result<Option<TwoFactorUser>> {
        dispatch!(self.active_user_by_webhook_uuid(uuid))
    }

    pub async fn user_profile(&self, user_id: &str) -> Result<Option<UserProfile>> {
        dispatch!(self.user_profile(user_id))
    }

    /// Replaces the token, uuid and secret at once; `false` if there is no such user. On
    /// PostgreSQL the change is announced on `CREDENTIALS_CHANGED_CHANNEL` as it commits.
    pub async fn replace_webhook_credentials(
        &self,
        user_id: &str,
        webhook: &WebhookDigests,
    ) -> Result<bool> {
        dispatch!(self.replace_webhook_credentials(user_id, webhook))
    }

    /// Replaces the API key; `false` if there is no such user. Announced like the above.
    pub async fn replace_api_key(&self, user_id: &str, api_key_sha256: &str) -> Result<bool> {
        dispatch!(self.replace_api_key(user_id, api_key_sha256))
    }

    /// Marks the user disabled (kept at the first time if already); `false` if there is no such
    /// user. Announced like the above.
    pub async fn disable_user(&self, user_id: &str, at: DateTime<Utc>) -> Result<bool> {
        dispatch!(self.disable_user(user_id, at))
    }

    /// Sets (or, with `None`, clears) the user's rate limit; `false` if there is no such user.
    /// Announced like the above, since the authenticated user carries it.
    pub async fn set_rate_limit(&self, user_id: &str, limit: Option<RateLimit>) -> Result<bool> {
        dispatch!(self.set_rate_limit(user_id, limit))
    }

    /// A listener for credential changes made by any process: `None` on SQLite, which has no
    /// announcements (see `SqliteStore::replace_webhook_credentials`).
    pub async fn listen_for_credential_changes(&self) -> Result<Option<CredentialListener>> {
        match self {
            Store::Postgres(store) => Ok(Some(store.listen_for_credential_changes().await?)),
            Store::Sqlite(_) => Ok(None),
        }
    }

    pub async fn count_users(&self) -> Result<i64> {
        dispatch!(self.count_users())
    }

    /// Books `order` unless its client order id is already booked; returns what is booked.
    pub async fn book_paper_order(&self, order: &PaperOrder) -> Result<PaperOrder> {
        self.book_paper_orders(std::slice::from_ref(order))
            .await?
            .pop()
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Books many orders in one transaction, each as `book_paper_order` would.
    pub async fn book_paper_orders(&self, orders: &[PaperOrder]) -> Result<Vec<PaperOrder>> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.book_paper_orders(orders))
    }

    pub async fn paper_order(&self, client_order_id: &str) -> Result<Option<PaperOrder>> {
        dispatch!(self.paper_order(client_order_id))
    }

    pub async fn count_paper_orders(&self) -> Result<i64> {
        dispatch!(self.count_paper_orders())
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
    parse_position_label, position_label, reported_now, NewParkedEvent, ParkedDecision,
    ParkedEvent, ReaderRun,
};
