//! Socket activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`): which inherited fd is
//! chosen, and why none is, seen through `diagnose` (which never adopts anything); and the fds
//! `waysock run` marks close-on-exec when it does not adopt them.

use std::os::fd::{AsFd, AsRawFd};

use waysock::{Binder, Environment, Outcome, Report, Roots, Strategy, LISTEN_FDS_START};
use waysock_testkit::Scratch;

/// Held by the tests that mark fds close-on-exec: their fd ranges may overlap.
static FDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn env(base: &std::path::Path, fds: &str, pid: u32, names: Option<&str>) -> Environment {
    let mut env = Environment::clean(Roots::under(&base.join("nowhere")));
    env.listen_fds = Some(fds.into());
    env.listen_pid = Some(pid.to_string().into());
    env.listen_fdnames = names.map(Into::into);
    env
}

/// What `diagnose` says about the inherited strategy.
fn inherited(env: Environment) -> (Outcome, Report) {
    let report = Binder::new(env.clone())
        .strategies(vec![Strategy::Inherited])
        .diagnose()
        .unwrap_or_else(|e| e.report().expect("a report").clone());
    let outcome = report
        .attempts
        .iter()
        .find(|a| a.strategy == Strategy::Inherited)
        .unwrap_or_else(|| panic!("inherited was not tried\n{report}"))
        .outcome
        .clone();
    (outcome, report)
}

fn failed_cause(env: Environment) -> String {
    match inherited(env) {
        (Outcome::Failed(f), _) => f.cause,
        (other, report) => panic!("{other:?}\n{report}"),
    }
}

#[test]
fn several_fds_without_names_are_refused() {
    let s = Scratch::new("inh-nonames");
    let me = std::process::id();
    for names in [None, Some("")] {
        let cause = failed_cause(env(s.path(), "2", me, names));
        assert!(
            cause.contains("without LISTEN_FDNAMES"),
            "{names:?}: {cause}"
        );
    }
}

#[test]
fn one_fd_is_the_wayland_socket_whatever_its_name() {
    let s = Scratch::new("inh-onename");
    let me = std::process::id();
    // The one fd (3) is then validated: whatever it is in this test process, the name "other"
    // did not make it refused.
    let (outcome, report) = inherited(env(s.path(), "1", me, Some("other")));
    let text = format!("{outcome:?}");
    assert!(!text.contains("none is named"), "{report}");
    assert!(
        matches!(outcome, Outcome::Ok { .. }) || text.contains(&format!("fd {LISTEN_FDS_START}")),
        "{report}"
    );
}

#[test]
fn the_fd_named_wayland_is_chosen() {
    let s = Scratch::new("inh-named");
    let me = std::process::id();
    let (outcome, report) = inherited(env(s.path(), "3", me, Some("a:b:wayland")));
    let want = LISTEN_FDS_START + 2;
    let text = format!("{outcome:?}\n{report}");
    assert!(text.contains(&format!("fd {want}")), "{text}");
    let cause = failed_cause(env(s.path(), "2", me, Some("a:b:c")));
    assert!(cause.contains("names 3 fds but LISTEN_FDS=2"), "{cause}");
    let cause = failed_cause(env(s.path(), "2", me, Some("a:b")));
    assert!(cause.contains("none is named \"wayland\""), "{cause}");
}

#[test]
fn listen_fds_close_on_exec_marks_exactly_the_passed_fds() {
    let _serial = FDS.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("inh-cloexec");
    let me = std::process::id();
    // Two inheritable fds of ours, a < b; LISTEN_FDS covers up to a only.
    let a = std::fs::File::open("/dev/null").unwrap();
    let b = std::fs::File::open("/dev/null").unwrap();
    let inheritable = |f: &std::fs::File| {
        rustix::io::fcntl_setfd(f.as_fd(), rustix::io::FdFlags::empty()).unwrap();
    };
    let cloexec = |f: &std::fs::File| {
        rustix::io::fcntl_getfd(f.as_fd())
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    };
    inheritable(&a);
    inheritable(&b);
    let (a_n, b_n) = (a.as_raw_fd(), b.as_raw_fd());
    assert!(a_n < b_n && a_n >= LISTEN_FDS_START);
    let n = a_n - LISTEN_FDS_START + 1;
    let set = |fds: i32, pid: u32| {
        waysock::listen_fds_close_on_exec(&env(s.path(), &fds.to_string(), pid, None))
    };
    // Not ours, none, or absurd: nothing is touched.
    assert_eq!(set(n, me + 1), None);
    assert_eq!(set(0, me), None);
    assert_eq!(set(5000, me), None);
    assert!(!cloexec(&a) && !cloexec(&b));
    assert_eq!(set(n, me), Some(n));
    assert!(
        cloexec(&a),
        "fd {a_n} (within LISTEN_FDS={n}) is still inheritable"
    );
    assert!(!cloexec(&b), "fd {b_n} (beyond LISTEN_FDS={n}) was changed");
}

#[test]
fn pass_on_listen_fd_keeps_only_the_chosen_fd_inheritable() {
    let _serial = FDS.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("inh-passon");
    let me = std::process::id();
    let a = std::fs::File::open("/dev/null").unwrap();
    let b = std::fs::File::open("/dev/null").unwrap();
    for f in [&a, &b] {
        rustix::io::fcntl_setfd(f.as_fd(), rustix::io::FdFlags::empty()).unwrap();
    }
    let cloexec = |f: &std::fs::File| {
        rustix::io::fcntl_getfd(f.as_fd())
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    };
    let (a_n, b_n) = (a.as_raw_fd(), b.as_raw_fd());
    assert!(a_n < b_n && a_n >= LISTEN_FDS_START);
    // LISTEN_FDS covers both; `b` is the one handed on.
    let n = b_n - LISTEN_FDS_START + 1;
    let pass = |fds: i32, pid: u32| {
        waysock::pass_on_listen_fd(&env(s.path(), &fds.to_string(), pid, None), b_n)
    };
    // Not ours, none, or absurd: nothing is touched.
    assert_eq!(pass(n, me + 1), 0);
    assert_eq!(pass(0, me), 0);
    assert_eq!(pass(5000, me), 0);
    assert!(!cloexec(&a) && !cloexec(&b));
    assert_eq!(pass(n, me), n - 1);
    assert!(cloexec(&a), "fd {a_n}, not handed on, is still inheritable");
    assert!(
        !cloexec(&b),
        "fd {b_n}, the one handed on, was made close-on-exec"
    );
}
