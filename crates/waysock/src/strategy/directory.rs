//! The directory strategies: one type, many places. Each place is a [`Directory`]: where it
//! is ([`Directory::locate`]), whose it is meant to be ([`Policy`]: the user's runtime dir, or
//! a private fallback of ours), and how many missing ancestors it may create (`$HOME/.local`).
//!
//! Every mode checks the directory the same way first ([`crate::runtime_dir::open_usable`]:
//! trusted from `/` down, ours, private, writable, a socket fits `sun_path`), then goes through
//! the display names under libwayland's lock protocol ([`crate::lock`]): `claim` binds,
//! `probe` and `prepare` only look.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::{Claimed, Ctx, Environment, Finder, Place, PreparedDir, Probed, Step};
use crate::classify;
use crate::discover::{accepts, Found};
use crate::endpoint::{unix_in, Endpoint, SUN_PATH_MAX};
use crate::errno::Errno;
use crate::lock::{self, Claim, DisplayLock, Peek};
use crate::report::{Failure, Outcome, Report};
use crate::runtime_dir::{self, Options, Policy, UsableDir};
use crate::strategy::Strategy;
use crate::sys;

/// One directory strategy.
pub(crate) struct Directory {
    strategy: Strategy,
    policy: Policy,
    create_ancestors: usize,
    locate: fn(&Environment) -> Result<PathBuf, String>,
}

/// `$XDG_RUNTIME_DIR`.
pub(crate) static RUNTIME_DIR: Directory = Directory {
    strategy: Strategy::RuntimeDir,
    policy: Policy::Runtime,
    create_ancestors: 0,
    locate: |env| match &env.xdg_runtime_dir {
        None => Err("XDG_RUNTIME_DIR is not set".into()),
        Some(v) if v.is_empty() => Err("XDG_RUNTIME_DIR is set but empty".into()),
        Some(v) => Ok(PathBuf::from(v)),
    },
};

/// `/run/user/$UID`.
pub(crate) static USER_RUN: Directory = Directory {
    strategy: Strategy::UserRun,
    policy: Policy::Runtime,
    create_ancestors: 0,
    locate: |env| Ok(env.roots.user_run.join(env.uid.to_string())),
};

/// `/tmp/waysock-$UID`.
pub(crate) static PRIVATE_TMP: Directory = Directory {
    strategy: Strategy::PrivateTmp,
    policy: Policy::Private,
    create_ancestors: 0,
    locate: |env| Ok(env.roots.tmp.join(private_name(env))),
};

/// `/run/waysock-$UID`.
pub(crate) static PRIVATE_RUN: Directory = Directory {
    strategy: Strategy::PrivateRun,
    policy: Policy::Private,
    create_ancestors: 0,
    locate: |env| Ok(env.roots.run.join(private_name(env))),
};

/// `/dev/shm/waysock-$UID`.
pub(crate) static PRIVATE_SHM: Directory = Directory {
    strategy: Strategy::PrivateShm,
    policy: Policy::Private,
    create_ancestors: 0,
    locate: |env| Ok(env.roots.shm.join(private_name(env))),
};

/// `/var/run/waysock-$UID`.
pub(crate) static PRIVATE_VARRUN: Directory = Directory {
    strategy: Strategy::PrivateVarrun,
    policy: Policy::Private,
    create_ancestors: 0,
    locate: |env| Ok(env.roots.varrun.join(private_name(env))),
};

/// `$HOME/.local/run` (creating `.local` too).
pub(crate) static HOME: Directory = Directory {
    strategy: Strategy::Home,
    policy: Policy::Private,
    create_ancestors: 1,
    locate: |env| match &env.home {
        None => Err("HOME is not set".into()),
        Some(v) if v.is_empty() => Err("HOME is set but empty".into()),
        Some(v) => Ok(PathBuf::from(v).join(".local/run")),
    },
};

fn private_name(env: &Environment) -> String {
    format!("waysock-{}", env.uid)
}

/// What the per-name step of a walk through one directory decided.
enum Name<T> {
    /// Use this name.
    Take(T, Option<String>),
    /// Taken or blocked (recorded); the next name.
    Next,
    /// This directory cannot work (recorded).
    Give(Step<()>),
}

/// How a directory is opened for each mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Claim,
    Probe,
    Prepare,
}

impl Directory {
    /// Where this strategy's directory is (before any check), or why it has none.
    pub(crate) fn locate(&self, env: &Environment) -> Result<PathBuf, String> {
        (self.locate)(env)
    }

    /// Locates, de-duplicates and checks the directory; `None` after recording why not.
    fn open(&self, cx: &mut Ctx<'_>, report: &mut Report, how: Use) -> Result<UsableDir, Step<()>> {
        let s = self.strategy;
        let path = match self.locate(cx.env) {
            Ok(p) => p,
            Err(reason) => {
                report.push(s, "-", "select", Outcome::Skipped { reason });
                return Err(Step::Next);
            }
        };
        let candidate = path.display().to_string();
        if let Some(id) = runtime_dir::identity(&path) {
            if let Some((earlier, _)) = cx.seen.iter().find(|(_, x)| *x == id) {
                let reason = format!("same directory as {earlier}");
                report.push(s, &candidate, "select", Outcome::Skipped { reason });
                return Err(Step::Next);
            }
            cx.seen.push((s, id));
        }
        let longest = cx.names.longest();
        let opts = Options {
            uid: cx.env.uid,
            longest_name: &longest,
            create: true,
            create_ancestors: self.create_ancestors,
            fix_perms: cx.fix_perms && how != Use::Probe,
            // Binding for real proves the same, and its errno is judged alike.
            probe_socket: how != Use::Claim,
        };
        runtime_dir::open_usable(&path, self.policy, opts).map_err(|df| {
            let (fatal, cause) = (df.failure.fatal, df.failure.cause.clone());
            report.push(s, &candidate, df.step, Outcome::Failed(df.failure));
            if fatal {
                Step::Stop(cause)
            } else {
                Step::Next
            }
        })
    }

    /// Goes through the names in `dir` until `each` takes one; records the success, or that
    /// the directory is full.
    fn walk_names<T>(
        &self,
        cx: &Ctx<'_>,
        dir: &UsableDir,
        report: &mut Report,
        probing: bool,
        mut each: impl FnMut(&str, &str, &mut Report) -> Name<T>,
    ) -> Step<(T, Endpoint)> {
        let s = self.strategy;
        let dir_notes = match (dir.notes.is_empty(), probing) {
            (true, _) => None,
            (false, true) => Some(format!("{}; probe: removed again", dir.notes.join(", "))),
            (false, false) => Some(dir.notes.join(", ")),
        };
        for name in cx.names.iter() {
            let endpoint = match unix_in(&dir.path, &name) {
                Ok(e) => e,
                Err(e) => {
                    let f = Failure::policy(
                        Some(dir.path.join(&name)),
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
            match each(&name, &candidate, report) {
                Name::Take(value, note) => {
                    let note = match (dir_notes.clone(), note) {
                        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                        (a, b) => a.or(b),
                    };
                    report.push(
                        s,
                        &candidate,
                        "bind",
                        Outcome::Ok {
                            endpoint: endpoint.clone(),
                            note,
                        },
                    );
                    return Step::Won((value, endpoint));
                }
                Name::Next => continue,
                Name::Give(Step::Stop(cause)) => return Step::Stop(cause),
                Name::Give(_) => return Step::Next,
            }
        }
        let f = Failure {
            syscall: None,
            errno: Some(Errno::ADDRINUSE),
            path: Some(dir.path.clone()),
            cause: format!(
                "no free display name in {} ({} tried: {})",
                dir.path.display(),
                cx.names.len(),
                cx.names.describe()
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

    /// The per-name step of probe and prepare: look under the lock protocol, take nothing.
    fn peek(
        &self,
        dir: &UsableDir,
        uid: u32,
        name: &str,
        candidate: &str,
        report: &mut Report,
    ) -> Name<()> {
        let s = self.strategy;
        match lock::peek(dir, name) {
            Ok(Peek::Free) => Name::Take((), None),
            Ok(Peek::Stale) => Name::Take(
                (),
                Some(format!(
                    "{name} is stale (lock free, nothing listening): bind would reclaim it"
                )),
            ),
            Ok(Peek::InUse(reason)) => {
                report.push(s, candidate, "lock", Outcome::Skipped { reason });
                Name::Next
            }
            Ok(Peek::Blocked { reason, security }) => {
                let f = blocked(&dir.path, name, reason, security);
                report.push(s, candidate, "lock", Outcome::Failed(f));
                Name::Next
            }
            Err(error) => {
                let f = classify::failure(error, &dir.path.join(name), uid);
                let (fatal, cause) = (f.fatal, f.cause.clone());
                report.push(s, candidate, "lock", Outcome::Failed(f));
                Name::Give(if fatal { Step::Stop(cause) } else { Step::Next })
            }
        }
    }
}

impl Place for Directory {
    fn strategy(&self) -> Strategy {
        self.strategy
    }

    fn directory(&self) -> Option<&Directory> {
        Some(self)
    }

    fn claim(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Claimed> {
        let dir = match self.open(cx, report, Use::Claim) {
            Ok(d) => d,
            Err(step) => return step.never(),
        };
        let uid = cx.env.uid;
        let s = self.strategy;
        let won =
            self.walk_names(
                cx,
                &dir,
                report,
                false,
                |name, candidate, report| match lock::claim(&dir, name) {
                    Claim::Bound {
                        listener,
                        lock,
                        note,
                    } => Name::Take((listener, lock), note),
                    Claim::InUse(reason) => {
                        report.push(s, candidate, "lock", Outcome::Skipped { reason });
                        Name::Next
                    }
                    Claim::Blocked { reason, security } => {
                        let f = blocked(&dir.path, name, reason, security);
                        report.push(s, candidate, "lock", Outcome::Failed(f));
                        Name::Next
                    }
                    Claim::Failed { step, error } => {
                        let f = classify::failure(error, &dir.path.join(name), uid);
                        let (fatal, cause) = (f.fatal, f.cause.clone());
                        report.push(s, candidate, step, Outcome::Failed(f));
                        Name::Give(if fatal { Step::Stop(cause) } else { Step::Next })
                    }
                },
            );
        match won {
            Step::Won(((listener, lock), endpoint)) => Step::Won(Claimed {
                strategy: s,
                client_endpoint: endpoint.clone(),
                endpoint,
                listener,
                lock: Some::<DisplayLock>(lock),
                runtime_dir: Some(dir.path.clone()),
            }),
            Step::Next => Step::Next,
            Step::Stop(c) => Step::Stop(c),
        }
    }

    fn probe(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Probed> {
        let mut dir = match self.open(cx, report, Use::Probe) {
            Ok(d) => d,
            Err(step) => return step.never(),
        };
        let uid = cx.env.uid;
        let won = self.walk_names(cx, &dir, report, true, |name, candidate, report| {
            self.peek(&dir, uid, name, candidate, report)
        });
        // A probe leaves nothing behind.
        dir.remove_created();
        match won {
            Step::Won(((), endpoint)) => Step::Won(Probed {
                strategy: self.strategy,
                endpoint,
            }),
            Step::Next => Step::Next,
            Step::Stop(c) => Step::Stop(c),
        }
    }

    fn prepare(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<PreparedDir> {
        let mut dir = match self.open(cx, report, Use::Prepare) {
            Ok(d) => d,
            Err(step) => return step.never(),
        };
        let uid = cx.env.uid;
        let won = self.walk_names(cx, &dir, report, false, |name, candidate, report| {
            self.peek(&dir, uid, name, candidate, report)
        });
        match won {
            Step::Won(((), endpoint)) => {
                let removable = self.policy == Policy::Private || !dir.created.is_empty();
                Step::Won(PreparedDir {
                    strategy: self.strategy,
                    endpoint,
                    dir: dir.path.clone(),
                    created: std::mem::take(&mut dir.created),
                    hold: crate::runtime_dir::DirHold::take(dir, removable),
                })
            }
            Step::Next => {
                dir.remove_created();
                Step::Next
            }
            Step::Stop(c) => {
                dir.remove_created();
                Step::Stop(c)
            }
        }
    }

    /// A socket of ours answering in this directory, if the directory is trusted: ours,
    /// private, and every directory above it passing [`crate::trust`].
    fn find(&self, finder: &mut Finder<'_>, report: &mut Report, found: &mut Vec<Found>) {
        let s = self.strategy;
        let uid = finder.env.uid;
        let Ok(dir) = self.locate(finder.env) else {
            return;
        };
        if let Some(id) = runtime_dir::identity(&dir) {
            if finder.seen.contains(&id) {
                return;
            }
            finder.seen.push(id);
        }
        let place = format!("{s} {}", dir.display());
        let skip = |report: &mut Report, reason: String| {
            report.push(s, &place, "verify", Outcome::Skipped { reason });
        };
        let refuse = |report: &mut Report, cause: String| {
            let f = Failure::policy(
                Some(dir.clone()),
                cause,
                "make it private to you (mode 0700, yours, below directories only root or you \
                 can change)"
                    .into(),
            )
            .security();
            report.push(s, &place, "verify", Outcome::Failed(f));
        };
        if let Err(d) = crate::trust::check_directory_chain(&dir, uid) {
            refuse(report, format!("not trusted: {}", d.cause));
            return;
        }
        let dfd = match sys::open_dir(&dir, true) {
            Ok(fd) => fd,
            Err(e) => {
                // A symlink there fails with ELOOP (see `sys::open_dir_at`).
                skip(report, classify::connect_error(e.errno));
                return;
            }
        };
        match sys::fstat(&dfd) {
            Ok(i) if i.uid != uid => {
                refuse(report, format!("belongs to uid {}: not trusted", i.uid));
                return;
            }
            // Runtime dirs too: a socket in a dir others can write may be planted.
            Ok(i) if i.perm & 0o077 != 0 => {
                refuse(
                    report,
                    format!("mode {:04o} is not private: not trusted", i.perm),
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                skip(report, e.errno.to_string());
                return;
            }
        }
        let mut stale = Vec::new();
        let mut any = false;
        for name in finder.names.iter() {
            match sys::lstat_at(&dfd, OsStr::new(&name)) {
                Ok(Some(i)) if i.kind == FileType::Socket => {}
                _ => continue,
            }
            let p = dir.join(&name);
            if p.as_os_str().len() > SUN_PATH_MAX {
                continue;
            }
            let endpoint = Endpoint::Unix(p);
            // A live registry record led here already: one connection is proof enough.
            if found.iter().any(|f| f.endpoint == endpoint) {
                any = true;
                continue;
            }
            match accepts(&endpoint) {
                Ok(stream) => {
                    any = true;
                    found.push(Found {
                        endpoint,
                        source: s.name().into(),
                        stream: Some(stream),
                    });
                }
                Err(why) => stale.push(format!("{name}: {why}")),
            }
        }
        if any {
            return;
        }
        let reason = if stale.is_empty() {
            "no Wayland socket in it".into()
        } else {
            stale.join("; ")
        };
        report.push(s, &place, "connect", Outcome::Skipped { reason });
    }
}

impl Step<()> {
    /// A step that ended a strategy without a value, as a step of any type.
    fn never<T>(self) -> Step<T> {
        match self {
            Step::Stop(c) => Step::Stop(c),
            _ => Step::Next,
        }
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
