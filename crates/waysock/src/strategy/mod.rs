//! The strategy chain: an ordered list of strategies, each one module that owns how it is
//! claimed (bound for real), probed (tried, leaving nothing behind), prepared for a stock
//! compositor, and found by clients.
//!
//! - [`inherited`]: `LISTEN_FDS` (systemd socket activation);
//! - [`directory`]: the directory strategies (runtime dir, `/run/user/$UID`, the private
//!   fallback dirs, `$HOME/.local/run`): one type, many places;
//! - [`abstract_ns`]: abstract names `wayland-$UID-N`.
//!
//! Adding a strategy: a variant below (its name, its place in [`Strategy::DEFAULT_CHAIN`]),
//! a file implementing [`Place`], and one line in [`Strategy::place`].

pub(crate) mod abstract_ns;
pub(crate) mod directory;
pub mod inherited;

use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;

use crate::discover::Found;
use crate::endpoint::Endpoint;
use crate::lock::DisplayLock;
use crate::names::DisplayNames;
use crate::report::{Outcome, Report};

/// One way of getting a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// `LISTEN_FDS`/`LISTEN_PID` (systemd socket activation).
    Inherited,
    /// `$XDG_RUNTIME_DIR`.
    RuntimeDir,
    /// `/run/user/$UID`.
    UserRun,
    /// `/tmp/waysock-$UID`.
    PrivateTmp,
    /// `/run/waysock-$UID`.
    PrivateRun,
    /// `/dev/shm/waysock-$UID`.
    PrivateShm,
    /// `/var/run/waysock-$UID`.
    PrivateVarrun,
    /// `$HOME/.local/run`.
    Home,
    /// Abstract socket `wayland-$UID-$N`.
    Abstract,
}

impl Strategy {
    /// The default chain, in order (SPEC §2). `tcp` is never part of it.
    pub const DEFAULT_CHAIN: [Strategy; 9] = [
        Strategy::Inherited,
        Strategy::RuntimeDir,
        Strategy::UserRun,
        Strategy::PrivateTmp,
        Strategy::PrivateRun,
        Strategy::PrivateShm,
        Strategy::PrivateVarrun,
        Strategy::Home,
        Strategy::Abstract,
    ];

    /// The name used on the command line, in `WAYSOCK_STRATEGIES`, logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Inherited => "inherited",
            Strategy::RuntimeDir => "runtime-dir",
            Strategy::UserRun => "user-run",
            Strategy::PrivateTmp => "private-tmp",
            Strategy::PrivateRun => "private-run",
            Strategy::PrivateShm => "private-shm",
            Strategy::PrivateVarrun => "private-varrun",
            Strategy::Home => "home",
            Strategy::Abstract => "abstract",
        }
    }

    /// Does this strategy use a directory on the filesystem?
    pub fn is_directory(self) -> bool {
        !matches!(self, Strategy::Inherited | Strategy::Abstract)
    }

    /// Parses a comma-separated list (`--strategy`, `WAYSOCK_STRATEGIES`). Duplicates are an
    /// error, as is an empty list.
    pub fn parse_list(list: &str) -> Result<Vec<Strategy>, StrategyError> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim) {
            let s: Strategy = part.parse()?;
            if out.contains(&s) {
                return Err(StrategyError::Duplicate(s));
            }
            out.push(s);
        }
        Ok(out)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl serde::Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A bad strategy name or list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// Not a strategy we know.
    #[error(
        "unknown strategy {0:?}; known: inherited, runtime-dir, user-run, private-tmp, \
         private-run, private-shm, private-varrun, home, abstract"
    )]
    Unknown(String),
    /// `tcp` was asked for; it is served by the bridge, not by binding.
    #[error(
        "strategy \"tcp\" is not a listening strategy: Wayland over TCP needs its file \
         descriptors translated; use `waysock bridge --listen tcp:ADDR:PORT`"
    )]
    Tcp,
    /// Named twice.
    #[error("strategy {0} is listed twice")]
    Duplicate(Strategy),
}

impl FromStr for Strategy {
    type Err = StrategyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "tcp" {
            return Err(StrategyError::Tcp);
        }
        Strategy::DEFAULT_CHAIN
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| StrategyError::Unknown(s.to_string()))
    }
}

/// The directories the fallback strategies create their private dir in. Tests point these
/// elsewhere; everything else uses [`Roots::system`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Parent of the per-user runtime dirs: `/run/user`.
    pub user_run: PathBuf,
    /// `/tmp`.
    pub tmp: PathBuf,
    /// `/run`.
    pub run: PathBuf,
    /// `/dev/shm`.
    pub shm: PathBuf,
    /// `/var/run`.
    pub varrun: PathBuf,
}

impl Roots {
    /// Every fallback parent under `base` (`base/user-run`, `base/tmp`, `base/run`,
    /// `base/shm`, `base/varrun`): a chain that touches nothing outside `base`.
    pub fn under(base: &std::path::Path) -> Self {
        Roots {
            user_run: base.join("user-run"),
            tmp: base.join("tmp"),
            run: base.join("run"),
            shm: base.join("shm"),
            varrun: base.join("varrun"),
        }
    }

    /// The real system locations.
    pub fn system() -> Self {
        Roots {
            user_run: "/run/user".into(),
            tmp: "/tmp".into(),
            run: "/run".into(),
            shm: "/dev/shm".into(),
            varrun: "/var/run".into(),
        }
    }
}

/// Everything the chain reads from the process: taken once, so a library user (or a test) can
/// hand in another one, and the chain never reads the environment behind its back.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Effective uid.
    pub uid: u32,
    /// Our pid (compared with `LISTEN_PID`).
    pub pid: u32,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
    /// `LISTEN_FDS`.
    pub listen_fds: Option<OsString>,
    /// `LISTEN_PID`.
    pub listen_pid: Option<OsString>,
    /// `LISTEN_FDNAMES`.
    pub listen_fdnames: Option<OsString>,
    /// `WAYLAND_DISPLAY`.
    pub wayland_display: Option<OsString>,
    /// `WAYLAND_SOCKET`.
    pub wayland_socket: Option<OsString>,
    /// Where the private fallback dirs go.
    pub roots: Roots,
}

impl Environment {
    /// Reads this process's environment and ids.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var_os(k);
        Environment {
            uid: crate::sys::euid(),
            pid: crate::sys::pid(),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            home: var("HOME"),
            listen_fds: var("LISTEN_FDS"),
            listen_pid: var("LISTEN_PID"),
            listen_fdnames: var("LISTEN_FDNAMES"),
            wayland_display: var("WAYLAND_DISPLAY"),
            wayland_socket: var("WAYLAND_SOCKET"),
            roots: Roots::system(),
        }
    }

    /// Our own ids and `roots`, and no variable at all: no runtime dir, no `HOME`, no
    /// `LISTEN_FDS`, no `WAYLAND_*`. A controlled starting point (tests, sandboxes, embedders
    /// that decide themselves); set the fields that should be there.
    pub fn clean(roots: Roots) -> Self {
        Environment {
            uid: crate::sys::euid(),
            pid: crate::sys::pid(),
            xdg_runtime_dir: None,
            home: None,
            listen_fds: None,
            listen_pid: None,
            listen_fdnames: None,
            wayland_display: None,
            wayland_socket: None,
            roots,
        }
    }

    /// The chain to use: `WAYSOCK_STRATEGIES` if set in the process environment, else the
    /// default.
    pub fn strategies_from_process() -> Result<Vec<Strategy>, StrategyError> {
        match std::env::var("WAYSOCK_STRATEGIES") {
            Ok(list) if !list.trim().is_empty() => Strategy::parse_list(&list),
            _ => Ok(Strategy::DEFAULT_CHAIN.to_vec()),
        }
    }

    /// The directory a directory strategy would use (before any check).
    pub fn directory_for(&self, s: Strategy) -> Result<PathBuf, NoDirectory> {
        match s.place().directory() {
            Some(d) => d.locate(self).map_err(|reason| NoDirectory { reason }),
            None => Err(NoDirectory {
                reason: format!("{s} does not use a directory"),
            }),
        }
    }
}

/// Why a strategy has no directory here (`HOME is not set`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NoDirectory {
    /// In words.
    pub reason: String,
}

impl Strategy {
    /// The module that implements this strategy.
    pub(crate) fn place(self) -> &'static dyn Place {
        match self {
            Strategy::Inherited => &inherited::INHERITED,
            Strategy::RuntimeDir => &directory::RUNTIME_DIR,
            Strategy::UserRun => &directory::USER_RUN,
            Strategy::PrivateTmp => &directory::PRIVATE_TMP,
            Strategy::PrivateRun => &directory::PRIVATE_RUN,
            Strategy::PrivateShm => &directory::PRIVATE_SHM,
            Strategy::PrivateVarrun => &directory::PRIVATE_VARRUN,
            Strategy::Home => &directory::HOME,
            Strategy::Abstract => &abstract_ns::ABSTRACT,
        }
    }
}

/// What one walk of the chain shares between strategies.
pub(crate) struct Ctx<'a> {
    /// The environment the chain reads.
    pub env: &'a Environment,
    /// The names to try, in order.
    pub names: DisplayNames,
    /// Tighten a too-permissive runtime dir we own (`--fix-perms`).
    pub fix_perms: bool,
    /// Directories already tried by an earlier strategy (`/var/run` is `/run`).
    pub seen: Vec<(Strategy, DirId)>,
}

/// A directory's identity for de-duplication: its parent's dev/ino and its leaf name.
pub(crate) type DirId = (u64, u64, std::ffi::OsString);

/// How one strategy ended inside a walk.
pub(crate) enum Step<T> {
    /// It worked.
    Won(T),
    /// It did not; the report says why. Try the next.
    Next,
    /// Nothing else can work either (out of descriptors or memory).
    Stop(String),
}

/// A socket a strategy bound for real: it owns the listener and, in a directory, the lock.
pub(crate) struct Claimed {
    pub strategy: Strategy,
    pub endpoint: Endpoint,
    pub client_endpoint: Endpoint,
    pub listener: OwnedFd,
    pub lock: Option<DisplayLock>,
    pub runtime_dir: Option<PathBuf>,
}

/// What a probe found would work. It owns nothing: whatever it made was released again.
pub(crate) struct Probed {
    pub strategy: Strategy,
    pub endpoint: Endpoint,
}

/// A directory kept for a stock compositor to bind in.
pub(crate) struct PreparedDir {
    pub strategy: Strategy,
    pub endpoint: Endpoint,
    pub dir: PathBuf,
    pub created: Vec<PathBuf>,
    pub hold: Option<crate::runtime_dir::DirHold>,
}

/// What a client looking for a display shares between strategies.
pub(crate) struct Finder<'a> {
    /// The environment read.
    pub env: &'a Environment,
    /// The names to look for.
    pub names: DisplayNames,
    /// Directories already looked in.
    pub seen: Vec<DirId>,
}

/// One strategy.
pub(crate) trait Place: Sync {
    /// Which one.
    fn strategy(&self) -> Strategy;

    /// Its directory, when it is a directory strategy.
    fn directory(&self) -> Option<&directory::Directory> {
        None
    }

    /// Binds for real.
    fn claim(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Claimed>;

    /// What [`Place::claim`] would do now, leaving nothing behind.
    fn probe(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Probed>;

    /// Finds (and keeps) a directory where a stock compositor can bind its own socket. Only
    /// directory strategies can; the others say why not.
    fn prepare(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<PreparedDir> {
        let _ = cx;
        report.push(
            self.strategy(),
            "-",
            "select",
            Outcome::Skipped {
                reason: self.not_for_stock().into(),
            },
        );
        Step::Next
    }

    /// Why a stock compositor cannot use this strategy by itself.
    fn not_for_stock(&self) -> &'static str {
        "a stock compositor binds its own socket in a directory"
    }

    /// Every display of ours that a client can reach here, added to `found`; every place
    /// looked at is recorded.
    fn find(&self, finder: &mut Finder<'_>, attempts: &mut Report, found: &mut Vec<Found>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Strategy::DEFAULT_CHAIN {
            assert_eq!(s.name().parse::<Strategy>(), Ok(s));
        }
    }

    #[test]
    fn lists() {
        assert_eq!(
            Strategy::parse_list("abstract, runtime-dir"),
            Ok(vec![Strategy::Abstract, Strategy::RuntimeDir])
        );
        assert_eq!(Strategy::parse_list("tcp"), Err(StrategyError::Tcp));
        assert!(matches!(
            Strategy::parse_list("home,home"),
            Err(StrategyError::Duplicate(Strategy::Home))
        ));
        let e = Strategy::parse_list("tmp").unwrap_err().to_string();
        assert!(e.contains("private-tmp"), "{e}");
        assert!(Strategy::parse_list("").is_err());
    }

    #[test]
    fn default_chain_order_and_tcp_absent() {
        let names: Vec<_> = Strategy::DEFAULT_CHAIN.iter().map(|s| s.name()).collect();
        assert_eq!(
            names.join(","),
            "inherited,runtime-dir,user-run,private-tmp,private-run,private-shm,private-varrun,home,abstract"
        );
    }
}
