//! `waysock run -- COMPOSITOR`: bring up an unmodified compositor where the standard path
//! fails.
//!
//! How `run` learns the name the compositor really bound: a stock compositor picks its own
//! name (`wl_display_add_socket_auto`; weston 10 and sway 1.7 start at `wayland-1`), so `run`
//! watches the directory it chose. A display counts as the child's when
//! 1. `NAME.lock` is `flock`ed by the child or one of its descendants (read from
//!    `/proc/locks`, which names the holder's pid: a compositor starting at the same time in a
//!    shared runtime dir is not mistaken for ours), and
//! 2. a real Wayland roundtrip (`wl_display.sync` → `wl_callback.done`) succeeds on it.
//!
//! The lock holder alone tells a socket that was there before the child started from the
//! child's own: a live one's lock is held by another process, a stale one's by nobody. (An
//! earlier version also required a `(name, inode)` not seen before the start; but a compositor
//! that reclaims a stale socket of the same name, as libwayland does, may get the very same
//! inode back on ext4, and then `run` never saw the display come up.)
//!
//! We chose watching over a preload observer because it works for every libwayland compositor
//! with no code injected (static binaries and setuid wrappers included), costs one directory
//! listing per 25 ms while starting, and proves readiness end to end.
//!
//! When no directory works and the chain allows `abstract`, `run` preloads
//! `libwaysock_preload.so`: the compositor binds `$XDG_RUNTIME_DIR/wayland-N` and really gets
//! the abstract `wayland-UID-N`. Readiness is then the first abstract name whose listening
//! socket was created by the child or a descendant (`SO_PEERCRED` on a connection to it) and
//! that answers a roundtrip.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waysock::registry::{Registry, StateFd};
use waysock::{Binder, Endpoint, Environment, Record, Strategy};

use super::envfile::EnvFile;
use super::quote;

/// Arguments of `waysock run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Strategy order (comma-separated); default: WAYSOCK_STRATEGIES or the full chain.
    #[arg(long, value_name = "S,..", value_parser = super::parse_chain)]
    strategy: Option<super::Chain>,
    /// Wait for the compositor to bind exactly this name (pass the compositor its own flag
    /// for it, e.g. weston --socket=NAME).
    #[arg(long, value_name = "NAME")]
    display: Option<String>,
    /// Also write the export lines to FILE once the display is up: a fresh 0600 file of ours
    /// (an existing FILE that is not provably ours is refused), removed again when run ends.
    #[arg(long, value_name = "FILE")]
    print_env: Option<PathBuf>,
    /// Tighten a too-permissive runtime dir that you own to 0700 instead of refusing it.
    #[arg(long)]
    fix_perms: bool,
    /// Also accept clients of this uid on an abstract display (repeatable; default: only ours).
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uid: Vec<u32>,
    /// Seconds to wait for the compositor's socket before saying so (it keeps running).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    ready_timeout: u64,
    /// The compositor and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMPOSITOR"
    )]
    command: Vec<OsString>,
}

/// Runs the compositor; returns its exit status (128+signal if killed).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let chain = match super::strategies(args.strategy) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Watched from here on, before anything is created: a SIGTERM while the directory is being
    // prepared or the compositor started must not kill us with the default action and leave
    // what we made behind.
    let mut signals = watch_signals();
    let env = Environment::from_process();
    // Checked before anything starts: a refused FILE is a usage error, not a surprise later.
    let mut env_file = match args
        .print_env
        .as_deref()
        .map(|p| EnvFile::prepare(p, env.uid))
    {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return Ok(super::usage(format!("--print-env {e}"))),
    };
    let binder = Binder::new(env.clone())
        .strategies(chain.clone())
        .display(args.display.clone())
        .fix_perms(args.fix_perms);
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no compositor given"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    let place = match binder.prepare_directory() {
        Ok(p) => {
            let observe_only = p.strategy == Strategy::RuntimeDir;
            if !observe_only {
                cmd.env("XDG_RUNTIME_DIR", &p.dir);
            }
            Place::Dir {
                observe_only,
                prepared: p,
            }
        }
        Err(e) => {
            let abstract_ok = chain.contains(&Strategy::Abstract);
            let Some(report) = e.report().filter(|_| abstract_ok) else {
                eprintln!("waysock run: {e}");
                if let Some(r) = e.report() {
                    eprint!("{r}");
                }
                return Ok(ExitCode::from(if e.report().is_some() { 1 } else { 2 }));
            };
            let blockers = super::preload::blockers(program);
            let shim = super::preload::shim_path();
            if !blockers.is_empty() || shim.is_err() {
                eprintln!("waysock run: no directory works here, and the preload shim that would put {} on an abstract socket cannot be used:", program.to_string_lossy());
                for b in blockers.iter().chain(shim.as_ref().err()) {
                    eprintln!("  - {b}");
                }
                eprint!("{report}");
                return Ok(ExitCode::from(1));
            }
            let shim = shim.unwrap_or_default();
            if let Err(why) = abstract_names_free(env.uid, args.display.as_deref()) {
                eprintln!(
                    "waysock run: no directory works here, and {why}\n  fix: find the \
                     process that holds them (`ss -xlp | grep wayland-{}`) and stop it, or give \
                     run a writable directory (XDG_RUNTIME_DIR, /tmp, /dev/shm or $HOME)",
                    env.uid
                );
                eprint!("{report}");
                return Ok(ExitCode::from(1));
            }
            let dir = super::preload::runtime_dir_for_shim(&env);
            super::preload::apply(&mut cmd, &shim, &dir, &args.allow_uid);
            tracing::info!(shim = %shim.display(), dir = %dir.display(), "abstract via preload");
            Place::Abstract { dir }
        }
    };
    if !matches!(
        place,
        Place::Dir {
            observe_only: true,
            ..
        }
    ) {
        // A WAYLAND_DISPLAY or WAYLAND_SOCKET from the old environment would make weston or
        // wlroots start nested inside a display that is not there.
        cmd.env_remove("WAYLAND_DISPLAY");
        cmd.env_remove("WAYLAND_SOCKET");
    }
    let strategy = match &place {
        Place::Dir { prepared, .. } => prepared.strategy,
        Place::Abstract { .. } => Strategy::Abstract,
    };
    tracing::info!(%strategy, "chosen");
    let registry = Registry::for_uid(env.uid);
    let state_fd = match registry.usable() {
        Ok(()) => None,
        Err(e) => {
            match &e {
                // Someone else's file where ours should be: the user must hear of it.
                waysock::registry::RegistryError::Unsafe { .. } => tracing::warn!(
                    "registry {e}; the display is published to children only \
                     (WAYSOCK_STATE_FD)"
                ),
                _ => tracing::info!("registry unusable ({e}); children get WAYSOCK_STATE_FD"),
            }
            match StateFd::create() {
                Ok(fd) => {
                    cmd.env("WAYSOCK_STATE_FD", fd.raw().to_string());
                    Some(fd)
                }
                Err(e) => {
                    tracing::warn!("no registry and no memfd ({e}): the display is not published");
                    None
                }
            }
        }
    };
    waysock::terminate_with_parent(&mut cmd);
    if let Some(sig) = signals
        .as_mut()
        .and_then(|s| s.pending().next())
        .map(|o| o.signal)
    {
        // Asked to stop before the compositor even started: do not start it.
        eprintln!("waysock run: signal {sig} before the compositor started; not starting it");
        place.cleanup(None);
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "waysock run: cannot start {}: {e}",
                program.to_string_lossy()
            );
            place.cleanup(None);
            return Ok(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
            ));
        }
    };
    let child_pid = child.id();
    let child_gone = signals.map(|s| forward_signals(s, child_pid));

    let name = program.to_string_lossy().into_owned();
    let ready = wait_ready(
        &mut child,
        &place,
        env.uid,
        args.display.as_deref(),
        Duration::from_secs(args.ready_timeout),
    );
    let mut published: Option<(String, u32)> = None;
    match &ready {
        Ready::Up {
            display,
            holder,
            endpoint,
        } => {
            match Record::for_process(display, endpoint.clone(), *holder, Some(strategy)) {
                Some(rec) => {
                    let result = match &state_fd {
                        Some(fd) => fd.publish(&rec).map_err(|e| e.to_string()),
                        None => registry.publish(&rec).map_err(|e| e.to_string()),
                    };
                    match result {
                        Ok(()) => published = Some((display.clone(), *holder)),
                        Err(e) => tracing::warn!("could not publish {endpoint}: {e}"),
                    }
                }
                None => tracing::warn!("compositor pid {holder} vanished before publishing"),
            }
            let exports = match endpoint {
                Endpoint::Unix(socket) => format!(
                    "export XDG_RUNTIME_DIR={}\nexport WAYLAND_DISPLAY={}\n",
                    quote(socket.parent().unwrap_or(Path::new("/")).as_os_str()),
                    quote(socket.as_os_str())
                ),
                _ => format!(
                    "# {endpoint} has no path: start clients with `waysock exec -- CLIENT`\n"
                ),
            };
            let how = match &place {
                Place::Dir {
                    observe_only: true, ..
                } => ", observed",
                Place::Dir { .. } => "",
                Place::Abstract { .. } => ", through the preload shim",
            };
            eprintln!("waysock: {name} is up on {endpoint} ({strategy}{how})\n{exports}");
            if let Some(file) = &mut env_file {
                if let Err(e) = file.write(&exports) {
                    eprintln!("waysock run: --print-env {e}");
                }
            }
        }
        Ready::Exited => {}
        Ready::TimedOut => eprintln!(
            "waysock run: {name} did not bring up a Wayland socket ({}) within {} s; still \
             waiting for it to exit",
            place.describe(),
            args.ready_timeout
        ),
    }

    let status = child.wait()?;
    // The compositor is gone: from now on a signal ends `run` as if it were not caught.
    if let Some(gone) = &child_gone {
        gone.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    if matches!(ready, Ready::Exited) || !status.success() {
        eprintln!("waysock run: {name} exited: {}", describe(status));
    }
    if let Some((display, holder)) = &published {
        if state_fd.is_none() {
            if let Err(e) = registry.withdraw(*holder) {
                tracing::warn!("could not withdraw the registry record: {e}");
            }
        }
        place.cleanup(Some(display));
    } else {
        place.cleanup(None);
    }
    Ok(exit_code(status))
}

fn describe(status: ExitStatus) -> String {
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

/// Every abstract name the compositor would try (`wayland-UID-1..32`, or the one asked for)
/// is free or ours? `Err` names who holds them when none is left.
fn abstract_names_free(uid: u32, want: Option<&str>) -> Result<(), String> {
    use waysock::probe::AbstractName;
    let names: Vec<String> = match want {
        Some(w) => vec![w.to_string()],
        None => waysock::names::stock_names().collect(),
    };
    let mut holders: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for name in &names {
        let abs = waysock::abstract_display_name(uid, name);
        match waysock::probe::abstract_name(&abs) {
            AbstractName::Free => return Ok(()),
            AbstractName::Held { uid: Some(u) } if u == uid => holders
                .entry(format!("by us (uid {u}): our own displays"))
                .or_default(),
            AbstractName::Held { uid: Some(u) } => holders
                .entry(format!("by uid {u}, another user"))
                .or_default(),
            AbstractName::Held { uid: None } => holders
                .entry("by a socket that does not listen (its owner cannot be asked)".into())
                .or_default(),
        }
        .push(abs);
    }
    let range = match want {
        Some(_) => format!(
            "the abstract name {}",
            waysock::abstract_display_name(uid, &names[0])
        ),
        None => format!(
            "every abstract name the compositor would try (wayland-{uid}-1..{}) is taken",
            waysock::MAX_DISPLAY_NUMBER
        ),
    };
    let who: Vec<String> = holders
        .iter()
        .map(|(who, list)| format!("{} held {who}", count(list.len())))
        .collect();
    Err(format!("{range}: {}", who.join("; ")))
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 is".into()
    } else {
        format!("{n} are")
    }
}

/// Where the compositor will bind.
enum Place {
    /// A directory from the chain (its `XDG_RUNTIME_DIR`).
    Dir {
        prepared: waysock::Prepared,
        observe_only: bool,
    },
    /// Abstract sockets, through the preload shim; `dir` is the runtime dir it is told about.
    Abstract { dir: PathBuf },
}

impl Place {
    fn describe(&self) -> String {
        match self {
            Place::Dir { prepared, .. } => format!("watched {}", prepared.dir.display()),
            Place::Abstract { dir } => format!("abstract, mapped from {}", dir.display()),
        }
    }

    /// Removes what waysock created: in a directory it created, the compositor's leftovers if
    /// it died without cleaning up (only a dead socket, under its lock), then the directory
    /// if empty. Abstract sockets leave nothing behind.
    fn cleanup(&self, display: Option<&String>) {
        let Place::Dir { prepared, .. } = self else {
            return;
        };
        if prepared.created.is_empty() {
            return;
        }
        if let Some(name) = display {
            match waysock::remove_stale_display(&prepared.dir, name) {
                Ok(true) => tracing::info!("removed the dead {name} the compositor left behind"),
                Ok(false) => {}
                Err(e) => tracing::warn!("could not clean {name}: {e}"),
            }
        }
        for d in prepared.created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The names of the sockets in `dir` now.
fn sockets_in(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut names = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let (Ok(md), Some(n)) = (e.path().symlink_metadata(), e.file_name().to_str()) {
                if md.file_type().is_socket() {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

enum Ready {
    Up {
        display: String,
        holder: u32,
        endpoint: Endpoint,
    },
    Exited,
    TimedOut,
}

fn wait_ready(
    child: &mut Child,
    place: &Place,
    uid: u32,
    want: Option<&str>,
    limit: Duration,
) -> Ready {
    let start = Instant::now();
    let pid = child.id();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Ready::Exited;
        }
        if start.elapsed() > limit {
            return Ready::TimedOut;
        }
        let found = match place {
            Place::Dir { prepared, .. } => ready_in_dir(&prepared.dir, want, pid),
            Place::Abstract { .. } => ready_abstract(uid, want, pid),
        };
        if let Some(r) = found {
            return r;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A socket in `dir` whose lock the child (or a descendant) holds, answering a roundtrip.
/// (Holding the lock is what makes it the child's: no inode bookkeeping is needed, so a
/// reused inode number cannot fool it.)
fn ready_in_dir(dir: &Path, want: Option<&str>, pid: u32) -> Option<Ready> {
    for name in sockets_in(dir) {
        if want.is_some_and(|w| w != name) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(dir.join(format!("{name}.lock"))) else {
            continue;
        };
        let Some(holder) = waysock::probe::flock_holder(md.dev(), md.ino()) else {
            continue;
        };
        if !waysock::probe::is_same_or_descendant(holder, pid) {
            continue;
        }
        let Ok(mut s) = UnixStream::connect(dir.join(&name)) else {
            continue;
        };
        if waysock::probe::roundtrip(&mut s, Duration::from_secs(2)).is_ok() {
            let endpoint = Endpoint::Unix(dir.join(&name));
            return Some(Ready::Up {
                display: name,
                holder,
                endpoint,
            });
        }
    }
    None
}

/// An abstract `wayland-UID-N` whose listener the child (or a descendant) created.
fn ready_abstract(uid: u32, want: Option<&str>, pid: u32) -> Option<Ready> {
    let names: Vec<String> = match want {
        Some(w) => vec![w.to_string()],
        None => (0..=waysock::MAX_DISPLAY_NUMBER)
            .map(|n| format!("wayland-{n}"))
            .collect(),
    };
    for name in names {
        let endpoint = Endpoint::Abstract(waysock::abstract_display_name(uid, &name));
        let Ok(mut s) = waysock::discover::accepts(&endpoint) else {
            continue;
        };
        let Some(holder) = waysock::probe::server_pid(&s) else {
            continue;
        };
        if !waysock::probe::is_same_or_descendant(holder, pid) {
            continue;
        }
        if waysock::probe::roundtrip(&mut s, Duration::from_secs(2)).is_ok() {
            return Some(Ready::Up {
                display: name,
                holder,
                endpoint,
            });
        }
    }
    None
}

/// SIGINT, SIGTERM and SIGHUP, caught (and queued) instead of ending the process.
type Signals = signal_hook::iterator::SignalsInfo<signal_hook::iterator::exfiltrator::WithOrigin>;

fn watch_signals() -> Option<Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch signals ({e}); they will not be forwarded");
            None
        }
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
fn forward_signals(mut signals: Signals, child: u32) -> Arc<AtomicBool> {
    use rustix::process::{PidfdFlags, Signal};
    let gone = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&gone);
    let early: Vec<i32> = signals.pending().map(|o| o.signal).collect();
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
            if origin.process.is_none() {
                continue; // from the terminal: the child got it too
            }
            send(origin.signal);
        }
    });
    gone
}
