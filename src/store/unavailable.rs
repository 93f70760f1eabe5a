//! Which store errors mean "the store cannot be reached or written just now" (a lost or refused
//! connection, a server restarting, a full or read-only disk): nothing new is recorded and the
//! same request may succeed later, so callers are told to retry (HTTP 503), not that the service
//! failed. Corrupt values, conflicts and the like are not this.

use cqrs_es::persist::PersistenceError;

use super::StoreError;

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(error) => sqlx_unavailable(error),
            Self::Persistence(PersistenceError::ConnectionError(error)) => error
                .downcast_ref::<sqlx::Error>()
                .is_none_or(sqlx_unavailable),
            // The event repositories file a pool timeout or a server shutting down under
            // "unknown": the sqlx error inside says which.
            Self::Persistence(PersistenceError::UnknownError(error)) => error
                .downcast_ref::<sqlx::Error>()
                .is_some_and(sqlx_unavailable),
            Self::PostgresUnreachable { .. } | Self::SqliteUnopenable { .. } => true,
            _ => false,
        }
    }
}

fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        // A protocol error leaves the connection unusable (sqlx closes it), like a lost one.
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => {
            if let Some(error) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres_unavailable(error.code())
            } else if let Some(code) = error.code() {
                // SQLite answers extended result codes; the primary code is the low byte.
                code.parse::<i32>()
                    .is_ok_and(|code| sqlite_unavailable(code & 0xff))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// SQLSTATE classes and codes of a server that cannot take the write now.
fn postgres_unavailable(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (disk full, out of memory, too many
    // connections); 57P01-57P03: shut down, crashed, starting; 25006: a read-only standby;
    // 58030: I/O error.
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006" | "58030")
}

/// SQLite's primary result codes of a database that cannot be written now.
fn sqlite_unavailable(primary: i32) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    matches!(
        primary,
        BUSY | LOCKED | NOMEM | READONLY | IOERR | FULL | CANTOPEN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_unavailable_and_mistakes_are_not() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::Database(sqlx::Error::Io(refused)).is_unavailable());
        assert!(!StoreError::Conflict.is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        let decode = StoreError::Decode {
            what: "size",
            value: "x".into(),
        };
        assert!(!decode.is_unavailable());
        let through_the_repository =
            PersistenceError::UnknownError(Box::new(sqlx::Error::PoolTimedOut));
        assert!(StoreError::Persistence(through_the_repository).is_unavailable());
        let not_sqlx = PersistenceError::UnknownError("a bug".into());
        assert!(!StoreError::Persistence(not_sqlx).is_unavailable());
    }

    #[test]
    fn sqlstates_and_sqlite_codes() {
        for code in ["08006", "08001", "53100", "57P01", "57P03", "25006"] {
            assert!(postgres_unavailable(code), "{code}");
        }
        for code in ["23505", "40001", "42P01", "22003"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
        // SQLITE_FULL, SQLITE_READONLY_DBMOVED (1032), SQLITE_IOERR_WRITE (778).
        for code in [13, 1032 & 0xff, 778 & 0xff] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_CORRUPT (11).
        for code in [2067 & 0xff, 11] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }

    fn connection(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Persistence(PersistenceError::ConnectionError(Box::new(error)))
    }

    fn unknown(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Persistence(PersistenceError::UnknownError(Box::new(error)))
    }

    /// The event repositories wrap sqlx's errors: a lost connection or an exhausted pool inside
    /// them is still "retry later" (503), while an unknown failure that is not the store's is
    /// the service's own (500).
    #[test]
    fn store_errors_wrapped_by_the_event_repositories_keep_their_meaning() {
        assert!(connection(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(connection(std::io::Error::other("socket gone")).is_unavailable());
        assert!(!connection(sqlx::Error::RowNotFound).is_unavailable());
        assert!(unknown(sqlx::Error::PoolClosed).is_unavailable());
        assert!(unknown(sqlx::Error::Protocol("garbled".into())).is_unavailable());
        assert!(!unknown(std::io::Error::other("a bug")).is_unavailable());
        assert!(!StoreError::Persistence(PersistenceError::OptimisticLockError).is_unavailable());
    }
}
