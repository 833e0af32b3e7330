//! Starting the compositor, and passing our signals on to it.
//!
//! - SIGINT, SIGTERM and SIGHUP are caught from the start of `run` ([`watch_signals`]), before
//!   anything is created: one arriving while the directory is prepared does not kill us with
//!   the default action and leave what we made behind. One that arrives before the compositor
//!   starts means it is not started at all.
//! - After the spawn they are forwarded to the compositor through a pidfd
//!   ([`forward_signals`]); the ones from the terminal are not doubled.
//! - Once the compositor is reaped ([`Launched::wait`]), a signal ends `run` the default way.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use super::plan::Plan;

/// SIGINT, SIGTERM and SIGHUP, caught (and queued) instead of ending the process.
pub type Signals =
    signal_hook::iterator::SignalsInfo<signal_hook::iterator::exfiltrator::WithOrigin>;

/// Starts catching SIGINT, SIGTERM and SIGHUP (`None`, with a warning, if that fails).
pub fn watch_signals() -> Option<Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch signals ({e}); they will not be forwarded");
            None
        }
    }
}

/// The running compositor.
pub struct Launched {
    child: Child,
    /// Raised once the compositor is reaped: from then on a signal ends `run`.
    gone: Option<Arc<AtomicBool>>,
    /// The last signal that reached us while the compositor ran (0: none).
    signalled: Option<Arc<AtomicI32>>,
}

impl Launched {
    /// The compositor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Did a signal (ours to pass on, or the terminal's) arrive while it ran? Then its end
    /// was asked for, and its status is `run`'s whether or not the display came up.
    pub fn signalled(&self) -> bool {
        self.signal().is_some()
    }

    /// The last signal that reached us while it ran, if any.
    pub fn signal(&self) -> Option<i32> {
        self.signalled
            .as_ref()
            .map(|s| s.load(Ordering::SeqCst))
            .filter(|n| *n != 0)
    }

    /// Its stdout and stderr, when they were piped (`launch_with`).
    pub fn take_output(&mut self) -> (Option<ChildStdout>, Option<ChildStderr>) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Stops the compositor: SIGTERM, then SIGKILL if it is still there after `grace`. Its exit
    /// is looked for after 1 ms, then at intervals doubling up to 20 ms: a compositor that
    /// stops at once (weston takes a few ms) is seen gone at once, a slow one costs few looks.
    pub fn terminate(&mut self, grace: std::time::Duration) {
        use rustix::process::{kill_process, Pid, Signal};
        let Some(pid) = Pid::from_raw(self.child.id() as i32) else {
            return;
        };
        if self.has_exited() {
            return;
        }
        // Not reaped yet, so the pid is still the compositor's.
        let _ = kill_process(pid, Signal::TERM);
        let until = std::time::Instant::now() + grace;
        let mut pause = std::time::Duration::from_millis(1);
        while std::time::Instant::now() < until {
            if self.has_exited() {
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }

    /// Has the compositor exited (without reaping it)?
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// [`Launched::wait`], keeping the handle (to read [`Launched::signal`] afterwards).
    pub fn wait_in_place(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait()?;
        if let Some(gone) = &self.gone {
            gone.store(true, Ordering::SeqCst);
        }
        Ok(status)
    }

    /// Waits for the compositor to exit. Once it is reaped, a signal ends `run` as if it were
    /// not caught.
    pub fn wait(mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait()?;
        if let Some(gone) = &self.gone {
            gone.store(true, Ordering::SeqCst);
        }
        Ok(status)
    }
}

/// Starts what `plan` says, with `extra` variables besides its own, killed if we die
/// (`PR_SET_PDEATHSIG`), and forwards `signals` to it. `Err` is the exit code to return, the
/// reason already said: a signal came before it started (128+N), or it cannot be executed
/// (126) or found (127).
pub fn launch(
    plan: &Plan,
    extra: &[(&'static str, String)],
    signals: Option<Signals>,
) -> Result<Launched, ExitCode> {
    launch_with(plan, extra, signals, |_| {})
}

/// [`launch`], with a last say on the command (its stdio, more variables).
pub fn launch_with(
    plan: &Plan,
    extra: &[(&'static str, String)],
    signals: Option<Signals>,
    configure: impl FnOnce(&mut Command),
) -> Result<Launched, ExitCode> {
    let mut cmd = command(plan);
    cmd.envs(extra.iter().map(|(k, v)| (k, v)));
    configure(&mut cmd);
    spawn(cmd, &plan.name(), signals, "waysock run")
}

/// Spawns `cmd` (killed if we die) and forwards `signals` to it; `who` starts the messages.
pub fn spawn(
    mut cmd: Command,
    name: &str,
    mut signals: Option<Signals>,
    who: &str,
) -> Result<Launched, ExitCode> {
    waysock::terminate_with_parent(&mut cmd);
    if let Some(sig) = signals
        .as_mut()
        .and_then(|s| s.pending().next())
        .map(|o| o.signal)
    {
        // Asked to stop before the compositor even started: do not start it.
        eprintln!("{who}: signal {sig} before {name} started; not starting it");
        return Err(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{who}: cannot start {name}: {e}");
            return Err(ExitCode::from(if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            }));
        }
    };
    let (gone, signalled) = match signals.map(|s| forward_signals(s, child.id())) {
        Some((g, s)) => (Some(g), Some(s)),
        None => (None, None),
    };
    Ok(Launched {
        child,
        gone,
        signalled,
    })
}

/// The command `plan` describes.
fn command(plan: &Plan) -> Command {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    for (k, v) in &plan.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// How the compositor ended, for the "exited" line.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// The child's status as ours: its code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(s)) => ExitCode::from((128 + s).clamp(0, 255) as u8),
        _ => ExitCode::from(1),
    }
}

/// Forwards SIGINT, SIGTERM and SIGHUP sent to us by another process to the compositor, and
/// returns the flag to raise once it has been reaped.
///
/// - Signals from the terminal (Ctrl-C) already reach the whole foreground process group, so
///   those are not sent twice — except the ones caught before the compositor existed, which
///   it cannot have seen: those are all passed on first.
/// - The compositor is addressed through a pidfd taken right after spawn (before it can be
///   reaped), so a late signal never reaches a process that reused its pid.
/// - Once the flag is raised (the compositor is gone), a signal ends `run` the default way: a
///   cleanup that hangs can still be interrupted.
fn forward_signals(mut signals: Signals, child: u32) -> (Arc<AtomicBool>, Arc<AtomicI32>) {
    use rustix::process::{PidfdFlags, Signal};
    let gone = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&gone);
    let signalled = Arc::new(AtomicI32::new(0));
    let seen = Arc::clone(&signalled);
    let early: Vec<i32> = signals.pending().map(|o| o.signal).collect();
    if let Some(last) = early.last() {
        seen.store(*last, Ordering::SeqCst);
    }
    let pid = rustix::process::Pid::from_raw(child as i32);
    // pidfd_open needs Linux 5.3; before that the pid itself (the old race remains there).
    let pidfd = pid.and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok());
    std::thread::spawn(move || {
        let send = |raw: i32| {
            let Some(sig) = Signal::from_named_raw(raw) else {
                return;
            };
            tracing::info!(signal = raw, "forwarding to the compositor");
            let _ = match (&pidfd, pid) {
                (Some(fd), _) => rustix::process::pidfd_send_signal(fd, sig),
                (None, Some(p)) => rustix::process::kill_process(p, sig),
                (None, None) => Ok(()),
            };
        };
        for raw in early {
            send(raw);
        }
        for origin in signals.forever() {
            if flag.load(Ordering::SeqCst) {
                let _ = signal_hook::low_level::emulate_default_handler(origin.signal);
                continue;
            }
            seen.store(origin.signal, Ordering::SeqCst);
            if origin.process.is_none() {
                continue; // from the terminal: the child got it too
            }
            send(origin.signal);
        }
    });
    (gone, signalled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn statuses_become_ours() {
        let code = |raw: i32| exit_code(ExitStatus::from_raw(raw));
        assert_eq!(code(0), ExitCode::from(0));
        assert_eq!(code(3 << 8), ExitCode::from(3));
        assert_eq!(code(15), ExitCode::from(128 + 15), "killed by SIGTERM");
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "status 3");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }

    #[test]
    fn the_command_carries_the_plans_variables() {
        let plan = Plan {
            program: "weston".into(),
            args: vec![OsString::from("--idle-time=0")],
            strategy: waysock::Strategy::PrivateTmp,
            place: super::super::plan::Place::Dir {
                dir: "/tmp/w".into(),
                observe_only: false,
            },
            env: vec![
                ("XDG_RUNTIME_DIR", Some("/tmp/w".into())),
                ("WAYLAND_DISPLAY", None),
            ],
        };
        let cmd = command(&plan);
        assert_eq!(cmd.get_program(), "weston");
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["--idle-time=0"]);
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&("XDG_RUNTIME_DIR".as_ref(), Some("/tmp/w".as_ref()))));
        assert!(envs.contains(&("WAYLAND_DISPLAY".as_ref(), None)));
    }
}
