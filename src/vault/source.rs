//! Where the master keys come from: the file named by `--vault-key-file` /
//! `LEDGERHOOK_VAULT_KEY_FILE`, and nowhere else — except the embedded demo (`cargo run` on the
//! default `./data` store), which makes its own `./data/vault.keys` once, beside its database,
//! and says loudly that this is for the demo only.

use std::path::{Path, PathBuf};

use super::keys::{create_key_file, KeyFileError, Keyring};

/// The store `cargo run` uses when told nothing: the only one that gets a key file of its own.
pub const DEMO_DATABASE_URL: &str = "sqlite://data/ledgerhook.db";
const DEMO_KEY_FILE: &str = "vault.keys";

/// Where this process's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    /// The embedded demo's own file (created if missing).
    Demo(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(
        "no vault key file: pass --vault-key-file PATH (or LEDGERHOOK_VAULT_KEY_FILE). Make one \
         with `ledgerhook keys generate > PATH` and `chmod 600 PATH`, and keep it away from the \
         database and its backups (only the embedded demo on the default ./data store makes its \
         own)"
    )]
    Missing,
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

/// The embedded demo's key file, when `database_url` is the default store and no file is given.
pub fn demo_key_file(database_url: &str) -> Option<PathBuf> {
    let path = database_url.strip_prefix("sqlite://")?;
    (database_url == DEMO_DATABASE_URL).then(|| Path::new(path).with_file_name(DEMO_KEY_FILE))
}

impl KeySource {
    pub fn resolve(database_url: &str, key_file: Option<&Path>) -> Result<Self, KeySourceError> {
        match (key_file, demo_key_file(database_url)) {
            (Some(path), _) => Ok(Self::File(path.to_owned())),
            (None, Some(demo)) => Ok(Self::Demo(demo)),
            (None, None) => Err(KeySourceError::Missing),
        }
    }
}

/// Loads the keys `--vault-key-file` names, or the demo's (made on first use, with a warning
/// every time: keys beside the database protect nothing against a copy of the directory).
pub fn load_keyring(
    database_url: &str,
    key_file: Option<&Path>,
) -> Result<Keyring, KeySourceError> {
    match KeySource::resolve(database_url, key_file)? {
        KeySource::File(path) => Ok(Keyring::load(&path)?),
        KeySource::Demo(path) => {
            if !path.exists() {
                create_key_file(&path)?;
            }
            tracing::warn!(
                path = %path.display(),
                "DEMO ONLY: the vault's master key is in a file beside the database, so anyone \
                 with a copy of ./data can decrypt every credential. For real credentials, pass \
                 --vault-key-file with a key kept elsewhere (ledgerhook keys generate)"
            );
            Ok(Keyring::load(&path)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_embedded_store_gets_a_key_file_of_its_own() {
        assert_eq!(
            KeySource::resolve(DEMO_DATABASE_URL, None).ok(),
            Some(KeySource::Demo(PathBuf::from("data/vault.keys")))
        );
        for url in [
            "postgres://postgres@localhost/db",
            "sqlite:///tmp/other/ledger.db",
            "sqlite://data/other.db",
        ] {
            assert!(matches!(
                KeySource::resolve(url, None),
                Err(KeySourceError::Missing)
            ));
        }
        let given = Path::new("/etc/ledgerhook/vault.keys");
        assert_eq!(
            KeySource::resolve("postgres://x/db", Some(given)).ok(),
            Some(KeySource::File(given.to_owned()))
        );
    }
}
