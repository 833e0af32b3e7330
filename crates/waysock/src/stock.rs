//! What a stock compositor and a stock client would do here, without waysock.
//!
//! The rules follow libwayland 1.21 (`wl_display_add_socket`, `wl_socket_lock`,
//! `wl_display_connect`) and the two stock compositors we test against: weston 10 and
//! sway 1.7 both try `wayland-1` ..= `wayland-32` (they skip `wayland-0`), weston exits before
//! that when `XDG_RUNTIME_DIR` is unset or not a directory. The prediction is made by looking,
//! never by creating: no lock file, socket or directory is made.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::endpoint::{Endpoint, SUN_PATH_MAX};
use crate::errno::Errno;
use crate::strategy::Environment;
use crate::sys;

/// One prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// Would it work?
    pub works: bool,
    /// One sentence, e.g. "weston would exit: XDG_RUNTIME_DIR is not set".
    pub verdict: String,
    /// The endpoint it would listen on or dial, when it gets that far.
    pub endpoint: Option<Endpoint>,
    /// The errno behind a failure, when there is one.
    pub errno: Option<Errno>,
}

/// Both predictions.
#[derive(Debug, Clone, Serialize)]
pub struct Stock {
    /// A stock libwayland compositor (weston 10, sway 1.7).
    pub compositor: Prediction,
    /// A stock libwayland client (`wl_display_connect(NULL)`).
    pub client: Prediction,
}

/// Predicts both.
pub fn predict(env: &Environment) -> Stock {
    Stock {
        compositor: compositor(env),
        client: client(env),
    }
}

fn fail(verdict: String, endpoint: Option<Endpoint>, errno: Option<Errno>) -> Prediction {
    Prediction {
        works: false,
        verdict,
        endpoint,
        errno,
    }
}

/// A stock compositor: weston's `verify_xdg_runtime_dir` then libwayland's socket code.
pub fn compositor(env: &Environment) -> Prediction {
    let Some(dir) = env.xdg_runtime_dir.as_ref().filter(|d| !d.is_empty()) else {
        return fail(
            "weston would exit: XDG_RUNTIME_DIR is not set (sway aborts too; libwayland: \
             \"XDG_RUNTIME_DIR not set in the environment\")"
                .into(),
            None,
            None,
        );
    };
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        return fail(
            format!(
                "weston would exit: \"failed to add socket\" (libwayland: \"XDG_RUNTIME_DIR is \
                 invalid or not set in the environment\": {} is relative)",
                dir.display()
            ),
            None,
            Some(Errno::NOENT),
        );
    }
    match sys::stat_path(&dir) {
        Ok(Some(info)) if info.kind == rustix::fs::FileType::Directory => {}
        Ok(Some(_)) => {
            return fail(
                format!(
                    "weston would exit: XDG_RUNTIME_DIR={} is not a directory",
                    dir.display()
                ),
                None,
                Some(Errno::NOTDIR),
            )
        }
        Ok(None) => {
            return fail(
                format!(
                    "weston would exit: XDG_RUNTIME_DIR={} does not exist (\"is not a directory\")",
                    dir.display()
                ),
                None,
                Some(Errno::NOENT),
            )
        }
        Err(e) => {
            return fail(
                format!(
                    "weston would exit: cannot stat XDG_RUNTIME_DIR={}: {}",
                    dir.display(),
                    e.errno
                ),
                None,
                Some(e.errno),
            )
        }
    }
    let first = dir.join("wayland-1");
    if first.as_os_str().len() > SUN_PATH_MAX {
        return fail(
            format!(
                "weston would exit: \"failed to add socket\": {} plus NUL exceeds sun_path's 108 \
                 bytes (ENAMETOOLONG)",
                first.display()
            ),
            None,
            Some(Errno::NAMETOOLONG),
        );
    }
    let Ok(dfd) = sys::open_dir(&dir, false) else {
        return fail(
            format!("weston would exit: cannot open {}", dir.display()),
            None,
            Some(Errno::ACCES),
        );
    };
    for name in crate::names::DisplayNames::STOCK.iter() {
        let path = dir.join(&name);
        let lock_name = format!("{name}.lock");
        match sys::open_lock_at(&dfd, OsStr::new(&lock_name), false) {
            Ok(fd) => match sys::try_lock(&fd) {
                Ok(true) => {
                    let _ = sys::unlock(&fd);
                }
                _ => continue, // held: libwayland moves on to the next name
            },
            Err(e) if e.errno == Errno::NOENT => {
                // libwayland would create the lock file: can it?
                if let Err(e) = sys::access_writable(&dfd) {
                    return fail(
                        format!(
                            "weston would exit: \"failed to add socket: {}\" (creating {}.lock)",
                            e.errno.message(),
                            path.display()
                        ),
                        None,
                        Some(e.errno),
                    );
                }
            }
            Err(e) => {
                return fail(
                    format!(
                        "weston would exit: \"unable to open lockfile {}.lock\": {}",
                        path.display(),
                        e.errno
                    ),
                    None,
                    Some(e.errno),
                )
            }
        }
        let endpoint = Some(Endpoint::Unix(path.clone()));
        let mut verdict = format!(
            "weston would listen on {} (it skips wayland-0; clients without WAYLAND_DISPLAY \
             dial wayland-0)",
            path.display()
        );
        if let Ok(Some(info)) = sys::lstat_at(&dfd, OsStr::new(&name)) {
            if info.perm & 0o220 != 0 {
                let kind = sys::kind_name(info.kind);
                verdict.push_str(&format!(
                    "; libwayland would first unlink the existing {kind} {name}{}",
                    if info.kind == rustix::fs::FileType::Socket {
                        ""
                    } else {
                        " (it deletes anything with a write bit)"
                    }
                ));
            }
        }
        return Prediction {
            works: true,
            verdict,
            endpoint,
            errno: None,
        };
    }
    fail(
        format!(
            "weston would exit: all of wayland-1..32 in {} are locked",
            dir.display()
        ),
        None,
        Some(Errno::ADDRINUSE),
    )
}

/// A stock client: `wl_display_connect(NULL)`.
pub fn client(env: &Environment) -> Prediction {
    if let Some(sock) = &env.wayland_socket {
        let text = sock.to_string_lossy();
        let Ok(fd) = text.parse::<i32>() else {
            return fail(
                format!("clients would fail: WAYLAND_SOCKET={text:?} is not a number"),
                None,
                Some(Errno::INVAL),
            );
        };
        return match sys::validate_unix_stream(fd, false) {
            Ok(()) => Prediction {
                works: true,
                verdict: format!("clients would use the inherited connection WAYLAND_SOCKET={fd}"),
                endpoint: Some(Endpoint::Fd(fd)),
                errno: None,
            },
            Err(p) => fail(
                format!("clients would fail: WAYLAND_SOCKET={fd} {p}"),
                Some(Endpoint::Fd(fd)),
                Some(Errno::INVAL),
            ),
        };
    }
    let name = env
        .wayland_display
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "wayland-0".into());
    let path = if name.as_bytes().first() == Some(&b'/') {
        PathBuf::from(&name)
    } else {
        match env.xdg_runtime_dir.as_ref().filter(|d| !d.is_empty()) {
            None => {
                return fail(
                    format!(
                        "clients would fail: \"XDG_RUNTIME_DIR not set in the environment\" \
                         (WAYLAND_DISPLAY={} is relative)",
                        name.to_string_lossy()
                    ),
                    None,
                    None,
                )
            }
            Some(d) if Path::new(d).is_absolute() => Path::new(d).join(&name),
            Some(d) => {
                return fail(
                    format!(
                        "clients would fail: \"XDG_RUNTIME_DIR is invalid or not set in the \
                         environment\" ({} is relative)",
                        Path::new(d).display()
                    ),
                    None,
                    Some(Errno::NOENT),
                )
            }
        }
    };
    if path.as_os_str().len() > SUN_PATH_MAX {
        return fail(
            format!(
                "clients would fail: socket path {} plus NUL exceeds 108 bytes",
                path.display()
            ),
            None,
            Some(Errno::NAMETOOLONG),
        );
    }
    let endpoint = Some(Endpoint::Unix(path.clone()));
    match sys::unix_connect(sys::UnixAddr::Path(&path)) {
        Ok(_) => Prediction {
            works: true,
            verdict: format!("clients would connect to {}", path.display()),
            endpoint,
            errno: None,
        },
        Err(e) => {
            let why = crate::classify::connect_error(e.errno);
            fail(
                format!("clients would dial {} and fail: {why}", path.display()),
                endpoint,
                Some(e.errno),
            )
        }
    }
}
