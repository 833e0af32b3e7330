//! Scratch directories, file modes and snapshots of what is on disk.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique name for this test run (pid + counter), for scratch dirs and namespaces.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Makes `/var/tmp/waysock-test-…` (0700). `/var/tmp` because tests make `/tmp` read-only.
    pub fn new(prefix: &str) -> Scratch {
        let path = Path::new("/var/tmp").join(unique(&format!("waysock-test-{prefix}")));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        set_mode(&path, 0o700);
        Scratch { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `chmod`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Leaves a stale Unix socket file at `path`: a stream socket is bound there and closed
/// without ever listening.
///
/// Binding with `UnixListener::bind` and dropping it is not the same: the socket listens for a
/// moment, and another test thread forking a child in that moment keeps a copy of the fd until
/// the child execs, so a connect probe can still be accepted. A socket that never listened
/// refuses every connect (`ECONNREFUSED`), whoever holds it.
pub fn stale_socket(path: &Path) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = SocketAddrUnix::new(path).expect("socket path fits sun_path");
    rustix::net::bind(&fd, &addr).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
}

/// Every entry under `root` (recursive, symlinks not followed), one line each:
/// `relative/path kind mode uid inode [-> target]`, sorted. Two equal snapshots mean nothing was
/// created, removed, replaced, re-owned or chmod-ed; regular files also carry their length.
pub fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let ft = md.file_type();
            let kind = file_kind(&ft);
            let mut line = format!(
                "{rel} {kind} {:04o} uid={} ino={}",
                md.mode() & 0o7777,
                md.uid(),
                md.ino()
            );
            if ft.is_file() {
                let _ = write!(line, " len={}", md.len());
            }
            if ft.is_symlink() {
                if let Ok(t) = std::fs::read_link(&path) {
                    let _ = write!(line, " -> {}", t.display());
                }
            }
            out.push(line);
            if ft.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A word for a file type: `dir`, `file`, `symlink`, `socket`, `fifo`, `other`.
pub fn file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "other"
    }
}

/// `st_mode & 0o7777` of `path` (not following a symlink).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Panics unless `path` is a directory with mode exactly 0700.
pub fn assert_mode_0700(path: &Path) {
    let md =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    assert!(md.is_dir(), "{} is not a directory", path.display());
    assert_eq!(
        mode_of(path),
        0o700,
        "{} has mode {:04o}, expected 0700",
        path.display(),
        mode_of(path)
    );
}
