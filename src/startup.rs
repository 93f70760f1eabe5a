//! What `serve` makes sure of before it serves: that it is the embedded store's only service
//! process, that its PostgreSQL login cannot undo the audit trail's append-only guarantees, and
//! that the schema is migrated.

use anyhow::Context;

use crate::store::{ServiceLock, Store, StoreError};

/// The store a service runs on, and (SQLite) the lock that makes it the file's only service.
pub struct ServiceStore {
    pub store: Store,
    pub lock: Option<ServiceLock>,
}

/// Connects, takes the embedded store's service lock, checks the login, then migrates. A
/// privileged PostgreSQL login is refused unless `allow_privileged_login` (development).
pub async fn open_service_store(
    database_url: &str,
    allow_privileged_login: bool,
) -> anyhow::Result<ServiceStore> {
    let store = Store::connect(database_url).await?;
    let lock = store.lock_for_service()?;
    if let Some(login) = store.login_privileges().await? {
        let held = login.held();
        if !held.is_empty() {
            let held = held.join(", ");
            anyhow::ensure!(
                allow_privileged_login,
                "refusing to serve as PostgreSQL login {}: it {held}, so it could undo the audit \
                 trail's append-only guarantees. Run `ledgerhook migrate` as the owner login and \
                 `serve` as a login granted ledgerhook_audit_writer (see README), or pass \
                 --allow-privileged-login (LEDGERHOOK_ALLOW_PRIVILEGED_LOGIN=true) for development",
                login.login
            );
            tracing::warn!(
                login = %login.login,
                "serving as a privileged PostgreSQL login (--allow-privileged-login): it {held}"
            );
        }
    }
    match store.migrate_if_pending().await {
        // Said as it is: migrating would not help, and the error names what would.
        Err(
            out_of_step @ (StoreError::DerivedFileMissing { .. }
            | StoreError::DerivedFileAhead { .. }),
        ) => return Err(out_of_step.into()),
        migrated => migrated.context(
            "the database needs migrations: run `ledgerhook migrate` as the database's owner login",
        )?,
    }
    Ok(ServiceStore { store, lock })
}
