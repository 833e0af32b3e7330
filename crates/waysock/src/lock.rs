//! libwayland's lock-file protocol (SPEC §3), made safe against the cases libwayland gets
//! wrong.
//!
//! For socket `D/NAME` the lock is `D/NAME.lock`, opened `O_CREAT|O_CLOEXEC|O_RDWR` mode 0660
//! and held with `flock(LOCK_EX|LOCK_NB)` for the socket's lifetime, exactly as libwayland's
//! `wl_socket_lock()` does, so waysock and any libwayland compositor never own one name
//! together. Differences, all on the side of caution:
//! - the lock file is opened `O_NOFOLLOW`: a symlink planted at `NAME.lock` is refused;
//! - after `flock` succeeds we re-check that the name still refers to the inode we locked
//!   (wayland-rs does the same in `wayland-server/src/socket.rs`): between our `open` and our
//!   `flock`, the previous owner may have exited and unlinked the file, and a third process may
//!   have created a fresh one and locked *that*. Locking an orphaned inode would let two
//!   servers believe they own one name;
//! - an existing `NAME` is unlinked only if `lstat` shows a socket *and* nothing answers on it
//!   (`ECONNREFUSED`). libwayland unlinks anything with a write bit: a regular file, a FIFO, or
//!   a live socket of a server that does not use lock files.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::FileType;

use crate::errno::Errno;
use crate::runtime_dir::UsableDir;
use crate::sys::{self, FileInfo, SysError};

/// How many times we retry when the lock file is replaced under us (see module docs).
const LOCK_RETRIES: usize = 3;

/// Holds a display name: the lock, and (once bound) the socket file. Dropping it removes the
/// socket and then the lock, each only if the name still refers to the file we created.
#[derive(Debug)]
pub struct DisplayLock {
    dir: OwnedFd,
    name: String,
    /// Never read: holding it open holds the flock; closing it (on drop) releases it.
    #[allow(dead_code)]
    lock_fd: OwnedFd,
    lock_info: FileInfo,
    socket_info: Option<FileInfo>,
}

impl DisplayLock {
    /// The display name (`wayland-0`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for DisplayLock {
    fn drop(&mut self) {
        // Socket first, then lock, both while the lock is still held (libwayland's order).
        if let Some(sock) = self.socket_info {
            remove_if_same(&self.dir, OsStr::new(&self.name), &sock);
        }
        let lock_name = format!("{}.lock", self.name);
        remove_if_same(&self.dir, OsStr::new(&lock_name), &self.lock_info);
        // `lock_fd` is closed after this body runs, which releases the flock.
    }
}

fn remove_if_same(dir: &OwnedFd, name: &OsStr, expect: &FileInfo) {
    if let Ok(Some(now)) = sys::lstat_at(dir, name) {
        if now.same_file(expect) {
            let _ = sys::unlink_at(dir, name);
        }
    }
}

/// The result of trying to claim one name.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Bound and listening; the lock holds the name.
    Bound {
        listener: OwnedFd,
        lock: DisplayLock,
        /// Set when a stale socket was reclaimed.
        note: Option<String>,
    },
    /// Somebody owns this name: try the next one.
    InUse(String),
    /// Something that is not ours is in the way (not a socket, symlinked lock): leave it alone
    /// and try the next name.
    Blocked { reason: String, security: bool },
    /// A syscall failed in a way that concerns the whole directory.
    Failed { step: &'static str, error: SysError },
}

/// What is at a name, found without changing anything (doctor's probe mode).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Peek {
    /// Nothing there: a bind would take it.
    Free,
    /// A socket nobody serves and whose lock nobody holds: a bind would reclaim it.
    Stale,
    /// Taken.
    InUse(String),
    /// In the way.
    Blocked { reason: String, security: bool },
}

/// Claims `name` in `dir`: lock, reclaim a stale socket, bind, listen.
pub(crate) fn claim(dir: &UsableDir, name: &str) -> Claim {
    let lock_name = format!("{name}.lock");
    let (lock_fd, lock_info) = match acquire(&dir.fd, &lock_name) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Claim::InUse(format!(
                "{name}: its lock {lock_name} is held (a compositor is running on it)"
            ))
        }
        Err(e) if e.errno == Errno::LOOP => {
            return Claim::Blocked {
                reason: format!("{lock_name} is a symlink; waysock never opens it"),
                security: true,
            }
        }
        // EINVAL: our own check found a FIFO or device; EISDIR: a directory by that name;
        // ENXIO: a socket by that name. Only this name is unusable.
        Err(e) if [Errno::INVAL, Errno::ISDIR, Errno::NXIO].contains(&e.errno) => {
            return Claim::Blocked {
                reason: format!("{lock_name} is not a regular file; waysock leaves it alone"),
                security: false,
            }
        }
        Err(e) => {
            return Claim::Failed {
                step: "lock",
                error: e,
            }
        }
    };
    // From here on we hold the lock. On any way out without a bound socket, remove the lock
    // file again (we hold it, so nobody else can be using it) and release it.
    let give_up = |out: Claim| {
        remove_if_same(&dir.fd, OsStr::new(&lock_name), &lock_info);
        out
    };
    let mut note = None;
    match examine(&dir.fd, &dir.path, name) {
        Ok(Peek::Free) => {}
        Ok(Peek::Stale) => {
            if let Err(e) = sys::unlink_at(&dir.fd, OsStr::new(name)) {
                return give_up(Claim::Failed {
                    step: "lock",
                    error: e,
                });
            }
            note = Some(format!(
                "reclaimed a stale {name} (lock free, nothing listening)"
            ));
        }
        Ok(Peek::InUse(reason)) => return give_up(Claim::InUse(reason)),
        Ok(Peek::Blocked { reason, security }) => {
            return give_up(Claim::Blocked { reason, security })
        }
        Err(e) => {
            return give_up(Claim::Failed {
                step: "lock",
                error: e,
            })
        }
    }
    // Unit tests only: where a server that ignores lock files may bind the name.
    #[cfg(test)]
    race::point(race::Point::BeforeBind, &dir.fd, name);
    let via = sys::path_via_fd(dir.fd.as_fd(), &dir.path, name);
    let sock = match sys::unix_stream_socket() {
        Ok(s) => s,
        Err(e) => {
            return give_up(Claim::Failed {
                step: "bind",
                error: e,
            })
        }
    };
    match sys::bind(&sock, sys::UnixAddr::Path(&via)) {
        Ok(()) => {}
        Err(e) if e.errno == Errno::ADDRINUSE => {
            return give_up(Claim::InUse(format!(
                "{name} appeared while we held its lock: another server ignores lock files"
            )))
        }
        Err(e) => {
            return give_up(Claim::Failed {
                step: "bind",
                error: e,
            })
        }
    }
    let socket_info = sys::lstat_at(&dir.fd, OsStr::new(name)).ok().flatten();
    let lock = DisplayLock {
        dir: match dir.fd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::unlink_at(&dir.fd, OsStr::new(name));
                return give_up(Claim::Failed {
                    step: "bind",
                    error: SysError {
                        syscall: "dup",
                        errno: Errno::from_io(&e),
                    },
                });
            }
        },
        name: name.to_string(),
        lock_fd,
        lock_info,
        socket_info,
    };
    if let Err(e) = sys::listen(&sock) {
        // Dropping the lock removes the socket we bound and the lock file.
        drop(lock);
        return Claim::Failed {
            step: "listen",
            error: e,
        };
    }
    Claim::Bound {
        listener: sock,
        lock,
        note,
    }
}

/// Looks at `name` without creating, locking for longer than a moment, or removing anything.
pub(crate) fn peek(dir: &UsableDir, name: &str) -> Result<Peek, SysError> {
    let lock_name = format!("{name}.lock");
    match sys::open_lock_at(&dir.fd, OsStr::new(&lock_name), false) {
        Ok(fd) => {
            if !sys::try_lock(&fd)? {
                return Ok(Peek::InUse(format!(
                    "{name}: its lock {lock_name} is held (a compositor is running on it)"
                )));
            }
            // Held for the duration of `examine` only; closing `fd` releases it.
            let r = examine(&dir.fd, &dir.path, name);
            let _ = sys::unlock(&fd);
            r
        }
        Err(e) if e.errno == Errno::NOENT => examine(&dir.fd, &dir.path, name),
        Err(e) if e.errno == Errno::LOOP => Ok(Peek::Blocked {
            reason: format!("{lock_name} is a symlink; waysock never opens it"),
            security: true,
        }),
        Err(e) => Err(e),
    }
}

/// Opens (creating) and locks `lock_name`, re-checking identity after the lock.
/// `Ok(None)`: someone else holds it.
fn acquire(dir: &OwnedFd, lock_name: &str) -> Result<Option<(OwnedFd, FileInfo)>, SysError> {
    for _ in 0..LOCK_RETRIES {
        let fd = sys::open_lock_at(dir, OsStr::new(lock_name), true)?;
        // Unit tests only (not compiled into the library): where another process may replace
        // the lock file.
        #[cfg(test)]
        race::point(race::Point::LockOpened, dir, lock_name);
        let info = sys::fstat(&fd)?;
        if info.kind != FileType::RegularFile {
            return Err(SysError {
                syscall: "open",
                errno: Errno::INVAL,
            });
        }
        if !sys::try_lock(&fd)? {
            return Ok(None);
        }
        match sys::lstat_at(dir, OsStr::new(lock_name))? {
            Some(now) if now.same_file(&info) => return Ok(Some((fd, info))),
            // Replaced or removed between open and flock: we locked an orphan. Try again.
            _ => continue,
        }
    }
    Ok(None)
}

/// What is at `name`, given that nobody holds its lock (or it has no lock file).
fn examine(dir: &OwnedFd, dir_path: &Path, name: &str) -> Result<Peek, SysError> {
    let Some(info) = sys::lstat_at(dir, OsStr::new(name))? else {
        return Ok(Peek::Free);
    };
    if info.kind != FileType::Socket {
        return Ok(Peek::Blocked {
            reason: format!(
                "a {} named {name} is in the way; libwayland would delete it, waysock leaves \
                 it alone",
                sys::kind_name(info.kind)
            ),
            security: info.kind == FileType::Symlink,
        });
    }
    // A socket with a free lock: stale, unless a server that does not use lock files is
    // answering on it.
    let via = sys::path_via_fd(dir.as_fd(), dir_path, name);
    match sys::unix_connect(sys::UnixAddr::Path(&via)) {
        Ok(_) => Ok(Peek::InUse(format!(
            "{name}: a server answers on it without holding {name}.lock"
        ))),
        Err(e) if e.errno == Errno::CONNREFUSED => Ok(Peek::Stale),
        Err(e) => Ok(Peek::Blocked {
            reason: format!(
                "{name} is a socket we cannot test ({}); left alone",
                e.errno.name()
            ),
            security: false,
        }),
    }
}

/// Removes a dead display left in `dir` by a compositor that crashed: only under its lock, only
/// a socket, only if nothing answers on it. `Ok(true)` if something was removed.
pub fn remove_stale_display(dir: &Path, name: &str) -> Result<bool, SysError> {
    let dfd = sys::open_dir(dir, true)?;
    let lock_name = format!("{name}.lock");
    let lock_fd = match sys::open_lock_at(&dfd, OsStr::new(&lock_name), false) {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::NOENT => return Ok(false),
        Err(e) => return Err(e),
    };
    // Unit tests only: where the lock file may be replaced, as in `acquire`.
    #[cfg(test)]
    race::point(race::Point::LockOpened, &dfd, &lock_name);
    if !sys::try_lock(&lock_fd)? {
        return Ok(false); // somebody still holds it: alive
    }
    let lock_info = sys::fstat(&lock_fd)?;
    match sys::lstat_at(&dfd, OsStr::new(&lock_name))? {
        Some(now) if now.same_file(&lock_info) => {}
        _ => return Ok(false),
    }
    match examine(&dfd, dir, name)? {
        Peek::Stale => sys::unlink_at(&dfd, OsStr::new(name))?,
        Peek::Free => {}
        Peek::InUse(_) | Peek::Blocked { .. } => return Ok(false),
    }
    // The socket is gone (or never was); the lock file we hold is the last trace.
    sys::unlink_at(&dfd, OsStr::new(&lock_name))?;
    Ok(true)
}

/// The races this module guards against, made deterministic: a hook that runs at named points
/// on the calling thread, where tests play the other process (replacing the lock file between
/// `open` and `flock`, binding the name while we hold its lock).
#[cfg(test)]
mod race {
    use std::cell::RefCell;
    use std::os::fd::OwnedFd;

    /// Where the hook runs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Point {
        /// A lock file was opened and is about to be `flock`ed (`acquire`,
        /// `remove_stale_display`).
        LockOpened,
        /// `claim` holds the lock, found the name free or stale, and is about to bind.
        BeforeBind,
    }

    /// What runs there: the point, the dir fd, the file's name (the lock's or the socket's),
    /// and how many times the hook ran before (from 0).
    pub(super) type Hook = Box<dyn FnMut(Point, &OwnedFd, &str, usize)>;

    thread_local! {
        static HOOK: RefCell<Option<(Hook, usize)>> = const { RefCell::new(None) };
    }

    /// Runs `f` with `hook` installed on this thread; returns how many times it ran.
    pub(super) fn with_hook<T>(hook: Hook, f: impl FnOnce() -> T) -> (T, usize) {
        HOOK.with(|h| *h.borrow_mut() = Some((hook, 0)));
        let out = f();
        let runs = HOOK.with(|h| h.borrow_mut().take().map_or(0, |(_, n)| n));
        (out, runs)
    }

    pub(super) fn point(at: Point, dir: &OwnedFd, name: &str) {
        HOOK.with(|h| {
            if let Some((hook, runs)) = h.borrow_mut().as_mut() {
                hook(at, dir, name, *runs);
                *runs += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use rustix::fs::FlockOperation;
    use waysock_testkit::Scratch;

    use super::*;

    const LOCK: &str = "wayland-0.lock";

    /// What another process does between our `open` and our `flock`: unlink the lock file we
    /// opened and create a fresh one at the name, holding its lock if `hold`.
    fn replace(path: &Path, hold: bool) -> File {
        std::fs::remove_file(path).unwrap();
        let f = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        if hold {
            rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).unwrap();
        }
        f
    }

    /// Is the flock of the file now at `path` held (by anyone, us included)?
    fn held(path: &Path) -> bool {
        let f = File::open(path).unwrap();
        rustix::fs::flock(&f, FlockOperation::NonBlockingLockShared).is_err()
    }

    fn acquire_with(dir: &Path, hook: race::Hook) -> (Option<(OwnedFd, FileInfo)>, usize) {
        let dfd = sys::open_dir(dir, true).unwrap();
        let (r, runs) = race::with_hook(hook, || acquire(&dfd, LOCK));
        (r.unwrap(), runs)
    }

    /// The lock `acquire` returned is the file at the name, and its flock is held.
    fn assert_holds_the_name(got: &(OwnedFd, FileInfo), path: &Path) {
        let now = std::fs::symlink_metadata(path).expect("the lock file is at its name");
        let (fd, info) = got;
        let mine = sys::fstat(fd).unwrap();
        assert_eq!(
            (mine.dev, mine.ino),
            (now.dev(), now.ino()),
            "an orphan was locked"
        );
        assert!(info.same_file(&mine));
        assert!(held(path), "the lock at the name is not held");
    }

    #[test]
    fn a_lock_replaced_and_held_between_open_and_flock_is_in_use() {
        // The inode we opened is unlinked (its flock is free: we would win it), a third
        // process creates a new lock file and holds it. Two servers would own one name if we
        // kept the orphan.
        let scratch = Scratch::new("race-held");
        let path = scratch.path().join(LOCK);
        let mut theirs = Vec::new();
        let p = path.clone();
        let (got, runs) = acquire_with(
            scratch.path(),
            Box::new(move |_, _, _, n| {
                if n == 0 {
                    theirs.push(replace(&p, true));
                }
            }),
        );
        assert!(got.is_none(), "won an orphaned lock: {got:?}");
        assert_eq!(runs, 2, "the name was not looked at again after the flock");
    }

    #[test]
    fn a_lock_replaced_between_open_and_flock_is_retried_on_the_new_file() {
        let scratch = Scratch::new("race-free");
        let path = scratch.path().join(LOCK);
        let mut keep = Vec::new();
        let p = path.clone();
        let (got, runs) = acquire_with(
            scratch.path(),
            Box::new(move |_, _, _, n| {
                if n == 0 {
                    keep.push(replace(&p, false));
                }
            }),
        );
        let got = got.expect("the fresh lock file is free: it is ours on the second try");
        assert_eq!(runs, 2);
        assert_holds_the_name(&got, &path);
    }

    #[test]
    fn a_lock_removed_between_open_and_flock_is_created_again() {
        let scratch = Scratch::new("race-gone");
        let path = scratch.path().join(LOCK);
        let p = path.clone();
        let (got, runs) = acquire_with(
            scratch.path(),
            Box::new(move |_, _, _, n| {
                if n == 0 {
                    std::fs::remove_file(&p).unwrap();
                }
            }),
        );
        let got = got.expect("a new lock file is created and won");
        assert_eq!(runs, 2);
        assert_holds_the_name(&got, &path);
    }

    #[test]
    fn a_lock_replaced_on_every_attempt_is_given_up() {
        let scratch = Scratch::new("race-always");
        let path = scratch.path().join(LOCK);
        let mut keep = Vec::new();
        let p = path.clone();
        let (got, runs) = acquire_with(
            scratch.path(),
            Box::new(move |_, _, _, _| keep.push(replace(&p, false))),
        );
        assert!(
            got.is_none(),
            "returned a lock that is not at the name: {got:?}"
        );
        assert_eq!(runs, LOCK_RETRIES);
        assert!(!held(&path), "nothing may stay locked");
    }

    #[test]
    fn without_a_race_the_first_attempt_wins() {
        let scratch = Scratch::new("race-none");
        let path = scratch.path().join(LOCK);
        let (got, runs) = acquire_with(scratch.path(), Box::new(|_, _, _, _| {}));
        let got = got.expect("a free name");
        assert_eq!(runs, 1);
        assert_holds_the_name(&got, &path);
        // Held: a second acquire (another open file description) does not get it.
        let (again, _) = acquire_with(scratch.path(), Box::new(|_, _, _, _| {}));
        assert!(again.is_none());
    }

    #[test]
    fn remove_stale_display_leaves_a_lock_replaced_before_its_flock() {
        // The dead display's lock file is replaced between our open and our flock by a new
        // compositor, which holds the new one and is about to bind: nothing of it may go.
        let scratch = Scratch::new("race-rsd");
        let dir = scratch.path();
        waysock_testkit::stale_socket(&dir.join("wayland-0"));
        File::create(dir.join(LOCK)).unwrap();
        let mut theirs = Vec::new();
        let p = dir.join(LOCK);
        let (r, runs) = race::with_hook(
            Box::new(move |at, _, _, _| {
                assert_eq!(at, race::Point::LockOpened);
                theirs.push(replace(&p, true));
            }),
            || remove_stale_display(dir, "wayland-0"),
        );
        assert_eq!(r, Ok(false));
        assert_eq!(runs, 1);
        assert!(dir.join("wayland-0").exists(), "the socket was removed");
        assert!(dir.join(LOCK).exists(), "the new lock file was removed");
    }

    fn usable(dir: &Path) -> UsableDir {
        UsableDir {
            path: dir.to_path_buf(),
            fd: sys::open_dir(dir, true).unwrap(),
            created: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_name_bound_by_another_server_while_we_hold_its_lock_is_in_use() {
        // A server that ignores lock files binds the name between our check and our bind.
        let scratch = Scratch::new("race-bind");
        let dir = usable(scratch.path());
        let p = scratch.path().join("wayland-0");
        let (claim, runs) = race::with_hook(
            Box::new(move |at, _, _, _| {
                if at == race::Point::BeforeBind {
                    waysock_testkit::stale_socket(&p);
                }
            }),
            || claim(&dir, "wayland-0"),
        );
        assert_eq!(runs, 2, "lock opened, then before bind");
        match claim {
            Claim::InUse(why) => assert!(why.contains("appeared while we held its lock"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(
            !scratch.path().join(LOCK).exists(),
            "the lock taken for the name must be removed again"
        );
        assert!(scratch.path().join("wayland-0").exists(), "theirs stays");
    }

    #[test]
    fn a_bind_that_fails_for_another_reason_is_a_failure_not_in_use() {
        // EACCES at bind (here: this thread loses root just before it) concerns the dir, not
        // the name: reported as a failure of `bind`, not skipped as "in use".
        let name = "lock::tests::a_bind_that_fails_for_another_reason_is_a_failure_not_in_use";
        if !waysock_testkit::is_root() {
            return waysock_testkit::skip(name, "needs root to drop privileges in one thread");
        }
        let scratch = Scratch::new("race-eacces");
        let path = scratch.path().to_path_buf();
        let claim = std::thread::spawn(move || {
            let dir = usable(&path);
            let (claim, _) = race::with_hook(
                Box::new(|at, _, _, _| {
                    if at == race::Point::BeforeBind {
                        // This thread only, and only the effective uid: root comes back below.
                        let nobody = rustix::process::Uid::from_raw(65534);
                        rustix::thread::set_thread_res_uid(None, nobody, None).unwrap();
                    }
                }),
                || claim(&dir, "wayland-0"),
            );
            rustix::thread::set_thread_res_uid(None, rustix::process::Uid::ROOT, None).unwrap();
            format!("{claim:?}")
        })
        .join()
        .unwrap();
        assert!(
            claim.starts_with("Failed { step: \"bind\"") && claim.contains("ACCES"),
            "{claim}"
        );
    }

    #[test]
    fn a_lock_that_cannot_be_created_is_a_failure_not_a_blocked_name() {
        // EACCES creating the lock file concerns the whole dir (every name would fail the
        // same way): a failure of the `lock` step, not one name "in the way".
        let name = "lock::tests::a_lock_that_cannot_be_created_is_a_failure_not_a_blocked_name";
        if !waysock_testkit::is_root() {
            return waysock_testkit::skip(name, "needs root to drop privileges in one thread");
        }
        let scratch = Scratch::new("lock-eacces");
        let path = scratch.path().to_path_buf();
        let claim = std::thread::spawn(move || {
            let dir = usable(&path);
            // This thread only, and only the effective uid: root comes back below.
            let nobody = rustix::process::Uid::from_raw(65534);
            rustix::thread::set_thread_res_uid(None, nobody, None).unwrap();
            let claim = claim(&dir, "wayland-0");
            rustix::thread::set_thread_res_uid(None, rustix::process::Uid::ROOT, None).unwrap();
            format!("{claim:?}")
        })
        .join()
        .unwrap();
        assert!(
            claim.starts_with("Failed { step: \"lock\"") && claim.contains("ACCES"),
            "{claim}"
        );
        assert!(!scratch.path().join(LOCK).exists());
    }
}
