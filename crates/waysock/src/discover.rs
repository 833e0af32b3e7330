//! Client-side discovery (SPEC §5): find the display that answers, in a fixed order, and say
//! where we looked when nothing does.
//!
//! Order: `WAYLAND_SOCKET` → `WAYLAND_DISPLAY` (absolute, or under `XDG_RUNTIME_DIR`) →
//! `WAYSOCK_STATE_FD` → live registry records (newest first) → the fallback directories of the
//! strategy chain → abstract `wayland-$UID-N`. Places that need trust are checked: a fallback
//! directory must be ours (and 0700 for the private ones), an abstract socket must be served by
//! our own uid (`SO_PEERCRED`), since anyone can bind an abstract name first.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::endpoint::{Endpoint, SUN_PATH_MAX};
use crate::errno::Errno;
use crate::registry::{Registry, StateFd};
use crate::strategy::{Environment, Strategy};
use crate::sys;

/// One place looked at, and why it did not answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tried {
    /// What was looked at (`WAYLAND_DISPLAY=wayland-0`, `/tmp/waysock-1000`, …).
    pub place: String,
    /// Why it did not answer (no such file, refused, permission, stale, not ours…).
    pub why: String,
}

/// A display that answered.
#[derive(Debug)]
pub struct Found {
    /// Where it is.
    pub endpoint: Endpoint,
    /// How it was found (`WAYLAND_DISPLAY`, `registry`, `private-shm`, …).
    pub source: String,
    /// The connection made to prove it answers (`None` for an inherited `WAYLAND_SOCKET`,
    /// which is left untouched for the client).
    pub stream: Option<UnixStream>,
}

/// Nothing answered.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// Every place was tried.
    #[error("no Wayland display answered; tried:\n{}", format_tried(.0))]
    NothingAnswered(Vec<Tried>),
    /// An explicit endpoint that the client side cannot use directly.
    #[error("{0}")]
    Unsupported(String),
    /// `--display` or `WAYLAND_DISPLAY` breaks the naming rules ([`crate::names`]): a usage
    /// error, nothing was tried.
    #[error("{source_name}: invalid {name}")]
    BadDisplay {
        /// Where the name came from (`--display`, `WAYLAND_DISPLAY`).
        source_name: &'static str,
        /// What is wrong with it.
        name: crate::names::BadName,
    },
}

impl DiscoverError {
    /// The places tried.
    pub fn tried(&self) -> &[Tried] {
        match self {
            DiscoverError::NothingAnswered(t) => t,
            DiscoverError::Unsupported(_) | DiscoverError::BadDisplay { .. } => &[],
        }
    }
}

fn format_tried(t: &[Tried]) -> String {
    t.iter()
        .map(|t| format!("  {}: {}", t.place, t.why))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Connects to `ep` and checks it is ours to use: for abstract sockets, the server must run
/// as our uid. The error names why (`ENOENT`, `ECONNREFUSED`, `EACCES`, or "served by uid N").
pub fn accepts(ep: &Endpoint) -> Result<UnixStream, String> {
    let why = |e: sys::SysError| connect_error(e.errno);
    match ep {
        Endpoint::Unix(p) => sys::unix_connect(sys::UnixAddr::Path(p))
            .map(UnixStream::from)
            .map_err(why),
        Endpoint::Abstract(name) => {
            let fd = sys::unix_connect(sys::UnixAddr::Abstract(name.as_bytes())).map_err(why)?;
            let me = sys::euid();
            match sys::peer_uid(&fd) {
                Ok(uid) if uid == me => Ok(UnixStream::from(fd)),
                Ok(uid) => Err(format!(
                    "served by uid {uid}, not by us (uid {me}): refused, it could be an impostor"
                )),
                Err(e) => Err(format!("cannot read the server's credentials: {}", e.errno)),
            }
        }
        other => Err(format!(
            "{other} is not a socket address a client can dial directly"
        )),
    }
}

pub use crate::classify::connect_error;

/// Finds the display a client should use.
#[derive(Debug, Clone)]
pub struct Discovery {
    env: Environment,
    display: Option<String>,
    endpoint: Option<Endpoint>,
    registry: Registry,
    state_fd: Option<OsString>,
}

impl Discovery {
    /// Discovery for `env`, using the per-user registry in `/dev/shm`.
    pub fn new(env: Environment) -> Discovery {
        Discovery {
            registry: Registry::for_uid(env.uid),
            env,
            display: None,
            endpoint: None,
            state_fd: None,
        }
    }

    /// Only a display of this name (`wayland-1`) or at this absolute path.
    pub fn display(mut self, name: Option<String>) -> Self {
        self.display = name;
        self
    }

    /// Exactly this endpoint: no search.
    pub fn endpoint(mut self, ep: Option<Endpoint>) -> Self {
        self.endpoint = ep;
        self
    }

    /// Use this registry instead of `/dev/shm`'s.
    pub fn registry(mut self, r: Registry) -> Self {
        self.registry = r;
        self
    }

    /// The value of `WAYSOCK_STATE_FD`, if set.
    pub fn state_fd(mut self, v: Option<OsString>) -> Self {
        self.state_fd = v;
        self
    }

    /// Looks everywhere, in order; the first display that answers wins.
    pub fn find(&self) -> Result<(Found, Vec<Tried>), DiscoverError> {
        let mut tried = Vec::new();
        self.check_names()?;
        if let Some(ep) = &self.endpoint {
            return self.explicit(ep, tried);
        }
        let found = self
            .wayland_socket(&mut tried)
            .or_else(|| self.wayland_display(&mut tried))
            .or_else(|| self.in_state_fd(&mut tried))
            .or_else(|| self.in_registry(&mut tried))
            .or_else(|| self.in_directories(&mut tried))
            .or_else(|| self.in_abstract(&mut tried));
        match found {
            Some(f) => Ok((f, tried)),
            None => Err(DiscoverError::NothingAnswered(tried)),
        }
    }

    fn explicit(
        &self,
        ep: &Endpoint,
        mut tried: Vec<Tried>,
    ) -> Result<(Found, Vec<Tried>), DiscoverError> {
        let resolved = match ep {
            Endpoint::Display(name) => match self.runtime_dir() {
                Ok(dir) => Endpoint::Unix(dir.join(name)),
                Err(why) => {
                    tried.push(Tried {
                        place: ep.to_string(),
                        why,
                    });
                    return Err(DiscoverError::NothingAnswered(tried));
                }
            },
            Endpoint::Fd(n) => {
                return match sys::validate_unix_stream(*n, false) {
                    Ok(()) => Ok((
                        Found {
                            endpoint: ep.clone(),
                            source: "--endpoint".into(),
                            stream: None,
                        },
                        tried,
                    )),
                    Err(p) => {
                        tried.push(Tried {
                            place: ep.to_string(),
                            why: format!("fd {n} {p}"),
                        });
                        Err(DiscoverError::NothingAnswered(tried))
                    }
                }
            }
            Endpoint::Tcp(_) => {
                return Err(DiscoverError::Unsupported(format!(
                    "{ep}: Wayland over TCP needs the bridge (`waysock bridge --listen \
                     unix:/PATH --connect {ep}`), not a direct connection"
                )))
            }
            other => other.clone(),
        };
        if let Endpoint::Unix(p) = &resolved {
            if let Err(d) = crate::trust::check_socket_path(p, self.env.uid) {
                tried.push(Tried {
                    place: resolved.to_string(),
                    why: format!("not trusted: {}", d.cause),
                });
                return Err(DiscoverError::NothingAnswered(tried));
            }
        }
        match accepts(&resolved) {
            Ok(s) => Ok((
                Found {
                    endpoint: resolved,
                    source: "--endpoint".into(),
                    stream: Some(s),
                },
                tried,
            )),
            Err(why) => {
                tried.push(Tried {
                    place: resolved.to_string(),
                    why,
                });
                Err(DiscoverError::NothingAnswered(tried))
            }
        }
    }

    /// Refuses a `--display` or `WAYLAND_DISPLAY` that could lead out of the runtime dir.
    fn check_names(&self) -> Result<(), DiscoverError> {
        if let Some(d) = &self.display {
            crate::names::check(d).map_err(|name| DiscoverError::BadDisplay {
                source_name: "--display",
                name,
            })?;
        }
        if let (None, None, Some(d)) = (
            &self.display,
            &self.endpoint,
            self.env.wayland_display.as_ref().filter(|d| !d.is_empty()),
        ) {
            crate::names::check(&d.to_string_lossy()).map_err(|name| {
                DiscoverError::BadDisplay {
                    source_name: "WAYLAND_DISPLAY",
                    name,
                }
            })?;
        }
        Ok(())
    }

    /// `XDG_RUNTIME_DIR` if it names an existing directory.
    fn runtime_dir(&self) -> Result<PathBuf, String> {
        let Some(d) = self.env.xdg_runtime_dir.as_ref().filter(|d| !d.is_empty()) else {
            return Err("XDG_RUNTIME_DIR is not set".into());
        };
        let dir = PathBuf::from(d);
        if !dir.is_absolute() {
            return Err(format!("XDG_RUNTIME_DIR={} is not absolute", dir.display()));
        }
        match sys::stat_path(&dir) {
            Ok(Some(i)) if i.kind == FileType::Directory => {
                if let Err(d) = crate::trust::check_directory_chain(&dir, self.env.uid) {
                    return Err(format!(
                        "XDG_RUNTIME_DIR={}: not trusted: {}",
                        dir.display(),
                        d.cause
                    ));
                }
                if usable_runtime_dir(&dir, self.env.uid) {
                    Ok(dir)
                } else {
                    // Anyone could have planted a socket in a dir that is not ours and private.
                    Err(format!(
                        "XDG_RUNTIME_DIR={} is not a private (0700) directory of uid {}: not \
                         trusted",
                        dir.display(),
                        self.env.uid
                    ))
                }
            }
            Ok(Some(i)) => Err(format!(
                "XDG_RUNTIME_DIR={} is a {}",
                dir.display(),
                sys::kind_name(i.kind)
            )),
            Ok(None) => Err(format!("XDG_RUNTIME_DIR={} does not exist", dir.display())),
            Err(e) => Err(format!("XDG_RUNTIME_DIR={}: {}", dir.display(), e.errno)),
        }
    }

    fn wayland_socket(&self, tried: &mut Vec<Tried>) -> Option<Found> {
        let v = self.env.wayland_socket.as_ref()?;
        let place = format!("WAYLAND_SOCKET={}", v.to_string_lossy());
        let n = v
            .to_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<i32>().ok());
        let Some(n) = n else {
            tried.push(Tried {
                place,
                why: "not a decimal descriptor number: ignored (nothing adopted)".into(),
            });
            return None;
        };
        match sys::validate_unix_stream(n, false) {
            Ok(()) => Some(Found {
                endpoint: Endpoint::Fd(n),
                source: "WAYLAND_SOCKET".into(),
                stream: None,
            }),
            Err(p) => {
                tried.push(Tried {
                    place,
                    why: format!("fd {n} {p}: ignored (nothing adopted)"),
                });
                None
            }
        }
    }

    fn try_endpoint(
        &self,
        place: String,
        ep: Endpoint,
        source: &str,
        tried: &mut Vec<Tried>,
    ) -> Option<Found> {
        if let Endpoint::Unix(p) = &ep {
            // A path from the environment, the registry or the user: every directory on the
            // way must be one nobody else can rearrange, and the socket ours or root's.
            if let Err(d) = crate::trust::check_socket_path(p, self.env.uid) {
                tried.push(Tried {
                    place,
                    why: format!("not trusted: {}", d.cause),
                });
                return None;
            }
        }
        match accepts(&ep) {
            Ok(s) => Some(Found {
                endpoint: ep,
                source: source.into(),
                stream: Some(s),
            }),
            Err(why) => {
                tried.push(Tried { place, why });
                None
            }
        }
    }

    /// [`Discovery::try_endpoint`] for a path, refusing one that does not fit `sun_path`.
    fn try_path(
        &self,
        place: String,
        p: PathBuf,
        source: &str,
        tried: &mut Vec<Tried>,
    ) -> Option<Found> {
        let len = p.as_os_str().len();
        if len > SUN_PATH_MAX {
            tried.push(Tried {
                place,
                why: format!("path is {len} bytes; sun_path holds {SUN_PATH_MAX}"),
            });
            return None;
        }
        self.try_endpoint(place, Endpoint::Unix(p), source, tried)
    }

    fn wayland_display(&self, tried: &mut Vec<Tried>) -> Option<Found> {
        let name: OsString = match (&self.display, &self.env.wayland_display) {
            (Some(d), _) => d.into(),
            (None, Some(d)) if !d.is_empty() => d.clone(),
            _ => return None,
        };
        let label = if self.display.is_some() {
            "--display"
        } else {
            "WAYLAND_DISPLAY"
        };
        let place = format!("{label}={}", name.to_string_lossy());
        if name.as_bytes().first() == Some(&b'/') {
            return self.try_path(place, PathBuf::from(&name), label, tried);
        }
        match self.runtime_dir() {
            Ok(dir) => {
                let p = dir.join(&name);
                let place = format!("{place} under XDG_RUNTIME_DIR ({})", p.display());
                self.try_path(place, p, label, tried)
            }
            Err(why) => {
                tried.push(Tried { place, why });
                None
            }
        }
    }

    fn wanted(&self, display: &str) -> bool {
        self.display.as_deref().is_none_or(|d| d == display)
    }

    fn in_state_fd(&self, tried: &mut Vec<Tried>) -> Option<Found> {
        let v = self.state_fd.as_ref()?;
        match StateFd::read_inherited(v) {
            Ok(rec) if self.wanted(&rec.display) => self.try_endpoint(
                format!("WAYSOCK_STATE_FD ({})", rec.endpoint),
                rec.endpoint,
                "WAYSOCK_STATE_FD",
                tried,
            ),
            Ok(rec) => {
                tried.push(Tried {
                    place: "WAYSOCK_STATE_FD".into(),
                    why: format!("holds {}, not the display asked for", rec.display),
                });
                None
            }
            Err(why) => {
                tried.push(Tried {
                    place: "WAYSOCK_STATE_FD".into(),
                    why,
                });
                None
            }
        }
    }

    fn in_registry(&self, tried: &mut Vec<Tried>) -> Option<Found> {
        let place = format!("registry {}", self.registry.path().display());
        let records = match self.registry.read() {
            Ok(r) => r,
            Err(e) => {
                tried.push(Tried {
                    place,
                    why: e.to_string(),
                });
                return None;
            }
        };
        let mut records: Vec<_> = records
            .into_iter()
            .filter(|r| self.wanted(&r.display))
            .collect();
        if records.is_empty() {
            tried.push(Tried {
                place,
                why: "no records".into(),
            });
            return None;
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.unix_time));
        for r in records {
            let place = format!(
                "registry record {} ({}, pid {})",
                r.display, r.endpoint, r.pid
            );
            if !r.process_alive() {
                tried.push(Tried {
                    place,
                    why: "its compositor is gone (pid not running with the recorded start time)"
                        .into(),
                });
                continue;
            }
            if let Some(f) = self.try_endpoint(place, r.endpoint.clone(), "registry", tried) {
                return Some(f);
            }
        }
        None
    }

    fn names(&self) -> Vec<String> {
        match &self.display {
            Some(d) => vec![d.clone()],
            None => (0..=crate::MAX_DISPLAY_NUMBER)
                .map(|n| format!("wayland-{n}"))
                .collect(),
        }
    }

    fn in_directories(&self, tried: &mut Vec<Tried>) -> Option<Found> {
        if self.display.as_deref().is_some_and(|d| d.starts_with('/')) {
            return None;
        }
        let mut seen = Vec::new();
        for s in Strategy::DEFAULT_CHAIN
            .into_iter()
            .filter(|s| s.is_directory())
        {
            let Ok(dir) = self.env.directory_for(s) else {
                continue;
            };
            if let Some(id) = crate::runtime_dir::identity(&dir) {
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
            }
            let place = format!("{s} {}", dir.display());
            if let Err(d) = crate::trust::check_directory_chain(&dir, self.env.uid) {
                tried.push(Tried {
                    place,
                    why: format!("not trusted: {}", d.cause),
                });
                continue;
            }
            let dfd = match sys::open_dir(&dir, true) {
                Ok(fd) => fd,
                Err(e) => {
                    tried.push(Tried {
                        place,
                        why: if e.errno == Errno::LOOP {
                            "a symlink: not followed".into()
                        } else {
                            connect_error(e.errno)
                        },
                    });
                    continue;
                }
            };
            match sys::fstat(&dfd) {
                Ok(i) if i.uid != self.env.uid => {
                    tried.push(Tried {
                        place,
                        why: format!("belongs to uid {}: not trusted", i.uid),
                    });
                    continue;
                }
                // Runtime dirs too: a socket in a dir others can write may be planted.
                Ok(i) if i.perm & 0o077 != 0 => {
                    tried.push(Tried {
                        place,
                        why: format!("mode {:04o} is not private: not trusted", i.perm),
                    });
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tried.push(Tried {
                        place,
                        why: e.errno.to_string(),
                    });
                    continue;
                }
            }
            let mut stale = Vec::new();
            for name in self.names() {
                match sys::lstat_at(&dfd, OsStr::new(&name)) {
                    Ok(Some(i)) if i.kind == FileType::Socket => {}
                    _ => continue,
                }
                let p = dir.join(&name);
                if p.as_os_str().len() > SUN_PATH_MAX {
                    continue;
                }
                match accepts(&Endpoint::Unix(p.clone())) {
                    Ok(stream) => {
                        return Some(Found {
                            endpoint: Endpoint::Unix(p),
                            source: s.name().into(),
                            stream: Some(stream),
                        })
                    }
                    Err(why) => stale.push(format!("{name}: {why}")),
                }
            }
            tried.push(Tried {
                place,
                why: if stale.is_empty() {
                    "no Wayland socket in it".into()
                } else {
                    stale.join("; ")
                },
            });
        }
        None
    }

    fn in_abstract(&self, tried: &mut Vec<Tried>) -> Option<Found> {
        if self.display.as_deref().is_some_and(|d| d.starts_with('/')) {
            return None;
        }
        let uid = self.env.uid;
        let mut refused = Vec::new();
        for name in self.names() {
            let ep = Endpoint::Abstract(crate::endpoint::abstract_display_name(uid, &name));
            match accepts(&ep) {
                Ok(s) => {
                    return Some(Found {
                        endpoint: ep,
                        source: "abstract".into(),
                        stream: Some(s),
                    })
                }
                Err(why) if why.contains("ECONNREFUSED") => {}
                Err(why) => refused.push(format!("{ep}: {why}")),
            }
        }
        let range = match &self.display {
            Some(d) => format!(
                "abstract:wayland-{uid}-{}",
                d.strip_prefix("wayland-").unwrap_or(d)
            ),
            None => format!("abstract:wayland-{uid}-0..{}", crate::MAX_DISPLAY_NUMBER),
        };
        tried.push(Tried {
            place: range,
            why: if refused.is_empty() {
                "nothing listening".into()
            } else {
                refused.join("; ")
            },
        });
        None
    }
}

/// The directory of a filesystem endpoint, if it is a usable `XDG_RUNTIME_DIR` for a client:
/// an existing directory owned by `uid`.
pub fn usable_runtime_dir(dir: &Path, uid: u32) -> bool {
    match sys::open_dir(dir, true).and_then(sys::fstat) {
        Ok(i) => i.uid == uid && i.perm & 0o077 == 0,
        Err(_) => false,
    }
}
