//! Vault keys for tests: one key file shared by every test of this process (the CLI and the
//! services it starts read it through `LEDGERHOOK_VAULT_KEY_FILE`), and key files of a test's own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ledgerhook::ledger::Ledger;
use ledgerhook::store::Store;
use ledgerhook::vault::{generate_line, Keyring, Vault};

/// The env variable the binary reads its key file from.
pub const KEY_FILE_ENV: &str = "LEDGERHOOK_VAULT_KEY_FILE";

/// This test process's shared key file (version 1), made once.
pub fn key_file() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("vault-{}.keys", std::process::id()));
        write_key_file(&path, &[1]);
        path
    })
}

/// A key file at `path` with a fresh random key for each version (mode 0600).
pub fn write_key_file(path: &Path, versions: &[u32]) {
    let text: String = versions
        .iter()
        .map(|version| format!("{}\n", generate_line(*version).as_str()))
        .collect();
    write_private(path, &text);
}

/// Writes `text` to `path` readable by its owner only (replacing it atomically).
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&partial).expect("the key file can be written");
    file.write_all(text.as_bytes())
        .expect("the key file is written");
    std::fs::rename(&partial, path).expect("the key file is in place");
}

pub fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::load(key_file()).expect("the shared test key file loads"))
}

/// A vault that seals with the shared keys (and cannot reveal: no ledger).
pub fn sealing_vault(store: &Store) -> Vault {
    Vault::new(store.clone(), keyring())
}

/// A vault that seals and reveals, recording through `ledger`.
pub fn vault(ledger: &Ledger) -> Vault {
    Vault::with_ledger(ledger.clone(), keyring())
}
