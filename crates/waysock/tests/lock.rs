//! The lock-file protocol (SPEC §3) on real files: what waysock never unlinks, what it
//! reclaims, what it leaves on drop, and interop with a real libwayland compositor (weston 10)
//! in both directions. Each test has its own runtime dir in a scratch dir.

use std::fs::File;
use std::os::unix::fs::{symlink, MetadataExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use waysock::{Binder, Bound, Endpoint, Environment, Outcome, Report, Strategy};
use waysock_testkit::{
    program, set_mode, skip, snapshot, stale_socket, wait_for, wayland_info, Scratch, Weston,
};

/// A runtime dir (0700) in a fresh scratch dir, and an environment using only it.
fn setup(prefix: &str) -> (Scratch, PathBuf, Environment) {
    let scratch = Scratch::new(prefix);
    let rt = scratch.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    set_mode(&rt, 0o700);
    let mut env = Environment::clean(waysock::Roots::under(&scratch.path().join("nonexistent")));
    env.xdg_runtime_dir = Some(rt.clone().into());
    (scratch, rt, env)
}

fn binder(env: &Environment) -> Binder {
    Binder::new(env.clone()).strategies(vec![Strategy::RuntimeDir])
}

fn unix(path: PathBuf) -> Endpoint {
    Endpoint::Unix(path)
}

/// The outcome of the attempt on `candidate` (an endpoint string).
fn outcome_for<'a>(report: &'a Report, candidate: &str) -> &'a Outcome {
    &report
        .attempts
        .iter()
        .find(|a| a.candidate == candidate)
        .unwrap_or_else(|| panic!("no attempt on {candidate}\n{report}"))
        .outcome
}

fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

/// Holds `path`'s flock on our own open file description, as another compositor would.
fn hold_lock(path: &Path) -> File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    f
}

/// Plants `make(path)` as `wayland-0` and checks that neither `diagnose` nor `bind` removes or
/// changes it, that `bind` takes `wayland-1` instead, and that no `wayland-0.lock` is left.
fn assert_blocker_left_alone(prefix: &str, make: impl Fn(&Path), security: bool) {
    let (scratch, rt, env) = setup(prefix);
    let blocker = rt.join("wayland-0");
    make(&blocker);
    let before = snapshot(scratch.path());
    let zero = unix(rt.join("wayland-0")).to_string();

    let report = binder(&env).diagnose().unwrap();
    assert_eq!(
        snapshot(scratch.path()),
        before,
        "diagnose changed something\n{report}"
    );
    assert_eq!(
        report.choice.as_ref().map(|c| c.endpoint.clone()),
        Some(unix(rt.join("wayland-1"))),
        "{report}"
    );

    let bound = binder(&env).bind().unwrap();
    assert_eq!(
        bound.endpoint(),
        &unix(rt.join("wayland-1")),
        "{}",
        bound.report()
    );
    match outcome_for(bound.report(), &zero) {
        Outcome::Failed(f) => {
            assert!(f.cause.contains("wayland-0"), "{}", bound.report());
            assert_eq!(f.security, security, "{}", bound.report());
        }
        other => panic!(
            "wayland-0 should have failed: {other:?}\n{}",
            bound.report()
        ),
    }
    assert!(
        !rt.join("wayland-0.lock").exists(),
        "the lock taken for wayland-0 must be removed again"
    );
    drop(bound);
    assert_eq!(
        snapshot(scratch.path()),
        before,
        "bind + drop changed the blocker"
    );
}

#[test]
fn regular_file_named_wayland_0_is_never_unlinked() {
    assert_blocker_left_alone(
        "blk-file",
        |p| {
            std::fs::write(p, b"precious").unwrap();
            set_mode(p, 0o666); // libwayland would unlink it: it has write bits
        },
        false,
    );
}

#[test]
fn fifo_named_wayland_0_is_never_unlinked() {
    assert_blocker_left_alone(
        "blk-fifo",
        |p| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o666),
                0,
            )
            .unwrap()
        },
        false,
    );
}

#[test]
fn symlink_named_wayland_0_is_never_unlinked_nor_followed() {
    assert_blocker_left_alone(
        "blk-symlink",
        |p| {
            // Points at a stale socket elsewhere: following it would "reclaim" that.
            let target = p.parent().unwrap().parent().unwrap().join("elsewhere");
            stale_socket(&target);
            symlink(&target, p).unwrap();
        },
        true,
    );
}

#[test]
fn symlinked_lock_file_is_refused() {
    let (scratch, rt, env) = setup("blk-lock-symlink");
    let target = scratch.path().join("victim");
    std::fs::write(&target, b"x").unwrap();
    symlink(&target, rt.join("wayland-0.lock")).unwrap();
    let before = snapshot(scratch.path());
    let bound = binder(&env).bind().unwrap();
    assert_eq!(bound.endpoint(), &unix(rt.join("wayland-1")));
    match outcome_for(bound.report(), &unix(rt.join("wayland-0")).to_string()) {
        Outcome::Failed(f) => assert!(f.security && f.cause.contains("symlink"), "{f:?}"),
        other => panic!("{other:?}"),
    }
    drop(bound);
    assert_eq!(snapshot(scratch.path()), before);
    assert_eq!(std::fs::read(&target).unwrap(), b"x");
}

#[test]
fn stale_socket_is_reclaimed() {
    let (scratch, rt, env) = setup("stale");
    let sock = rt.join("wayland-0");
    stale_socket(&sock); // bound, never listening: nobody answers
    File::create(rt.join("wayland-0.lock")).unwrap(); // lock file nobody holds
    let old = ino(&sock);
    let _ = scratch;

    // diagnose sees it and leaves it.
    let report = binder(&env).diagnose().unwrap();
    match outcome_for(&report, &format!("unix:{}", sock.display())) {
        Outcome::Ok { note, .. } => {
            assert!(note.as_deref().unwrap_or("").contains("stale"), "{report}")
        }
        other => panic!("{other:?}\n{report}"),
    }
    assert_eq!(ino(&sock), old, "diagnose must not reclaim");

    let bound = binder(&env).bind().unwrap();
    assert_eq!(bound.endpoint(), &unix(sock.clone()));
    match outcome_for(bound.report(), &format!("unix:{}", sock.display())) {
        Outcome::Ok { note, .. } => {
            assert!(
                note.as_deref().unwrap_or("").contains("reclaimed"),
                "{}",
                bound.report()
            )
        }
        other => panic!("{other:?}"),
    }
    // (Not an inode comparison: the filesystem may hand the freed inode number straight to
    // the new socket.) The stale one refused connections; the new one accepts them.
    let _c = UnixStream::connect(&sock).unwrap();
    bound.accept().unwrap();
}

#[test]
fn stale_socket_without_lock_file_is_reclaimed() {
    let (_scratch, rt, env) = setup("stale-nolock");
    let sock = rt.join("wayland-0");
    stale_socket(&sock);
    let bound = binder(&env).bind().unwrap();
    assert_eq!(bound.endpoint(), &unix(sock));
}

#[test]
fn live_socket_without_lock_is_in_use_and_never_unlinked() {
    // A server that does not use lock files (or a lock file on another host) is answering.
    let (_scratch, rt, env) = setup("live-nolock");
    let sock = rt.join("wayland-0");
    let other = UnixListener::bind(&sock).unwrap();
    let old = ino(&sock);
    let bound = binder(&env).bind().unwrap();
    assert_eq!(
        bound.endpoint(),
        &unix(rt.join("wayland-1")),
        "{}",
        bound.report()
    );
    match outcome_for(bound.report(), &format!("unix:{}", sock.display())) {
        Outcome::Skipped { reason } => assert!(reason.contains("answers"), "{reason}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(ino(&sock), old);
    assert!(!rt.join("wayland-0.lock").exists());
    let _c = UnixStream::connect(&sock).unwrap();
    other.accept().unwrap();
}

#[test]
fn name_whose_lock_is_held_is_skipped() {
    let (scratch, rt, env) = setup("held");
    let _held = hold_lock(&rt.join("wayland-0.lock"));
    let before = snapshot(scratch.path());

    let bound = binder(&env).bind().unwrap();
    assert_eq!(bound.endpoint(), &unix(rt.join("wayland-1")));
    match outcome_for(
        bound.report(),
        &format!("unix:{}", rt.join("wayland-0").display()),
    ) {
        Outcome::Skipped { reason } => assert!(reason.contains("held"), "{reason}"),
        o => panic!("{o:?}"),
    }
    drop(bound);
    assert_eq!(snapshot(scratch.path()), before, "the held lock file stays");

    // Asking for exactly that name: nothing else is tried, so nothing can be bound.
    let err = binder(&env)
        .display(Some("wayland-0".into()))
        .bind()
        .expect_err("wayland-0 is held");
    let report = err.report().unwrap();
    assert!(report.choice.is_none());
    assert!(report.to_string().contains("held"), "{report}");
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn two_binders_never_share_a_name() {
    let (_scratch, rt, env) = setup("two");
    let a = binder(&env).bind().unwrap();
    let b = binder(&env).bind().unwrap();
    assert_eq!(a.endpoint(), &unix(rt.join("wayland-0")));
    assert_eq!(b.endpoint(), &unix(rt.join("wayland-1")));
    drop(a);
    // wayland-0 is free again and clean: the next binder takes it without reclaiming.
    let c = binder(&env).bind().unwrap();
    assert_eq!(c.endpoint(), &unix(rt.join("wayland-0")));
    assert!(
        !c.report().to_string().contains("reclaimed"),
        "{}",
        c.report()
    );
}

#[test]
fn all_names_taken_is_reported() {
    let (_scratch, rt, env) = setup("full");
    let held: Vec<Bound> = (0..=waysock::MAX_DISPLAY_NUMBER)
        .map(|_| binder(&env).bind().unwrap())
        .collect();
    assert_eq!(held.len(), 33);
    let err = binder(&env).bind().expect_err("all 33 names are taken");
    let text = err.report().unwrap().to_string();
    assert!(text.contains("no free display name"), "{text}");
    assert!(text.contains("wayland-32"), "{text}");
    drop(held);
    assert!(snapshot(&rt).is_empty(), "{:?}", snapshot(&rt));
}

#[test]
fn dropping_bound_removes_exactly_socket_and_lock() {
    let (scratch, rt, env) = setup("drop");
    std::fs::write(rt.join("keep.txt"), b"mine").unwrap();
    File::create(rt.join("wayland-9.lock")).unwrap();
    std::fs::create_dir(rt.join("sub")).unwrap();
    let before = snapshot(scratch.path());

    let bound = binder(&env).bind().unwrap();
    assert!(rt.join("wayland-0").exists() && rt.join("wayland-0.lock").exists());
    drop(bound);
    assert_eq!(snapshot(scratch.path()), before);

    // The same through into_parts: the guard does the cleanup, the listener is just an fd.
    let (listener, guard, _report) = binder(&env).bind().unwrap().into_parts();
    drop(guard);
    assert_eq!(snapshot(scratch.path()), before);
    drop(listener);
}

#[test]
fn drop_does_not_remove_a_socket_that_replaced_ours() {
    // Someone removed our socket and put their own at the name: not ours, never unlinked.
    let (_scratch, rt, env) = setup("replaced");
    let bound = binder(&env).bind().unwrap();
    let sock = rt.join("wayland-0");
    std::fs::remove_file(&sock).unwrap();
    let theirs = UnixListener::bind(&sock).unwrap();
    let their_ino = ino(&sock);
    drop(bound);
    assert_eq!(ino(&sock), their_ino);
    drop(theirs);
}

// ---- interop with a real libwayland compositor -------------------------------------------

/// Starts weston in `rt`; `None` (after reporting the skip) when it cannot run here.
fn start_weston(test: &str, scratch: &Scratch, rt: &Path, socket: Option<&str>) -> Option<Weston> {
    if let Err(why) = program("weston").and(program("wayland-info")) {
        skip(test, &why);
        return None;
    }
    let log = scratch
        .path()
        .join(format!("weston-{}.log", socket.unwrap_or("default")));
    match Weston::spawn(rt, socket, &log) {
        Ok(w) => Some(w),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

fn assert_weston_answers(rt: &Path, display: &str, weston: &Weston) {
    let run = wayland_info(rt, display).unwrap();
    assert!(
        run.code() == Some(0) && run.stdout().contains("wl_compositor"),
        "weston no longer answers on {display}\n{}\n--- weston log:\n{}",
        run.context(),
        weston.log()
    );
}

#[test]
fn weston_holding_wayland_1_coexists_with_waysock() {
    let name = "weston_holding_wayland_1_coexists_with_waysock";
    let (scratch, rt, env) = setup("weston-1");
    let Some(mut weston) = start_weston(name, &scratch, &rt, None) else {
        return;
    };
    // weston 10 without --socket skips wayland-0.
    weston
        .wait_listening("wayland-1", Duration::from_secs(15))
        .unwrap();
    assert!(!rt.join("wayland-0").exists());
    let weston_sock = ino(&rt.join("wayland-1"));

    // Default names: wayland-0 is free, and it is ours.
    let bound = binder(&env).bind().unwrap();
    assert_eq!(bound.endpoint(), &unix(rt.join("wayland-0")));

    // Asking for weston's name: in use, its lock is held.
    let b1 = binder(&env).display(Some("wayland-1".into()));
    let report = b1.diagnose().unwrap();
    assert!(report.choice.is_none(), "{report}");
    match outcome_for(&report, &format!("unix:{}", rt.join("wayland-1").display())) {
        Outcome::Skipped { reason } => assert!(reason.contains("held"), "{reason}"),
        o => panic!("{o:?}\n{report}"),
    }
    let err = b1.bind().expect_err("weston owns wayland-1");
    assert!(err.report().unwrap().to_string().contains("held"));

    // With waysock on wayland-0 and a probe of wayland-1 done, weston still serves wayland-1.
    assert_eq!(ino(&rt.join("wayland-1")), weston_sock);
    assert!(rt.join("wayland-1.lock").exists());
    assert_weston_answers(&rt, "wayland-1", &weston);
    assert!(weston.exited().is_none(), "weston died\n{}", weston.log());
    drop(bound);
    assert_weston_answers(&rt, "wayland-1", &weston);
}

#[test]
fn weston_refuses_a_name_waysock_holds() {
    let name = "weston_refuses_a_name_waysock_holds";
    let (scratch, rt, env) = setup("weston-refuse");
    let bound = binder(&env)
        .display(Some("wayland-3".into()))
        .bind()
        .unwrap();
    let sock = rt.join("wayland-3");
    let ours = ino(&sock);
    let Some(mut weston) = start_weston(name, &scratch, &rt, Some("wayland-3")) else {
        return;
    };
    let status = weston
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("weston kept running on a held name\n{}", weston.log()));
    assert!(
        !status.success(),
        "weston exited {status}\n{}",
        weston.log()
    );
    let log = weston.log();
    assert!(
        log.contains("wayland-3.lock") && log.contains("lock"),
        "weston's log should name the lock\n{log}"
    );
    // libwayland did not unlink our socket: it is the same inode and still ours.
    assert_eq!(ino(&sock), ours);
    let _c = UnixStream::connect(&sock).unwrap();
    bound.accept().unwrap();
}

#[test]
fn weston_skips_the_name_waysock_holds() {
    let name = "weston_skips_the_name_waysock_holds";
    let (scratch, rt, env) = setup("weston-skip");
    let bound = binder(&env)
        .display(Some("wayland-1".into()))
        .bind()
        .unwrap();
    let Some(mut weston) = start_weston(name, &scratch, &rt, None) else {
        return;
    };
    weston
        .wait_listening("wayland-2", Duration::from_secs(15))
        .unwrap();
    assert_weston_answers(&rt, "wayland-2", &weston);
    assert_eq!(bound.endpoint(), &unix(rt.join("wayland-1")));
    let _c = UnixStream::connect(rt.join("wayland-1")).unwrap();
    bound.accept().unwrap();
}

#[test]
fn socket_left_by_a_killed_weston_is_reclaimed() {
    let name = "socket_left_by_a_killed_weston_is_reclaimed";
    let (scratch, rt, env) = setup("weston-killed");
    let Some(mut weston) = start_weston(name, &scratch, &rt, None) else {
        return;
    };
    weston
        .wait_listening("wayland-1", Duration::from_secs(15))
        .unwrap();
    weston.kill_hard();
    // SIGKILL: no cleanup, the socket and lock file stay; the kernel dropped the flock.
    let sock = rt.join("wayland-1");
    assert!(sock.exists() && rt.join("wayland-1.lock").exists());
    // weston's helper clients may take a moment to notice and exit; they hold no lock.
    let refused = wait_for(Duration::from_secs(5), || {
        UnixStream::connect(&sock).is_err().then_some(())
    });
    assert!(
        refused.is_some(),
        "nothing may answer on a killed weston's socket"
    );

    let b = binder(&env).display(Some("wayland-1".into()));
    let report = b.diagnose().unwrap();
    assert!(report.to_string().contains("stale"), "{report}");
    let bound = b.bind().unwrap();
    assert_eq!(bound.endpoint(), &unix(sock.clone()));
    assert!(
        bound.report().to_string().contains("reclaimed"),
        "{}",
        bound.report()
    );
    drop(bound);
    assert!(snapshot(&rt).is_empty(), "{:?}", snapshot(&rt));

    // And a stock compositor can come up on that name again afterwards.
    let Some(mut again) = start_weston(name, &scratch, &rt, Some("wayland-1")) else {
        return;
    };
    again
        .wait_listening("wayland-1", Duration::from_secs(15))
        .unwrap();
    assert_weston_answers(&rt, "wayland-1", &again);
}

// ---- remove_stale_display: `waysock run`'s cleanup after its compositor died ----------------

#[test]
fn remove_stale_display_removes_a_dead_display() {
    let (scratch, rt, _env) = setup("rsd-dead");
    std::fs::write(rt.join("keep.txt"), b"mine").unwrap();
    let before = snapshot(scratch.path());
    stale_socket(&rt.join("wayland-0"));
    File::create(rt.join("wayland-0.lock")).unwrap();
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(true));
    assert_eq!(snapshot(scratch.path()), before, "socket and lock both go");

    // A lock file alone (the socket already gone) is the last trace: removed too.
    File::create(rt.join("wayland-0.lock")).unwrap();
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(true));
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn remove_stale_display_leaves_a_held_lock_alone() {
    // Someone holds the lock: that display is alive (or being set up), whatever its socket
    // looks like right now. Neither the socket nor the lock may go.
    let (scratch, rt, _env) = setup("rsd-held");
    let _held = hold_lock(&rt.join("wayland-0.lock"));
    let before = snapshot(scratch.path());
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(false));
    assert_eq!(snapshot(scratch.path()), before, "a held lock was removed");

    // Its socket does not answer yet (bound, not listening): still not ours to remove.
    stale_socket(&rt.join("wayland-0"));
    let before = snapshot(scratch.path());
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(false));
    assert_eq!(
        snapshot(scratch.path()),
        before,
        "the socket of a held lock was reclaimed"
    );
}

#[test]
fn remove_stale_display_leaves_a_live_socket_alone() {
    // The lock is free but a server (one that does not use lock files) answers.
    let (scratch, rt, _env) = setup("rsd-live");
    let _server = UnixListener::bind(rt.join("wayland-0")).unwrap();
    File::create(rt.join("wayland-0.lock")).unwrap();
    let before = snapshot(scratch.path());
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(false));
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn remove_stale_display_leaves_what_is_not_a_socket_alone() {
    let (scratch, rt, _env) = setup("rsd-file");
    std::fs::write(rt.join("wayland-0"), b"precious").unwrap();
    File::create(rt.join("wayland-0.lock")).unwrap();
    let before = snapshot(scratch.path());
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(false));
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn remove_stale_display_without_a_lock_file_removes_nothing() {
    // No lock file: not a display waysock or libwayland made; nothing is created either.
    let (scratch, rt, _env) = setup("rsd-nolock");
    stale_socket(&rt.join("wayland-0"));
    let before = snapshot(scratch.path());
    assert_eq!(waysock::remove_stale_display(&rt, "wayland-0"), Ok(false));
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn remove_stale_display_never_follows_a_symlinked_lock() {
    let (scratch, rt, _env) = setup("rsd-symlink");
    let target = scratch.path().join("elsewhere.lock");
    File::create(&target).unwrap();
    symlink(&target, rt.join("wayland-0.lock")).unwrap();
    stale_socket(&rt.join("wayland-0"));
    let before = snapshot(scratch.path());
    assert!(waysock::remove_stale_display(&rt, "wayland-0").is_err());
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn datagram_socket_named_wayland_0_is_never_unlinked() {
    // A socket that a stream connect cannot test (EPROTOTYPE, not ECONNREFUSED) is not known
    // to be stale: it stays, and the next name is taken.
    assert_blocker_left_alone(
        "blk-dgram",
        |p| {
            // Kept open for the whole test: closed, it would refuse connections like a stale one.
            Box::leak(Box::new(UnixDatagram::bind(p).unwrap()));
        },
        false,
    );
}

#[test]
fn fifo_as_lock_file_is_left_alone() {
    let (scratch, rt, env) = setup("blk-lock-fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        rt.join("wayland-0.lock"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let before = snapshot(scratch.path());
    let bound = binder(&env).bind().unwrap();
    assert_eq!(
        bound.endpoint(),
        &unix(rt.join("wayland-1")),
        "{}",
        bound.report()
    );
    match outcome_for(bound.report(), &unix(rt.join("wayland-0")).to_string()) {
        Outcome::Failed(f) => {
            assert!(!f.security, "{f:?}");
            assert!(f.cause.contains("not a regular file"), "{f:?}");
        }
        other => panic!("{other:?}\n{}", bound.report()),
    }
    drop(bound);
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn diagnose_refuses_a_symlinked_lock_file() {
    let (scratch, rt, env) = setup("diag-lock-symlink");
    let target = scratch.path().join("victim");
    std::fs::write(&target, b"x").unwrap();
    symlink(&target, rt.join("wayland-0.lock")).unwrap();
    let before = snapshot(scratch.path());
    let report = binder(&env).diagnose().unwrap();
    match outcome_for(&report, &unix(rt.join("wayland-0")).to_string()) {
        Outcome::Failed(f) => assert!(f.security && f.cause.contains("symlink"), "{f:?}"),
        other => panic!("{other:?}\n{report}"),
    }
    assert_eq!(
        report.choice.as_ref().map(|c| c.endpoint.clone()),
        Some(unix(rt.join("wayland-1"))),
        "{report}"
    );
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn diagnose_never_calls_a_lock_path_it_cannot_open_a_symlink() {
    // A directory at the lock path cannot be opened (EISDIR): reported as what it is, not as
    // a planted symlink, and left alone.
    let (scratch, rt, env) = setup("diag-lock-dir");
    std::fs::create_dir(rt.join("wayland-0.lock")).unwrap();
    let before = snapshot(scratch.path());
    let report = binder(&env).diagnose().unwrap();
    match outcome_for(&report, &unix(rt.join("wayland-0")).to_string()) {
        Outcome::Failed(f) => {
            assert!(!f.security, "{f:?}\n{report}");
            assert!(!f.cause.contains("symlink"), "{f:?}\n{report}");
        }
        other => panic!("{other:?}\n{report}"),
    }
    assert_eq!(snapshot(scratch.path()), before);
}
