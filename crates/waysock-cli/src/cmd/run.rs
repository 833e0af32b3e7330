//! `waysock run -- COMPOSITOR`: bring up an unmodified compositor where the standard path
//! fails.
//!
//! How `run` learns the name the compositor really bound: a stock compositor picks its own
//! name (`wl_display_add_socket_auto`; weston 10 and sway 1.7 start at `wayland-1`), so `run`
//! watches the directory it chose. A display counts as the child's when
//! 1. `NAME.lock` is `flock`ed by the child or one of its descendants (read from
//!    `/proc/locks`, which names the holder's pid: a compositor starting at the same time in a
//!    shared runtime dir is not mistaken for ours), and
//! 2. `NAME` is a socket that was not there before the child started, and
//! 3. a real Wayland roundtrip (`wl_display.sync` → `wl_callback.done`) succeeds on it.
//!
//! We chose watching over a preload observer because it works for every libwayland compositor
//! with no code injected (static binaries and setuid wrappers included), costs one directory
//! listing per 25 ms while starting, and proves readiness end to end.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use waysock::registry::{Registry, StateFd};
use waysock::{Binder, Endpoint, Environment, Record, Strategy};

use super::quote;

/// Arguments of `waysock run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Strategy order (comma-separated); default: WAYSOCK_STRATEGIES or the full chain.
    #[arg(long, value_name = "S,..")]
    strategy: Option<String>,
    /// Wait for the compositor to bind exactly this name (pass the compositor its own flag
    /// for it, e.g. weston --socket=NAME).
    #[arg(long, value_name = "NAME")]
    display: Option<String>,
    /// Also write the export lines to FILE (created 0600) once the display is up.
    #[arg(long, value_name = "FILE")]
    print_env: Option<PathBuf>,
    /// Tighten a too-permissive runtime dir that you own to 0700 instead of refusing it.
    #[arg(long)]
    fix_perms: bool,
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
    let chain = match super::strategies(args.strategy.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let env = Environment::from_process();
    let binder = Binder::new(env.clone())
        .strategies(chain)
        .display(args.display.clone())
        .fix_perms(args.fix_perms);
    let prepared = match binder.prepare_directory() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("waysock run: {e}");
            if let Some(r) = e.report() {
                eprint!("{r}");
            }
            return Ok(ExitCode::from(if e.report().is_some() { 1 } else { 2 }));
        }
    };
    let dir = prepared.dir.clone();
    let observe_only = prepared.strategy == Strategy::RuntimeDir;
    tracing::info!(dir = %dir.display(), strategy = %prepared.strategy, observe_only, "chosen");

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no compositor given"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !observe_only {
        cmd.env("XDG_RUNTIME_DIR", &dir);
        // A WAYLAND_DISPLAY or WAYLAND_SOCKET from the old environment would make weston or
        // wlroots start nested inside a display that is not there.
        cmd.env_remove("WAYLAND_DISPLAY");
        cmd.env_remove("WAYLAND_SOCKET");
    }
    let registry = Registry::for_uid(env.uid);
    let state_fd = match registry.usable() {
        Ok(()) => None,
        Err(e) => {
            tracing::info!("registry unusable ({e}); children get WAYSOCK_STATE_FD");
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

    let before = sockets_in(&dir);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "waysock run: cannot start {}: {e}",
                program.to_string_lossy()
            );
            cleanup(&prepared.created, None, &dir);
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
    let forwarder = forward_signals(child_pid);

    let name = program.to_string_lossy().into_owned();
    let ready = wait_ready(
        &mut child,
        &dir,
        &before,
        args.display.as_deref(),
        Duration::from_secs(args.ready_timeout),
    );
    let mut published: Option<(String, u32)> = None;
    match &ready {
        Ready::Up { display, holder } => {
            let socket = dir.join(display);
            let endpoint = Endpoint::Unix(socket.clone());
            match Record::for_process(display, endpoint.clone(), *holder, Some(prepared.strategy)) {
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
            let exports = format!(
                "export XDG_RUNTIME_DIR={}\nexport WAYLAND_DISPLAY={}\n",
                quote(dir.as_os_str()),
                quote(socket.as_os_str())
            );
            eprintln!(
                "waysock: {name} is up on {endpoint} ({}{})\n{exports}",
                prepared.strategy,
                if observe_only { ", observed" } else { "" }
            );
            if let Some(file) = &args.print_env {
                if let Err(e) = write_env_file(file, &exports) {
                    eprintln!("waysock run: cannot write {}: {e}", file.display());
                }
            }
        }
        Ready::Exited => {}
        Ready::TimedOut => eprintln!(
            "waysock run: {name} did not bring up a Wayland socket in {}/ within {} s; still \
             waiting for it to exit",
            dir.display(),
            args.ready_timeout
        ),
    }

    let status = child.wait()?;
    drop(forwarder);
    if matches!(ready, Ready::Exited) || !status.success() {
        eprintln!("waysock run: {name} exited: {}", describe(status));
    }
    if let Some((display, holder)) = &published {
        if state_fd.is_none() {
            if let Err(e) = registry.withdraw(*holder) {
                tracing::warn!("could not withdraw the registry record: {e}");
            }
        }
        cleanup(&prepared.created, Some(display), &dir);
    } else {
        cleanup(&prepared.created, None, &dir);
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
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(s)) => ExitCode::from((128 + s).clamp(0, 255) as u8),
        _ => ExitCode::from(1),
    }
}

fn write_env_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Removes what waysock created: in a directory it created, the compositor's leftovers if it
/// died without cleaning up (only a dead socket, under its lock), then the directory if empty.
fn cleanup(created: &[PathBuf], display: Option<&String>, dir: &Path) {
    if created.is_empty() {
        return;
    }
    if let Some(name) = display {
        match waysock::remove_stale_display(dir, name) {
            Ok(true) => tracing::info!("removed the dead {name} the compositor left behind"),
            Ok(false) => {}
            Err(e) => tracing::warn!("could not clean {name}: {} {}", e.syscall, e.errno),
        }
    }
    for d in created.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// `(name, inode)` of every socket in `dir` now.
fn sockets_in(dir: &Path) -> HashSet<(String, u64)> {
    use std::os::unix::fs::FileTypeExt;
    let mut set = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let (Ok(md), Some(n)) = (e.path().symlink_metadata(), e.file_name().to_str()) {
                if md.file_type().is_socket() {
                    set.insert((n.to_string(), md.ino()));
                }
            }
        }
    }
    set
}

enum Ready {
    Up { display: String, holder: u32 },
    Exited,
    TimedOut,
}

fn wait_ready(
    child: &mut Child,
    dir: &Path,
    before: &HashSet<(String, u64)>,
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
        for (name, ino) in sockets_in(dir) {
            if before.contains(&(name.clone(), ino)) || want.is_some_and(|w| w != name) {
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
                return Ready::Up {
                    display: name,
                    holder,
                };
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Forwards SIGINT, SIGTERM and SIGHUP sent to us by another process to the compositor.
/// Signals from the terminal (Ctrl-C) already reach the whole foreground process group, so
/// those are not sent twice.
fn forward_signals(child: u32) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::iterator::SignalsInfo;
    let mut signals = match SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch signals ({e}); they will not be forwarded");
            return None;
        }
    };
    let handle = signals.handle();
    let pid = rustix::process::Pid::from_raw(child as i32)?;
    std::thread::spawn(move || {
        for origin in signals.forever() {
            if origin.process.is_none() {
                continue; // from the terminal: the child got it too
            }
            let Some(sig) = rustix::process::Signal::from_named_raw(origin.signal) else {
                continue;
            };
            tracing::info!(signal = origin.signal, "forwarding to the compositor");
            let _ = rustix::process::kill_process(pid, sig);
        }
    });
    Some(handle)
}
