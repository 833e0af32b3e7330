//! What `run` will start, where, and with which variables: a pure function of the arguments,
//! the environment and the library's prepared-directory decision.
//!
//! Nothing here spawns, creates or logs. The few facts about the machine that only matter
//! when no directory works (can the preload shim reach the compositor, are the abstract names
//! free) are asked through [`Probe`], so the decision can be tested without a machine.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use waysock::{Activation, BindError, Endpoint, Prepared, Strategy};

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
    /// Can the directory of a socket-activated display be the compositor's runtime dir, with
    /// `name.lock` free for it to take? `Err` says why not.
    fn activated_dir(&self, dir: &Path, name: &str) -> Result<(), String>;
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

/// A socket-activated listener (`LISTEN_FDS` meant for `run`) that the compositor will serve
/// on, through the preload shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    /// Its number in `run`, kept there (inheritable) across the compositor's `exec`.
    pub fd: i32,
    /// Its directory: the compositor's runtime dir, where it takes `NAME.lock`.
    pub dir: PathBuf,
    /// Its file name: the display name the compositor binds.
    pub name: String,
}

impl Handed {
    /// The socket's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// What `LISTEN_*` asks of `run`: nothing (`None`), a listener to hand on, or a refusal. A
/// listener meant for us is never ignored: it is served on, or `run` says why it cannot be.
pub fn handed_on(activation: Activation, chain: &[Strategy]) -> Result<Option<Handed>, Refusal> {
    let refuse = |text: String, code| Err(Refusal { text, code });
    let (fd, endpoint) = match activation {
        Activation::Absent(why) => {
            tracing::debug!("not socket-activated: {why}");
            return Ok(None);
        }
        Activation::Invalid(why) => {
            return refuse(
                format!("waysock run: started with LISTEN_FDS for it, but {why}\n"),
                1,
            )
        }
        Activation::Listener { fd, endpoint } => (fd, endpoint),
    };
    if !chain.contains(&Strategy::Inherited) {
        return refuse(
            format!(
                "waysock run: socket-activated (LISTEN_FDS: fd {fd}), but the strategy chain \
                 leaves out inherited\n  fix: allow inherited in --strategy/WAYSOCK_STRATEGIES, \
                 or start run without socket activation\n"
            ),
            2,
        );
    }
    let path = match endpoint {
        Some(Endpoint::Unix(p)) if p.is_absolute() => p,
        other => {
            let what = other.map_or("an unnamed socket".to_string(), |e| e.to_string());
            return refuse(
                format!(
                    "waysock run: socket-activated (LISTEN_FDS: fd {fd}), but that socket is \
                     {what}: a stock compositor binds a path in its runtime dir, so only a \
                     listener with an absolute path can be handed to it\n  fix: \
                     ListenStream=/run/user/UID/wayland-1 (or systemd-socket-activate -l \
                     /PATH/wayland-1)\n"
                ),
                1,
            );
        }
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return refuse(
            format!(
                "waysock run: socket-activated on {}, which has no directory and file name\n",
                path.display()
            ),
            1,
        );
    };
    Ok(Some(Handed {
        fd,
        dir: dir.to_path_buf(),
        name: name.to_string(),
    }))
}

/// The plan for a socket-activated `run`: the compositor runs in the listener's directory,
/// under the preload shim told the listener's number and path (`WAYSOCK_LISTEN_FD`,
/// `WAYSOCK_LISTEN_PATH`), so its bind of that path becomes the inherited listener.
///
/// Refused (exit 1) when the shim cannot reach the compositor (static, setuid, pure-Rust
/// sockets), when the compositor would not choose that name, or when the directory cannot be
/// its runtime dir; 2 when `--display` names another socket.
pub fn activated(input: Input<'_>, handed: &Handed, probe: &dyn Probe) -> Result<Plan, Refusal> {
    let program = input.program.to_string_lossy();
    let head = format!(
        "waysock run: socket-activated on {} (LISTEN_FDS: fd {})",
        handed.path().display(),
        handed.fd
    );
    let refuse = |why: String, code| {
        Err(Refusal {
            text: format!("{head}, but {why}\n"),
            code,
        })
    };
    if let Some(want) = input.display.filter(|w| *w != handed.name) {
        return refuse(
            format!(
                "--display {want} names another socket than the activated {}",
                handed.name
            ),
            2,
        );
    }
    let is_display = handed.name.len() > "wayland-".len() && handed.name.starts_with("wayland-");
    let chosen_by_compositor = waysock::names::DisplayNames::STOCK
        .iter()
        .any(|n| n == handed.name);
    if !is_display || (input.display.is_none() && !chosen_by_compositor) {
        return refuse(
            format!(
                "a stock compositor picks its display name itself (wayland-1..{}), and {} is \
                 not one it would try\n  fix: name the socket wayland-N, or, for a \
                 wayland-NAME, give run --display wayland-NAME and the compositor its own flag \
                 for it (weston --socket=wayland-NAME)",
                waysock::MAX_DISPLAY_NUMBER,
                handed.name
            ),
            1,
        );
    }
    let blockers = probe.blockers(input.program);
    let shim = probe.shim();
    if !blockers.is_empty() || shim.is_err() {
        let mut why = format!(
            "{program} cannot be handed that socket: it binds its own, and the preload shim \
             that would turn its bind into the inherited listener cannot reach it:"
        );
        for b in blockers.iter().chain(shim.as_ref().err()) {
            let _ = write!(why, "\n  - {b}");
        }
        why.push_str(
            "\n  fix: a compositor that takes a listening fd itself (KWin, Hyprland: \
             --wayland-fd), a dynamically linked compositor, or run without socket activation",
        );
        return refuse(why, 1);
    }
    if let Err(why) = probe.activated_dir(&handed.dir, &handed.name) {
        return refuse(why, 1);
    }
    let shim = shim.unwrap_or_default();
    let mut preload = shim.clone().into_os_string();
    if let Some(old) = input.ld_preload.filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let env = vec![
        ("XDG_RUNTIME_DIR", Some(handed.dir.clone().into_os_string())),
        ("LD_PRELOAD", Some(preload)),
        ("WAYSOCK_LISTEN_FD", Some(handed.fd.to_string().into())),
        ("WAYSOCK_LISTEN_PATH", Some(handed.path().into_os_string())),
        // The shim maps nothing to abstract names here, and the LISTEN_* were ours, not the
        // compositor's (nor its children's).
        ("WAYSOCK_PRELOAD_DIR", None),
        ("LISTEN_FDS", None),
        ("LISTEN_PID", None),
        ("LISTEN_FDNAMES", None),
        ("WAYLAND_DISPLAY", None),
        ("WAYLAND_SOCKET", None),
    ];
    Ok(Plan {
        program: input.program.to_owned(),
        args: input.args.to_vec(),
        strategy: Strategy::Inherited,
        place: Place::Dir {
            dir: handed.dir.clone(),
            observe_only: false,
        },
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
        fn activated_dir(&self, _: &Path, _: &str) -> Result<(), String> {
            self.asked.borrow_mut().push("activated_dir");
            self.names_taken.clone().map_or(Ok(()), Err)
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

    fn handed(name: &str) -> Handed {
        Handed {
            fd: 3,
            dir: "/run/user/1000".into(),
            name: name.into(),
        }
    }

    #[test]
    fn no_activation_plans_as_before_and_a_bad_one_is_refused() {
        let none = handed_on(Activation::Absent("not set".into()), FULL).unwrap();
        assert_eq!(none, None);
        let r = handed_on(
            Activation::Invalid("LISTEN_FDS=x is not a number".into()),
            FULL,
        )
        .unwrap_err();
        assert_eq!(
            r.text,
            "waysock run: started with LISTEN_FDS for it, but LISTEN_FDS=x is not a number\n"
        );
        assert_eq!(r.code, 1);
    }

    #[test]
    fn an_activated_listener_is_handed_on_or_refused_never_ignored() {
        let chain = [Strategy::Inherited, Strategy::PrivateTmp];
        let l = |e: Option<Endpoint>| Activation::Listener { fd: 3, endpoint: e };
        let ok = handed_on(
            l(Some(Endpoint::Unix("/run/user/1000/wayland-5".into()))),
            &chain,
        );
        assert_eq!(ok.unwrap(), Some(handed("wayland-5")));
        let r = handed_on(l(Some(Endpoint::Abstract("x".into()))), &chain).unwrap_err();
        assert!(r.text.contains("that socket is abstract:x"), "{}", r.text);
        let r = handed_on(l(None), &chain).unwrap_err();
        assert!(r.text.contains("an unnamed socket"), "{}", r.text);
        assert_eq!(r.code, 1);
        let r = handed_on(
            l(Some(Endpoint::Unix("/w/wayland-1".into()))),
            &[Strategy::PrivateTmp],
        )
        .unwrap_err();
        assert!(r.text.contains("leaves out inherited"), "{}", r.text);
        assert_eq!(r.code, 2);
    }

    #[test]
    fn activation_runs_the_compositor_under_the_shim_in_the_sockets_directory() {
        let fake = Fake::default();
        let mut i = input(FULL, &[]);
        i.ld_preload = Some("/usr/lib/libfoo.so".into());
        let plan = activated(i, &handed("wayland-5"), &fake).unwrap();
        assert_eq!(plan.strategy, Strategy::Inherited);
        assert_eq!(
            plan.place,
            Place::Dir {
                dir: "/run/user/1000".into(),
                observe_only: false
            }
        );
        let set = |k| var(&plan, k).cloned().flatten();
        assert_eq!(
            set("LD_PRELOAD"),
            Some("/lib/waysock/libwaysock_preload.so:/usr/lib/libfoo.so".into())
        );
        assert_eq!(set("WAYSOCK_LISTEN_FD"), Some("3".into()));
        assert_eq!(
            set("WAYSOCK_LISTEN_PATH"),
            Some("/run/user/1000/wayland-5".into())
        );
        assert_eq!(set("XDG_RUNTIME_DIR"), Some("/run/user/1000".into()));
        for gone in [
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "WAYSOCK_PRELOAD_DIR",
        ] {
            assert_eq!(var(&plan, gone), Some(&None), "{gone}");
        }
        assert_eq!(*fake.asked.borrow(), ["blockers", "shim", "activated_dir"]);
    }

    #[test]
    fn activation_refusals_say_why() {
        let fake = Fake {
            blockers: vec!["/bin/busybox is statically linked".into()],
            ..Fake::default()
        };
        let r = activated(input(FULL, &[]), &handed("wayland-5"), &fake).unwrap_err();
        assert_eq!(r.code, 1);
        assert!(
            r.text.starts_with(
                "waysock run: socket-activated on /run/user/1000/wayland-5 (LISTEN_FDS: fd 3), \
                 but weston cannot be handed that socket"
            ),
            "{}",
            r.text
        );
        assert!(r
            .text
            .contains("\n  - /bin/busybox is statically linked\n  fix: "));
        // A name no stock compositor picks itself, unless --display says the user told it.
        let r = activated(input(FULL, &[]), &handed("wayland-kiosk"), &Fake::default());
        assert!(r.unwrap_err().text.contains("not one it would try"));
        let mut i = input(FULL, &[]);
        i.display = Some("wayland-kiosk");
        assert!(activated(i, &handed("wayland-kiosk"), &Fake::default()).is_ok());
        let mut i = input(FULL, &[]);
        i.display = Some("wayland-2");
        let r = activated(i, &handed("wayland-5"), &Fake::default()).unwrap_err();
        assert_eq!(r.code, 2);
        let taken = Fake {
            names_taken: Some("wayland-5.lock is held by pid 42".into()),
            ..Fake::default()
        };
        let r = activated(input(FULL, &[]), &handed("wayland-5"), &taken).unwrap_err();
        assert!(
            r.text.ends_with("but wayland-5.lock is held by pid 42\n"),
            "{}",
            r.text
        );
    }
}
