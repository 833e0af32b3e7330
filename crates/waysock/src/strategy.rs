//! The strategies of SPEC §2, their names, and the environment they read.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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
    pub fn directory_for(&self, s: Strategy) -> Result<PathBuf, String> {
        let private = format!("waysock-{}", self.uid);
        match s {
            Strategy::RuntimeDir => match &self.xdg_runtime_dir {
                None => Err("XDG_RUNTIME_DIR is not set".into()),
                Some(v) if v.is_empty() => Err("XDG_RUNTIME_DIR is set but empty".into()),
                Some(v) => Ok(PathBuf::from(v)),
            },
            Strategy::UserRun => Ok(self.roots.user_run.join(self.uid.to_string())),
            Strategy::PrivateTmp => Ok(self.roots.tmp.join(private)),
            Strategy::PrivateRun => Ok(self.roots.run.join(private)),
            Strategy::PrivateShm => Ok(self.roots.shm.join(private)),
            Strategy::PrivateVarrun => Ok(self.roots.varrun.join(private)),
            Strategy::Home => match &self.home {
                None => Err("HOME is not set".into()),
                Some(v) if v.is_empty() => Err("HOME is set but empty".into()),
                Some(v) => Ok(PathBuf::from(v).join(".local/run")),
            },
            Strategy::Inherited | Strategy::Abstract => {
                Err(format!("{s} does not use a directory"))
            }
        }
    }
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
