//! The strategy chain (SPEC §2): walk the strategies in order, record every attempt, stop at
//! the first that binds.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::endpoint::Endpoint;
use crate::lock::DisplayLock;
use crate::names::DisplayNames;
use crate::report::{Choice, Report};
pub use crate::runtime_dir::DirHold;
use crate::strategy::{Claimed, Ctx, Environment, PreparedDir, Probed, Step, Strategy};

/// libwayland's display numbers: `wayland-0` ..= `wayland-32`.
pub use crate::names::MAX_DISPLAY_NUMBER;

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
    uid: u32,
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
            match crate::peer::check(&stream, self.uid, &self.allowed_uids) {
                Ok(_) => return Ok(stream),
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

/// A directory where a stock compositor can bind, chosen by the chain (for `waysock run`).
#[derive(Debug)]
pub struct Prepared {
    /// The strategy that found it.
    pub strategy: Strategy,
    /// The directory: the compositor's `XDG_RUNTIME_DIR`.
    pub dir: PathBuf,
    /// Directories the chain created for it (to remove again, if empty, at the end).
    pub created: Vec<PathBuf>,
    /// A share in the directory, held while the compositor runs: the last holder removes a
    /// private dir when it is empty ([`DirHold::release`]).
    pub hold: Option<DirHold>,
    /// Every attempt made on the way.
    pub report: Report,
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
        let won = self.first(false, &mut report, |place, cx, report| {
            place.claim(cx, report)
        });
        let claimed = Self::settle(won, report)?;
        let (
            Claimed {
                strategy,
                endpoint,
                client_endpoint,
                listener,
                lock,
                runtime_dir,
            },
            report,
        ) = claimed;
        Ok(Bound {
            listener: UnixListener::from(listener),
            uid: self.env.uid,
            allowed_uids: self.allow_uids.clone(),
            endpoint,
            client_endpoint,
            strategy,
            runtime_dir,
            report,
            lock,
        })
    }

    /// Finds the first directory where a stock compositor can bind its own socket: a
    /// directory strategy that passes every check and has a free name among the ones it tries
    /// (`wayland-1..32`, or `--display`). The directory is kept (created if needed); no socket
    /// or lock is made.
    pub fn prepare_directory(&self) -> Result<Prepared, BindError> {
        self.check_display()?;
        let mut report = Report::new(self.env.uid);
        let won = self.first(true, &mut report, |place, cx, report| {
            place.prepare(cx, report)
        });
        let (
            PreparedDir {
                strategy,
                dir,
                created,
                hold,
                ..
            },
            report,
        ) = Self::settle(won, report)?;
        Ok(Prepared {
            strategy,
            dir,
            created,
            hold,
            report,
        })
    }

    /// Tries every strategy in probe mode: binds and releases at once, creates no lock file,
    /// reclaims nothing, and removes any directory it had to create. The report's choice is
    /// what [`Binder::bind`] would pick now.
    pub fn diagnose(&self) -> Result<Report, BindError> {
        self.check_display()?;
        let mut report = Report::new(self.env.uid);
        let mut cx = self.context(self.for_stock);
        for &s in &self.strategies {
            let step: Step<Probed> = s.place().probe(&mut cx, &mut report);
            match step {
                Step::Won(p) if report.choice.is_none() => {
                    report.choice = Some(Choice {
                        strategy: p.strategy,
                        endpoint: p.endpoint,
                    })
                }
                // A fatal error still yields a report: that is what doctor prints.
                Step::Stop(_) => break,
                _ => {}
            }
        }
        Ok(report)
    }

    fn check_display(&self) -> Result<(), BindError> {
        match &self.display {
            Some(d) => crate::names::check_plain(d).map_err(BindError::BadDisplay),
            None => Ok(()),
        }
    }

    /// One walk's shared state. A stock compositor tries `wayland-1..32` itself (weston and
    /// sway never `wayland-0`): a directory prepared for one needs a free name among those.
    fn context(&self, stock: bool) -> Ctx<'_> {
        let default = if stock || self.for_stock {
            DisplayNames::STOCK
        } else {
            DisplayNames::ALL
        };
        Ctx {
            env: &self.env,
            names: DisplayNames::asked(self.display.as_deref(), default),
            fix_perms: self.fix_perms,
            seen: Vec::new(),
        }
    }

    /// The first strategy, in order, whose `step` wins.
    fn first<T>(
        &self,
        stock: bool,
        report: &mut Report,
        mut step: impl FnMut(&dyn crate::strategy::Place, &mut Ctx<'_>, &mut Report) -> Step<T>,
    ) -> Result<Option<T>, String> {
        let mut cx = self.context(stock);
        for &s in &self.strategies {
            match step(s.place(), &mut cx, report) {
                Step::Won(v) => return Ok(Some(v)),
                Step::Next => {}
                Step::Stop(cause) => return Err(cause),
            }
        }
        Ok(None)
    }

    /// The walk's outcome as the API's result, recording the choice.
    fn settle<T: Won>(
        won: Result<Option<T>, String>,
        mut report: Report,
    ) -> Result<(T, Report), BindError> {
        match won {
            Ok(Some(v)) => {
                report.choice = Some(v.choice());
                Ok((v, report))
            }
            Ok(None) => Err(BindError::Exhausted(Box::new(report))),
            Err(cause) => Err(BindError::Fatal {
                cause,
                report: Box::new(report),
            }),
        }
    }
}

/// What a winning strategy reports as the choice.
trait Won {
    fn choice(&self) -> Choice;
}

impl Won for Claimed {
    fn choice(&self) -> Choice {
        Choice {
            strategy: self.strategy,
            endpoint: self.endpoint.clone(),
        }
    }
}

impl Won for PreparedDir {
    fn choice(&self) -> Choice {
        Choice {
            strategy: self.strategy,
            endpoint: self.endpoint.clone(),
        }
    }
}
