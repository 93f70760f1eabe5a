//! The embedded store's derived file (`sqlite::derived_file`) checked against its ledger when the
//! store opens, and recreated on an operator's request when it was lost.
//!
//! Everything in it can be derived again from the ledger: the readers start from position 0, and
//! the audit chain is a function of the events and their positions. But the service must not run
//! on a derived file that does not belong to its ledger:
//! - **missing** (deleted, or not restored with the ledger): the readers find no tables and the
//!   saga never runs, while the webhook still acknowledges alerts;
//! - **ahead of the ledger** (restored from a later backup than the ledger): the readers' checkpoints
//!   lie beyond positions the ledger will give its next events, which the saga would then skip.
//!
//! Either stops the store from opening, with what to do. Recreating is left to the operator
//! (`ledgerhook store recreate-derived`): the audit trail's signed checkpoints were in the lost
//! file, and whether to rebuild the trail from the ledger instead of restoring it is a
//! compliance decision, not the service's.

use sqlx::{Connection, SqlitePool};

use super::{Result, SqliteStore, StoreError};

/// The migration that made the derived file: a ledger past it must have one.
const DERIVED_FILE_MIGRATION: i64 = 21;

/// The operator's remedy, named in every refusal.
const REMEDY: &str = "restore both files from the same backup, or move the derived file aside \
                      and run `ledgerhook store recreate-derived` to rebuild it from the ledger";

impl SqliteStore {
    /// Refuses a derived file that is missing or ahead of the ledger (see the module). Run
    /// before the migrations, one of which may change a derived table; once: after them there is
    /// nothing new to refuse: on a new store they make the file, and on a store they move into
    /// two files the readers' checkpoints come from the ledger's own file.
    pub(super) async fn check_derived_file(&self) -> Result<()> {
        let Some(path) = self.derived_path() else {
            return Ok(());
        };
        let path = path.display().to_string();
        if !has_derived_tables(self.pool()).await? {
            if applied_migration(self.pool()).await? < DERIVED_FILE_MIGRATION {
                return Ok(());
            }
            return Err(StoreError::DerivedFileMissing {
                path,
                remedy: REMEDY,
            });
        }
        // The derived file first: a checkpoint names a position the ledger had committed, and
        // the ledger only grows, so a head read after it is at least as far. Read the other way
        // round, beside a running service, the readers may pass the head read a moment before.
        let derived_head: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(global_seq), 0) FROM derived.checkpoints")
                .fetch_one(self.pool())
                .await?;
        let ledger_head: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM main.event_log")
                .fetch_one(self.pool())
                .await?;
        if derived_head > ledger_head {
            return Err(StoreError::DerivedFileAhead {
                path,
                derived_head,
                ledger_head,
                remedy: REMEDY,
            });
        }
        Ok(())
    }

    /// Gives an empty derived file the tables, indexes and triggers the migrations applied to the
    /// ledger would have made: those of a scratch in-memory store migrated to the same version,
    /// so exactly those, and later migrations then apply as usual. Returns how many events the
    /// readers will derive it from. Refuses a file that holds tables: it is never overwritten.
    pub async fn recreate_derived_file(&self) -> Result<RecreatedDerivedFile> {
        let Some(path) = self.derived_path() else {
            return Err(StoreError::NothingToRecreate {
                why: "an in-memory store has no derived file".to_owned(),
            });
        };
        if has_derived_tables(self.pool()).await? {
            return Err(StoreError::NothingToRecreate {
                why: format!(
                    "{} holds tables already; move it aside first if it is to be rebuilt",
                    path.display()
                ),
            });
        }
        let applied = applied_migration(self.pool()).await?;
        if applied < DERIVED_FILE_MIGRATION {
            return Err(StoreError::NothingToRecreate {
                why: "the ledger predates its derived file: `ledgerhook migrate` makes it"
                    .to_owned(),
            });
        }
        let scratch = SqliteStore::connect("sqlite::memory:").await?;
        let mut migrator = super::sqlite::migrator();
        migrator.migrations = migrator
            .migrations
            .iter()
            .filter(|migration| migration.version <= applied)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        migrator.run(scratch.pool()).await?;
        // Tables before what refers to them; SQLite stores each without its schema name.
        let schema: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM derived.sqlite_master \
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid",
        )
        .fetch_all(scratch.pool())
        .await?;
        // On a connection of its own, where the derived file is `main`; the store's writers of
        // that file wait meanwhile.
        let _turn = self.lock_derived_writer().await;
        let mut file = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await?;
        let mut tx = file.begin().await?;
        for statement in &schema {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        file.close().await?;
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM main.event_log")
            .fetch_one(self.pool())
            .await?;
        Ok(RecreatedDerivedFile {
            path,
            objects: schema.len(),
            events,
        })
    }
}

/// What `recreate_derived_file` did.
#[derive(Debug)]
pub struct RecreatedDerivedFile {
    pub path: std::path::PathBuf,
    /// Tables, indexes and triggers created.
    pub objects: usize,
    /// The ledger's events the readers will derive it from.
    pub events: i64,
}

async fn has_derived_tables(pool: &SqlitePool) -> Result<bool> {
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM derived.sqlite_master WHERE type = 'table' AND name = 'checkpoints'",
    )
    .fetch_one(pool)
    .await?;
    Ok(tables > 0)
}

/// The newest migration applied to the ledger's file; 0 on a new one.
async fn applied_migration(pool: &SqlitePool) -> Result<i64> {
    let tracked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await?;
    if tracked == 0 {
        return Ok(0);
    }
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM main._sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?;
    Ok(newest.unwrap_or(0))
}
