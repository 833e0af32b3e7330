//! What every attempt found: the `Report` that `doctor` prints, `run` shows on failure, and
//! both serialize as JSON.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::errno::Errno;
use crate::strategy::Strategy;

/// Where an attempt looked: a strategy of the chain or, for a client, one of the places
/// discovery reads before the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A strategy of the chain (binding, and discovery in the chain's places).
    Strategy(Strategy),
    /// `WAYLAND_SOCKET`.
    WaylandSocket,
    /// `WAYLAND_DISPLAY`.
    WaylandDisplay,
    /// `--display`.
    DisplayFlag,
    /// `--endpoint`.
    EndpointFlag,
    /// `WAYSOCK_STATE_FD`.
    StateFd,
    /// The per-user registry.
    Registry,
}

impl Source {
    /// Its name in tables and JSON (a strategy's own name for strategies).
    pub fn name(self) -> &'static str {
        match self {
            Source::Strategy(s) => s.name(),
            Source::WaylandSocket => "WAYLAND_SOCKET",
            Source::WaylandDisplay => "WAYLAND_DISPLAY",
            Source::DisplayFlag => "--display",
            Source::EndpointFlag => "--endpoint",
            Source::StateFd => "WAYSOCK_STATE_FD",
            Source::Registry => "registry",
        }
    }

    /// The strategy, when it is one.
    pub fn strategy(self) -> Option<Strategy> {
        match self {
            Source::Strategy(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Strategy> for Source {
    fn from(s: Strategy) -> Self {
        Source::Strategy(s)
    }
}

impl PartialEq<Strategy> for Source {
    fn eq(&self, other: &Strategy) -> bool {
        *self == Source::Strategy(*other)
    }
}

impl PartialOrd<Strategy> for Source {
    /// Chain order, for strategies; nothing else is ordered against one.
    fn partial_cmp(&self, other: &Strategy) -> Option<std::cmp::Ordering> {
        self.strategy().map(|s| s.cmp(other))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One step of one strategy on one candidate, and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Where it looked: the strategy that made the attempt (or, for a client, the variable or
    /// registry it read).
    pub strategy: Source,
    /// What was tried: a directory, an abstract name, `LISTEN_FDS`.
    pub candidate: String,
    /// The phase that decided the outcome: `open`, `create`, `verify`, `probe`, `lock`,
    /// `bind`, `listen`, `adopt`, `select`.
    pub step: &'static str,
    /// Success, skip or failure.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How an attempt ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// The strategy works here; `endpoint` is (or would be) the display.
    Ok {
        /// The endpoint bound (or, when probing, the one `bind` would take).
        endpoint: Endpoint,
        /// Anything worth knowing, e.g. "reclaimed a stale socket".
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Not applicable here, or this name was taken; not an error.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Tried and failed.
    Failed(Failure),
}

impl Attempt {
    /// Why it did not work, in one line (the skip's reason or the failure's cause); empty for
    /// a success.
    pub fn why(&self) -> &str {
        match &self.outcome {
            Outcome::Ok { .. } => "",
            Outcome::Skipped { reason } => reason,
            Outcome::Failed(f) => &f.cause,
        }
    }
}

/// A decoded failure: the call, its errno, what it means here, and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The failing C call, if a syscall failed (`None` for a policy check such as ownership).
    pub syscall: Option<&'static str>,
    /// Its errno.
    pub errno: Option<Errno>,
    /// The path the call was about.
    pub path: Option<PathBuf>,
    /// One line: why this candidate cannot be used.
    pub cause: String,
    /// One line: what the user can do about it.
    pub remedy: String,
    /// A security refusal (something planted, too permissive): never used, whatever happens.
    pub security: bool,
    /// The chain stops here: no other candidate can help.
    #[serde(skip)]
    pub fatal: bool,
}

impl Failure {
    /// A failure that is a policy decision, not a syscall error.
    pub fn policy(path: Option<PathBuf>, cause: String, remedy: String) -> Self {
        Failure {
            syscall: None,
            errno: None,
            path,
            cause,
            remedy,
            security: false,
            fatal: false,
        }
    }

    /// Marks this failure as a security refusal.
    pub fn security(mut self) -> Self {
        self.security = true;
        self
    }
}

/// The chosen strategy and endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// Which strategy won.
    pub strategy: Strategy,
    /// Where the display is (or would be).
    pub endpoint: Endpoint,
}

/// Every attempt of one run of the chain, and its result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The effective uid the chain ran as.
    pub uid: u32,
    /// The first strategy that worked, if any.
    pub choice: Option<Choice>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

impl Report {
    pub(crate) fn new(uid: u32) -> Self {
        Report {
            uid,
            choice: None,
            attempts: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        strategy: impl Into<Source>,
        candidate: &str,
        step: &'static str,
        outcome: Outcome,
    ) {
        let strategy = strategy.into();
        match &outcome {
            Outcome::Ok { endpoint, .. } => {
                tracing::debug!(%strategy, candidate, step, %endpoint, "ok")
            }
            Outcome::Skipped { reason } => {
                tracing::debug!(%strategy, candidate, step, reason, "skipped")
            }
            Outcome::Failed(f) if f.security => {
                tracing::warn!(%strategy, candidate, step, cause = %f.cause, "security: refused")
            }
            Outcome::Failed(f) => tracing::debug!(
                %strategy, candidate, step,
                syscall = f.syscall.unwrap_or("-"),
                errno = ?f.errno,
                cause = %f.cause,
                "failed"
            ),
        }
        self.attempts.push(Attempt {
            strategy,
            candidate: candidate.to_string(),
            step,
            outcome,
        });
    }

    /// The failures flagged as security refusals.
    pub fn security_warnings(&self) -> impl Iterator<Item = (&Attempt, &Failure)> {
        self.attempts.iter().filter_map(|a| match &a.outcome {
            Outcome::Failed(f) if f.security => Some((a, f)),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    /// A table for humans: one line per attempt, and for failures the errno, cause and fix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const INDENT: &str = "                                   ";
        for a in &self.attempts {
            let (verdict, head, detail) = match &a.outcome {
                Outcome::Ok { endpoint, note } => (
                    "ok",
                    endpoint.to_string(),
                    note.as_ref().map(|n| format!("({n})")),
                ),
                Outcome::Skipped { reason } => {
                    if a.candidate == "-" {
                        ("skipped", reason.clone(), None)
                    } else {
                        ("skipped", shorten(&a.candidate, 60), Some(reason.clone()))
                    }
                }
                Outcome::Failed(fl) => {
                    let call = match (fl.syscall, fl.errno) {
                        (Some(s), Some(e)) => format!("{s}: {} — ", e.name()),
                        (None, Some(e)) => format!("{} — ", e.name()),
                        _ => String::new(),
                    };
                    let tag = if fl.security { "SECURITY: " } else { "" };
                    (
                        "FAILED",
                        shorten(&a.candidate, 60),
                        Some(format!(
                            "{tag}{call}{}\n{INDENT}fix: {}",
                            fl.cause, fl.remedy
                        )),
                    )
                }
            };
            writeln!(
                f,
                "  {:<15} {:<7} {:<8} {head}",
                a.strategy, a.step, verdict
            )?;
            if let Some(d) = detail {
                writeln!(f, "{INDENT}{d}")?;
            }
        }
        match &self.choice {
            Some(c) => writeln!(f, "choice: {} → {}", c.strategy, c.endpoint),
            None => writeln!(
                f,
                "choice: none — no strategy can bind a Wayland socket here"
            ),
        }
    }
}

/// `text` cut to `max` characters with an ellipsis, for table columns.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}
