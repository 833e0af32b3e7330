//! The strategy chain end to end: the abstract fallback when every directory fails, and the
//! inherited (`LISTEN_FDS`) strategy, including a real adoption in a child process that gets a
//! listening socket as fd 3 (made by python3, then the test binary is exec'd again).
//!
//! Abstract names are shared by every process in the network namespace, so each test binds a
//! display name of its own (`wayland-<pid><n>`).

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::Path;
use std::time::Duration;

use waysock::{BindError, Binder, Endpoint, Environment, Outcome, Report, Roots, Strategy};
use waysock_testkit::{program, run_command, skip, snapshot, wait_for, Scratch};

/// The variable that turns [`inherited_child`] from a no-op into the child half of a test.
const CHILD: &str = "WAYSOCK_TEST_INHERITED_CHILD";

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// An environment where every directory candidate has a parent that does not exist.
fn env_nowhere(base: &Path) -> Environment {
    let nowhere = base.join("nonexistent");
    let mut env = Environment::clean(Roots::under(&nowhere));
    env.xdg_runtime_dir = Some(nowhere.join("rt").into());
    env.home = Some(nowhere.join("home").into());
    env
}

/// `wayland-<N>` with N unique to this process and call.
fn unique_display() -> (String, u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = u64::from(std::process::id()) * 1000 + N.fetch_add(1, Ordering::Relaxed);
    (format!("wayland-{n}"), n)
}

fn only_attempt(report: &Report, s: Strategy) -> &Outcome {
    let v: Vec<_> = report.attempts.iter().filter(|a| a.strategy == s).collect();
    assert_eq!(v.len(), 1, "{report}");
    &v[0].outcome
}

#[test]
fn abstract_wins_when_every_directory_fails() {
    let scratch = Scratch::new("abstract");
    let env = env_nowhere(scratch.path());
    let (display, n) = unique_display();
    let binder = Binder::new(env).display(Some(display));

    let report = binder.diagnose().unwrap();
    let expected = Endpoint::Abstract(format!("wayland-{}-{n}", uid()));
    assert_eq!(
        report
            .choice
            .as_ref()
            .map(|c| (c.strategy, c.endpoint.clone())),
        Some((Strategy::Abstract, expected.clone())),
        "{report}"
    );

    let bound = binder.bind().unwrap();
    assert_eq!(bound.strategy(), Strategy::Abstract);
    assert_eq!(bound.endpoint(), &expected);
    assert_eq!(
        bound.endpoint().to_string(),
        format!("abstract:wayland-{}-{n}", uid())
    );
    assert_eq!(bound.runtime_dir(), None);
    assert_eq!(bound.display_name(), None);
    // Every filesystem strategy was tried and failed (ENOENT on the missing parents).
    for s in Strategy::DEFAULT_CHAIN.iter().filter(|s| s.is_directory()) {
        let a = bound.report().attempts.iter().find(|a| a.strategy == *s);
        match a.map(|a| &a.outcome) {
            Some(Outcome::Failed(f)) => {
                assert_eq!(f.errno.map(|e| e.name()).as_deref(), Some("ENOENT"), "{s}")
            }
            other => panic!("{s}: {other:?}\n{}", bound.report()),
        }
    }
    // A client reaches it.
    let name = format!("wayland-{}-{n}", uid());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _c = UnixStream::connect_addr(&addr).unwrap();
    bound.accept().unwrap();

    // The name is exclusive: a second binder finds it in use and has nowhere else to go.
    match binder.bind() {
        Err(BindError::Exhausted(report)) => {
            let abs: Vec<_> = report
                .attempts
                .iter()
                .filter(|a| a.strategy == Strategy::Abstract)
                .map(|a| &a.outcome)
                .collect();
            assert!(
                matches!(abs[..], [Outcome::Skipped { reason }, Outcome::Failed(_)]
                    if reason.contains("in use")),
                "{report}"
            );
            // The report names every failed place and ends with no choice.
            assert!(report.to_string().contains("choice: none"), "{report}");
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    // No lock file, no directory: nothing anywhere.
    assert!(snapshot(scratch.path()).is_empty());
    drop(bound);
    // Released on drop: the name can be bound again (no stale state). Not necessarily at the
    // same instant: a child that another test thread is forking holds a copy of the listener,
    // and so the abstract name, until it execs (microseconds; allow a second).
    let again = wait_for(Duration::from_secs(1), || binder.bind().ok())
        .expect("the abstract name is free again after drop");
    assert_eq!(again.endpoint(), &expected);
}

#[test]
fn inherited_is_skipped_or_refused_without_a_valid_activation() {
    let scratch = Scratch::new("inh-select");
    let rt = scratch.path().join("rt");
    let base = {
        let mut env = env_nowhere(scratch.path());
        env.xdg_runtime_dir = Some(rt.clone().into());
        env
    };
    let pid = std::process::id().to_string();
    let os = |s: &str| Some(OsString::from(s));
    // (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, failed?, expected text)
    type Case<'a> = (
        Option<OsString>,
        Option<OsString>,
        Option<OsString>,
        bool,
        &'a str,
    );
    let cases: [Case<'_>; 8] = [
        (None, None, None, false, "LISTEN_FDS is not set"),
        (os("1"), os("1"), None, false, "another process"),
        (os("1"), None, None, false, "LISTEN_PID is not set"),
        (os("0"), os(&pid), None, false, "LISTEN_FDS=0"),
        (os("abc"), os(&pid), None, true, "is not a number"),
        (os("1"), os("abc"), None, true, "is not a pid"),
        (os("2"), os(&pid), None, true, "without LISTEN_FDNAMES"),
        (
            os("2"),
            os(&pid),
            os("a:b"),
            true,
            "none is named \"wayland\"",
        ),
    ];
    for (fds, lpid, names, failed, text) in cases {
        let mut env = base.clone();
        env.listen_fds = fds.clone();
        env.listen_pid = lpid.clone();
        env.listen_fdnames = names.clone();
        let case = format!("LISTEN_FDS={fds:?} LISTEN_PID={lpid:?} LISTEN_FDNAMES={names:?}");
        let bound = Binder::new(env)
            .strategies(vec![Strategy::Inherited, Strategy::RuntimeDir])
            .bind()
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        // Whatever was wrong with the activation, the chain went on to the runtime dir.
        assert_eq!(bound.strategy(), Strategy::RuntimeDir, "{case}");
        assert_eq!(
            bound.endpoint(),
            &Endpoint::Unix(rt.join("wayland-0")),
            "{case}"
        );
        match (only_attempt(bound.report(), Strategy::Inherited), failed) {
            (Outcome::Skipped { reason }, false) => {
                assert!(reason.contains(text), "{case}: {reason}")
            }
            (Outcome::Failed(f), true) => {
                assert!(f.cause.contains(text), "{case}: {}", f.cause);
                assert!(f.remedy.contains("LISTEN_FDS"), "{case}: {}", f.remedy);
            }
            (o, _) => panic!("{case}: {o:?}"),
        }
    }
}

/// How a child should be started: what python puts on fd 3.
const SCENARIOS: [&str; 3] = ["listening", "not-listening", "file"];

/// Starts this test binary again, running only [`inherited_child`], with fd 3 prepared by
/// python3 and `LISTEN_FDS=1 LISTEN_PID=<the child's pid>` (python execs in place, so its pid is
/// the child's).
fn run_child(scenario: &str, scratch: &Scratch) -> waysock_testkit::Run {
    let python = program("python3").unwrap();
    let sock = scratch.path().join("inh.sock");
    let file = scratch.path().join("inh.file");
    let script = r#"
import os, socket, sys
scenario, sock, path, exe = sys.argv[1:5]
if scenario == "file":
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    if scenario == "listening":
        s.listen(8)
    fd = s.detach()
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
env.pop("LISTEN_FDNAMES", None)
os.execve(exe, [exe, "--exact", "inherited_child", "--ignored", "--nocapture", "--test-threads=1"], env)
"#;
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-c")
        .arg(script)
        .arg(scenario)
        .arg(&sock)
        .arg(&file)
        .arg(&exe)
        .env(CHILD, scenario)
        .env("WAYSOCK_TEST_SOCKET", &sock)
        .stdin(std::process::Stdio::null());
    run_command(cmd, Duration::from_secs(60))
}

#[test]
fn inherited_socket_is_validated_then_adopted() {
    let name = "inherited_socket_is_validated_then_adopted";
    if let Err(why) = program("python3") {
        return skip(name, &why);
    }
    for scenario in SCENARIOS {
        let scratch = Scratch::new("inh-child");
        let run = run_child(scenario, &scratch);
        assert!(
            run.code() == Some(0) && run.stdout().contains(&format!("CHILD-OK {scenario}")),
            "child scenario {scenario} failed\n{}",
            run.context()
        );
    }
}

/// Not a test on its own: the child half of [`inherited_socket_is_validated_then_adopted`],
/// run by it with `--ignored` (so a plain `cargo test` never counts it as a pass).
#[test]
#[ignore = "child half of inherited_socket_is_validated_then_adopted"]
fn inherited_child() {
    let scenario = std::env::var(CHILD).expect("run by inherited_socket_is_validated_then_adopted");
    let env = Environment::from_process();
    assert_eq!(
        env.listen_pid.as_deref(),
        Some(std::process::id().to_string().as_ref())
    );
    let binder = Binder::new(env).strategies(vec![Strategy::Inherited]);
    let fd3_open = || Path::new("/proc/self/fd/3").exists();
    match scenario.as_str() {
        "listening" => {
            let sock = std::env::var_os("WAYSOCK_TEST_SOCKET").unwrap();
            let report = binder.diagnose().unwrap();
            assert_eq!(
                report.choice.as_ref().map(|c| c.endpoint.clone()),
                Some(Endpoint::Fd(3)),
                "{report}"
            );
            assert!(fd3_open(), "diagnose must not adopt (or close) fd 3");
            assert!(!cloexec(3), "diagnose must not touch fd 3's flags");

            let bound = binder.bind().unwrap();
            assert_eq!(bound.strategy(), Strategy::Inherited);
            assert_eq!(bound.endpoint(), &Endpoint::Fd(3));
            assert_eq!(
                bound.client_endpoint(),
                &Endpoint::Unix(Path::new(&sock).to_path_buf())
            );
            assert!(cloexec(3), "an adopted fd must be close-on-exec");
            let _c = UnixStream::connect(Path::new(&sock)).unwrap();
            bound.accept().unwrap();

            // Adopted once per process: a second binder must not create a second owner.
            let err = binder.bind().expect_err("fd 3 is already adopted");
            let text = err.report().unwrap().to_string();
            assert!(text.contains("already adopted"), "{text}");
            drop(bound);
            assert!(!fd3_open(), "dropping the Bound closes the adopted fd");
        }
        "not-listening" | "file" => {
            let err = binder.bind().expect_err("fd 3 is not a listening socket");
            let report = err.report().unwrap();
            let want = if scenario == "file" {
                "not a socket"
            } else {
                "not listening"
            };
            match only_attempt(report, Strategy::Inherited) {
                Outcome::Failed(f) => assert!(f.cause.contains(want), "{}", f.cause),
                o => panic!("{o:?}\n{report}"),
            }
            assert!(fd3_open(), "a refused fd is never adopted, so never closed");
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("CHILD-OK {scenario}");
}

/// Is `O_CLOEXEC` set on our fd `n` (from `/proc/self/fdinfo`)?
fn cloexec(n: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    flags & 0o2000000 != 0
}
