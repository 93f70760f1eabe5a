//! The master keys: a file of `VERSION:BASE64` lines, each a 32-byte AES-256 key. The highest
//! version seals; every version present opens what it sealed. Errors name the line and the rule,
//! never a key's text. Key bytes live only in zeroizing buffers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use zeroize::Zeroizing;

pub const KEY_BYTES: usize = 32;

/// One master key. `Debug` never shows it.
pub struct MasterKey(Zeroizing<[u8; KEY_BYTES]>);

impl MasterKey {
    pub(super) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("the vault key file {path} cannot be read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the vault key file {path} holds no key (expected lines VERSION:BASE64)")]
    Empty { path: PathBuf },
    #[error("the vault key file {path}, line {line}: {problem}")]
    BadLine {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
    #[error("the vault key file {path}, line {line}: version {version} appears twice")]
    DuplicateVersion {
        path: PathBuf,
        line: usize,
        version: u32,
    },
    #[error("the vault key file {path} cannot be created: {reason}")]
    Uncreatable { path: PathBuf, reason: String },
}

/// Every master key the service has, by version.
pub struct Keyring {
    keys: BTreeMap<u32, MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
            KeyFileError::Unreadable {
                path: path.to_owned(),
                reason: crate::store::io_reason(&error),
            }
        })?);
        warn_if_readable_by_others(path);
        Self::parse(&text, path)
    }

    /// Lines `VERSION:BASE64`; blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str, path: &Path) -> Result<Self, KeyFileError> {
        let mut keys = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let bad = |problem| KeyFileError::BadLine {
                path: path.to_owned(),
                line: line_number,
                problem,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (version, encoded) = line
                .split_once(':')
                .ok_or_else(|| bad("expected VERSION:BASE64"))?;
            let version: u32 = version
                .trim()
                .parse()
                .ok()
                .filter(|version| *version > 0)
                .ok_or_else(|| bad("the version must be a whole number from 1"))?;
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| bad("the key is not valid base64"))?,
            );
            let mut key = Zeroizing::new([0_u8; KEY_BYTES]);
            if decoded.len() != KEY_BYTES {
                return Err(bad(
                    "the key must be exactly 32 bytes (44 base64 characters)",
                ));
            }
            key.copy_from_slice(&decoded);
            if keys.insert(version, MasterKey(key)).is_some() {
                return Err(KeyFileError::DuplicateVersion {
                    path: path.to_owned(),
                    line: line_number,
                    version,
                });
            }
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// The version and key that seal new values: the highest.
    pub fn current(&self) -> (u32, &MasterKey) {
        // `parse` refuses a file without keys, so there is always one.
        self.keys
            .iter()
            .next_back()
            .map(|(version, key)| (*version, key))
            .unwrap_or_else(|| unreachable!("a keyring holds at least one key"))
    }

    pub fn get(&self, version: u32) -> Option<&MasterKey> {
        self.keys.get(&version)
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }
}

/// A new random key as a line for the key file.
pub fn generate_line(version: u32) -> Zeroizing<String> {
    let mut key = Zeroizing::new([0_u8; KEY_BYTES]);
    rand::rng().fill_bytes(&mut *key);
    Zeroizing::new(format!("{version}:{}", STANDARD.encode(*key)))
}

/// Writes a new key file holding one fresh key, readable by its owner only; fails if the file
/// exists (never overwrites keys).
pub fn create_key_file(path: &Path) -> Result<(), KeyFileError> {
    use std::io::Write;
    let uncreatable = |error: std::io::Error| KeyFileError::Uncreatable {
        path: path.to_owned(),
        reason: crate::store::io_reason(&error),
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(uncreatable)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(uncreatable)?;
    let line = generate_line(1);
    file.write_all(b"# ledgerhook vault keys: VERSION:BASE64, the highest version encrypts\n")
        .and_then(|()| file.write_all(line.as_bytes()))
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(uncreatable)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the vault key file is readable by other users: chmod 600 it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Keyring, KeyFileError> {
        Keyring::parse(text, Path::new("keys"))
    }

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_BYTES])
    }

    #[test]
    fn the_highest_version_seals() {
        let ring = parse(&format!(
            "# keys\n1:{}\n\n3:{}\n2:{}\n",
            key(1),
            key(3),
            key(2)
        ))
        .expect("a valid file");
        assert_eq!(ring.current().0, 3);
        assert_eq!(ring.current().1.bytes(), &[3; KEY_BYTES]);
        assert_eq!(ring.versions(), vec![1, 2, 3]);
        assert!(ring.get(4).is_none());
    }

    #[test]
    fn bad_files_are_refused_without_quoting_a_key() {
        let short = STANDARD.encode([7_u8; 16]);
        let cases = [
            (String::new(), "holds no key"),
            ("# only a comment\n".to_owned(), "holds no key"),
            (format!("{short}\n"), "expected VERSION:BASE64"),
            (format!("x:{}\n", key(1)), "whole number"),
            (format!("0:{}\n", key(1)), "whole number"),
            (format!("1:{short}\n"), "exactly 32 bytes"),
            ("1:not base64!!\n".to_owned(), "not valid base64"),
            (format!("1:{}\n1:{}\n", key(1), key(2)), "appears twice"),
        ];
        for (text, expected) in cases {
            let message = match parse(&text) {
                Ok(_) => panic!("accepted {text:?}"),
                Err(error) => error.to_string(),
            };
            assert!(message.contains(expected), "{message}");
            assert!(
                !message.contains(&short) && !message.contains(&key(1)),
                "{message}"
            );
        }
    }

    #[test]
    fn a_generated_line_parses_and_debug_shows_no_key() {
        let line = generate_line(5);
        let ring = parse(&line).expect("a generated line is valid");
        assert_eq!(ring.current().0, 5);
        let shown = format!("{ring:?} {:?}", ring.current().1);
        let encoded = line.split_once(':').map(|(_, key)| key).unwrap_or_default();
        assert!(!shown.contains(encoded));
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn a_created_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("data").join("vault.keys");
        create_key_file(&path).expect("created");
        let ring = Keyring::load(&path).expect("loads");
        assert_eq!(ring.versions(), vec![1]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create_key_file(&path).is_err());
        let missing = Keyring::load(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot be read"), "{missing}");
    }
}
