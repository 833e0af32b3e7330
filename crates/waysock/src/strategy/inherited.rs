//! Inherited listening sockets: systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`, first fd `SD_LISTEN_FDS_START = 3`), see `sd_listen_fds(3)`.
//!
//! Every fd is validated *before* it is adopted (an `AF_UNIX` stream socket in the listening
//! state, meant for our pid). wayland-client adopts `WAYLAND_SOCKET` first and asks later; we
//! do it in the other order so a wrong number never becomes an `OwnedFd` we would close.

use std::ffi::OsStr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Claimed, Ctx, Finder, Place, PreparedDir, Probed, Step};
use crate::discover::Found;
use crate::endpoint::Endpoint;
use crate::report::{Failure, Outcome, Report};
use crate::strategy::{Environment, Strategy};
use crate::sys;

/// `SD_LISTEN_FDS_START`.
pub const LISTEN_FDS_START: RawFd = 3;

/// More than this many inherited fds is treated as garbage.
const MAX_LISTEN_FDS: i32 = 1024;

/// The inherited fd is adopted at most once per process.
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// Which inherited fd to use, or why none.
#[derive(Debug)]
pub(crate) enum Selection {
    /// Not socket-activated, or not for us.
    NotApplicable(String),
    /// Activated, but the variables or the fd are wrong.
    Invalid(Failure),
    /// This fd passed validation.
    Fd(RawFd),
}

fn text(v: &Option<std::ffi::OsString>) -> Option<&str> {
    v.as_deref().and_then(OsStr::to_str)
}

/// Reads `LISTEN_*` and validates the chosen fd, without adopting anything.
pub(crate) fn select(env: &Environment) -> Selection {
    let Some(fds_raw) = env.listen_fds.as_ref() else {
        return Selection::NotApplicable("LISTEN_FDS is not set (not socket-activated)".into());
    };
    let bad = |cause: String| {
        Selection::Invalid(Failure::policy(
            None,
            cause,
            "fix the socket unit (ListenStream=/path/to/wayland-0, a Unix stream socket) or \
             unset LISTEN_FDS/LISTEN_PID"
                .into(),
        ))
    };
    let Some(n) = text(&env.listen_fds).and_then(|s| s.parse::<i32>().ok()) else {
        return bad(format!("LISTEN_FDS={fds_raw:?} is not a number"));
    };
    if !(0..=MAX_LISTEN_FDS).contains(&n) {
        return bad(format!(
            "LISTEN_FDS={n} is out of range 0..={MAX_LISTEN_FDS}"
        ));
    }
    match text(&env.listen_pid).map(str::parse::<u32>) {
        None => {
            return Selection::NotApplicable(
                "LISTEN_PID is not set: the LISTEN_FDS are not addressed to us".into(),
            )
        }
        Some(Err(_)) => return bad(format!("LISTEN_PID={:?} is not a pid", env.listen_pid)),
        Some(Ok(p)) if p != env.pid => {
            return Selection::NotApplicable(format!(
                "LISTEN_PID={p} is another process (we are {}): the fds were meant for it",
                env.pid
            ))
        }
        Some(Ok(_)) => {}
    }
    if n == 0 {
        return Selection::NotApplicable("LISTEN_FDS=0: no descriptors were passed".into());
    }
    let index = match text(&env.listen_fdnames) {
        Some(names) if !names.is_empty() => {
            let names: Vec<&str> = names.split(':').collect();
            if names.len() != n as usize {
                return bad(format!(
                    "LISTEN_FDNAMES names {} fds but LISTEN_FDS={n}",
                    names.len()
                ));
            }
            match names.iter().position(|x| *x == "wayland") {
                Some(i) => i as i32,
                None if n == 1 => 0,
                None => {
                    return bad(format!(
                        "{n} fds were passed and none is named \"wayland\" \
                         (LISTEN_FDNAMES={})",
                        names.join(":")
                    ))
                }
            }
        }
        _ if n == 1 => 0,
        _ => {
            return bad(format!(
                "{n} fds were passed without LISTEN_FDNAMES: cannot tell which one is the \
                 Wayland socket (name it with FileDescriptorName=wayland)"
            ))
        }
    };
    let fd = LISTEN_FDS_START + index;
    if let Err(problem) = sys::validate_unix_stream(fd, true) {
        return bad(format!("inherited fd {fd} {problem}"));
    }
    Selection::Fd(fd)
}

/// When `LISTEN_FDS` is addressed to us but will not be adopted (`waysock run` starts a stock
/// compositor instead), marks those fds close-on-exec so no child inherits them. Returns how
/// many there were.
pub fn listen_fds_close_on_exec(env: &Environment) -> Option<i32> {
    let pid: u32 = text(&env.listen_pid)?.parse().ok()?;
    let n: i32 = text(&env.listen_fds)?.parse().ok()?;
    if pid != env.pid || !(1..=MAX_LISTEN_FDS).contains(&n) {
        return None;
    }
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + n {
        sys::set_cloexec_raw(fd);
    }
    Some(n)
}

/// Adopts a validated fd, once per process.
pub(crate) fn adopt(fd: RawFd) -> Result<OwnedFd, String> {
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(format!(
            "fd {fd} from LISTEN_FDS was already adopted by this process"
        ));
    }
    sys::adopt_listening_fd(fd)
}

/// The inherited strategy.
pub(crate) struct Inherited;

/// The one instance the chain uses.
pub(crate) static INHERITED: Inherited = Inherited;

const CANDIDATE: &str = "LISTEN_FDS";

impl Inherited {
    /// The validated fd, or `None` after recording why not.
    fn selected(&self, env: &Environment, report: &mut Report) -> Option<RawFd> {
        let s = Strategy::Inherited;
        match select(env) {
            Selection::NotApplicable(reason) => {
                report.push(s, CANDIDATE, "select", Outcome::Skipped { reason });
                None
            }
            Selection::Invalid(f) => {
                report.push(s, CANDIDATE, "select", Outcome::Failed(f));
                None
            }
            Selection::Fd(fd) => Some(fd),
        }
    }

    /// The inherited socket's own address (what clients dial), read without owning the fd.
    fn addresses(fd: RawFd) -> (Endpoint, Option<String>) {
        let local = sys::local_endpoint_raw(fd);
        let note = local.as_ref().map(|e| format!("listening on {e}"));
        (local.unwrap_or(Endpoint::Fd(fd)), note)
    }
}

impl Place for Inherited {
    fn strategy(&self) -> Strategy {
        Strategy::Inherited
    }

    fn claim(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Claimed> {
        let Some(fd) = self.selected(cx.env, report) else {
            return Step::Next;
        };
        let candidate = format!("fd {fd}");
        let (client_endpoint, note) = Self::addresses(fd);
        let listener = match adopt(fd) {
            Ok(owned) => owned,
            Err(cause) => {
                let f = Failure::policy(
                    None,
                    cause,
                    "start waysock once per socket activation".into(),
                );
                report.push(Strategy::Inherited, &candidate, "adopt", Outcome::Failed(f));
                return Step::Next;
            }
        };
        let endpoint = Endpoint::Fd(fd);
        report.push(
            Strategy::Inherited,
            &candidate,
            "adopt",
            Outcome::Ok {
                endpoint: endpoint.clone(),
                note,
            },
        );
        Step::Won(Claimed {
            strategy: Strategy::Inherited,
            endpoint,
            client_endpoint,
            listener,
            lock: None,
            runtime_dir: None,
        })
    }

    fn probe(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Probed> {
        let Some(fd) = self.selected(cx.env, report) else {
            return Step::Next;
        };
        let (_, note) = Self::addresses(fd);
        let endpoint = Endpoint::Fd(fd);
        report.push(
            Strategy::Inherited,
            &format!("fd {fd}"),
            "adopt",
            Outcome::Ok {
                endpoint: endpoint.clone(),
                note,
            },
        );
        Step::Won(Probed {
            strategy: Strategy::Inherited,
            endpoint,
        })
    }

    fn prepare(&self, _cx: &mut Ctx<'_>, report: &mut Report) -> Step<PreparedDir> {
        report.push(
            Strategy::Inherited,
            CANDIDATE,
            "select",
            Outcome::Skipped {
                reason: self.not_for_stock().into(),
            },
        );
        Step::Next
    }

    fn not_for_stock(&self) -> &'static str {
        "a stock compositor binds its own socket; it cannot adopt LISTEN_FDS"
    }

    /// Listening sockets handed to a compositor are not for clients.
    fn find(&self, _finder: &mut Finder<'_>, _report: &mut Report, _found: &mut Vec<Found>) {}
}

/// What `LISTEN_*` means for a process that hands the socket on instead of adopting it
/// (`waysock run` starting a stock compositor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// Not socket-activated, or the fds are another process's (the reason, for logs).
    Absent(String),
    /// Addressed to us, but the variables or the fd are wrong (the cause and the fix).
    Invalid(String),
    /// This fd passed validation: a listening `AF_UNIX` stream socket meant for us.
    Listener {
        /// Its number (`3` + its index).
        fd: RawFd,
        /// Its own address (what clients dial), if it has one.
        endpoint: Option<Endpoint>,
    },
}

/// Reads `LISTEN_*` and validates the chosen fd, adopting nothing: the caller decides whether
/// it can hand the socket on, and must never ignore a [`Activation::Listener`] silently.
pub fn activation(env: &Environment) -> Activation {
    match select(env) {
        Selection::NotApplicable(why) => Activation::Absent(why),
        Selection::Invalid(f) => Activation::Invalid(format!("{} ({})", f.cause, f.remedy)),
        Selection::Fd(fd) => Activation::Listener {
            fd,
            endpoint: sys::local_endpoint_raw(fd),
        },
    }
}

/// For handing `keep` (from [`activation`]) on to a program we start: every other
/// `LISTEN_FDS` fd addressed to us is marked close-on-exec; `keep` stays as systemd passed it,
/// inheritable at its number. Returns how many were closed on exec.
pub fn pass_on_listen_fd(env: &Environment, keep: RawFd) -> i32 {
    let Some(n) = text(&env.listen_fds).and_then(|s| s.parse::<i32>().ok()) else {
        return 0;
    };
    let ours = text(&env.listen_pid).and_then(|p| p.parse::<u32>().ok()) == Some(env.pid);
    if !ours || !(1..=MAX_LISTEN_FDS).contains(&n) {
        return 0;
    }
    let others: Vec<RawFd> = (LISTEN_FDS_START..LISTEN_FDS_START + n)
        .filter(|fd| *fd != keep)
        .collect();
    for fd in &others {
        sys::set_cloexec_raw(*fd);
    }
    others.len() as i32
}
