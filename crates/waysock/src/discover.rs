//! Client-side discovery (SPEC §5): find the display that answers, in a fixed order, and say
//! where we looked when nothing does.
//!
//! Order: `WAYLAND_SOCKET` → `WAYLAND_DISPLAY` (absolute, or under `XDG_RUNTIME_DIR`) →
//! `WAYSOCK_STATE_FD` → live registry records (newest first) → the fallback directories of the
//! strategy chain → abstract `wayland-$UID-N`. Places that need trust are checked: a fallback
//! directory must be ours (and 0700 for the private ones), an abstract socket must be served by
//! our own uid (`SO_PEERCRED`), since anyone can bind an abstract name first.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::endpoint::{Endpoint, SUN_PATH_MAX};
use crate::errno::Errno;
use crate::names::DisplayNames;
use crate::registry::{Registry, StateFd};
use crate::report::{Attempt, Failure, Outcome, Report, Source};
use crate::strategy::{Environment, Finder, Strategy};
use crate::sys;

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
    NothingAnswered(Vec<Attempt>),
    /// Several displays are equally plausible and nothing names one: never a guess.
    #[error(
        "{} displays of yours are running and none is provably this process's (each was \
         started by an equally near relative, or by none); choose one:\n{}",
        .0.len(),
        format_candidates(.0)
    )]
    Ambiguous(Vec<Candidate>),
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
    pub fn tried(&self) -> &[Attempt] {
        match self {
            DiscoverError::NothingAnswered(t) => t,
            DiscoverError::Unsupported(_)
            | DiscoverError::BadDisplay { .. }
            | DiscoverError::Ambiguous(_) => &[],
        }
    }
}

fn format_tried(t: &[Attempt]) -> String {
    t.iter()
        .map(|t| format!("  {}: {}", t.candidate, t.why()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why a display endpoint cannot be used by a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// `connect` failed.
    #[error("{}", crate::classify::connect_error(*.0))]
    Io(Errno),
    /// An abstract name served by another user: anyone can bind a name first.
    #[error("served by uid {uid}, not by us (uid {us}): refused, it could be an impostor")]
    NotOurs {
        /// The server's uid.
        uid: u32,
        /// Ours.
        us: u32,
    },
    /// `SO_PEERCRED` failed on the connection.
    #[error("cannot read the server's credentials: {0}")]
    Credentials(Errno),
    /// Not an address a client dials (`fd:`, `tcp:`, a bare display name).
    #[error("{0} is not a socket address a client can dial directly")]
    NotDialable(Endpoint),
}

/// Connects to `ep` and checks it is ours to use: for abstract sockets, the server must run
/// as our uid ([`crate::peer`]). The error names why (`ENOENT`, `ECONNREFUSED`, `EACCES`, or
/// "served by uid N").
pub fn accepts(ep: &Endpoint) -> Result<UnixStream, ConnectError> {
    let io = |e: sys::SysError| ConnectError::Io(e.errno);
    match ep {
        Endpoint::Unix(p) => sys::unix_connect(sys::UnixAddr::Path(p))
            .map(UnixStream::from)
            .map_err(io),
        Endpoint::Abstract(name) => {
            let fd = sys::unix_connect(sys::UnixAddr::Abstract(name.as_bytes())).map_err(io)?;
            match crate::peer::check(&fd, sys::euid(), &[]) {
                Ok(_) => Ok(UnixStream::from(fd)),
                Err(crate::peer::PeerError::Refused { uid, us }) => {
                    Err(ConnectError::NotOurs { uid, us })
                }
                Err(crate::peer::PeerError::Unknown(e)) => Err(ConnectError::Credentials(e)),
            }
        }
        other => Err(ConnectError::NotDialable(other.clone())),
    }
}

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

    /// Looks everywhere, in order; the first display that answers wins. Every place looked
    /// at is recorded as an [`Attempt`], as the chain records binding.
    pub fn find(&self) -> Result<(Found, Vec<Attempt>), DiscoverError> {
        self.check_names()?;
        let mut tried = Report::new(self.env.uid);
        if let Some(ep) = &self.endpoint {
            return self.explicit(ep, tried);
        }
        let named = self
            .wayland_socket(&mut tried)
            .or_else(|| self.wayland_display(&mut tried))
            .or_else(|| self.in_state_fd(&mut tried));
        if let Some(f) = named {
            return Ok((f, tried.attempts));
        }
        // Nothing names the display: every live one of ours is a candidate, and only one that
        // is provably the caller's is chosen.
        let mut candidates = Vec::new();
        self.in_registry(&mut tried, &mut candidates);
        self.in_chain(&mut tried, &mut candidates);
        let mut unique: Vec<Found> = Vec::new();
        for c in candidates {
            if !unique.iter().any(|u| u.endpoint == c.endpoint) {
                unique.push(c);
            }
        }
        match choose(unique) {
            Choice::None => Err(DiscoverError::NothingAnswered(tried.attempts)),
            Choice::One(f) => Ok((f, tried.attempts)),
            Choice::Tie(list) => Err(DiscoverError::Ambiguous(list)),
        }
    }

    fn explicit(
        &self,
        ep: &Endpoint,
        mut tried: Report,
    ) -> Result<(Found, Vec<Attempt>), DiscoverError> {
        let src = Source::EndpointFlag;
        let resolved = match ep {
            Endpoint::Display(name) => match self.runtime_dir() {
                Ok(dir) => Endpoint::Unix(dir.join(name)),
                Err(why) => {
                    skip(&mut tried, src, &ep.to_string(), why);
                    return Err(DiscoverError::NothingAnswered(tried.attempts));
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
                        tried.attempts,
                    )),
                    Err(p) => {
                        skip(&mut tried, src, &ep.to_string(), format!("fd {n} {p}"));
                        Err(DiscoverError::NothingAnswered(tried.attempts))
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
        match self.try_endpoint(
            src,
            resolved.to_string(),
            resolved,
            "--endpoint",
            &mut tried,
        ) {
            Some(found) => Ok((found, tried.attempts)),
            None => Err(DiscoverError::NothingAnswered(tried.attempts)),
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

    /// `XDG_RUNTIME_DIR` if it names a trusted directory of ours.
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

    fn wayland_socket(&self, tried: &mut Report) -> Option<Found> {
        let v = self.env.wayland_socket.as_ref()?;
        let src = Source::WaylandSocket;
        let place = format!("WAYLAND_SOCKET={}", v.to_string_lossy());
        let n = v
            .to_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<i32>().ok());
        let Some(n) = n else {
            let why = "not a decimal descriptor number: ignored (nothing adopted)";
            skip(tried, src, &place, why.into());
            return None;
        };
        match sys::validate_unix_stream(n, false) {
            Ok(()) => Some(Found {
                endpoint: Endpoint::Fd(n),
                source: "WAYLAND_SOCKET".into(),
                stream: None,
            }),
            Err(p) => {
                skip(
                    tried,
                    src,
                    &place,
                    format!("fd {n} {p}: ignored (nothing adopted)"),
                );
                None
            }
        }
    }

    /// Connects to `ep` if it is ours to use; records why not.
    fn try_endpoint(
        &self,
        src: Source,
        place: String,
        ep: Endpoint,
        source: &str,
        tried: &mut Report,
    ) -> Option<Found> {
        if let Endpoint::Unix(p) = &ep {
            let len = p.as_os_str().len();
            if len > SUN_PATH_MAX {
                let why = format!("path is {len} bytes; sun_path holds {SUN_PATH_MAX}");
                skip(tried, src, &place, why);
                return None;
            }
            // A path from the environment, the registry or the user: every directory on the
            // way must be one nobody else can rearrange, and the socket ours or root's.
            if let Err(d) = crate::trust::check_socket_path(p, self.env.uid) {
                let f =
                    Failure::policy(Some(d.path), format!("not trusted: {}", d.cause), d.remedy)
                        .security();
                tried.push(src, &place, "verify", Outcome::Failed(f));
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
                tried.push(
                    src,
                    &place,
                    "connect",
                    Outcome::Skipped {
                        reason: why.to_string(),
                    },
                );
                None
            }
        }
    }

    fn wayland_display(&self, tried: &mut Report) -> Option<Found> {
        let name: OsString = match (&self.display, &self.env.wayland_display) {
            (Some(d), _) => d.into(),
            (None, Some(d)) if !d.is_empty() => d.clone(),
            _ => return None,
        };
        let (src, label) = if self.display.is_some() {
            (Source::DisplayFlag, "--display")
        } else {
            (Source::WaylandDisplay, "WAYLAND_DISPLAY")
        };
        let place = format!("{label}={}", name.to_string_lossy());
        if name.as_bytes().first() == Some(&b'/') {
            return self.try_endpoint(
                src,
                place,
                Endpoint::Unix(PathBuf::from(&name)),
                label,
                tried,
            );
        }
        match self.runtime_dir() {
            Ok(dir) => {
                let p = dir.join(&name);
                let place = format!("{place} under XDG_RUNTIME_DIR ({})", p.display());
                self.try_endpoint(src, place, Endpoint::Unix(p), label, tried)
            }
            Err(why) => {
                skip(tried, src, &place, why);
                None
            }
        }
    }

    fn wanted(&self, display: &str) -> bool {
        self.display.as_deref().is_none_or(|d| d == display)
    }

    fn in_state_fd(&self, tried: &mut Report) -> Option<Found> {
        let v = self.state_fd.as_ref()?;
        let src = Source::StateFd;
        match StateFd::read_inherited(v) {
            Ok(rec) if self.wanted(&rec.display) => self.try_endpoint(
                src,
                format!("WAYSOCK_STATE_FD ({})", rec.endpoint),
                rec.endpoint,
                "WAYSOCK_STATE_FD",
                tried,
            ),
            Ok(rec) => {
                let why = format!("holds {}, not the display asked for", rec.display);
                skip(tried, src, "WAYSOCK_STATE_FD", why);
                None
            }
            Err(why) => {
                skip(tried, src, "WAYSOCK_STATE_FD", why.to_string());
                None
            }
        }
    }

    fn in_registry(&self, tried: &mut Report, found: &mut Vec<Found>) {
        let src = Source::Registry;
        let place = format!("registry {}", self.registry.path().display());
        let records = match self.registry.read() {
            Ok(r) => r,
            Err(e) => {
                skip(tried, src, &place, e.to_string());
                return;
            }
        };
        let mut records: Vec<_> = records
            .into_iter()
            .filter(|r| self.wanted(&r.display))
            .collect();
        if records.is_empty() {
            skip(tried, src, &place, "no records".into());
            return;
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.unix_time));
        for r in records {
            let place = format!(
                "registry record {} ({}, pid {})",
                r.display, r.endpoint, r.pid
            );
            if !r.process_alive() {
                let why = "its compositor is gone (pid not running with the recorded start time)";
                skip(tried, src, &place, why.into());
                continue;
            }
            if let Some(f) = self.try_endpoint(src, place, r.endpoint.clone(), "registry", tried) {
                found.push(f);
            }
        }
    }

    /// The chain's own places, in its order: each strategy looks where it would have put a
    /// display (an absolute `--display` names one socket, looked at above).
    fn in_chain(&self, tried: &mut Report, found: &mut Vec<Found>) {
        if self.display.as_deref().is_some_and(|d| d.starts_with('/')) {
            return;
        }
        let mut finder = Finder {
            env: &self.env,
            names: DisplayNames::asked(self.display.as_deref(), DisplayNames::ALL),
            seen: Vec::new(),
        };
        for s in Strategy::DEFAULT_CHAIN {
            s.place().find(&mut finder, tried, found);
        }
    }
}

/// The outcome of choosing among the displays nothing named.
enum Choice {
    None,
    One(Found),
    Tie(Vec<Candidate>),
}

/// A display that could have been the caller's, for the message that asks it to choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it is.
    pub endpoint: Endpoint,
    /// The process serving it, when known.
    pub pid: Option<u32>,
    /// What to pass as `--display` (or `WAYLAND_DISPLAY`) to choose it.
    pub display: String,
}

/// Chooses the display that is provably the caller's: the one whose server is the caller's
/// nearest relative in the process tree ([`crate::probe::kinship`]: a compositor started by
/// the caller or by its own shell beats one started by a sibling job's shell). One display
/// alone is chosen; two or more equally near are a tie, never settled by age or order.
fn choose(mut found: Vec<Found>) -> Choice {
    if found.len() <= 1 {
        return found.pop().map_or(Choice::None, Choice::One);
    }
    let line = crate::probe::ancestors(sys::pid());
    let mut ranked: Vec<(usize, Option<u32>, Found)> = found
        .into_iter()
        .map(|f| {
            let pid = f.stream.as_ref().and_then(crate::probe::server_pid);
            let rank = pid
                .and_then(|p| crate::probe::kinship(&line, p))
                .unwrap_or(usize::MAX);
            (rank, pid, f)
        })
        .collect();
    ranked.sort_by_key(|(rank, _, _)| *rank);
    if ranked[0].0 < ranked[1].0 {
        return Choice::One(ranked.swap_remove(0).2);
    }
    let best = ranked[0].0;
    Choice::Tie(
        ranked
            .into_iter()
            .filter(|(rank, _, _)| *rank == best)
            .map(|(_, pid, f)| Candidate {
                display: display_for(&f.endpoint),
                endpoint: f.endpoint,
                pid,
            })
            .collect(),
    )
}

/// The `--display` value that names `ep`: its path, or the display name an abstract name of
/// ours maps from.
fn display_for(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => p.display().to_string(),
        Endpoint::Abstract(name) => crate::names::display_for_abstract(sys::euid(), name),
        other => other.to_string(),
    }
}

fn format_candidates(list: &[Candidate]) -> String {
    list.iter()
        .map(|c| {
            let pid = c.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
            format!("  {}{pid}: --display {}", c.endpoint, c.display)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Records a place that had nothing for us.
fn skip(tried: &mut Report, src: Source, place: &str, reason: String) {
    tried.push(src, place, "connect", Outcome::Skipped { reason });
}

/// The directory of a filesystem endpoint, if it is a usable `XDG_RUNTIME_DIR` for a client:
/// an existing directory owned by `uid`.
pub fn usable_runtime_dir(dir: &Path, uid: u32) -> bool {
    match sys::open_dir(dir, true).and_then(sys::fstat) {
        Ok(i) => i.uid == uid && i.perm & 0o077 == 0,
        Err(_) => false,
    }
}
