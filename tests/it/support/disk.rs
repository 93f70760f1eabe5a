//! The embedded store's disk, made to fail under a running service: a small tmpfs of its own
//! (unmounted when dropped, also on panic), filled with a ballast file until writes fail, and made
//! read-only. We run as root; a test that cannot mount fails saying why, it never skips.
//!
//! Read-only: Linux refuses `mount -o remount,ro` while any file on the filesystem is open for
//! writing ("mount point is busy"), and a running service always holds its SQLite files open so.
//! The remount is tried first; when it is refused, the service's writes to the store's files are
//! failed with EROFS, exactly what a read-only filesystem answers, by `strace --inject` attached to
//! the service's process (path-filtered: its logs and sockets are untouched), and detaching it is
//! the `remount,rw`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (mount's syntax: `64m`) on a new directory.
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("a directory to mount on");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|error| {
                panic!("the disk faults need `mount`, which did not run: {error}")
            });
        assert!(
            output.status.success(),
            "the disk faults need a small tmpfs of their own, and `mount -t tmpfs` failed ({}): {} \
             (they mount as root, or with CAP_SYS_ADMIN)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a ballast file until the filesystem refuses more; returns its size in bytes.
    pub fn fill(&self) -> Ballast {
        let path = self.path().join("ballast");
        let mut file = std::fs::File::create(&path).expect("the ballast file is created");
        let mut bytes = 0_u64;
        // Big pieces first, then small ones for the last free pages.
        for piece in [1 << 20, 4096, 512] {
            let zeros = vec![0_u8; piece];
            while let Ok(written) = file.write(&zeros) {
                if written == 0 {
                    break;
                }
                bytes += written as u64;
            }
        }
        Ballast { path, bytes }
    }

    /// Makes the store's files read-only under the running service `pid` (see the module doc).
    pub fn read_only(&self, pid: u32, database: &Path) -> ReadOnly {
        let remount = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .output()
            .expect("mount runs");
        if remount.status.success() {
            return ReadOnly::Remounted(self.path().to_owned());
        }
        let why = String::from_utf8_lossy(&remount.stderr).trim().to_owned();
        assert!(
            why.contains("busy"),
            "`mount -o remount,ro` failed for another reason than files open for writing: {why}"
        );
        const WRITES: &str = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,\
                              ftruncate,fallocate";
        if Command::new("strace").arg("-V").output().is_err() {
            crate::support::apt_install(&["strace"]);
        }
        let mut strace = Command::new("strace");
        strace
            .args(["-qq", "-f", "-o", "/dev/null", "-p", &pid.to_string()])
            .arg(format!("--trace={WRITES}"))
            .arg(format!("--inject={WRITES}:error=EROFS"));
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = database.as_os_str().to_owned();
            file.push(suffix);
            strace.arg("-P").arg(file);
        }
        let child = strace.stdin(Stdio::null()).spawn().unwrap_or_else(|error| {
            panic!(
                "`mount -o remount,ro` is refused under a running service ({why}), and \
                     `strace`, which fails its writes instead, did not start: {error}"
            )
        });
        ReadOnly::Injected(child)
    }
}

impl Drop for Tmpfs {
    /// Lazily: whatever still holds a file there, the mount goes now.
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

pub struct Ballast {
    path: PathBuf,
    pub bytes: u64,
}

impl Ballast {
    pub fn remove(self) {
        std::fs::remove_file(&self.path).expect("the ballast is removed");
    }
}

/// A read-only store, until `writable_again`.
pub enum ReadOnly {
    Remounted(PathBuf),
    Injected(Child),
}

impl ReadOnly {
    /// How the store was made read-only, for the case's output.
    pub fn how(&self) -> &'static str {
        match self {
            Self::Remounted(_) => "remount_ro",
            Self::Injected(_) => "erofs_injected",
        }
    }

    pub fn writable_again(self) {
        match self {
            Self::Remounted(path) => {
                let status = Command::new("mount")
                    .args(["-o", "remount,rw"])
                    .arg(path)
                    .status()
                    .expect("mount runs");
                assert!(status.success(), "remount,rw failed");
            }
            Self::Injected(mut strace) => {
                // SIGTERM: strace detaches cleanly, finishing the system call it holds.
                let _ = Command::new("kill")
                    .args(["-TERM", &strace.id().to_string()])
                    .status();
                let _ = strace.wait();
            }
        }
    }
}
