//! The per-user rendezvous (SPEC §6): where `run` publishes the displays it brought up, and
//! where `exec`, `env` and `ls` find them.
//!
//! `/dev/shm/waysock-$UID.registry`, mode 0600, one record per line:
//! `display endpoint pid start_time_ticks unix_time [strategy]` (the sixth field is ours; a
//! reader accepts five or six). Updates take `flock(LOCK_EX)` on the sibling
//! `waysock-$UID.registry.lock`, write a temporary file and `rename` it over the registry, so a
//! reader never sees half a file. Nothing is ever opened through a symlink, and a file that is
//! not ours or not 0600 is refused, not repaired.
//!
//! A record is live only if its pid still runs with the same start time (`/proc/PID/stat`
//! field 22, so a recycled pid does not count) and its endpoint accepts a connection. Dead
//! records are pruned whenever the registry is written.
//!
//! Where `/dev/shm` is not usable, `run` hands the record to its children in a sealed memfd
//! whose number is in `WAYSOCK_STATE_FD` ([`StateFd`]).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags, SealFlags};

use crate::endpoint::Endpoint;
use crate::errno::Errno;
use crate::strategy::Strategy;
use crate::sys;

/// One published display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// Display name (`wayland-1`).
    pub display: String,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// The compositor's pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// When it was published (seconds since the epoch).
    pub unix_time: u64,
    /// The strategy that found its place, when known.
    pub strategy: Option<Strategy>,
}

impl Record {
    /// A record for a running process, stamped now. `None` if the process is gone.
    pub fn for_process(
        display: &str,
        endpoint: Endpoint,
        pid: u32,
        strategy: Option<Strategy>,
    ) -> Option<Record> {
        Some(Record {
            display: display.to_string(),
            endpoint,
            pid,
            start_time: process_start_time(pid)?,
            unix_time: now(),
            strategy,
        })
    }

    /// The line written to the registry. `None` if a field contains whitespace (such a path
    /// cannot be recorded in this format; the display is then not published).
    pub fn to_line(&self) -> Option<String> {
        let ep = self.endpoint.to_string();
        if self.display.is_empty()
            || self.display.contains(char::is_whitespace)
            || ep.contains(char::is_whitespace)
        {
            return None;
        }
        let mut line = format!(
            "{} {} {} {} {}",
            self.display, ep, self.pid, self.start_time, self.unix_time
        );
        if let Some(s) = self.strategy {
            line.push(' ');
            line.push_str(s.name());
        }
        Some(line)
    }

    /// Parses one line; `None` for anything malformed (ignored by readers, pruned by writers).
    pub fn parse(line: &str) -> Option<Record> {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if !(5..=6).contains(&f.len()) {
            return None;
        }
        Some(Record {
            display: f[0].to_string(),
            endpoint: f[1].parse().ok()?,
            pid: f[2].parse().ok().filter(|p| *p > 0)?,
            start_time: f[3].parse().ok()?,
            unix_time: f[4].parse().ok()?,
            strategy: match f.get(5) {
                Some(s) => Some(s.parse().ok()?),
                None => None,
            },
        })
    }

    /// Does the process still run (same pid *and* start time)?
    pub fn process_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }

    /// Live: the process runs and the endpoint accepts a connection.
    pub fn is_live(&self) -> bool {
        self.process_alive() && crate::discover::accepts(&self.endpoint).is_ok()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `/proc/PID/stat` field 22 (start time in clock ticks), or `None` if there is no such
/// process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (comm) is in parentheses and may contain spaces and ')': split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); field 22 is the 20th from there.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Why the registry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A syscall failed.
    #[error("{syscall} {path}: {errno}")]
    Sys {
        /// The call.
        syscall: &'static str,
        /// The file.
        path: PathBuf,
        /// Its errno.
        errno: Errno,
    },
    /// The file is not ours, not a regular file, a symlink, or too permissive.
    #[error("refusing {path}: {why} (remove it if you did not create it)")]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// The per-user registry file.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    uid: u32,
}

impl Registry {
    /// `/dev/shm/waysock-$UID.registry`.
    pub fn for_uid(uid: u32) -> Registry {
        Registry::in_dir(Path::new("/dev/shm"), uid)
    }

    /// `DIR/waysock-$UID.registry` (tests use a scratch dir).
    pub fn in_dir(dir: &Path, uid: u32) -> Registry {
        Registry {
            path: dir.join(format!("waysock-{uid}.registry")),
            uid,
        }
    }

    /// The registry file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sys_err(&self, path: &Path) -> impl Fn(sys::SysError) -> RegistryError + '_ {
        let path = path.to_path_buf();
        move |e| RegistryError::Sys {
            syscall: e.syscall,
            path: path.clone(),
            errno: e.errno,
        }
    }

    /// A failed `rustix` call on `path`, as a [`RegistryError::Sys`].
    fn raw_err(syscall: &'static str, path: &Path) -> impl Fn(rustix::io::Errno) -> RegistryError {
        let path = path.to_path_buf();
        move |e| RegistryError::Sys {
            syscall,
            path: path.clone(),
            errno: e.into(),
        }
    }

    fn dir_and_name(&self) -> (&Path, &OsStr) {
        (
            self.path.parent().unwrap_or(Path::new("/")),
            self.path.file_name().unwrap_or(OsStr::new("registry")),
        )
    }

    /// Can the registry be written here? (Its directory is writable and what is there is ours.)
    pub fn usable(&self) -> Result<(), RegistryError> {
        let (dir, _) = self.dir_and_name();
        let dfd = sys::open_dir(dir, false).map_err(self.sys_err(dir))?;
        sys::access_writable(&dfd).map_err(self.sys_err(dir))?;
        self.read().map(drop)
    }

    /// Every well-formed record, live or not, in file order.
    pub fn read(&self) -> Result<Vec<Record>, RegistryError> {
        // NONBLOCK: a FIFO planted at our name must not hang us in open(); check_ours then
        // refuses it.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let fd = match rustix::fs::open(&self.path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(Self::raw_err("open", &self.path)(e)),
        };
        self.check_ours(&fd, &self.path)?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .map_err(|e| RegistryError::Sys {
                syscall: "read",
                path: self.path.clone(),
                errno: Errno::from_io(&e),
            })?;
        Ok(text.lines().filter_map(Record::parse).collect())
    }

    /// Live records, newest first.
    pub fn live(&self) -> Result<Vec<Record>, RegistryError> {
        let mut v: Vec<Record> = self.read()?.into_iter().filter(Record::is_live).collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.unix_time));
        Ok(v)
    }

    fn check_ours(&self, fd: &OwnedFd, path: &Path) -> Result<(), RegistryError> {
        let info = sys::fstat(fd).map_err(self.sys_err(path))?;
        let why = if info.kind != FileType::RegularFile {
            Some(format!(
                "it is a {}, not a regular file",
                sys::kind_name(info.kind)
            ))
        } else if info.uid != self.uid {
            Some(format!("it belongs to uid {}, not {}", info.uid, self.uid))
        } else if info.perm & 0o077 != 0 {
            Some(format!("its mode is {:04o}, not 0600", info.perm))
        } else {
            None
        };
        match why {
            Some(why) => Err(RegistryError::Unsafe {
                path: path.to_path_buf(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Removes temporary files named `prefix*` that are regular files of ours (left by a
    /// writer that died); never another uid's file, a symlink or anything else.
    fn remove_leftovers(&self, dfd: &OwnedFd, dir: &Path, prefix: &str) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.as_bytes().starts_with(prefix.as_bytes()) {
                continue;
            }
            if let Ok(Some(info)) = sys::lstat_at(dfd, &name) {
                if info.uid == self.uid && info.kind == FileType::RegularFile {
                    let _ = sys::unlink_at(dfd, &name);
                }
            }
        }
    }

    /// Runs `f` on the current records under the registry lock and writes what it returns,
    /// pruning dead records on the way.
    fn update(&self, f: impl FnOnce(Vec<Record>) -> Vec<Record>) -> Result<(), RegistryError> {
        let (dir, name) = self.dir_and_name();
        let dfd = sys::open_dir(dir, false).map_err(self.sys_err(dir))?;
        let lock_name = format!("{}.lock", name.to_string_lossy());
        let lock_path = dir.join(&lock_name);
        let lock = rustix::fs::openat(
            &dfd,
            lock_name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o600),
        )
        .map_err(Self::raw_err("open", &lock_path))?;
        self.check_ours(&lock, &lock_path)?;
        rustix::io::retry_on_intr(|| rustix::fs::flock(&lock, FlockOperation::LockExclusive))
            .map_err(Self::raw_err("flock", &lock_path))?;
        let current = self.read()?;
        let kept: Vec<Record> = f(current).into_iter().filter(Record::is_live).collect();
        let mut text = String::new();
        for r in &kept {
            if let Some(line) = r.to_line() {
                text.push_str(&line);
                text.push('\n');
            }
        }
        // Every writer holds the lock: a temporary file of ours seen now was left by one that
        // died mid-write. Removed (only regular files of our uid; anything else is left).
        let tmp_prefix = format!(".{}.tmp.", name.to_string_lossy());
        self.remove_leftovers(&dfd, dir, &tmp_prefix);
        // Not guessable: a name planted in advance by someone else cannot block the write.
        let tmp_name = format!("{tmp_prefix}{}", random_suffix());
        let tmp_path = dir.join(&tmp_name);
        let tmp = rustix::fs::openat(
            &dfd,
            tmp_name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(Self::raw_err("open", &tmp_path))?;
        let mut file = std::fs::File::from(tmp);
        let written = file.write_all(text.as_bytes());
        drop(file);
        if let Err(e) = written {
            let _ = sys::unlink_at(&dfd, OsStr::new(&tmp_name));
            return Err(RegistryError::Sys {
                syscall: "write",
                path: tmp_path,
                errno: Errno::from_io(&e),
            });
        }
        if let Err(e) = rustix::fs::renameat(&dfd, tmp_name.as_str(), &dfd, name) {
            let _ = sys::unlink_at(&dfd, OsStr::new(&tmp_name));
            return Err(Self::raw_err("rename", &self.path)(e));
        }
        Ok(())
        // `lock` closes here, releasing the flock.
    }

    /// Publishes `rec`, replacing any record for the same endpoint.
    pub fn publish(&self, rec: &Record) -> Result<(), RegistryError> {
        let rec = rec.clone();
        self.update(move |mut v| {
            v.retain(|r| r.endpoint != rec.endpoint);
            v.push(rec);
            v
        })
    }

    /// Removes the records of `pid` (and prunes dead ones).
    pub fn withdraw(&self, pid: u32) -> Result<(), RegistryError> {
        self.update(move |mut v| {
            v.retain(|r| r.pid != pid);
            v
        })
    }
}

/// The record handed to children in a sealed memfd when `/dev/shm` is unusable
/// (`WAYSOCK_STATE_FD=N`).
#[derive(Debug)]
pub struct StateFd {
    fd: OwnedFd,
}

impl StateFd {
    /// An empty, unsealed memfd (`waysock-state`) that children inherit: not close-on-exec.
    pub fn create() -> Result<StateFd, Errno> {
        let fd = rustix::fs::memfd_create(
            "waysock-state",
            rustix::fs::MemfdFlags::ALLOW_SEALING | rustix::fs::MemfdFlags::CLOEXEC,
        )?;
        // Created CLOEXEC so no other thread's fork inherits it by accident; made inheritable
        // now, on purpose, for the children of `run`.
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())?;
        Ok(StateFd { fd })
    }

    /// The descriptor number (for `WAYSOCK_STATE_FD`).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The descriptor, for `dup2` into a child.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Writes the record and seals the memfd against any further change.
    pub fn publish(&self, rec: &Record) -> Result<(), Errno> {
        let line = rec.to_line().ok_or(Errno::INVAL)? + "\n";
        rustix::io::pwrite(&self.fd, line.as_bytes(), 0)?;
        rustix::fs::fcntl_add_seals(
            &self.fd,
            SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
        )?;
        Ok(())
    }

    /// Reads the record from an inherited `WAYSOCK_STATE_FD`. It must be a memfd sealed against
    /// writes (so nobody can change it after `run` wrote it); anything else is refused.
    pub fn read_inherited(value: &OsStr) -> Result<Record, StateFdError> {
        let text = value.to_string_lossy();
        let raw: RawFd = text
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| StateFdError::NotANumber(text.to_string()))?;
        let (seals, content) =
            sys::read_sealed(raw).map_err(|why| StateFdError::Unreadable { fd: raw, why })?;
        if !seals.contains(SealFlags::WRITE) {
            return Err(StateFdError::NotSealed(raw));
        }
        let text = String::from_utf8_lossy(&content);
        text.lines()
            .find_map(Record::parse)
            .ok_or(StateFdError::NoRecord(raw))
    }
}

/// Why `WAYSOCK_STATE_FD` gives no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFdError {
    /// Not a descriptor number.
    #[error("WAYSOCK_STATE_FD={0:?} is not a descriptor number")]
    NotANumber(String),
    /// Not an open, sealable memfd.
    #[error("WAYSOCK_STATE_FD={fd}: {why}")]
    Unreadable {
        /// The descriptor.
        fd: RawFd,
        /// What is wrong with it.
        why: String,
    },
    /// Not sealed against writing yet.
    #[error("WAYSOCK_STATE_FD={0} is not sealed yet (the display is not ready)")]
    NotSealed(RawFd),
    /// Sealed, but without a valid record line.
    #[error("WAYSOCK_STATE_FD={0} holds no valid record")]
    NoRecord(RawFd),
}

/// 16 hex digits from the kernel's random source (the pid and a counter if it fails).
fn random_suffix() -> String {
    let mut b = [0u8; 8];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b = (u64::from(sys::pid()) << 32 | n).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let r = Record {
            display: "wayland-1".into(),
            endpoint: "unix:/dev/shm/waysock-0/wayland-1".parse().unwrap(),
            pid: 42,
            start_time: 12345,
            unix_time: 1_700_000_000,
            strategy: Some(Strategy::PrivateShm),
        };
        let line = r.to_line().unwrap();
        assert_eq!(
            line,
            "wayland-1 unix:/dev/shm/waysock-0/wayland-1 42 12345 1700000000 private-shm"
        );
        assert_eq!(Record::parse(&line), Some(r.clone()));
        let five = "wayland-1 abstract:wayland-0-1 42 12345 1700000000";
        assert_eq!(Record::parse(five).unwrap().strategy, None);
        for bad in [
            "",
            "wayland-1",
            "wayland-1 unix:rel 42 1 1",
            "wayland-1 unix:/x 0 1 1",
            "wayland-1 unix:/x -3 1 1",
            "wayland-1 unix:/x 42 1 1 bogus",
            "a b c d e f g",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
        let spaced = Record {
            endpoint: Endpoint::Unix("/tmp/with space/wayland-0".into()),
            ..r
        };
        assert_eq!(spaced.to_line(), None);
    }

    #[test]
    fn start_time_of_self_and_of_nobody() {
        assert!(process_start_time(std::process::id()).is_some());
        assert_eq!(process_start_time(u32::MAX - 1), None);
    }
}
