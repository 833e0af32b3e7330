//! What `run` will start, where, and with which variables: a pure function of the arguments,
//! the environment and the library's prepared-directory decision.
//!
//! Nothing here spawns, creates or logs. The few facts about the machine that only matter
//! when no directory works (can the preload shim reach the compositor, are the abstract names
//! free) are asked through [`Probe`], so the decision can be tested without a machine.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::PathBuf;

use waysock::{BindError, Prepared, Strategy};

/// What `run` needs to know about the machine, asked only when no directory works and the
/// chain allows `abstract`.
pub trait Probe {
    /// Why `LD_PRELOAD` cannot reach `program` (empty when nothing is known to block it).
    fn blockers(&self, program: &OsStr) -> Vec<String>;
    /// The preload shim to load, or why none can be.
    fn shim(&self) -> Result<PathBuf, String>;
    /// Is one of the abstract names the compositor would try (or the one asked for) free?
    /// `Err` says who holds them.
    fn abstract_names_free(&self, want: Option<&str>) -> Result<(), String>;
    /// The runtime dir an abstract-mode compositor is told about.
    fn runtime_dir_for_shim(&self) -> PathBuf;
}

/// The library's decision on a directory, as `run` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directory {
    /// A directory from the chain is ready for the compositor.
    Prepared {
        /// The strategy that found it.
        strategy: Strategy,
        /// The compositor's `XDG_RUNTIME_DIR`.
        dir: PathBuf,
    },
    /// No directory works (or the request itself is wrong).
    Refused {
        /// The error, one line.
        error: String,
        /// The report of every attempt, when the chain ran.
        report: Option<String>,
    },
}

impl Directory {
    /// Reads [`waysock::Binder::prepare_directory`]'s answer.
    pub fn from_library(result: &Result<Prepared, BindError>) -> Directory {
        match result {
            Ok(p) => Directory::Prepared {
                strategy: p.strategy,
                dir: p.dir.clone(),
            },
            Err(e) => Directory::Refused {
                error: e.to_string(),
                report: e.report().map(|r| r.to_string()),
            },
        }
    }
}

/// The inputs of [`plan`] besides the directory decision.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The compositor.
    pub program: &'a OsStr,
    /// Its arguments.
    pub args: &'a [OsString],
    /// The strategy chain.
    pub chain: &'a [Strategy],
    /// Our uid.
    pub uid: u32,
    /// `--display NAME`.
    pub display: Option<&'a str>,
    /// `--allow-uid` (abstract displays only).
    pub allow_uid: &'a [u32],
    /// Our own `LD_PRELOAD`, kept after the shim.
    pub ld_preload: Option<OsString>,
}

/// Where the compositor will bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A directory from the chain (its `XDG_RUNTIME_DIR`).
    Dir {
        /// The directory watched for the compositor's socket.
        dir: PathBuf,
        /// The user's own runtime dir: the compositor's environment is left as it is.
        observe_only: bool,
    },
    /// Abstract sockets, through the preload shim.
    Abstract {
        /// The runtime dir the compositor is told about (the shim maps its sockets).
        dir: PathBuf,
        /// The shim preloaded.
        shim: PathBuf,
    },
}

impl Place {
    /// Where `run` looks, for the "did not come up" message.
    pub fn describe(&self) -> String {
        match self {
            Place::Dir { dir, .. } => format!("watched {}", dir.display()),
            Place::Abstract { dir, .. } => format!("abstract, mapped from {}", dir.display()),
        }
    }

    /// How the display was reached, for the "is up" line (after the strategy).
    pub fn how(&self) -> &'static str {
        match self {
            Place::Dir {
                observe_only: true, ..
            } => ", observed",
            Place::Dir { .. } => "",
            Place::Abstract { .. } => ", through the preload shim",
        }
    }
}

/// What to run, where, with which variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The compositor.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The strategy chosen.
    pub strategy: Strategy,
    /// Where it will bind.
    pub place: Place,
    /// Variables to set (`Some`) or remove (`None`), in order.
    pub env: Vec<(&'static str, Option<OsString>)>,
}

impl Plan {
    /// The compositor's name as shown in messages.
    pub fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

/// Why nothing is started: the whole text for stderr, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Printed as is (ends with a newline, or with the report).
    pub text: String,
    /// 1 when the chain ran and nothing works, 2 for a wrong request.
    pub code: u8,
}

/// Decides what to run from the inputs and the library's directory decision.
pub fn plan(input: Input<'_>, directory: Directory, probe: &dyn Probe) -> Result<Plan, Refusal> {
    let mut env: Vec<(&'static str, Option<OsString>)> = Vec::new();
    let (strategy, place) = match directory {
        Directory::Prepared { strategy, dir } => {
            let observe_only = strategy == Strategy::RuntimeDir;
            if !observe_only {
                env.push(("XDG_RUNTIME_DIR", Some(dir.clone().into_os_string())));
            }
            (strategy, Place::Dir { dir, observe_only })
        }
        Directory::Refused { error, report } => {
            let abstract_ok = input.chain.contains(&Strategy::Abstract);
            let report = match report {
                Some(r) if abstract_ok => r,
                report => return Err(directory_refused(&error, report.as_deref())),
            };
            let blockers = probe.blockers(input.program);
            let shim = probe.shim();
            if !blockers.is_empty() || shim.is_err() {
                let mut text = format!(
                    "waysock run: no directory works here, and the preload shim that would put \
                     {} on an abstract socket cannot be used:\n",
                    input.program.to_string_lossy()
                );
                for b in blockers.iter().chain(shim.as_ref().err()) {
                    let _ = writeln!(text, "  - {b}");
                }
                text.push_str(&report);
                return Err(Refusal { text, code: 1 });
            }
            let shim = shim.unwrap_or_default();
            if let Err(why) = probe.abstract_names_free(input.display) {
                let text = format!(
                    "waysock run: no directory works here, and {why}\n  fix: find the \
                     process that holds them (`ss -xlp | grep wayland-{}`) and stop it, or give \
                     run a writable directory (XDG_RUNTIME_DIR, /tmp, /dev/shm or $HOME)\n\
                     {report}",
                    input.uid
                );
                return Err(Refusal { text, code: 1 });
            }
            let dir = probe.runtime_dir_for_shim();
            for (k, v) in
                super::super::preload::vars(&shim, &dir, input.allow_uid, input.ld_preload)
            {
                env.push((k, Some(v)));
            }
            (Strategy::Abstract, Place::Abstract { dir, shim })
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
        env.push(("WAYLAND_DISPLAY", None));
        env.push(("WAYLAND_SOCKET", None));
    }
    Ok(Plan {
        program: input.program.to_owned(),
        args: input.args.to_vec(),
        strategy,
        place,
        env,
    })
}

/// The library refused and abstract cannot help: its error, then its report if it has one.
fn directory_refused(error: &str, report: Option<&str>) -> Refusal {
    let mut text = format!("waysock run: {error}\n");
    text.push_str(report.unwrap_or_default());
    Refusal {
        text,
        code: if report.is_some() { 1 } else { 2 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A machine described by its answers; records what was asked.
    #[derive(Default)]
    struct Fake {
        blockers: Vec<String>,
        no_shim: Option<String>,
        names_taken: Option<String>,
        asked: RefCell<Vec<&'static str>>,
    }

    impl Probe for Fake {
        fn blockers(&self, _: &OsStr) -> Vec<String> {
            self.asked.borrow_mut().push("blockers");
            self.blockers.clone()
        }
        fn shim(&self) -> Result<PathBuf, String> {
            self.asked.borrow_mut().push("shim");
            match &self.no_shim {
                Some(why) => Err(why.clone()),
                None => Ok(PathBuf::from("/lib/waysock/libwaysock_preload.so")),
            }
        }
        fn abstract_names_free(&self, _: Option<&str>) -> Result<(), String> {
            self.asked.borrow_mut().push("names");
            self.names_taken.clone().map_or(Ok(()), Err)
        }
        fn runtime_dir_for_shim(&self) -> PathBuf {
            self.asked.borrow_mut().push("dir");
            PathBuf::from("/run/user/1000")
        }
    }

    const FULL: &[Strategy] = &[
        Strategy::RuntimeDir,
        Strategy::PrivateTmp,
        Strategy::Abstract,
    ];

    fn input<'a>(chain: &'a [Strategy], args: &'a [OsString]) -> Input<'a> {
        Input {
            program: OsStr::new("weston"),
            args,
            chain,
            uid: 1000,
            display: None,
            allow_uid: &[],
            ld_preload: None,
        }
    }

    fn refused(report: Option<&str>) -> Directory {
        Directory::Refused {
            error: "no strategy could bind".into(),
            report: report.map(str::to_string),
        }
    }

    fn var<'p>(plan: &'p Plan, key: &str) -> Option<&'p Option<OsString>> {
        plan.env.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    #[test]
    fn the_users_own_runtime_dir_is_only_observed() {
        let args = [OsString::from("--backend=headless")];
        let dir = Directory::Prepared {
            strategy: Strategy::RuntimeDir,
            dir: "/run/user/1000".into(),
        };
        let fake = Fake::default();
        let plan = plan(input(FULL, &args), dir, &fake).unwrap();
        assert_eq!(plan.strategy, Strategy::RuntimeDir);
        assert_eq!(plan.args, args);
        assert!(
            plan.env.is_empty(),
            "the environment is left alone: {plan:?}"
        );
        assert_eq!(plan.place.how(), ", observed");
        assert_eq!(plan.place.describe(), "watched /run/user/1000");
        assert!(fake.asked.borrow().is_empty(), "nothing probed");
    }

    #[test]
    fn another_directory_becomes_the_runtime_dir_and_old_displays_are_dropped() {
        let dir = Directory::Prepared {
            strategy: Strategy::PrivateTmp,
            dir: "/tmp/waysock-1000".into(),
        };
        let plan = plan(input(FULL, &[]), dir, &Fake::default()).unwrap();
        assert_eq!(
            plan.env,
            vec![
                ("XDG_RUNTIME_DIR", Some("/tmp/waysock-1000".into())),
                ("WAYLAND_DISPLAY", None),
                ("WAYLAND_SOCKET", None),
            ]
        );
        assert_eq!(plan.place.how(), "");
    }

    #[test]
    fn without_abstract_in_the_chain_the_library_error_is_the_answer() {
        let chain = [Strategy::PrivateTmp];
        let fake = Fake::default();
        let r = plan(input(&chain, &[]), refused(Some("REPORT\n")), &fake).unwrap_err();
        assert_eq!(r.text, "waysock run: no strategy could bind\nREPORT\n");
        assert_eq!(r.code, 1);
        // A wrong request (no report: the chain never ran) is a usage error, abstract or not.
        let r = plan(input(FULL, &[]), refused(None), &fake).unwrap_err();
        assert_eq!(r.text, "waysock run: no strategy could bind\n");
        assert_eq!(r.code, 2);
        assert!(fake.asked.borrow().is_empty(), "nothing probed");
    }

    #[test]
    fn abstract_preloads_the_shim_and_keeps_our_preload_after_it() {
        let fake = Fake::default();
        let mut i = input(FULL, &[]);
        i.allow_uid = &[1001, 1002];
        i.ld_preload = Some("/usr/lib/libfoo.so".into());
        let plan = plan(i, refused(Some("R")), &fake).unwrap();
        assert_eq!(plan.strategy, Strategy::Abstract);
        assert_eq!(
            var(&plan, "LD_PRELOAD"),
            Some(&Some(
                "/lib/waysock/libwaysock_preload.so:/usr/lib/libfoo.so".into()
            ))
        );
        assert_eq!(
            var(&plan, "WAYSOCK_PRELOAD_DIR"),
            Some(&Some("/run/user/1000".into()))
        );
        assert_eq!(
            var(&plan, "XDG_RUNTIME_DIR"),
            Some(&Some("/run/user/1000".into()))
        );
        assert_eq!(
            var(&plan, "WAYSOCK_ALLOW_UIDS"),
            Some(&Some("1001,1002".into()))
        );
        assert_eq!(var(&plan, "WAYLAND_DISPLAY"), Some(&None));
        assert_eq!(var(&plan, "WAYLAND_SOCKET"), Some(&None));
        assert_eq!(plan.place.how(), ", through the preload shim");
        assert_eq!(
            plan.place.describe(),
            "abstract, mapped from /run/user/1000"
        );
        assert_eq!(*fake.asked.borrow(), ["blockers", "shim", "names", "dir"]);
    }

    #[test]
    fn a_blocked_shim_names_every_reason_and_probes_no_further() {
        let fake = Fake {
            blockers: vec!["weston is statically linked".into()],
            no_shim: Some("libwaysock_preload.so not found".into()),
            ..Fake::default()
        };
        let r = plan(input(FULL, &[]), refused(Some("REPORT\n")), &fake).unwrap_err();
        assert_eq!(
            r.text,
            "waysock run: no directory works here, and the preload shim that would put weston \
             on an abstract socket cannot be used:\n  - weston is statically linked\n  - \
             libwaysock_preload.so not found\nREPORT\n"
        );
        assert_eq!(r.code, 1);
        assert_eq!(*fake.asked.borrow(), ["blockers", "shim"]);
    }

    #[test]
    fn taken_abstract_names_say_who_holds_them_and_the_fix() {
        let fake = Fake {
            names_taken: Some("every abstract name is taken".into()),
            ..Fake::default()
        };
        let r = plan(input(FULL, &[]), refused(Some("REPORT\n")), &fake).unwrap_err();
        assert_eq!(
            r.text,
            "waysock run: no directory works here, and every abstract name is taken\n  fix: \
             find the process that holds them (`ss -xlp | grep wayland-1000`) and stop it, or \
             give run a writable directory (XDG_RUNTIME_DIR, /tmp, /dev/shm or $HOME)\nREPORT\n"
        );
        assert_eq!(r.code, 1);
    }
}
