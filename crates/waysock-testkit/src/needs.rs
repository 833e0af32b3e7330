//! What a test needs from the machine, and loud skips when it cannot have it.
//!
//! A test that cannot get what it needs calls [`skip`] (or lets [`Needs::met`] do it): the
//! line goes straight to stderr (not captured by the test harness) and into
//! `target/waysock-skipped.txt`, which `.ci/run` lists at the end; in CI nothing may be
//! skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::users;

/// Reports a skipped test loudly. Returns nothing; the caller then returns from the test.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let path = skip_log();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Where skips are collected: `target/waysock-skipped.txt`.
pub fn skip_log() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target")
                .to_path_buf()
        });
    target.join("waysock-skipped.txt")
}

/// Are we root?
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Can we make mount namespaces (root, `unshare` present, not forbidden by a seccomp filter)?
/// `Err` carries the reason, ready for [`skip`].
pub fn namespaces() -> Result<(), String> {
    if !is_root() {
        return Err("needs root for mount namespaces (CI runs as root)".into());
    }
    unshare(&["-m", "--propagation", "private", "true"])
}

/// Mount, network and pid namespaces together (`unshare -m -n -p`), as sandboxes with
/// [`Sandbox::private_network`](crate::Sandbox::private_network) and
/// [`Sandbox::private_pids`](crate::Sandbox::private_pids) make them.
pub fn all_namespaces() -> Result<(), String> {
    namespaces()?;
    unshare(&[
        "-m",
        "-n",
        "-p",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "true",
    ])
}

fn unshare(args: &[&str]) -> Result<(), String> {
    match Command::new("unshare")
        .args(args)
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "unshare {} failed: {}",
            args[..args.len() - 1].join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

/// A program on `PATH`, or the reason it is missing.
pub fn program(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "{name} is not installed (.ci/run installs it: apt-get install weston wayland-utils)"
    ))
}

/// Everything one test needs, probed together; [`Needs::met`] reports every missing piece in
/// one skip.
///
/// ```no_run
/// # use waysock_testkit::Needs;
/// if !Needs::new("my_test").namespaces().programs(&["weston"]).test_user().met() {
///     return;
/// }
/// ```
#[derive(Debug)]
#[must_use = "call .met() to skip when something is missing"]
pub struct Needs {
    test: String,
    missing: Vec<String>,
}

impl Needs {
    /// Nothing needed yet, for `test` (the name the skip line carries).
    pub fn new(test: &str) -> Needs {
        Needs {
            test: test.to_string(),
            missing: Vec::new(),
        }
    }

    /// Any probe: its `Err` is a missing piece.
    pub fn probe<T>(mut self, result: Result<T, String>) -> Self {
        if let Err(why) = result {
            self.missing.push(why);
        }
        self
    }

    /// Root, or `why` is the missing piece.
    pub fn root(self, why: &str) -> Self {
        let r = if is_root() { Ok(()) } else { Err(why.into()) };
        self.probe(r)
    }

    /// Mount namespaces ([`namespaces`]).
    pub fn namespaces(self) -> Self {
        self.probe(namespaces())
    }

    /// Mount, network and pid namespaces together ([`all_namespaces`]).
    pub fn all_namespaces(self) -> Self {
        self.probe(all_namespaces())
    }

    /// What a [`Stage::waysock`](crate::Stage::waysock) sandbox makes: mount, network and pid
    /// namespaces.
    pub fn waysock_stage(self) -> Self {
        self.all_namespaces()
    }

    /// Each program on `PATH` ([`program`]).
    pub fn programs(mut self, names: &[&str]) -> Self {
        for p in names {
            self = self.probe(program(p));
        }
        self
    }

    /// The unprivileged test user ([`users::test_user`]).
    pub fn test_user(self) -> Self {
        self.probe(users::test_user())
    }

    /// The second unprivileged account ([`users::intruder`]).
    pub fn intruder(self) -> Self {
        self.probe(users::intruder())
    }

    /// A file that must exist.
    pub fn file(self, path: &Path) -> Self {
        let r = if path.is_file() {
            Ok(())
        } else {
            Err(format!("{} is not installed", path.display()))
        };
        self.probe(r)
    }

    /// `true` when nothing is missing; otherwise reports the skip (every missing piece, `; `
    /// between them) and returns `false`, and the test returns.
    pub fn met(self) -> bool {
        if self.missing.is_empty() {
            return true;
        }
        skip(&self.test, &self.missing.join("; "));
        false
    }
}
