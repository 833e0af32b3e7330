//! A usable runtime directory (SPEC §4), checked on its open fd so that what we checked is
//! what we use: a directory, ours, `mode & 077 == 0`, writable, on a filesystem where a Unix
//! socket really binds, short enough for `sun_path`.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::FileType;

use crate::classify;
use crate::endpoint::SUN_PATH_MAX;
use crate::errno::Errno;
use crate::report::Failure;
use crate::sys::{self, SysError};

/// Whose directory this is meant to be, which decides how a wrong owner or mode is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The user's runtime dir (`XDG_RUNTIME_DIR`, `/run/user/$UID`): a wrong mode is reported
    /// (and may be tightened on request), a wrong owner means "not for us".
    Runtime,
    /// A private fallback dir of ours: anything unexpected there was planted or is unsafe, and
    /// is refused as a security matter.
    Private,
}

/// What to do while checking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options<'a> {
    /// Our effective uid.
    pub uid: u32,
    /// The longest socket name that must fit under the dir (`wayland-32` or `--display`).
    pub longest_name: &'a str,
    /// Create the leaf (0700) when it is missing and its parent allows.
    pub create: bool,
    /// Also create this many missing ancestors above the leaf (0700; `$HOME/.local`).
    pub create_ancestors: usize,
    /// Tighten a too-permissive runtime dir that we own to 0700 instead of refusing it.
    pub fix_perms: bool,
    /// Prove with a throwaway socket that Unix sockets bind here. Needed when nothing else
    /// will bind (probing, preparing a dir for a stock compositor); when the chain binds for
    /// real, that bind is the proof and its errno is judged the same way.
    pub probe_socket: bool,
}

/// A directory that passed every check, open as `fd`.
#[derive(Debug)]
pub(crate) struct UsableDir {
    /// Its path, as clients will reach it.
    pub path: PathBuf,
    /// The directory, open `O_DIRECTORY|O_NOFOLLOW`.
    pub fd: OwnedFd,
    /// Directories this check created, innermost last.
    pub created: Vec<PathBuf>,
    /// Notes for the report (e.g. "created 0700", "tightened 0755 → 0700").
    pub notes: Vec<String>,
}

impl UsableDir {
    /// Removes the directories this check created, if they are still empty (probe mode).
    pub fn remove_created(&mut self) {
        for dir in self.created.drain(..).rev() {
            // rmdir never removes content: a dir someone put something in stays.
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// A check failed at `step`.
#[derive(Debug)]
pub(crate) struct DirFailure {
    /// `open`, `create`, `verify`, `probe`.
    pub step: &'static str,
    /// What failed.
    pub failure: Failure,
}

/// Checks `path` and returns it open, or the first failure.
pub(crate) fn open_usable(
    path: &Path,
    policy: Policy,
    opts: Options<'_>,
) -> Result<UsableDir, DirFailure> {
    let mut created = Vec::new();
    let result = open_usable_inner(path, policy, opts, &mut created);
    match result {
        Ok((fd, notes)) => Ok(UsableDir {
            path: path.to_path_buf(),
            fd,
            created,
            notes,
        }),
        Err((step, failure)) => {
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            Err(DirFailure { step, failure })
        }
    }
}

type Step<T> = Result<T, (&'static str, Failure)>;

fn open_usable_inner(
    path: &Path,
    policy: Policy,
    opts: Options<'_>,
    created: &mut Vec<PathBuf>,
) -> Step<(OwnedFd, Vec<String>)> {
    let uid = opts.uid;
    let fail = |step, e: SysError, p: &Path| (step, classify::failure(e, p, uid));
    if !path.is_absolute() {
        return Err((
            "verify",
            Failure::policy(
                Some(path.to_path_buf()),
                format!("{} is not an absolute path", path.display()),
                "runtime directories must be absolute: set XDG_RUNTIME_DIR=/abs/path".into(),
            ),
        ));
    }
    // The socket path must fit sun_path: checked first, it needs no syscall.
    let socket_len = path.as_os_str().len() + 1 + opts.longest_name.len();
    if socket_len > SUN_PATH_MAX {
        let mut f = classify::failure(
            SysError {
                syscall: "check",
                errno: Errno::NAMETOOLONG,
            },
            path,
            uid,
        );
        f.cause = format!(
            "{}/{} would be {socket_len} bytes; sockaddr_un.sun_path holds {SUN_PATH_MAX}",
            path.display(),
            opts.longest_name
        );
        f.syscall = None;
        return Err(("verify", f));
    }
    let (Some(parent), Some(leaf)) = (path.parent(), path.file_name()) else {
        return Err((
            "verify",
            Failure::policy(
                Some(path.to_path_buf()),
                format!("{} has no parent directory", path.display()),
                "use a directory below /".into(),
            ),
        ));
    };
    // Every directory above must be one that nobody but root and us can rearrange: checked
    // before anything is created in it, and again once the missing ones are made (ours, or
    // someone else's in a sticky dir) when the first walk stopped short of `parent`. A parent
    // it reached cannot be swapped since: its own directory lets only root or us do that.
    let walk = || crate::trust::walk_directory_chain(parent, uid);
    let complete = walk().map_err(|d| ("verify", d.into()))?;
    let parent_fd = open_parent(parent, opts.create_ancestors, uid, created)?;
    if !complete {
        walk().map_err(|d| ("verify", d.into()))?;
    }
    let mut notes = Vec::new();
    let fd = match sys::open_dir_at(&parent_fd, leaf, true) {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::NOENT && opts.create => {
            match sys::mkdir_at(&parent_fd, leaf, 0o700) {
                Ok(()) => {
                    created.push(path.to_path_buf());
                    notes.push("created 0700".to_string());
                }
                // Someone made it between our open and mkdir: check theirs like any other.
                Err(e) if e.errno == Errno::EXIST => {}
                Err(e) => return Err(fail("create", e, path)),
            }
            let fd = sys::open_dir_at(&parent_fd, leaf, true)
                .map_err(|e| planted(e, &parent_fd, path, uid))?;
            if created.last().map(PathBuf::as_path) == Some(path) {
                // mkdir's mode went through the umask; make it exactly 0700 (never wider).
                sys::fchmod(&fd, 0o700).map_err(|e| fail("create", e, path))?;
            }
            fd
        }
        Err(e) => return Err(planted(e, &parent_fd, path, uid)),
    };
    let info = sys::fstat(&fd).map_err(|e| fail("verify", e, path))?;
    if info.uid != uid {
        let f = Failure::policy(
            Some(path.to_path_buf()),
            format!(
                "{} belongs to uid {}, not to us (uid {uid})",
                path.display(),
                info.uid
            ),
            match policy {
                Policy::Private => format!(
                    "another user may have planted it: remove it as root (`rm -r {}`); waysock \
                     never writes into it",
                    path.display()
                ),
                Policy::Runtime => format!(
                    "point XDG_RUNTIME_DIR at a directory of uid {uid} (or let waysock run pick \
                     one)"
                ),
            },
        );
        return Err((
            "verify",
            if policy == Policy::Private {
                f.security()
            } else {
                f
            },
        ));
    }
    if info.perm & 0o1002 != 0 {
        // /tmp, /dev/shm and the like: shared by design, so never a runtime dir (SPEC §9), and
        // never chmod-ed, whoever owns them.
        return Err((
            "verify",
            Failure::policy(
                Some(path.to_path_buf()),
                format!(
                    "{} is world-writable or sticky (mode {:04o}): a shared directory is only \
                     ever the parent of a private 0700 runtime dir",
                    path.display(),
                    info.perm
                ),
                match policy {
                    Policy::Private => format!(
                        "waysock makes this dir 0700; something else made or widened it: \
                         remove it (`rm -r {}`, as its owner or root)",
                        path.display()
                    ),
                    Policy::Runtime => "point XDG_RUNTIME_DIR at a private directory \
                                        (mkdir -m 0700), or let waysock create one (waysock run \
                                        does)"
                        .into(),
                },
            )
            .security(),
        ));
    }
    if info.perm & 0o077 != 0 {
        if policy == Policy::Runtime && opts.fix_perms {
            let tight = info.perm & 0o700;
            sys::fchmod(&fd, tight).map_err(|e| fail("verify", e, path))?;
            notes.push(format!("tightened mode {:04o} → {tight:04o}", info.perm));
        } else {
            let f = Failure::policy(
                Some(path.to_path_buf()),
                format!(
                    "{} has mode {:04o}: group or others can reach the sockets in it",
                    path.display(),
                    info.perm
                ),
                match policy {
                    Policy::Private => format!(
                        "waysock made this dir 0700; something widened it: remove it \
                         (`rm -r {}`) and let waysock recreate it",
                        path.display()
                    ),
                    Policy::Runtime => format!(
                        "`chmod 0700 {}` (or `waysock run --fix-perms`)",
                        path.display()
                    ),
                },
            );
            return Err((
                "verify",
                if policy == Policy::Private {
                    f.security()
                } else {
                    f
                },
            ));
        }
    }
    sys::access_writable(&fd).map_err(|e| fail("verify", e, path))?;
    if opts.probe_socket {
        probe_bind(&fd, path).map_err(|e| fail("probe", e, path))?;
    }
    Ok((fd, notes))
}

/// Opens the parent, creating up to `create` missing ancestors (0700, ours) on the way.
fn open_parent(
    parent: &Path,
    create: usize,
    uid: u32,
    created: &mut Vec<PathBuf>,
) -> Step<OwnedFd> {
    match sys::open_dir(parent, false) {
        Ok(fd) => Ok(fd),
        Err(e) if e.errno == Errno::NOENT && create > 0 => {
            let (Some(grand), Some(name)) = (parent.parent(), parent.file_name()) else {
                return Err(("open", classify::failure(e, parent, uid)));
            };
            let gfd = open_parent(grand, create - 1, uid, created)?;
            match sys::mkdir_at(&gfd, name, 0o700) {
                Ok(()) => created.push(parent.to_path_buf()),
                Err(e) if e.errno == Errno::EXIST => {}
                Err(e) => return Err(("create", classify::failure(e, parent, uid))),
            }
            let fd = sys::open_dir_at(&gfd, name, true)
                .map_err(|e| ("open", classify::failure(e, parent, uid)))?;
            let info =
                sys::fstat(&fd).map_err(|e| ("verify", classify::failure(e, parent, uid)))?;
            if info.uid != uid {
                return Err((
                    "verify",
                    Failure::policy(
                        Some(parent.to_path_buf()),
                        format!(
                            "{} belongs to uid {}, not to us",
                            parent.display(),
                            info.uid
                        ),
                        "remove it or use another candidate".into(),
                    )
                    .security(),
                ));
            }
            Ok(fd)
        }
        Err(e) => Err(("open", classify::failure(e, parent, uid))),
    }
}

/// Explains why `openat(…, O_NOFOLLOW|O_DIRECTORY)` failed on an existing name: a symlink or
/// a non-directory is treated as planted.
///
/// A symlink fails with `ELOOP` (see [`sys::open_dir_at`]); for `ENOTDIR` the name is looked at
/// with `lstat` (relative to the parent fd we opened, never following it) to say what it is.
fn planted(e: SysError, parent: &OwnedFd, path: &Path, uid: u32) -> (&'static str, Failure) {
    let mut f = classify::failure(e, path, uid);
    let kind = path
        .file_name()
        .and_then(|leaf| sys::lstat_at(parent, leaf).ok().flatten())
        .map(|i| i.kind);
    if e.errno == Errno::LOOP {
        let target = std::fs::read_link(path)
            .map(|t| format!(" (→ {})", t.display()))
            .unwrap_or_default();
        f.cause = format!(
            "{}{target} is a symlink; waysock never follows a symlink it did not create",
            path.display()
        );
        f.remedy = format!(
            "remove the symlink if you did not make it yourself (`ls -l {}`); until then \
             waysock skips it",
            path.display()
        );
        f.security = true;
    } else if e.errno == Errno::NOTDIR {
        let kind = kind.map(sys::kind_name).unwrap_or("non-directory");
        f.cause = format!("{} is a {kind}, not a directory", path.display());
        f.remedy = format!(
            "remove it if you know what it is (`ls -l {}`); waysock leaves it alone",
            path.display()
        );
        f.security = true;
    }
    ("open", f)
}

static PROBE_SEQ: AtomicU32 = AtomicU32::new(0);

/// Binds a throwaway socket in the directory and removes it again: the only real proof that
/// this filesystem (and any sandbox around us) allows Unix sockets here.
fn probe_bind(dir: &OwnedFd, dir_path: &Path) -> Result<(), SysError> {
    let name = format!(
        ".waysock-probe-{}-{}",
        sys::pid(),
        PROBE_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let via = sys::path_via_fd(dir.as_fd(), dir_path, &name);
    let sock = sys::unix_stream_socket()?;
    sys::bind(&sock, sys::UnixAddr::Path(&via))?;
    // Bound: the file exists now, so it goes again whatever listen says.
    let listened = sys::listen(&sock);
    sys::unlink_at(dir, OsStr::new(&name))?;
    listened
}

/// Identity of a candidate directory for de-duplication: the parent's dev/ino plus the leaf
/// name, so `/var/run/x` and `/run/x` match even before `x` exists.
pub(crate) fn identity(path: &Path) -> Option<(u64, u64, OsString)> {
    let parent = path.parent()?;
    let info = sys::stat_path(parent).ok()??;
    if info.kind != FileType::Directory {
        return None;
    }
    Some((info.dev, info.ino, path.file_name()?.to_os_string()))
}

/// A share in the directory a compositor was placed in: `flock(LOCK_SH)` on the directory,
/// held by the `waysock` process that placed it (`run`, `headless`) for as long as it runs.
/// Several jobs share one private dir (`/tmp/waysock-$UID`); the last to let go removes it
/// if it is empty, so parallel jobs leave nothing behind and never pull the directory from
/// under one that is still starting.
#[derive(Debug)]
pub struct DirHold {
    fd: OwnedFd,
    path: PathBuf,
    removable: bool,
}

impl DirHold {
    /// Takes a share in `dir`. `removable`: the directory is a private one of ours (or one
    /// this process created), which the last holder may remove when empty. `None` when the
    /// path no longer names the directory we checked (it was removed by a last holder just
    /// now): the caller looks again.
    ///
    /// The share is taken on the checked directory's own descriptor (an open file description
    /// of its own: no other holder shares it), which the hold keeps.
    pub(crate) fn take(dir: UsableDir, removable: bool) -> Option<DirHold> {
        let UsableDir { fd, path, .. } = dir;
        rustix::io::retry_on_intr(|| {
            rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockShared)
        })
        .ok()?;
        let ours = sys::fstat(&fd).ok()?;
        match sys::stat_path(&path) {
            Ok(Some(now)) if now.same_file(&ours) => Some(DirHold {
                fd,
                path,
                removable,
            }),
            _ => None,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets go; the last holder removes the directory if it is empty and removable. `true`
    /// when it was removed.
    pub fn release(self) -> bool {
        if !self.removable {
            return false;
        }
        // Converting our share to an exclusive lock succeeds only when no other holder is
        // left; a job still starting keeps it.
        if !matches!(sys::try_lock(&self.fd), Ok(true)) {
            return false;
        }
        let Ok(ours) = sys::fstat(&self.fd) else {
            return false;
        };
        match sys::stat_path(&self.path) {
            // rmdir never removes content.
            Ok(Some(now)) if now.same_file(&ours) => std::fs::remove_dir(&self.path).is_ok(),
            _ => false,
        }
    }
}
