//! The one layer that talks to the kernel. Every function names its C call; every error keeps
//! the syscall and the errno so a diagnosis can explain it. All raw-fd work lives here.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::errno::Errno;

/// A failed system call: which one, and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{syscall}: {errno}")]
pub struct SysError {
    /// The C function that failed (`"mkdir"`, `"bind"`, …).
    pub syscall: &'static str,
    /// What it returned.
    pub errno: Errno,
}

/// Result of a system call wrapper.
pub type SysResult<T> = Result<T, SysError>;

fn err(syscall: &'static str) -> impl FnOnce(rustix::io::Errno) -> SysError {
    move |e| SysError {
        syscall,
        errno: e.into(),
    }
}

/// The parts of `struct stat` the strategies look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mode & 0o7777`.
    pub perm: u32,
    /// `st_uid`.
    pub uid: u32,
    /// File type from `st_mode`.
    pub kind: FileType,
}

impl FileInfo {
    // `st_dev`, `st_ino` and `st_mode` have different widths on different targets: the casts
    // are no-ops on x86_64 only.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: &rustix::fs::Stat) -> Self {
        FileInfo {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            perm: st.st_mode as u32 & 0o7777,
            uid: st.st_uid,
            kind: FileType::from_raw_mode(st.st_mode as _),
        }
    }

    /// Same file (dev and ino)?
    pub fn same_file(&self, other: &FileInfo) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// A human word for a file type, for messages.
pub fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

/// `open(path, O_RDONLY|O_DIRECTORY|O_CLOEXEC [|O_NOFOLLOW])`.
pub fn open_dir(path: &Path, nofollow: bool) -> SysResult<OwnedFd> {
    open_dir_at(rustix::fs::CWD, path.as_os_str(), nofollow)
}

/// `openat(dirfd, name, O_RDONLY|O_DIRECTORY|O_CLOEXEC [|O_NOFOLLOW])`. A symlink refused by
/// `O_NOFOLLOW` fails with `ELOOP`, what it is (Linux answers `ENOTDIR` when `O_DIRECTORY` is
/// set too; the name is then looked at with `lstat`, never followed).
pub fn open_dir_at(dir: impl AsFd, name: &OsStr, nofollow: bool) -> SysResult<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    match retry(|| rustix::fs::openat(&dir, name, flags, Mode::empty())) {
        Err(rustix::io::Errno::NOTDIR)
            if nofollow
                && rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
        {
            Err(err("open")(rustix::io::Errno::LOOP))
        }
        r => r.map_err(err("open")),
    }
}

/// Runs a call again when a signal interrupted it (`EINTR`): a signal handled elsewhere in
/// the process (run's signal thread, a library user's handler) must not turn into a failure.
fn retry<T>(f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    rustix::io::retry_on_intr(f)
}

/// `openat(dirfd, name, O_PATH|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC)`: a handle on a directory
/// for walking and `fstat`, which needs only search permission on the way there.
pub fn open_path_dir_at(dir: impl AsFd, name: &OsStr) -> SysResult<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    retry(|| rustix::fs::openat(&dir, name, flags, Mode::empty())).map_err(err("open"))
}

/// `readlinkat(dirfd, name)`.
pub fn readlink_at(dir: impl AsFd, name: &OsStr) -> SysResult<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|c| PathBuf::from(std::ffi::OsString::from_vec(c.into_bytes())))
        .map_err(err("readlink"))
}

/// `mkdirat(dirfd, name, mode)`.
pub fn mkdir_at(dir: impl AsFd, name: &OsStr, mode: u32) -> SysResult<()> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode as _)).map_err(err("mkdir"))
}

/// `fchmod(fd, mode)`.
pub fn fchmod(fd: impl AsFd, mode: u32) -> SysResult<()> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode as _)).map_err(err("fchmod"))
}

/// `fstat(fd)`.
pub fn fstat(fd: impl AsFd) -> SysResult<FileInfo> {
    rustix::fs::fstat(fd)
        .map(|st| FileInfo::from_stat(&st))
        .map_err(err("fstat"))
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; `Ok(None)` when it does not exist.
pub fn lstat_at(dir: impl AsFd, name: &OsStr) -> SysResult<Option<FileInfo>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileInfo::from_stat(&st))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(err("lstat")(e)),
    }
}

/// `stat(path)` (follows symlinks); `Ok(None)` when it does not exist.
pub fn stat_path(path: &Path) -> SysResult<Option<FileInfo>> {
    match rustix::fs::stat(path) {
        Ok(st) => Ok(Some(FileInfo::from_stat(&st))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(err("stat")(e)),
    }
}

/// `faccessat(dirfd, ".", W_OK|X_OK, AT_EACCESS)`: can the effective uid create entries here?
/// Reports `EROFS` for read-only mounts even for root.
pub fn access_writable(dir: impl AsFd) -> SysResult<()> {
    rustix::fs::accessat(
        dir,
        ".",
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        AtFlags::EACCESS,
    )
    .map_err(err("access"))
}

/// `openat(dirfd, name, O_RDWR|O_CLOEXEC|O_NOFOLLOW [|O_CREAT], 0660)`: a lock file as
/// libwayland opens it, except that a symlink is refused (`ELOOP`).
pub fn open_lock_at(dir: impl AsFd, name: &OsStr, create: bool) -> SysResult<OwnedFd> {
    let mut flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY;
    if create {
        flags |= OFlags::CREATE;
    }
    retry(|| rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o660))).map_err(err("open"))
}

/// `flock(fd, LOCK_EX|LOCK_NB)`: `Ok(true)` when acquired, `Ok(false)` when another open file
/// description holds it.
pub fn try_lock(fd: impl AsFd) -> SysResult<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(err("flock")(e)),
    }
}

/// `flock(fd, LOCK_UN)`.
pub fn unlock(fd: impl AsFd) -> SysResult<()> {
    rustix::fs::flock(fd, FlockOperation::Unlock).map_err(err("flock"))
}

/// `unlinkat(dirfd, name, 0)`.
pub fn unlink_at(dir: impl AsFd, name: &OsStr) -> SysResult<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(err("unlink"))
}

/// A path through which `bind`/`connect` reach `name` inside the directory open as `dir`,
/// without resolving the directory's path again: `/proc/self/fd/N/name`. This closes the
/// check-then-bind race (the directory we verified on its fd is the one we bind in) and is
/// always short. Falls back to `dir_path/name` when `/proc` is not mounted.
pub fn path_via_fd(dir: BorrowedFd<'_>, dir_path: &Path, name: &str) -> PathBuf {
    use std::os::fd::AsRawFd;
    static PROC_OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let proc_ok = *PROC_OK.get_or_init(|| Path::new("/proc/self/fd").is_dir());
    if proc_ok {
        PathBuf::from(format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), name))
    } else {
        dir_path.join(name)
    }
}

/// Where a Unix socket is bound or dialled.
#[derive(Debug, Clone, Copy)]
pub enum UnixAddr<'a> {
    /// A filesystem path.
    Path(&'a Path),
    /// An abstract name (without the leading NUL).
    Abstract(&'a [u8]),
}

impl UnixAddr<'_> {
    fn to_sockaddr(self) -> Result<SocketAddrUnix, rustix::io::Errno> {
        match self {
            UnixAddr::Path(p) => {
                if p.as_os_str().as_bytes().len() > crate::endpoint::SUN_PATH_MAX {
                    return Err(rustix::io::Errno::NAMETOOLONG);
                }
                SocketAddrUnix::new(p)
            }
            UnixAddr::Abstract(n) => SocketAddrUnix::new_abstract_name(n),
        }
    }
}

/// `socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC)`.
pub fn unix_stream_socket() -> SysResult<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(err("socket"))
}

/// `bind(fd, addr)`.
pub fn bind(fd: impl AsFd, addr: UnixAddr<'_>) -> SysResult<()> {
    let sa = addr.to_sockaddr().map_err(err("bind"))?;
    rustix::net::bind(fd, &sa).map_err(err("bind"))
}

/// `listen(fd, 128)`: libwayland's backlog.
pub fn listen(fd: impl AsFd) -> SysResult<()> {
    rustix::net::listen(fd, 128).map_err(err("listen"))
}

/// `socket` + `bind` + `listen`: a listening `AF_UNIX` stream socket, `CLOEXEC`.
pub fn unix_listen(addr: UnixAddr<'_>) -> SysResult<OwnedFd> {
    let fd = unix_stream_socket()?;
    bind(&fd, addr)?;
    listen(&fd)?;
    Ok(fd)
}

/// `socket` + `connect`: a connected `AF_UNIX` stream socket, `CLOEXEC`.
///
/// The connect itself never blocks: a Unix socket whose backlog is full answers `EAGAIN`
/// at once instead of stalling us (a hung compositor must not hang `doctor`, `ls` or a
/// registry update). The returned socket is blocking again.
pub fn unix_connect(addr: UnixAddr<'_>) -> SysResult<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(err("socket"))?;
    let sa = addr.to_sockaddr().map_err(err("connect"))?;
    retry(|| rustix::net::connect(&fd, &sa)).map_err(err("connect"))?;
    rustix::io::ioctl_fionbio(&fd, false).map_err(err("ioctl"))?;
    Ok(fd)
}

/// Why an fd is not a usable socket of the wanted kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdProblem {
    /// `fcntl(F_GETFD)` failed: not an open descriptor.
    NotOpen(Errno),
    /// Open, but not a socket (`fstat` type given).
    NotSocket(&'static str),
    /// A socket of another family.
    NotUnix,
    /// A Unix socket, but not `SOCK_STREAM`.
    NotStream,
    /// A stream socket that is not listening (servers need one that is).
    NotListening,
    /// A stream socket that is listening (clients need a connected one).
    Listening,
    /// A stream socket without a peer.
    NotConnected,
    /// Standard input, output or error.
    Standard,
    /// Open for reading only, where we must write.
    ReadOnly,
}

impl std::fmt::Display for FdProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FdProblem::NotOpen(e) => write!(f, "is not an open file descriptor ({})", e.name()),
            FdProblem::Standard => {
                f.write_str("is standard input, output or error (use 3 or above)")
            }
            FdProblem::ReadOnly => f.write_str("is open for reading only"),
            FdProblem::NotSocket(k) => write!(f, "is a {k}, not a socket"),
            FdProblem::NotUnix => f.write_str("is a socket of another family, not AF_UNIX"),
            FdProblem::NotStream => f.write_str("is an AF_UNIX socket but not SOCK_STREAM"),
            FdProblem::NotListening => {
                f.write_str("is an AF_UNIX stream socket that is not listening")
            }
            FdProblem::Listening => f.write_str("is a listening socket, not a connected one"),
            FdProblem::NotConnected => f.write_str("is an AF_UNIX stream socket with no peer"),
        }
    }
}

/// Checks, without taking ownership, that `raw` is an open `AF_UNIX` `SOCK_STREAM` socket that is
/// listening (`want_listening`) or connected (otherwise).
pub fn validate_unix_stream(raw: RawFd, want_listening: bool) -> Result<(), FdProblem> {
    if raw < 0 {
        return Err(FdProblem::NotOpen(Errno::INVAL));
    }
    // SAFETY: `BorrowedFd` wants the number to be open for the borrow. If it is not, the first
    // use below, `fcntl(F_GETFD)`, fails with EBADF, touches nothing, and we return before any
    // other use. The borrow does not outlive this function, and nothing here closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    if let Err(e) = rustix::io::fcntl_getfd(fd) {
        return Err(FdProblem::NotOpen(e.into()));
    }
    let info = fstat(fd).map_err(|e| FdProblem::NotOpen(e.errno))?;
    if info.kind != FileType::Socket {
        return Err(FdProblem::NotSocket(kind_name(info.kind)));
    }
    match rustix::net::sockopt::socket_domain(fd) {
        Ok(AddressFamily::UNIX) => {}
        _ => return Err(FdProblem::NotUnix),
    }
    match rustix::net::sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {}
        _ => return Err(FdProblem::NotStream),
    }
    let listening = rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false);
    match (want_listening, listening) {
        (true, true) => Ok(()),
        (true, false) => Err(FdProblem::NotListening),
        (false, true) => Err(FdProblem::Listening),
        (false, false) => match rustix::net::getpeername(fd) {
            Ok(Some(_)) => Ok(()),
            _ => Err(FdProblem::NotConnected),
        },
    }
}

/// Takes ownership of an inherited listening socket (systemd socket activation) after
/// validating it again, and marks it close-on-exec.
///
/// The caller must call this at most once per number (the inherited strategy guards it with a
/// process-wide flag): a second call would create a second owner.
pub fn adopt_listening_fd(raw: RawFd) -> Result<OwnedFd, String> {
    validate_unix_stream(raw, true).map_err(|p| format!("fd {raw} {p}"))?;
    // SAFETY: `raw` is open and a listening AF_UNIX stream socket (just validated). systemd's
    // protocol (LISTEN_PID equal to our pid, checked by the caller) hands fds
    // 3..3+LISTEN_FDS to this process to own, and the caller adopts each at most once, so
    // this `OwnedFd` is the only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| format!("fcntl(F_SETFD, FD_CLOEXEC) on fd {raw}: {}", Errno::from(e)))?;
    Ok(fd)
}

/// Takes ownership of descriptor `raw` that our parent passed to us for writing (a
/// supervisor's readiness pipe: `run --ready-fd N`), made close-on-exec so that no child keeps
/// it open after we close it. Refuses 0, 1 and 2 (ours to keep), a closed number, and a
/// descriptor opened read-only.
///
/// The caller must take each number at most once; it is then the only owner.
pub fn adopt_inherited_fd(raw: RawFd) -> Result<OwnedFd, FdProblem> {
    if raw < 3 {
        return Err(FdProblem::Standard);
    }
    // SAFETY: F_GETFD on any number is harmless; the borrow ends with this expression.
    let flags = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(raw) });
    if let Err(e) = flags {
        return Err(FdProblem::NotOpen(e.into()));
    }
    // SAFETY: as above.
    let mode = rustix::fs::fcntl_getfl(unsafe { BorrowedFd::borrow_raw(raw) })
        .map_err(|e| FdProblem::NotOpen(e.into()))?;
    if !mode.intersects(OFlags::WRONLY | OFlags::RDWR) {
        return Err(FdProblem::ReadOnly);
    }
    // SAFETY: `raw` is open (checked above) and was handed to this process to own by its
    // parent; the caller takes it once, so this `OwnedFd` is its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
    Ok(fd)
}

/// The local address of a socket, as an endpoint (`unix:` or `abstract:`), if it has one.
pub fn local_endpoint(fd: impl AsFd) -> Option<crate::Endpoint> {
    let any = rustix::net::getsockname(fd).ok()?;
    let un = SocketAddrUnix::try_from(any).ok()?;
    if let Some(name) = un.abstract_name() {
        return Some(crate::Endpoint::Abstract(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    let path = un.path_bytes()?;
    if path.is_empty() {
        return None;
    }
    Some(crate::Endpoint::Unix(PathBuf::from(OsStr::from_bytes(
        path,
    ))))
}

/// [`local_endpoint`] of a raw descriptor we do not own (an inherited fd before adoption).
pub fn local_endpoint_raw(raw: RawFd) -> Option<crate::Endpoint> {
    if rustix::io::fcntl_getfd(
        // SAFETY: F_GETFD on any number is harmless; the borrow ends with this expression.
        unsafe { BorrowedFd::borrow_raw(raw) },
    )
    .is_err()
    {
        return None;
    }
    // SAFETY: `raw` is open (checked just above); the borrow lives only for this call, and
    // nothing here closes it.
    local_endpoint(unsafe { BorrowedFd::borrow_raw(raw) })
}

/// The seals and first 4 KiB of an inherited memfd we do not own (`WAYSOCK_STATE_FD`).
pub fn read_sealed(raw: RawFd) -> Result<(rustix::fs::SealFlags, Vec<u8>), String> {
    if raw < 0 {
        return Err("negative descriptor".into());
    }
    // SAFETY: F_GETFD on any number is harmless; the borrow ends with this expression.
    if rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(raw) }).is_err() {
        return Err("not an open descriptor".into());
    }
    // SAFETY: `raw` is open (checked above); the borrow lives only inside this function and
    // nothing here closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    let seals = rustix::fs::fcntl_get_seals(fd)
        .map_err(|e| format!("not a sealable memfd ({})", Errno::from(e).name()))?;
    let mut buf = vec![0u8; 4096];
    let n =
        rustix::io::pread(fd, &mut buf[..], 0).map_err(|e| format!("pread: {}", Errno::from(e)))?;
    buf.truncate(n);
    Ok((seals, buf))
}

/// Makes a descriptor inheritable across `exec` (clears `FD_CLOEXEC`).
pub fn set_inheritable(fd: impl AsFd) -> SysResult<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(err("fcntl"))
}

/// Clears `FD_CLOEXEC` on a descriptor we do not own, after checking it is an open, connected
/// `AF_UNIX` stream socket (an inherited `WAYLAND_SOCKET` being handed on).
pub fn set_inheritable_raw(raw: RawFd) -> Result<(), SysError> {
    validate_unix_stream(raw, false).map_err(|_| SysError {
        syscall: "fcntl",
        errno: Errno::BADF,
    })?;
    // SAFETY: `raw` is open (just validated); the borrow lives only for this call and nothing
    // here closes it.
    set_inheritable(unsafe { BorrowedFd::borrow_raw(raw) })
}

/// Sets `FD_CLOEXEC` on a descriptor number if it is open (and does nothing otherwise).
pub fn set_cloexec_raw(raw: RawFd) {
    if raw < 0 {
        return;
    }
    // SAFETY: BorrowedFd wants an open fd; if `raw` is not open, fcntl(F_GETFD) just fails
    // with EBADF and we stop. The borrow lives only inside this function; nothing closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    if let Ok(flags) = rustix::io::fcntl_getfd(fd) {
        let _ = rustix::io::fcntl_setfd(fd, flags | rustix::io::FdFlags::CLOEXEC);
    }
}

/// The uid of the process at the other end of a connected Unix socket (`SO_PEERCRED`).
pub fn peer_uid(fd: impl AsFd) -> SysResult<u32> {
    rustix::net::sockopt::socket_peercred(fd)
        .map(|c| c.uid.as_raw())
        .map_err(err("getsockopt"))
}

/// Makes the child that `cmd` starts receive SIGTERM when this process dies, so a compositor
/// started by `waysock run` never outlives a `run` killed with SIGKILL.
pub fn terminate_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it makes two raw syscalls (prctl, getppid) and no allocation or locking.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
            // The parent may have died before prctl took effect.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        })
    };
}

/// The effective uid.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// This process's pid.
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn validate_tells_kinds_apart() {
        let dir = std::env::temp_dir().join(format!("waysock-sys-{}", pid()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s");
        let l = unix_listen(UnixAddr::Path(&path)).unwrap();
        assert_eq!(validate_unix_stream(l.as_raw_fd(), true), Ok(()));
        assert_eq!(
            validate_unix_stream(l.as_raw_fd(), false),
            Err(FdProblem::Listening)
        );
        let c = unix_connect(UnixAddr::Path(&path)).unwrap();
        assert_eq!(validate_unix_stream(c.as_raw_fd(), false), Ok(()));
        assert_eq!(
            validate_unix_stream(c.as_raw_fd(), true),
            Err(FdProblem::NotListening)
        );
        let unbound = unix_stream_socket().unwrap();
        assert_eq!(
            validate_unix_stream(unbound.as_raw_fd(), false),
            Err(FdProblem::NotConnected)
        );
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            validate_unix_stream(file.as_raw_fd(), true),
            Err(FdProblem::NotSocket("character device"))
        ));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            validate_unix_stream(udp.as_raw_fd(), true),
            Err(FdProblem::NotUnix)
        );
        assert!(matches!(
            validate_unix_stream(1_000_000, true),
            Err(FdProblem::NotOpen(_))
        ));
        assert_eq!(
            local_endpoint(&l),
            Some(crate::Endpoint::Unix(path.clone()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
