//! The strategy chain (SPEC §2): walk the strategies in order, record every attempt, stop at
//! the first that binds.

use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::classify;
use crate::endpoint::{unix_in, Endpoint};
use crate::errno::Errno;
use crate::inherited::{self, Selection};
use crate::lock::{self, Claim, DisplayLock, Peek};
use crate::report::{Choice, Failure, Outcome, Report};
use crate::runtime_dir::{self, Options, Policy, UsableDir};
use crate::strategy::{Environment, Strategy};
use crate::sys;

/// libwayland's display numbers: `wayland-0` ..= `wayland-32`.
pub const MAX_DISPLAY_NUMBER: u32 = 32;

/// Binds a Wayland listening socket through the strategy chain.
///
/// ```no_run
/// // A compositor built on wayland-server takes its clients from the bound listener:
/// // `display.handle().insert_client(stream, Arc::new(ClientState))` for each accepted stream.
/// let bound = waysock::Binder::from_env().bind()?;
/// eprintln!("listening on {} ({})", bound.endpoint(), bound.strategy());
/// loop {
///     // `accept` refuses peers of other uids on an abstract socket.
///     let stream = bound.accept()?;
///     // display.handle().insert_client(stream, Arc::new(ClientState))?;
///     # drop(stream);
/// }
/// // Dropping `bound` removes the socket and its lock file, and nothing else.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Binder {
    env: Environment,
    strategies: Vec<Strategy>,
    display: Option<String>,
    fix_perms: bool,
    allow_uids: Vec<u32>,
    for_stock: bool,
}

/// Why nothing was bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Every strategy was tried and none worked; the report says why each failed.
    #[error("no strategy could bind a Wayland socket ({} attempts; see the report)", .0.attempts.len())]
    Exhausted(Box<Report>),
    /// A failure that no other candidate can fix (out of descriptors or memory).
    #[error("stopped: {cause}")]
    Fatal {
        /// The decoded cause.
        cause: String,
        /// Everything tried up to the stop.
        report: Box<Report>,
    },
    /// `--display NAME` is not a plain file name.
    #[error("invalid {0}: use a plain name such as wayland-1")]
    BadDisplay(crate::names::BadName),
}

impl BindError {
    /// The report of every attempt, when the chain ran.
    pub fn report(&self) -> Option<&Report> {
        match self {
            BindError::Exhausted(r) => Some(r),
            BindError::Fatal { report, .. } => Some(report),
            BindError::BadDisplay(_) => None,
        }
    }
}

/// A bound, listening display socket and everything needed to clean it up.
#[derive(Debug)]
pub struct Bound {
    listener: UnixListener,
    allowed_uids: Vec<u32>,
    endpoint: Endpoint,
    client_endpoint: Endpoint,
    strategy: Strategy,
    runtime_dir: Option<PathBuf>,
    report: Report,
    // Dropped last: removes the socket file, then the lock file.
    lock: Option<DisplayLock>,
}

impl Bound {
    /// The listening socket (`CLOEXEC`, blocking; set it non-blocking for an event loop).
    ///
    /// Accepting from it directly skips the peer check of [`Bound::accept`]; on an abstract
    /// socket (which has no file permissions) check `SO_PEERCRED` yourself, or use `accept`.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts one client. On an abstract socket, which has no file permissions, peers whose
    /// uid (`SO_PEERCRED`) is neither ours nor allowed ([`Binder::allow_uid`]) are closed at
    /// once, logged, and the next connection is awaited.
    pub fn accept(&self) -> std::io::Result<UnixStream> {
        loop {
            let (stream, _) = self.listener.accept()?;
            if !matches!(self.endpoint, Endpoint::Abstract(_)) {
                return Ok(stream);
            }
            match sys::peer_uid(&stream) {
                Ok(uid) if self.allowed_uids.contains(&uid) => return Ok(stream),
                Ok(uid) => {
                    tracing::warn!(endpoint = %self.endpoint, uid, "refused a client of another uid")
                }
                Err(e) => tracing::warn!(endpoint = %self.endpoint, "refused a client: {e}"),
            }
        }
    }

    /// Where the display is, as the strategy produced it (`fd:3` for an inherited socket).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Where clients connect: the socket's own address (for an inherited fd, its bound address).
    pub fn client_endpoint(&self) -> &Endpoint {
        &self.client_endpoint
    }

    /// The strategy that won.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The directory holding the socket, for filesystem strategies: what a client needs as
    /// `XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> Option<&Path> {
        self.runtime_dir.as_deref()
    }

    /// The display name (`wayland-0`), for filesystem strategies.
    pub fn display_name(&self) -> Option<&str> {
        self.lock.as_ref().map(DisplayLock::name)
    }

    /// Every attempt made on the way.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Splits into the listener and the guard that keeps the name (drop it to clean up).
    pub fn into_parts(self) -> (UnixListener, Option<DisplayLock>, Report) {
        (self.listener, self.lock, self.report)
    }
}

/// Probe or bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bind for real and stop at the first success.
    Bind,
    /// Find out what would happen, for every strategy, leaving nothing behind.
    Probe,
    /// Find the first directory a stock compositor can bind in, and keep it (for `run`).
    Prepare,
}

/// A strategy that worked.
struct Won {
    strategy: Strategy,
    endpoint: Endpoint,
    client_endpoint: Endpoint,
    listener: Option<OwnedFd>,
    lock: Option<DisplayLock>,
    runtime_dir: Option<PathBuf>,
    created: Vec<PathBuf>,
}

/// A directory where a stock compositor can bind, chosen by the chain (for `waysock run`).
#[derive(Debug)]
pub struct Prepared {
    /// The strategy that found it.
    pub strategy: Strategy,
    /// The directory: the compositor's `XDG_RUNTIME_DIR`.
    pub dir: PathBuf,
    /// Directories the chain created for it (to remove again, if empty, at the end).
    pub created: Vec<PathBuf>,
    /// Every attempt made on the way.
    pub report: Report,
}

/// Per-strategy result inside the walk.
enum Step {
    Won(Won),
    Next,
    Stop(String),
}

impl Binder {
    /// A binder for this process's environment and `WAYSOCK_STRATEGIES` (or the default
    /// chain when it is unset or invalid; use [`Binder::strategies`] to handle errors).
    pub fn from_env() -> Self {
        let strategies = Environment::strategies_from_process()
            .unwrap_or_else(|_| Strategy::DEFAULT_CHAIN.to_vec());
        Binder::new(Environment::from_process()).strategies(strategies)
    }

    /// A binder for an explicit environment, with the default chain.
    pub fn new(env: Environment) -> Self {
        Binder {
            env,
            strategies: Strategy::DEFAULT_CHAIN.to_vec(),
            display: None,
            fix_perms: false,
            allow_uids: Vec::new(),
            for_stock: false,
        }
    }

    /// Diagnose (or bind) as a stock compositor started by `waysock run` would: only the names
    /// it tries itself (`wayland-1` to `wayland-32`) count as free.
    pub fn for_stock_compositor(mut self, yes: bool) -> Self {
        self.for_stock = yes;
        self
    }

    /// Also accept clients of `uid` on an abstract socket (our own uid always is).
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allow_uids.push(uid);
        self
    }

    /// Use these strategies, in this order.
    pub fn strategies(mut self, strategies: Vec<Strategy>) -> Self {
        self.strategies = strategies;
        self
    }

    /// Use exactly this display name instead of the first free `wayland-N`.
    pub fn display(mut self, name: Option<String>) -> Self {
        self.display = name;
        self
    }

    /// Tighten a too-permissive runtime dir we own to 0700 instead of refusing it.
    pub fn fix_perms(mut self, yes: bool) -> Self {
        self.fix_perms = yes;
        self
    }

    /// The environment the chain reads.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// Walks the chain and binds at the first strategy that works.
    pub fn bind(&self) -> Result<Bound, BindError> {
        self.check_display()?;
        let mut report = Report::new(self.env.uid);
        match self.walk(Mode::Bind, &mut report) {
            Ok(Some(won)) => {
                report.choice = Some(Choice {
                    strategy: won.strategy,
                    endpoint: won.endpoint.clone(),
                });
                let listener = match won.listener {
                    Some(fd) => UnixListener::from(fd),
                    None => unreachable_listener(),
                };
                let mut allowed_uids = self.allow_uids.clone();
                allowed_uids.push(self.env.uid);
                Ok(Bound {
                    listener,
                    allowed_uids,
                    endpoint: won.endpoint,
                    client_endpoint: won.client_endpoint,
                    strategy: won.strategy,
                    runtime_dir: won.runtime_dir,
                    report,
                    lock: won.lock,
                })
            }
            Ok(None) => Err(BindError::Exhausted(Box::new(report))),
            Err(cause) => Err(BindError::Fatal {
                cause,
                report: Box::new(report),
            }),
        }
    }

    /// Finds the first directory where a stock compositor can bind its own socket: a
    /// directory strategy that passes every check and has a free name. The directory is kept
    /// (created if needed); no socket or lock is made.
    pub fn prepare_directory(&self) -> Result<Prepared, BindError> {
        self.check_display()?;
        let mut report = Report::new(self.env.uid);
        match self.walk(Mode::Prepare, &mut report) {
            Ok(Some(won)) => {
                report.choice = Some(Choice {
                    strategy: won.strategy,
                    endpoint: won.endpoint.clone(),
                });
                Ok(Prepared {
                    strategy: won.strategy,
                    dir: won.runtime_dir.unwrap_or_default(),
                    created: won.created,
                    report,
                })
            }
            Ok(None) => Err(BindError::Exhausted(Box::new(report))),
            Err(cause) => Err(BindError::Fatal {
                cause,
                report: Box::new(report),
            }),
        }
    }

    /// Tries every strategy in probe mode: binds and releases at once, creates no lock file,
    /// reclaims nothing, and removes any directory it had to create. The report's choice is
    /// what [`Binder::bind`] would pick now.
    pub fn diagnose(&self) -> Result<Report, BindError> {
        self.check_display()?;
        let mut report = Report::new(self.env.uid);
        // A fatal error still yields a report: that is what doctor prints.
        let _ = self.walk(Mode::Probe, &mut report);
        report.choice = report.attempts.iter().find_map(|a| match &a.outcome {
            Outcome::Ok { endpoint, .. } => Some(Choice {
                strategy: a.strategy,
                endpoint: endpoint.clone(),
            }),
            _ => None,
        });
        Ok(report)
    }

    fn check_display(&self) -> Result<(), BindError> {
        match &self.display {
            Some(d) => crate::names::check_plain(d).map_err(BindError::BadDisplay),
            None => Ok(()),
        }
    }

    /// The names to try, in order. A directory prepared for a stock compositor needs a free
    /// name among the ones it will try itself (weston and sway never try `wayland-0`).
    fn names(&self, mode: Mode) -> Vec<String> {
        use crate::names::DisplayNames;
        let default = if mode == Mode::Prepare || self.for_stock {
            DisplayNames::STOCK
        } else {
            DisplayNames::ALL
        };
        DisplayNames::asked(self.display.as_deref(), default)
            .iter()
            .collect()
    }

    fn walk(&self, mode: Mode, report: &mut Report) -> Result<Option<Won>, String> {
        let mut seen: Vec<(Strategy, (u64, u64, std::ffi::OsString))> = Vec::new();
        let mut first: Option<Won> = None;
        for &strategy in &self.strategies {
            let step = match strategy {
                Strategy::Inherited => self.try_inherited(mode, report),
                Strategy::Abstract => self.try_abstract(mode, report),
                dir => self.try_directory(dir, mode, report, &mut seen),
            };
            match step {
                Step::Won(won) if mode != Mode::Probe => return Ok(Some(won)),
                Step::Won(won) => {
                    first.get_or_insert(won);
                }
                Step::Next => {}
                Step::Stop(cause) => return Err(cause),
            }
        }
        Ok(first)
    }

    fn try_inherited(&self, mode: Mode, report: &mut Report) -> Step {
        let s = Strategy::Inherited;
        let candidate = "LISTEN_FDS";
        if mode == Mode::Prepare {
            let reason =
                "a stock compositor binds its own socket; it cannot adopt LISTEN_FDS".into();
            report.push(s, candidate, "select", Outcome::Skipped { reason });
            return Step::Next;
        }
        match inherited::select(&self.env) {
            Selection::NotApplicable(reason) => {
                report.push(s, candidate, "select", Outcome::Skipped { reason });
                Step::Next
            }
            Selection::Invalid(f) => {
                report.push(s, candidate, "select", Outcome::Failed(f));
                Step::Next
            }
            Selection::Fd(fd) => {
                let candidate = format!("fd {fd}");
                // Validated but still borrowed: read its address without owning it.
                let local = sys::local_endpoint_raw(fd);
                let client_endpoint = local.clone().unwrap_or(Endpoint::Fd(fd));
                let note = local.map(|e| format!("listening on {e}"));
                let listener = if mode == Mode::Bind {
                    match inherited::adopt(fd) {
                        Ok(owned) => Some(owned),
                        Err(cause) => {
                            let f = Failure::policy(
                                None,
                                cause,
                                "start waysock once per socket activation".into(),
                            );
                            report.push(s, &candidate, "adopt", Outcome::Failed(f));
                            return Step::Next;
                        }
                    }
                } else {
                    None
                };
                report.push(
                    s,
                    &candidate,
                    "adopt",
                    Outcome::Ok {
                        endpoint: Endpoint::Fd(fd),
                        note,
                    },
                );
                Step::Won(Won {
                    strategy: s,
                    endpoint: Endpoint::Fd(fd),
                    client_endpoint,
                    listener,
                    lock: None,
                    runtime_dir: None,
                    created: Vec::new(),
                })
            }
        }
    }

    fn abstract_name(&self, name: &str) -> String {
        crate::endpoint::abstract_display_name(self.env.uid, name)
    }

    fn try_abstract(&self, mode: Mode, report: &mut Report) -> Step {
        let s = Strategy::Abstract;
        if mode == Mode::Prepare {
            let reason = "a stock compositor binds in a directory; for an abstract socket \
                          `waysock run` preloads its shim instead"
                .to_string();
            let candidate = format!("abstract:wayland-{}-N", self.env.uid);
            report.push(s, &candidate, "select", Outcome::Skipped { reason });
            return Step::Next;
        }
        for name in self.names(mode) {
            let abs = self.abstract_name(&name);
            let endpoint = Endpoint::Abstract(abs.clone());
            let candidate = endpoint.to_string();
            match sys::unix_listen(sys::UnixAddr::Abstract(abs.as_bytes())) {
                Ok(fd) => {
                    report.push(
                        s,
                        &candidate,
                        "bind",
                        Outcome::Ok {
                            endpoint: endpoint.clone(),
                            note: (mode == Mode::Probe)
                                .then(|| "bound and released again".to_string()),
                        },
                    );
                    return Step::Won(Won {
                        strategy: s,
                        client_endpoint: endpoint.clone(),
                        endpoint,
                        // In probe mode the socket closes here and the name is free again:
                        // abstract sockets leave nothing behind.
                        listener: (mode == Mode::Bind).then_some(fd),
                        lock: None,
                        runtime_dir: None,
                        created: Vec::new(),
                    });
                }
                Err(e) if e.errno == Errno::ADDRINUSE => report.push(
                    s,
                    &candidate,
                    "bind",
                    Outcome::Skipped {
                        reason: format!("{candidate} is in use (another server holds it)"),
                    },
                ),
                Err(e) => {
                    let mut f = classify::failure(e, Path::new(&candidate), self.env.uid);
                    f.path = None;
                    if !f.fatal {
                        f.cause = format!(
                            "{} on {candidate}: {} — abstract sockets are unavailable here \
                             (sandbox or seccomp filter)",
                            e.syscall,
                            e.errno.message()
                        );
                        f.remedy = "allow AF_UNIX sockets in the sandbox, or use a writable \
                                    directory"
                            .into();
                    }
                    let fatal = f.fatal;
                    let cause = f.cause.clone();
                    report.push(s, &candidate, "bind", Outcome::Failed(f));
                    return if fatal { Step::Stop(cause) } else { Step::Next };
                }
            }
        }
        let f = Failure {
            syscall: Some("bind"),
            errno: Some(Errno::ADDRINUSE),
            path: None,
            cause: "every abstract name tried is in use".into(),
            remedy: "stop stale compositors (`waysock ls`), or pass --display NAME".into(),
            security: false,
            fatal: false,
        };
        report.push(
            s,
            &format!("abstract:{}", self.abstract_name("wayland-*")),
            "bind",
            Outcome::Failed(f),
        );
        Step::Next
    }

    fn try_directory(
        &self,
        s: Strategy,
        mode: Mode,
        report: &mut Report,
        seen: &mut Vec<(Strategy, (u64, u64, std::ffi::OsString))>,
    ) -> Step {
        let path = match self.env.directory_for(s) {
            Ok(p) => p,
            Err(reason) => {
                report.push(s, "-", "select", Outcome::Skipped { reason });
                return Step::Next;
            }
        };
        let candidate = path.display().to_string();
        if let Some(id) = runtime_dir::identity(&path) {
            if let Some((earlier, _)) = seen.iter().find(|(_, x)| *x == id) {
                report.push(
                    s,
                    &candidate,
                    "select",
                    Outcome::Skipped {
                        reason: format!("same directory as {earlier}"),
                    },
                );
                return Step::Next;
            }
            seen.push((s, id));
        }
        let names = self.names(mode);
        let longest = names
            .iter()
            .max_by_key(|n| n.len())
            .cloned()
            .unwrap_or_default();
        let policy = match s {
            Strategy::RuntimeDir | Strategy::UserRun => Policy::Runtime,
            _ => Policy::Private,
        };
        let opts = Options {
            uid: self.env.uid,
            longest_name: &longest,
            create: true,
            create_ancestors: usize::from(s == Strategy::Home),
            fix_perms: self.fix_perms && mode != Mode::Probe,
            probe_socket: mode != Mode::Bind,
        };
        let mut dir = match runtime_dir::open_usable(&path, policy, opts) {
            Ok(d) => d,
            Err(df) => {
                let fatal = df.failure.fatal;
                let cause = df.failure.cause.clone();
                report.push(s, &candidate, df.step, Outcome::Failed(df.failure));
                return if fatal { Step::Stop(cause) } else { Step::Next };
            }
        };
        let mut step = self.claim_in(s, mode, &mut dir, &names, report);
        match (&mut step, mode) {
            (Step::Won(won), Mode::Prepare | Mode::Bind) => {
                won.created = std::mem::take(&mut dir.created)
            }
            _ => dir.remove_created(),
        }
        step
    }

    fn claim_in(
        &self,
        s: Strategy,
        mode: Mode,
        dir: &mut UsableDir,
        names: &[String],
        report: &mut Report,
    ) -> Step {
        let uid = self.env.uid;
        let dir_notes = if dir.notes.is_empty() {
            None
        } else if mode == Mode::Probe {
            Some(format!("{}; probe: removed again", dir.notes.join(", ")))
        } else {
            Some(dir.notes.join(", "))
        };
        for name in names {
            let endpoint = match unix_in(&dir.path, name) {
                Ok(e) => e,
                Err(e) => {
                    let f = Failure::policy(
                        Some(dir.path.join(name)),
                        e.to_string(),
                        "use a shorter directory".into(),
                    );
                    report.push(
                        s,
                        &dir.path.display().to_string(),
                        "verify",
                        Outcome::Failed(f),
                    );
                    return Step::Next;
                }
            };
            let candidate = endpoint.to_string();
            let join = |a: Option<String>, b: Option<String>| match (a, b) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            };
            let (listener, lock, note) = if mode == Mode::Bind {
                match lock::claim(dir, name) {
                    Claim::Bound {
                        listener,
                        lock,
                        note,
                    } => (Some(listener), Some(lock), note),
                    Claim::InUse(reason) => {
                        report.push(s, &candidate, "lock", Outcome::Skipped { reason });
                        continue;
                    }
                    Claim::Blocked { reason, security } => {
                        report.push(
                            s,
                            &candidate,
                            "lock",
                            Outcome::Failed(blocked(&dir.path, name, reason, security)),
                        );
                        continue;
                    }
                    Claim::Failed { step, error } => {
                        let f = classify::failure(error, &dir.path.join(name), uid);
                        let (fatal, cause) = (f.fatal, f.cause.clone());
                        report.push(s, &candidate, step, Outcome::Failed(f));
                        return if fatal { Step::Stop(cause) } else { Step::Next };
                    }
                }
            } else {
                match lock::peek(dir, name) {
                    Ok(Peek::Free) => (None, None, None),
                    Ok(Peek::Stale) => (
                        None,
                        None,
                        Some(format!(
                            "{name} is stale (lock free, nothing listening): bind would reclaim it"
                        )),
                    ),
                    Ok(Peek::InUse(reason)) => {
                        report.push(s, &candidate, "lock", Outcome::Skipped { reason });
                        continue;
                    }
                    Ok(Peek::Blocked { reason, security }) => {
                        report.push(
                            s,
                            &candidate,
                            "lock",
                            Outcome::Failed(blocked(&dir.path, name, reason, security)),
                        );
                        continue;
                    }
                    Err(error) => {
                        let f = classify::failure(error, &dir.path.join(name), uid);
                        let (fatal, cause) = (f.fatal, f.cause.clone());
                        report.push(s, &candidate, "lock", Outcome::Failed(f));
                        return if fatal { Step::Stop(cause) } else { Step::Next };
                    }
                }
            };
            report.push(
                s,
                &candidate,
                "bind",
                Outcome::Ok {
                    endpoint: endpoint.clone(),
                    note: join(dir_notes.clone(), note),
                },
            );
            return Step::Won(Won {
                strategy: s,
                client_endpoint: endpoint.clone(),
                endpoint,
                listener,
                lock,
                runtime_dir: Some(dir.path.clone()),
                created: Vec::new(),
            });
        }
        let f = Failure {
            syscall: None,
            errno: Some(Errno::ADDRINUSE),
            path: Some(dir.path.clone()),
            cause: format!(
                "no free display name in {} ({} tried)",
                dir.path.display(),
                names.len()
            ),
            remedy: "stop stale compositors (`waysock ls`), or pass --display NAME".into(),
            security: false,
            fatal: false,
        };
        report.push(
            s,
            &dir.path.display().to_string(),
            "lock",
            Outcome::Failed(f),
        );
        Step::Next
    }
}

fn blocked(dir: &Path, name: &str, reason: String, security: bool) -> Failure {
    let f = Failure::policy(
        Some(dir.join(name)),
        reason,
        format!(
            "inspect it (`ls -l {}`) and remove it if it is yours; waysock uses the next name",
            dir.join(name).display()
        ),
    );
    if security {
        f.security()
    } else {
        f
    }
}

/// Only reachable if a strategy reported a bind-mode win without a listener: a bug.
fn unreachable_listener() -> UnixListener {
    panic!("waysock: a strategy won in bind mode without a listener (bug)")
}
