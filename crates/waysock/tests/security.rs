//! Security rules that a review found worth pinning down: shared dirs are never runtime dirs
//! (and never chmod-ed), a planted FIFO cannot hang the registry, abstract listeners refuse
//! other uids, and discovery does not trust sockets in a directory that is not ours.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use waysock::registry::{Registry, RegistryError};
use waysock::{Binder, Discovery, Environment, Outcome, Roots, Strategy};
use waysock_testkit::{is_root, program, skip, test_user, unique, Scratch};

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// An environment whose fallback candidates all point into `base/nowhere` (missing).
fn env_in(base: &Path) -> Environment {
    let nowhere = base.join("nowhere");
    let mut env = Environment::clean(Roots::under(&nowhere));
    env.home = Some(nowhere.join("home").into_os_string());
    env
}

#[test]
fn fix_perms_never_touches_a_shared_dir() {
    let scratch = Scratch::new("shared-rt");
    let shared = scratch.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut env = env_in(scratch.path());
    env.xdg_runtime_dir = Some(shared.clone().into_os_string());
    let result = Binder::new(env)
        .strategies(vec![Strategy::RuntimeDir])
        .fix_perms(true)
        .bind();
    let err = result.expect_err("a sticky world-writable dir must never be used");
    let report = err.report().expect("report");
    let failure = report
        .attempts
        .iter()
        .find_map(|a| match &a.outcome {
            Outcome::Failed(f) if a.strategy == Strategy::RuntimeDir => Some(f.clone()),
            _ => None,
        })
        .expect("runtime-dir failed");
    assert!(failure.security, "{failure:?}");
    assert!(
        failure.cause.contains("world-writable"),
        "{}",
        failure.cause
    );
    assert!(!failure.remedy.contains("chmod"), "{}", failure.remedy);
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "the shared dir's mode was changed");
    assert_eq!(
        std::fs::read_dir(&shared).unwrap().count(),
        0,
        "something was written"
    );
}

#[test]
fn a_fifo_planted_as_the_registry_does_not_hang() {
    let scratch = Scratch::new("reg-fifo");
    let registry = Registry::in_dir(scratch.path(), uid());
    let made = std::process::Command::new("mkfifo")
        .arg(registry.path())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        skip(
            "a_fifo_planted_as_the_registry_does_not_hang",
            "mkfifo failed",
        );
        return;
    }
    let (tx, rx) = mpsc::channel();
    let r = registry.clone();
    std::thread::spawn(move || {
        let _ = tx.send(r.read().map(|v| v.len()));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(RegistryError::Unsafe { why, .. })) => assert!(why.contains("FIFO"), "{why}"),
        Ok(other) => panic!("a FIFO registry was accepted: {other:?}"),
        Err(_) => panic!("reading a FIFO planted as the registry hung"),
    }
}

#[test]
fn abstract_accept_refuses_other_uids() {
    let name = "abstract_accept_refuses_other_uids";
    if !is_root() {
        skip(name, "needs root to connect as another uid");
        return;
    }
    let (other, _) = match test_user() {
        Ok(u) => u,
        Err(e) => return skip(name, &e),
    };
    let python = match program("python3") {
        Ok(p) => p,
        Err(e) => return skip(name, &e),
    };
    let scratch = Scratch::new("abs-accept");
    let display = unique("wayland-acc");
    let bound = Binder::new(env_in(scratch.path()))
        .strategies(vec![Strategy::Abstract])
        .display(Some(display))
        .bind()
        .expect("abstract bind");
    let waysock::Endpoint::Abstract(abs) = bound.endpoint().clone() else {
        panic!("not abstract: {}", bound.endpoint());
    };
    // Another uid connects first and holds its connection open for a while.
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.connect(b'\\0{abs}')\ntime.sleep(3)\n"
    );
    let mut intruder = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={other}"),
            &format!("--regid={other}"),
            "--clear-groups",
        ])
        .arg(&python)
        .args(["-c", &script])
        .spawn()
        .expect("spawn intruder");
    std::thread::sleep(Duration::from_millis(500));
    // Then we connect.
    let mine = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()).unwrap();
        std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect as ourselves")
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = bound
            .accept()
            .map(|s| rustix::net::sockopt::socket_peercred(&s).map(|c| c.uid.as_raw()));
        let _ = tx.send(r);
    });
    let accepted = rx.recv_timeout(Duration::from_secs(10));
    let _ = intruder.kill();
    let _ = intruder.wait();
    let _client = mine.join();
    match accepted {
        Ok(Ok(Ok(peer))) => assert_eq!(peer, uid(), "accept returned a peer of uid {peer}"),
        other => panic!("accept did not return our own connection: {other:?}"),
    }
}

#[test]
fn discovery_does_not_trust_a_shared_runtime_dir() {
    let scratch = Scratch::new("disc-shared");
    let shared = scratch.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let name = unique("wayland-planted");
    // A socket "planted" in a directory anyone can write to.
    let _planted = UnixListener::bind(shared.join(&name)).unwrap();
    let mut env = env_in(scratch.path());
    env.xdg_runtime_dir = Some(shared.clone().into_os_string());
    let result = Discovery::new(env)
        .registry(Registry::in_dir(scratch.path(), uid()))
        .display(Some(name))
        .find();
    match result {
        Ok((found, _)) => panic!("connected to a socket in a shared dir: {}", found.endpoint),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("not trusted"), "{text}");
        }
    }
}

/// A uid that is neither root nor us, for directories "another user" owns (chown needs root).
const OTHER_UID: u32 = 4242;

fn owned_by_other(path: &Path, mode: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    rustix::fs::chown(path, Some(rustix::process::Uid::from_raw(OTHER_UID)), None).unwrap();
}

/// Issue 8, hole 4, in the library: a HOME inside a sticky world-writable directory that
/// another user owns is refused as a security matter (its owner may rename what we create),
/// and nothing is created in it.
#[test]
fn a_home_below_another_users_directory_is_refused() {
    let test = "a_home_below_another_users_directory_is_refused";
    if !is_root() {
        skip(test, "needs root to make a directory owned by another uid");
        return;
    }
    let scratch = Scratch::new("foreign-home");
    waysock_testkit::set_mode(scratch.path(), 0o755);
    let evil = scratch.path().join("malhome");
    owned_by_other(&evil, 0o1777);
    let mut env = env_in(scratch.path());
    env.home = Some(evil.clone().into_os_string());
    let err = Binder::new(env)
        .strategies(vec![Strategy::Home])
        .bind()
        .expect_err("a home in another user's directory must not be used");
    let report = err.report().expect("report");
    let failure = report
        .attempts
        .iter()
        .find_map(|a| match &a.outcome {
            Outcome::Failed(f) if a.strategy == Strategy::Home => Some(f.clone()),
            _ => None,
        })
        .expect("home failed");
    assert!(failure.security, "{failure:?}");
    assert!(
        failure
            .cause
            .contains(&format!("belongs to uid {OTHER_UID}, neither root nor us")),
        "{}",
        failure.cause
    );
    assert_eq!(
        std::fs::read_dir(&evil).unwrap().count(),
        0,
        "created in it"
    );
}

/// Issue 8, hole 3, in the library: discovery refuses relative names that leave the runtime
/// dir (from the caller or `WAYLAND_DISPLAY`), and an absolute path below another user's
/// directory is not trusted: the socket there is never connected to.
#[test]
fn discovery_never_follows_a_name_to_another_users_socket() {
    let test = "discovery_never_follows_a_name_to_another_users_socket";
    if !is_root() {
        skip(test, "needs root to make a directory owned by another uid");
        return;
    }
    let scratch = Scratch::new("foreign-socket");
    waysock_testkit::set_mode(scratch.path(), 0o755);
    let mal = scratch.path().join("mal");
    owned_by_other(&mal, 0o755);
    let socket = mal.join("wayland-1");
    let listener = UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let rt = scratch.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    waysock_testkit::set_mode(&rt, 0o700);

    let mut env = env_in(scratch.path());
    env.xdg_runtime_dir = Some(rt.clone().into_os_string());
    let display = "../mal/wayland-1";
    for from_env in [true, false] {
        let d = if from_env {
            let mut env = env.clone();
            env.wayland_display = Some(display.into());
            Discovery::new(env)
        } else {
            Discovery::new(env.clone()).display(Some(display.into()))
        };
        match d.find() {
            Err(waysock::discover::DiscoverError::BadDisplay { name, .. }) => {
                assert!(name.to_string().contains("contains '/'"), "{name}")
            }
            other => panic!("{display} (from env: {from_env}) was not refused: {other:?}"),
        }
    }
    let mut abs = env.clone();
    abs.wayland_display = Some(socket.clone().into_os_string());
    let err = Discovery::new(abs)
        .find()
        .expect_err("untrusted socket used");
    let why = err.tried()[0].why();
    assert!(why.starts_with("not trusted"), "{why}");
    assert!(
        listener.accept().is_err(),
        "the untrusted socket was connected to"
    );
}
