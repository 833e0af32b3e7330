//! "Is this path ours?", asked from `/` down.
//!
//! A socket is only as safe as every directory above it: whoever can rename an entry in any
//! of them can swap the rest of the path for their own. A directory on the way is trusted when
//! it is owned by root or by us and
//! - no one else can write to it (`mode & 022 == 0`), or
//! - it is sticky (`/tmp`, `/dev/shm`): others may add entries, but not rename or remove ours.
//!
//! A symlink on the way is followed only when root or we own it (it sits in a trusted
//! directory, so no one else could have replaced it); its target is then checked the same way.
//! The kernel's `fs.protected_*` sysctls are not relied on: they are off on many machines.
//!
//! The walk stops quietly at the first name that does not exist or is not a directory: what is
//! missing is created by us (0700) or fails with its own errno where it is used.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::FileType;

use crate::report::Failure;
use crate::sys::{self, FileInfo};

/// How many symlinks one walk follows before giving up (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// Why a path is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cause}")]
pub struct Distrust {
    /// The directory or symlink that fails the rules.
    pub path: PathBuf,
    /// One line: what is wrong with it.
    pub cause: String,
    /// One line: what the user can do.
    pub remedy: String,
}

impl From<Distrust> for Failure {
    fn from(d: Distrust) -> Failure {
        Failure::policy(Some(d.path), d.cause, d.remedy).security()
    }
}

/// Checks every directory from `/` down to `dir` itself (see the module doc). `dir` must be
/// absolute.
pub fn check_directory_chain(dir: &Path, uid: u32) -> Result<(), Distrust> {
    walk_directory_chain(dir, uid).map(drop)
}

/// [`check_directory_chain`], also telling whether the walk reached `dir` itself (`false`: it
/// stopped quietly at a name that is missing or not a directory, so what is below was not
/// checked).
pub(crate) fn walk_directory_chain(dir: &Path, uid: u32) -> Result<bool, Distrust> {
    if !dir.is_absolute() {
        return Err(Distrust {
            path: dir.to_path_buf(),
            cause: format!("{} is not an absolute path", dir.display()),
            remedy: "give an absolute path".into(),
        });
    }
    let Ok(root) = sys::open_path_dir_at(rustix::fs::CWD, OsStr::new("/")) else {
        return Ok(false);
    };
    let mut here = (root, PathBuf::from("/"));
    if let Ok(info) = sys::fstat(&here.0) {
        check_dir(&info, &here.1, uid)?;
    }
    let mut above: Vec<(OwnedFd, PathBuf)> = Vec::new();
    let mut pending: VecDeque<OsString> = parts(dir);
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if let Some(up) = above.pop() {
                here = up;
            }
            continue;
        }
        let path = here.1.join(&name);
        let info = match sys::lstat_at(&here.0, &name) {
            Ok(Some(info)) => info,
            _ => return Ok(false),
        };
        match info.kind {
            FileType::Symlink => {
                if !owned_by_root_or(uid, &info) {
                    return Err(Distrust {
                        cause: format!(
                            "{} is a symlink owned by uid {}: it could point anywhere at any time",
                            path.display(),
                            info.uid
                        ),
                        remedy: format!(
                            "use the real path instead of the symlink, or remove it if you did \
                             not make it (`ls -l {}`)",
                            path.display()
                        ),
                        path,
                    });
                }
                hops += 1;
                let Ok(target) = sys::readlink_at(&here.0, &name) else {
                    return Ok(false);
                };
                if hops > MAX_SYMLINKS {
                    return Ok(false); // ELOOP where the path is used
                }
                if target.is_absolute() {
                    let Ok(root) = sys::open_path_dir_at(rustix::fs::CWD, OsStr::new("/")) else {
                        return Ok(false);
                    };
                    above.clear();
                    here = (root, PathBuf::from("/"));
                }
                for part in parts(&target).into_iter().rev() {
                    pending.push_front(part);
                }
            }
            FileType::Directory => {
                let Ok(fd) = sys::open_path_dir_at(&here.0, &name) else {
                    return Ok(false);
                };
                // The fd's own status: the entry cannot have been swapped under the check.
                let info = sys::fstat(&fd).unwrap_or(info);
                check_dir(&info, &path, uid)?;
                above.push(std::mem::replace(&mut here, (fd, path)));
            }
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Checks the directory that holds `socket` from `/` down, and the socket itself: owned by
/// root or by us (in a sticky directory anyone can create a name first).
pub fn check_socket_path(socket: &Path, uid: u32) -> Result<(), Distrust> {
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    check_directory_chain(dir, uid)?;
    let Ok(dfd) = sys::open_path_dir_at(rustix::fs::CWD, dir.as_os_str()) else {
        return Ok(());
    };
    let Some(name) = socket.file_name() else {
        return Ok(());
    };
    match sys::lstat_at(&dfd, name) {
        Ok(Some(info)) if !owned_by_root_or(uid, &info) => Err(Distrust {
            path: socket.to_path_buf(),
            cause: format!(
                "{} belongs to uid {}, not to us (uid {uid}) or root: it may be an impostor",
                socket.display(),
                info.uid
            ),
            remedy: "connect to a display of your own (`waysock ls`)".into(),
        }),
        _ => Ok(()),
    }
}

fn owned_by_root_or(uid: u32, info: &FileInfo) -> bool {
    info.uid == 0 || info.uid == uid
}

fn check_dir(info: &FileInfo, path: &Path, uid: u32) -> Result<(), Distrust> {
    if !owned_by_root_or(uid, info) {
        return Err(Distrust {
            path: path.to_path_buf(),
            cause: format!(
                "{} belongs to uid {}, neither root nor us (uid {uid}): its owner can rename \
                 what is inside and put their own files in its place",
                path.display(),
                info.uid
            ),
            remedy: format!(
                "use a directory that root or uid {uid} owns all the way down (check HOME, \
                 XDG_RUNTIME_DIR and the paths you pass)"
            ),
        });
    }
    if info.perm & 0o022 != 0 && info.perm & 0o1000 == 0 {
        let who = if info.perm & 0o002 != 0 {
            "everyone"
        } else {
            "its group"
        };
        return Err(Distrust {
            path: path.to_path_buf(),
            cause: format!(
                "{} is writable by {who} without the sticky bit (mode {:04o}): anyone who may \
                 write there can rename what is inside and put their own in its place",
                path.display(),
                info.perm
            ),
            remedy: format!(
                "`chmod go-w {}` or `chmod +t {}` (as its owner)",
                path.display(),
                path.display()
            ),
        });
    }
    Ok(())
}

/// The path's normal components as names (`/` dropped, `.` skipped, `..` kept).
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_are_trusted() {
        let uid = sys::euid();
        check_directory_chain(Path::new("/"), uid).unwrap();
        check_directory_chain(Path::new("/tmp"), uid).unwrap();
        check_directory_chain(Path::new("/tmp/does/not/exist/yet"), uid).unwrap();
        assert_eq!(walk_directory_chain(Path::new("/tmp"), uid), Ok(true));
        assert_eq!(
            walk_directory_chain(Path::new("/tmp/does/not/exist/yet"), uid),
            Ok(false),
            "a walk that stopped at a missing name says so"
        );
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(check_directory_chain(Path::new("tmp"), 0).is_err());
    }
}
