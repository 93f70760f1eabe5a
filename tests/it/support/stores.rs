//! A fresh, migrated store of either kind for one test.

use ledgerhook::store::Store;

use super::postgres::TestDatabase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test; removed when dropped.
pub struct TestStore {
    pub url: String,
    _sqlite_dir: Option<tempfile::TempDir>,
    _postgres: Option<TestDatabase>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory for SQLite");
                let url = format!("sqlite://{}/ledger.db", dir.path().display());
                Self {
                    url,
                    _sqlite_dir: Some(dir),
                    _postgres: None,
                }
            }
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                Self {
                    url: database.url.clone(),
                    _sqlite_dir: None,
                    _postgres: Some(database),
                }
            }
        }
    }

    /// Connects and migrates, as the service does at start-up.
    pub async fn open(&self) -> Store {
        ledgerhook::app::open_store(&self.url)
            .await
            .expect("the test store opens and migrates")
    }
}

/// A connection of its own to the SQLite store at `url`, as someone with the files would open it:
/// the ledger's file with the derived one (the audit trail, read models, checkpoints) attached
/// under the name the store gives it, so that every table answers to its usual name.
pub async fn raw_sqlite(url: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut connection = sqlx::SqliteConnection::connect(url)
        .await
        .expect("connects");
    let derived = derived_path(url);
    sqlx::query("ATTACH DATABASE $1 AS derived")
        .bind(derived.display().to_string())
        .execute(&mut connection)
        .await
        .expect("attaches the derived file");
    connection
}

/// The derived file beside the SQLite store at `url` (`ledgerhook::store::derived_file`).
pub fn derived_path(url: &str) -> std::path::PathBuf {
    let ledger = url.trim_start_matches("sqlite://");
    ledgerhook::store::derived_file(std::path::Path::new(ledger))
}
