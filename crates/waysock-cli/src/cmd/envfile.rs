//! Files waysock writes for the user — `run --print-env FILE`, `headless --log FILE` and
//! `--screenshot FILE` — written where another user cannot make us write into their file, hang
//! us on a FIFO, or swap the file under the reader.
//!
//! - The directory must pass [`waysock::trust`] from `/` down (owned by root or us; writable
//!   by others only if sticky).
//! - An existing FILE is never opened: it is replaced, and only if it is provably ours (a
//!   regular file of our uid with one link). A FIFO, a symlink, another user's file or a
//!   hard-linked one is refused with the reason.
//! - The text goes to a fresh temp file beside it (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0600), which
//!   is renamed over FILE: a reader sees the old file or the whole new one, never half. In a
//!   sticky directory the kernel refuses to rename over another user's file, so a name planted
//!   after the check is not overwritten either.
//! - When `run` ends, FILE is removed if it is still the file we wrote (same dev/ino): a later
//!   job polling for it does not take a dead display for a live one.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// The env file of one `run`.
#[derive(Debug)]
pub struct EnvFile {
    path: PathBuf,
    dir: OwnedFd,
    name: OsString,
    uid: u32,
    /// `(dev, ino)` of the file we put there.
    written: Option<(u64, u64)>,
}

impl EnvFile {
    /// Checks `path` before anything is started: its directory must be trusted and an
    /// existing file there must be ours. The error is one line naming the problem and the fix.
    pub fn prepare(path: &Path, uid: u32) -> Result<EnvFile, String> {
        let shown = path.display();
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("{shown}: cannot resolve a relative path: {e}"))?
                .join(path)
        };
        let name = match absolute.file_name() {
            Some(n) if path.as_os_str().as_bytes().last() != Some(&b'/') => n.to_os_string(),
            _ => return Err(format!("{shown} does not name a file")),
        };
        let dir_path = absolute.parent().unwrap_or(Path::new("/"));
        waysock::trust::check_directory_chain(dir_path, uid)
            .map_err(|d| format!("{shown}: refused: {} ({})", d.cause, d.remedy))?;
        let dir = rustix::fs::open(
            dir_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{shown}: cannot open its directory: {e}"))?;
        let file = EnvFile {
            path: absolute,
            dir,
            name,
            uid,
            written: None,
        };
        file.check_existing()?;
        Ok(file)
    }

    /// Refuses an existing entry that is not provably ours.
    fn check_existing(&self) -> Result<(), String> {
        let shown = self.path.display();
        let st = match rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(format!("{shown}: cannot look at it: {e}")),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        let problem = if kind != FileType::RegularFile {
            Some(format!(
                "is a {}, not a regular file",
                waysock::file_kind_name(kind)
            ))
        } else if st.st_uid != self.uid {
            Some(format!(
                "belongs to uid {}, not to us (uid {})",
                st.st_uid, self.uid
            ))
        } else if st.st_nlink != 1 {
            Some(format!(
                "has {} hard links: replacing it could change what another name shows",
                st.st_nlink
            ))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(p) => Err(format!(
                "{shown} already exists and {p}; waysock never writes into a file that is not \
                 provably its own: remove it (if you know what it is) or choose another path"
            )),
        }
    }

    /// Writes `text` through a temp file renamed over the target.
    pub fn write(&mut self, text: &str) -> Result<(), String> {
        self.write_bytes(text.as_bytes())
    }

    /// Writes `bytes` through a temp file renamed over the target.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.replace(|f| f.write_all(bytes)).map(drop)
    }

    /// Puts a new, empty file of ours in place (the same way) and returns it open, for a log
    /// written while it grows.
    pub fn create_open(&mut self) -> Result<std::fs::File, String> {
        self.replace(|_| Ok(()))
    }

    /// The directory the file is in.
    pub fn dir_path(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// Leaves the file in place when this value goes (a log or a screenshot the user asked
    /// for, unlike `--print-env`, outlives the run).
    pub fn keep(&mut self) {
        self.written = None;
    }

    /// A fresh temp file beside the target, filled by `fill`, renamed over the target;
    /// returned still open.
    fn replace(
        &mut self,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<std::fs::File, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        self.check_existing()?;
        let shown = self.path.display().to_string();
        let mut tmp = OsString::from(".");
        tmp.push(&self.name);
        tmp.push(format!(
            ".waysock-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let fd = rustix::fs::openat(
            &self.dir,
            &tmp,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| format!("{shown}: cannot create a temp file beside it: {e}"))?;
        let result = (|| {
            // The umask can only narrow 0600; make sure nothing widened it either.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
            let st = rustix::fs::fstat(&fd)?;
            let mut f = std::fs::File::from(fd);
            fill(&mut f).map_err(|e| {
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)
            })?;
            rustix::fs::renameat(&self.dir, &tmp, &self.dir, &self.name)?;
            #[allow(clippy::unnecessary_cast)]
            Ok(((st.st_dev as u64, st.st_ino as u64), f))
        })();
        match result {
            Ok((id, f)) => {
                self.written = Some(id);
                Ok(f)
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
                Err(match e {
                    rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => format!(
                        "{shown}: someone else's file took the name first ({e}); nothing was \
                         written there"
                    ),
                    e => format!("{shown}: {e}"),
                })
            }
        }
    }

    /// Removes the file if it is still the one we wrote.
    pub fn remove(&mut self) {
        let Some((dev, ino)) = self.written.take() else {
            return;
        };
        #[allow(clippy::unnecessary_cast)]
        let ours = rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_dev as u64 == dev && st.st_ino as u64 == ino);
        if ours {
            let _ = rustix::fs::unlinkat(&self.dir, &self.name, AtFlags::empty());
        } else {
            tracing::warn!(
                "{} was replaced by someone else after we wrote it; left alone",
                self.path.display()
            );
        }
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "waysock-envfile-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir(&d).unwrap();
        d
    }

    fn rand_suffix() -> u32 {
        static N: AtomicU32 = AtomicU32::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn writes_0600_replaces_our_own_and_removes_it_at_the_end() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch();
        let p = d.join("wl.env");
        std::fs::write(&p, "old").unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let mut f = EnvFile::prepare(&p, uid).unwrap();
        f.write("export A=1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "export A=1\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        drop(f);
        assert!(!p.exists(), "removed when run ends");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            0,
            "no temp file left"
        );
        std::fs::remove_dir(&d).unwrap();
    }

    #[test]
    fn a_fifo_or_symlink_is_refused_without_opening_it() {
        let d = scratch();
        let fifo = d.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let e = EnvFile::prepare(&fifo, uid).unwrap_err();
        assert!(e.contains("FIFO"), "{e}");
        let link = d.join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let e = EnvFile::prepare(&link, uid).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_of_our_own_replaced_by_someone_else_is_not_removed() {
        let d = scratch();
        let p = d.join("wl.env");
        let uid = rustix::process::geteuid().as_raw();
        let mut f = EnvFile::prepare(&p, uid).unwrap();
        f.write("x").unwrap();
        // Made while ours still exists, so it cannot get our inode number back.
        let other = d.join("other");
        std::fs::write(&other, "someone else's").unwrap();
        std::fs::rename(&other, &p).unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "someone else's");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
