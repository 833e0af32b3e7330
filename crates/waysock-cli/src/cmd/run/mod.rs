//! `waysock run -- COMPOSITOR`: bring up an unmodified compositor where the standard path
//! fails.
//!
//! `run` is a pipeline; each step is one module:
//! 1. [`plan`]: what to start, where, with which variables (pure: arguments, environment and
//!    the library's prepared directory in, a [`plan::Plan`] or a refusal out);
//! 2. [`launch`]: start it, with our signals caught from the start and forwarded to it;
//! 3. [`ready`]: wait until it answers a Wayland roundtrip, in its directory or on abstract
//!    sockets;
//! 4. [`publish`]: the registry (or `WAYSOCK_STATE_FD`) record, the export lines,
//!    `--print-env`;
//! 5. wait for it to exit; its status is ours.
//!
//! What `run` creates on the way is owned by one [`cleanup::Cleanup`] guard, whose `Drop`
//! removes it on every way out.
//!
//! How `run` learns the name the compositor really bound: a stock compositor picks its own
//! name (`wl_display_add_socket_auto`; weston 10 and sway 1.7 start at `wayland-1`), so `run`
//! watches the directory it chose, and takes a display for the compositor's when the
//! compositor (or a descendant) created its listening socket (`SO_PEERCRED` on a connection)
//! or, for a socket handed down to it, holds its lock, and it answers a roundtrip ([`ready`]).
//!
//! Either tells a socket that was there before the child started from the child's own: a live
//! one was made by, and its lock is held by, another process; a stale one refuses. (An
//! earlier version also required a `(name, inode)` not seen before the start; but a compositor
//! that reclaims a stale socket of the same name, as libwayland does, may get the very same
//! inode back on ext4, and then `run` never saw the display come up.)
//!
//! We chose watching over a preload observer because it works for every libwayland compositor
//! with no code injected (static binaries and setuid wrappers included), costs one directory
//! listing per 5 ms while starting, and proves readiness end to end.
//!
//! When no directory works and the chain allows `abstract`, `run` preloads
//! `libwaysock_preload.so`: the compositor binds `$XDG_RUNTIME_DIR/wayland-N` and really gets
//! the abstract `wayland-UID-N`.

pub(crate) mod cleanup;
pub(crate) mod launch;
mod notify;
pub(crate) mod plan;
pub(crate) mod publish;
pub(crate) mod ready;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use waysock::{Binder, Environment};

use super::envfile::EnvFile;
use cleanup::Cleanup;
pub use launch::exit_code;
use plan::Directory;
use publish::Publisher;
use ready::Ready;

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
    /// Seconds to wait for the compositor's display to answer; after that it is stopped and
    /// run exits 125.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    ready_timeout: u64,
    /// Write the display's endpoint as one line to this inherited descriptor once it answers,
    /// then close it (EOF without a line: it never came up).
    #[arg(long, value_name = "N")]
    ready_fd: Option<i32>,
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
    let signals = launch::watch_signals();
    let env = Environment::from_process();
    // Socket activation: a listener meant for us is served on by the compositor, or refused.
    let handed = match plan::handed_on(waysock::activation(&env), &chain) {
        Ok(h) => h,
        Err(refused) => {
            eprint!("{}", refused.text);
            return Ok(ExitCode::from(refused.code));
        }
    };
    if let Some(h) = &handed {
        waysock::pass_on_listen_fd(&env, h.fd);
    }
    // Checked before anything starts: a refused FILE is a usage error, not a surprise later.
    let env_file = match args
        .print_env
        .as_deref()
        .map(|p| EnvFile::prepare(p, env.uid))
    {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return Ok(super::usage(format!("--print-env {e}"))),
    };
    let mut notifier = match notify::Notifier::new(args.ready_fd) {
        Ok(n) => n,
        Err(e) => return Ok(super::usage(e)),
    };
    // From here on, whatever run creates is removed again when this guard goes.
    let mut cleanup = Cleanup::new(env_file);
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no compositor given"))?;

    // 1. Plan (a socket handed down needs no directory from the chain).
    let input = plan::Input {
        program,
        args: rest,
        chain: &chain,
        uid: env.uid,
        display: args.display.as_deref(),
        allow_uid: &args.allow_uid,
        ld_preload: std::env::var_os("LD_PRELOAD"),
    };
    let planned = match &handed {
        Some(h) => plan::activated(input, h, &Machine(&env)),
        None => {
            let binder = Binder::new(env.clone())
                .strategies(chain.clone())
                .display(args.display.clone())
                .fix_perms(args.fix_perms);
            plan_in_chain(&env, &binder, input, &mut cleanup)
        }
    };
    let mut plan = match planned {
        Ok(p) => p,
        Err(refused) => {
            eprint!("{}", refused.text);
            return Ok(ExitCode::from(refused.code));
        }
    };
    if let plan::Place::Abstract { dir, shim } = &plan.place {
        tracing::info!(shim = %shim.display(), dir = %dir.display(), "abstract via preload");
    }
    tracing::info!(strategy = %plan.strategy, "chosen");
    // Readiness is run's to report: the compositor must not notify a supervisor itself.
    plan.env.push(("NOTIFY_SOCKET", None));
    notifier.status(&format!("starting {} ({})", plan.name(), plan.strategy));
    let publisher = Publisher::prepare(env.uid);

    // 2. Launch.
    let mut child = match launch::launch(&plan, &publisher.child_env(), signals) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };

    // 3. Wait until it answers; 4. publish.
    let timeout = Duration::from_secs(args.ready_timeout);
    let ready = ready::wait(
        &mut child,
        &plan.place,
        env.uid,
        handed
            .as_ref()
            .map(|h| h.name.as_str())
            .or(args.display.as_deref()),
        timeout,
    );
    match &ready {
        Ready::Up(up) => {
            cleanup.display(&up.display);
            if let Some(record) = publisher.publish(up, plan.strategy) {
                cleanup.published(record);
            }
            publish::announce(&plan, up, cleanup.env_file());
            notifier.ready(
                &up.endpoint,
                &format!(
                    "{} is up on {} ({})",
                    plan.name(),
                    up.endpoint,
                    plan.strategy
                ),
            );
        }
        Ready::Exited => {}
        Ready::TimedOut => {
            eprintln!(
                "waysock run: {} did not bring up a Wayland socket ({}) within {} s; stopping it",
                plan.name(),
                plan.place.describe(),
                args.ready_timeout
            );
            child.terminate(Duration::from_secs(5));
        }
    }

    // 5. Its end is ours.
    let asked_to_stop = child.signalled();
    let status = child.wait()?;
    if matches!(ready, Ready::Exited) || !status.success() {
        eprintln!(
            "waysock run: {} exited: {}",
            plan.name(),
            launch::describe(status)
        );
    }
    notifier.stopping(&format!(
        "{} exited: {}",
        plan.name(),
        launch::describe(status)
    ));
    drop(cleanup);
    // A compositor that never answered failed: its own failure status is passed on, and a
    // success (or the stop after --ready-timeout) becomes 125 — unless we were asked to stop
    // it before it got there.
    let never_ready = match ready {
        Ready::Up(_) => false,
        Ready::TimedOut => true,
        Ready::Exited => status.success(),
    };
    if never_ready && !asked_to_stop {
        eprintln!(
            "waysock run: {} never answered on its display: exit {NEVER_READY}",
            plan.name()
        );
        return Ok(ExitCode::from(NEVER_READY));
    }
    Ok(exit_code(status))
}

/// `run`'s status when the compositor started but its display never answered (it exited 0
/// first, or did not answer within `--ready-timeout`): like `env`/`timeout`, 125 is the tool
/// failing, not the command.
pub const NEVER_READY: u8 = 125;

/// Step 1 where the chain places the compositor (shared with `headless`): the library prepares
/// a directory, which `cleanup` owns from then on, and the plan is made from it.
pub(crate) fn plan_in_chain(
    env: &Environment,
    binder: &Binder,
    input: plan::Input<'_>,
    cleanup: &mut Cleanup,
) -> Result<plan::Plan, plan::Refusal> {
    let mut prepared = binder.prepare_directory();
    if let Ok(p) = &mut prepared {
        cleanup.created(p.dir.clone(), p.created.clone());
        cleanup.hold(p.hold.take());
    }
    plan::plan(input, Directory::from_library(&prepared), &Machine(env))
}

/// The machine as [`plan::plan`] asks about it.
struct Machine<'a>(&'a Environment);

impl plan::Probe for Machine<'_> {
    fn blockers(&self, program: &OsStr) -> Vec<String> {
        super::preload::blockers(program)
    }

    fn shim(&self) -> Result<PathBuf, String> {
        super::preload::shim_path()
    }

    fn abstract_names_free(&self, want: Option<&str>) -> Result<(), String> {
        ready::abstract_names_free(self.0.uid, want)
    }

    fn runtime_dir_for_shim(&self) -> PathBuf {
        super::preload::runtime_dir_for_shim(self.0)
    }

    fn activated_dir(&self, dir: &std::path::Path, name: &str) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        if !waysock::discover::usable_runtime_dir(dir, self.0.uid) {
            return Err(format!(
                "its directory {} cannot be the compositor's runtime dir: it must be a \
                 directory of ours (uid {}) that no one else can enter (0700)",
                dir.display(),
                self.0.uid
            ));
        }
        let lock = dir.join(format!("{name}.lock"));
        let holder = std::fs::symlink_metadata(&lock)
            .ok()
            .and_then(|m| waysock::probe::flock_holder(m.dev(), m.ino()));
        match holder {
            None => Ok(()),
            Some(pid) => Err(format!(
                "{} is held by pid {pid}: another compositor serves that name",
                lock.display()
            )),
        }
    }
}
