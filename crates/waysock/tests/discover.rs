//! Discovery's trust rule for abstract sockets (SPEC §5): anyone can bind an abstract name
//! first, so a display found there is used only if its server runs as our uid
//! (`SO_PEERCRED`). Checked here at the crate level, without namespaces or a compositor: the
//! impostor is a listener made by one thread of this test that took another uid
//! (`setresuid` changes only the calling thread's credentials on Linux; the listener records
//! them at `listen`). Each test uses its own display name, so tests running side by side in
//! one network namespace never meet.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use waysock::discover::DiscoverError;
use waysock::registry::{Registry, StateFd};
use waysock::{
    abstract_display_name, Attempt, Discovery, Endpoint, Environment, Record, Roots, SUN_PATH_MAX,
};
use waysock_testkit::{intruder, is_root, skip, unique, Scratch};

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// An environment whose every place is under `base/nowhere` (missing) and a registry in
/// `base`: only the abstract namespace can answer.
fn discovery(base: &Path, display: &str) -> Discovery {
    let mut env = Environment::clean(Roots::under(&base.join("nowhere")));
    env.home = Some(base.join("nowhere/home").into_os_string());
    Discovery::new(env)
        .registry(Registry::in_dir(base, uid()))
        .display(Some(display.to_string()))
}

/// A listening stream socket at abstract `name`, made by a thread running as `as_uid` (`None`:
/// as we are). The thread ends after `listen`; the fd stays ours.
fn abstract_listener(name: &str, as_uid: Option<u32>) -> OwnedFd {
    let name = name.to_string();
    std::thread::spawn(move || {
        if let Some(u) = as_uid {
            // This thread only; the process (and every other test thread) stays root.
            rustix::thread::set_thread_res_uid(
                rustix::process::Uid::from_raw(u),
                rustix::process::Uid::from_raw(u),
                rustix::process::Uid::from_raw(u),
            )
            .expect("setresuid in one thread");
            assert_eq!(rustix::process::geteuid().as_raw(), u);
        }
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        let addr = SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap();
        rustix::net::bind(&fd, &addr).unwrap();
        rustix::net::listen(&fd, 8).unwrap();
        fd
    })
    .join()
    .expect("listener thread")
}

/// Another uid to serve as, or why the test cannot run.
fn other_uid() -> Result<u32, String> {
    if !is_root() {
        return Err("needs root to take another uid in one thread".into());
    }
    // Any uid but ours would do; the intruder account makes the intent plain.
    Ok(intruder().map(|(u, _)| u).unwrap_or(65534))
}

#[test]
fn an_abstract_display_served_by_another_uid_is_refused() {
    let test = "an_abstract_display_served_by_another_uid_is_refused";
    let other = match other_uid() {
        Ok(u) => u,
        Err(why) => return skip(test, &why),
    };
    assert_ne!(other, uid());
    let scratch = Scratch::new("disc-abs-other");
    let display = unique("wayland-imp");
    let abs = abstract_display_name(uid(), &display);
    let impostor = abstract_listener(&abs, Some(other));
    let peer = rustix::net::sockopt::socket_peercred(&{
        let probe = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::connect(
            &probe,
            &SocketAddrUnix::new_abstract_name(abs.as_bytes()).unwrap(),
        )
        .unwrap();
        probe
    })
    .unwrap();
    assert_eq!(
        peer.uid.as_raw(),
        other,
        "the impostor's listener is not of uid {other}"
    );

    // The check itself.
    let why = waysock::discover::accepts(&Endpoint::Abstract(abs.clone()))
        .expect_err("a listener of another uid was accepted")
        .to_string();
    assert!(
        why.contains(&format!("served by uid {other}")) && why.contains("refused"),
        "{why}"
    );

    // Discovery looks there last, refuses it and says why.
    match discovery(scratch.path(), &display).find() {
        Ok((found, _)) => panic!(
            "discovery connected to a display served by uid {other}: {} ({})",
            found.endpoint, found.source
        ),
        Err(e) => {
            let place = e
                .tried()
                .iter()
                .find(|t| t.candidate.starts_with("abstract:"))
                .unwrap_or_else(|| panic!("the abstract namespace was not tried:\n{e}"));
            assert!(
                place.why().contains(&format!("served by uid {other}")),
                "{}: {}",
                place.candidate,
                place.why()
            );
        }
    }
    drop(impostor);
}

#[test]
fn an_abstract_display_served_by_our_uid_is_found() {
    // The same setup with our own listener: the refusal above is about the uid, nothing else.
    let scratch = Scratch::new("disc-abs-own");
    let display = unique("wayland-own");
    let abs = abstract_display_name(uid(), &display);
    let _ours = abstract_listener(&abs, None);
    assert!(waysock::discover::accepts(&Endpoint::Abstract(abs.clone())).is_ok());
    let (found, _tried) = discovery(scratch.path(), &display)
        .find()
        .unwrap_or_else(|e| panic!("our own abstract display was not found:\n{e}"));
    assert_eq!(found.endpoint, Endpoint::Abstract(abs));
    assert_eq!(found.source, "abstract");
    assert!(found.stream.is_some());
}

#[test]
fn an_abstract_display_nobody_serves_is_not_found() {
    let scratch = Scratch::new("disc-abs-none");
    let display = unique("wayland-none");
    let e = discovery(scratch.path(), &display)
        .find()
        .expect_err("nothing listens there");
    let place = e
        .tried()
        .iter()
        .find(|t| t.candidate.starts_with("abstract:"))
        .unwrap_or_else(|| panic!("the abstract namespace was not tried:\n{e}"));
    assert_eq!(place.why(), "nothing listening", "{}", place.candidate);
}

// ---- the places before the abstract namespace ---------------------------------------------

/// An environment as in [`discovery`] but with no `--display`, and a private (0700) runtime
/// dir `base/rt` (made here) as `XDG_RUNTIME_DIR`.
fn with_runtime_dir(base: &Path) -> (PathBuf, Environment) {
    let rt = base.join("rt");
    std::fs::create_dir(&rt).unwrap();
    waysock_testkit::set_mode(&rt, 0o700);
    let mut env = Environment::clean(Roots::under(&base.join("nowhere")));
    env.home = Some(base.join("nowhere/home").into_os_string());
    env.xdg_runtime_dir = Some(rt.clone().into_os_string());
    (rt, env)
}

fn find(base: &Path, env: Environment) -> Result<(waysock::Found, Vec<Attempt>), DiscoverError> {
    Discovery::new(env)
        .registry(Registry::in_dir(base, uid()))
        .find()
}

/// Why `place_prefix` did not answer, from a discovery that found nothing.
fn why(
    result: Result<(waysock::Found, Vec<Attempt>), DiscoverError>,
    place_prefix: &str,
) -> String {
    match result {
        Ok((found, _)) => panic!("found {} ({})", found.endpoint, found.source),
        Err(e) => e
            .tried()
            .iter()
            .find(|t| t.candidate.starts_with(place_prefix))
            .unwrap_or_else(|| panic!("{place_prefix} was not tried:\n{e}"))
            .why()
            .to_string(),
    }
}

#[test]
fn wayland_display_in_the_runtime_dir_is_found_and_failures_are_named() {
    let scratch = Scratch::new("disc-wd");
    let (rt, mut env) = with_runtime_dir(scratch.path());
    let name = unique("wayland-wd");
    env.wayland_display = Some(name.clone().into());
    let w = why(find(scratch.path(), env.clone()), "WAYLAND_DISPLAY=");
    assert!(w.contains("no such file (ENOENT)"), "{w}");
    waysock_testkit::stale_socket(&rt.join(&name));
    let w = why(find(scratch.path(), env.clone()), "WAYLAND_DISPLAY=");
    assert!(w.contains("connection refused (ECONNREFUSED)"), "{w}");
    std::fs::remove_file(rt.join(&name)).unwrap();
    let _server = UnixListener::bind(rt.join(&name)).unwrap();
    let (found, _) = find(scratch.path(), env).unwrap();
    assert_eq!(found.endpoint, Endpoint::Unix(rt.join(&name)));
    assert_eq!(found.source, "WAYLAND_DISPLAY");
}

#[test]
fn display_option_is_looked_up_in_the_runtime_dir_first() {
    let scratch = Scratch::new("disc-opt");
    let (rt, env) = with_runtime_dir(scratch.path());
    let name = unique("wayland-opt");
    let _server = UnixListener::bind(rt.join(&name)).unwrap();
    let (found, _) = Discovery::new(env)
        .registry(Registry::in_dir(scratch.path(), uid()))
        .display(Some(name.clone()))
        .find()
        .unwrap();
    assert_eq!(found.endpoint, Endpoint::Unix(rt.join(&name)));
    assert_eq!(found.source, "--display");
}

#[test]
fn an_empty_wayland_display_is_not_a_place() {
    let scratch = Scratch::new("disc-empty");
    let (_rt, mut env) = with_runtime_dir(scratch.path());
    env.wayland_display = Some("".into());
    let e = find(scratch.path(), env).expect_err("nothing to find");
    assert!(
        !e.tried()
            .iter()
            .any(|t| t.candidate.starts_with("WAYLAND_DISPLAY")),
        "{e}"
    );
}

#[test]
fn a_runtime_dir_that_is_not_a_directory_is_named_as_such() {
    let scratch = Scratch::new("disc-rtfile");
    let file = scratch.path().join("rtfile");
    std::fs::write(&file, b"").unwrap();
    let mut env = Environment::clean(Roots::under(&scratch.path().join("nowhere")));
    env.xdg_runtime_dir = Some(file.clone().into_os_string());
    env.wayland_display = Some("wayland-0".into());
    let w = why(find(scratch.path(), env), "WAYLAND_DISPLAY=");
    assert!(w.contains("is a regular file"), "{w}");
}

#[test]
fn a_socket_path_longer_than_sun_path_is_not_dialled() {
    // The runtime dir's path is padded so that the socket's path is exactly one byte too long,
    // then exactly as long as sun_path holds.
    let scratch = Scratch::new("disc-long");
    let name = "wayland-0";
    let base_len = scratch.path().as_os_str().len() + "/".len() + "/rt/".len() + name.len();
    let pad = SUN_PATH_MAX + 1 - base_len;
    let deep = scratch.path().join("p".repeat(pad));
    std::fs::create_dir(&deep).unwrap();
    let (rt, mut env) = with_runtime_dir(&deep);
    env.wayland_display = Some(name.into());
    assert_eq!(rt.join(name).as_os_str().len(), SUN_PATH_MAX + 1);
    let w = why(find(scratch.path(), env), "WAYLAND_DISPLAY=");
    assert!(w.contains(&format!("sun_path holds {SUN_PATH_MAX}")), "{w}");

    let deep = scratch.path().join("p".repeat(pad - 1));
    std::fs::create_dir(&deep).unwrap();
    let (rt, mut env) = with_runtime_dir(&deep);
    env.wayland_display = Some(name.into());
    assert_eq!(rt.join(name).as_os_str().len(), SUN_PATH_MAX);
    let w = why(find(scratch.path(), env), "WAYLAND_DISPLAY=");
    assert!(
        w.contains("ENOENT"),
        "a path that fits was not dialled: {w}"
    );
}

#[test]
fn wayland_socket_is_adopted_only_as_a_plain_descriptor_number() {
    let scratch = Scratch::new("disc-ws");
    let (ours, _peer) = UnixStream::pair().unwrap();
    let n = ours.as_raw_fd();
    let env_with = |v: String| {
        let mut env = Environment::clean(Roots::under(&scratch.path().join("nowhere")));
        env.wayland_socket = Some(v.into());
        env
    };
    let (found, _) = find(scratch.path(), env_with(n.to_string())).unwrap();
    assert_eq!(found.endpoint, Endpoint::Fd(n));
    assert_eq!(found.source, "WAYLAND_SOCKET");
    assert!(
        found.stream.is_none(),
        "an inherited socket is left to the client"
    );
    // "+N" parses as N, but is not what a parent sets: ignored, like anything not all digits.
    for v in [format!("+{n}"), format!("{n}x"), String::new()] {
        let w = why(find(scratch.path(), env_with(v.clone())), "WAYLAND_SOCKET=");
        assert!(w.contains("not a decimal descriptor number"), "{v:?}: {w}");
    }
    // A descriptor that is not a Unix stream socket is never adopted.
    let file = std::fs::File::open("/dev/null").unwrap();
    let w = why(
        find(scratch.path(), env_with(file.as_raw_fd().to_string())),
        "WAYLAND_SOCKET=",
    );
    assert!(w.contains("ignored (nothing adopted)"), "{w}");
}

#[test]
fn waysock_state_fd_is_followed_only_for_the_display_asked_for() {
    let scratch = Scratch::new("disc-sfd");
    let display = unique("wayland-sfd");
    let abs = abstract_display_name(uid(), &format!("{display}-x"));
    let _ours = abstract_listener(&abs, None);
    let state = StateFd::create().unwrap();
    let rec = Record::for_process(
        &display,
        Endpoint::Abstract(abs.clone()),
        std::process::id(),
        None,
    )
    .unwrap();
    state.publish(&rec).unwrap();
    let discovery = || {
        let env = Environment::clean(Roots::under(&scratch.path().join("nowhere")));
        Discovery::new(env)
            .registry(Registry::in_dir(scratch.path(), uid()))
            .state_fd(Some(state.raw().to_string().into()))
    };
    let (found, _) = discovery().find().unwrap();
    assert_eq!(found.endpoint, Endpoint::Abstract(abs.clone()));
    assert_eq!(found.source, "WAYSOCK_STATE_FD");
    let (found, _) = discovery().display(Some(display.clone())).find().unwrap();
    assert_eq!(found.source, "WAYSOCK_STATE_FD");
    // Asked for another display: the record is not used (and nothing else answers).
    let w = why(
        discovery().display(Some(unique("wayland-other"))).find(),
        "WAYSOCK_STATE_FD",
    );
    assert!(
        w.contains(&format!("holds {display}, not the display asked for")),
        "{w}"
    );
}

#[test]
fn a_runtime_dir_group_can_reach_is_not_trusted() {
    // Readable by the group, not writable by anyone else: only the "private (0700) dir of
    // ours" rule refuses it. A socket in it is never dialled.
    let scratch = Scratch::new("disc-rt0750");
    let (rt, mut env) = with_runtime_dir(scratch.path());
    let name = unique("wayland-grp");
    let planted = UnixListener::bind(rt.join(&name)).unwrap();
    waysock_testkit::set_mode(&rt, 0o750);
    env.wayland_display = Some(name.into());
    let w = why(find(scratch.path(), env), "WAYLAND_DISPLAY=");
    assert!(w.contains("not trusted"), "{w}");
    planted.set_nonblocking(true).unwrap();
    assert!(
        planted.accept().is_err(),
        "a socket in a 0750 runtime dir was dialled"
    );
    assert!(!waysock::discover::usable_runtime_dir(&rt, uid()));
    waysock_testkit::set_mode(&rt, 0o700);
    assert!(waysock::discover::usable_runtime_dir(&rt, uid()));
    assert!(!waysock::discover::usable_runtime_dir(&rt, uid() + 1));
}

#[test]
fn a_display_the_registry_led_to_is_connected_to_once() {
    // The registry record and the runtime-dir strategy name the same socket: discovery proves
    // it answers once, and the chain does not dial it again.
    let scratch = Scratch::new("disc-once");
    let (rt, env) = with_runtime_dir(scratch.path());
    let sock = rt.join("wayland-0");
    let listener = UnixListener::bind(&sock).unwrap();
    let ep = Endpoint::Unix(sock);
    let rec = Record::for_process("wayland-0", ep.clone(), std::process::id(), None)
        .expect("this process runs");
    Registry::in_dir(scratch.path(), uid())
        .publish(&rec)
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let accepted = || std::iter::from_fn(|| listener.accept().ok()).count();
    accepted(); // publish's own liveness check
    let (found, _) = find(scratch.path(), env).unwrap();
    assert_eq!((found.endpoint, found.source.as_str()), (ep, "registry"));
    let connections = accepted();
    assert_eq!(connections, 1, "the display was dialled more than once");
}
