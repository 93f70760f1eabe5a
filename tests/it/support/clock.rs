//! Moving the service's wall clock: libfaketime preloaded into the real binary, so the service
//! believes it is later than it is while its monotonic clock (tokio's timers) runs true.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The multi-threaded variant: the service calls the clock from many threads at once.
const LIBRARY: &str = "faketime/libfaketimeMT.so.1";

/// The environment that makes the service's wall clock run `offset` ahead (libfaketime's syntax,
/// e.g. `+2d`).
pub fn shifted_by(offset: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", libfaketime().display().to_string()),
        ("FAKETIME", offset.to_owned()),
        // tokio's timers and the service's Instants need a clock that never jumps.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        // SQLite and the lock files need real file times.
        ("NO_FAKE_STAT", "1".to_owned()),
    ]
}

/// libfaketime, installed with apt-get where it is missing and this user may; otherwise the test
/// fails saying how to install it.
fn libfaketime() -> PathBuf {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            find().or_else(|| {
                super::apt_install(&["faketime"]);
                find()
            })
        })
        .clone()
        .unwrap_or_else(|| {
            panic!(
                "these tests move the service's clock with libfaketime ({LIBRARY}), which is not \
                 installed and could not be installed here: run `apt-get install -y faketime` \
                 (Debian/Ubuntu) as root"
            )
        })
}

/// Debian installs it under the multiarch directory (`/usr/lib/<triple>/faketime/`), other
/// distributions and source builds under `/usr/lib` or `/usr/local/lib`.
fn find() -> Option<PathBuf> {
    let roots = [Path::new("/usr/lib"), Path::new("/usr/local/lib")];
    let multiarch = roots
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path());
    roots
        .iter()
        .map(|root| root.to_path_buf())
        .chain(multiarch)
        .map(|dir| dir.join(LIBRARY))
        .find(|library| library.is_file())
}
