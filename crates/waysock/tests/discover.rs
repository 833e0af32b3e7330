//! Discovery's trust rule for abstract sockets (SPEC §5): anyone can bind an abstract name
//! first, so a display found there is used only if its server runs as our uid
//! (`SO_PEERCRED`). Checked here at the crate level, without namespaces or a compositor: the
//! impostor is a listener made by one thread of this test that took another uid
//! (`setresuid` changes only the calling thread's credentials on Linux; the listener records
//! them at `listen`). Each test uses its own display name, so tests running side by side in
//! one network namespace never meet.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use waysock::registry::Registry;
use waysock::{abstract_display_name, Discovery, Endpoint, Environment, Roots};
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
        .expect_err("a listener of another uid was accepted");
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
                .find(|t| t.place.starts_with("abstract:"))
                .unwrap_or_else(|| panic!("the abstract namespace was not tried:\n{e}"));
            assert!(
                place.why.contains(&format!("served by uid {other}")),
                "{}: {}",
                place.place,
                place.why
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
        .find(|t| t.place.starts_with("abstract:"))
        .unwrap_or_else(|| panic!("the abstract namespace was not tried:\n{e}"));
    assert_eq!(place.why, "nothing listening", "{}", place.place);
}
