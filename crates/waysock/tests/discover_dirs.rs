//! Discovery in the fallback directories of the strategy chain (SPEC §5): a directory is
//! searched only if it is ours and private, only sockets in it are dialled, and only paths that
//! fit `sun_path`. Every place is under a scratch dir (roots made like the real ones: sticky
//! and world-writable), so these tests run side by side and never touch `/tmp`.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use waysock::registry::Registry;
use waysock::{Discovery, Endpoint, Environment, Roots, SUN_PATH_MAX};
use waysock_testkit::{is_root, set_mode, skip, Scratch};

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Roots under `base` (made sticky and world-writable, like `/tmp`), nothing inherited, and
/// the private-tmp dir `base/tmp/waysock-UID` made 0700.
fn setup(base: &Path) -> (Environment, PathBuf) {
    let env = Environment::clean(Roots::under(base));
    for d in [
        &env.roots.tmp,
        &env.roots.run,
        &env.roots.shm,
        &env.roots.varrun,
    ] {
        std::fs::create_dir_all(d).unwrap();
        set_mode(d, 0o1777);
    }
    let private = env.roots.tmp.join(format!("waysock-{}", uid()));
    std::fs::create_dir(&private).unwrap();
    set_mode(&private, 0o700);
    (env, private)
}

fn find(
    base: &Path,
    env: Environment,
) -> Result<(waysock::Found, Vec<waysock::Attempt>), waysock::discover::DiscoverError> {
    Discovery::new(env)
        .registry(Registry::in_dir(base, uid()))
        .find()
}

/// Why the place starting `private-tmp` did not answer.
fn why_private_tmp(base: &Path, env: Environment) -> String {
    match find(base, env) {
        Ok((found, _)) => panic!("found {} ({})", found.endpoint, found.source),
        Err(e) => e
            .tried()
            .iter()
            .find(|t| t.candidate.starts_with("private-tmp"))
            .unwrap_or_else(|| panic!("private-tmp was not tried:\n{e}"))
            .why()
            .to_string(),
    }
}

/// Was a connection made to `l` (is one queued)?
fn was_dialled(l: &UnixListener) -> bool {
    l.set_nonblocking(true).unwrap();
    l.accept().is_ok()
}

#[test]
fn a_live_socket_in_our_private_dir_is_found() {
    let scratch = Scratch::new("dd-found");
    let (env, private) = setup(scratch.path());
    let _l = UnixListener::bind(private.join("wayland-3")).unwrap();
    let (found, _) = find(scratch.path(), env).unwrap();
    assert_eq!(found.endpoint, Endpoint::Unix(private.join("wayland-3")));
    assert_eq!(found.source, "private-tmp");
}

#[test]
fn a_private_dir_of_another_uid_is_never_searched() {
    let name = "a_private_dir_of_another_uid_is_never_searched";
    if !is_root() {
        return skip(name, "needs root to chown a directory to another uid");
    }
    let scratch = Scratch::new("dd-owner");
    let (env, private) = setup(scratch.path());
    let planted = UnixListener::bind(private.join("wayland-0")).unwrap();
    std::os::unix::fs::chown(&private, Some(1001), Some(1001)).unwrap();
    let why = why_private_tmp(scratch.path(), env);
    assert!(why.contains("not trusted"), "{why}");
    assert!(
        !was_dialled(&planted),
        "a socket in another uid's dir was dialled"
    );
}

#[test]
fn a_private_dir_group_can_reach_is_never_searched() {
    let scratch = Scratch::new("dd-mode");
    let (env, private) = setup(scratch.path());
    let planted = UnixListener::bind(private.join("wayland-0")).unwrap();
    set_mode(&private, 0o750);
    let why = why_private_tmp(scratch.path(), env);
    assert!(why.contains("not trusted"), "{why}");
    assert!(why.contains("0750"), "{why}");
    assert!(!was_dialled(&planted), "a socket in a 0750 dir was dialled");
}

#[test]
fn only_sockets_are_dialled() {
    let scratch = Scratch::new("dd-kind");
    let (env, private) = setup(scratch.path());
    std::fs::write(private.join("wayland-0"), b"not a socket").unwrap();
    assert_eq!(
        why_private_tmp(scratch.path(), env),
        "no Wayland socket in it"
    );
}

/// A private-tmp dir whose `wayland-0` path is exactly `len` bytes long: the roots are put
/// below a padding dir of the right length.
fn private_dir_for_socket_path_of(scratch: &Scratch, len: usize) -> (Environment, PathBuf) {
    let tail = format!("/tmp/waysock-{}/wayland-0", uid()).len();
    let pad = len - tail - scratch.path().as_os_str().len() - 1;
    let base = scratch.path().join("p".repeat(pad));
    std::fs::create_dir(&base).unwrap();
    let (env, private) = setup(&base);
    assert_eq!(private.join("wayland-0").as_os_str().len(), len);
    (env, private)
}

#[test]
fn a_socket_path_that_fits_sun_path_exactly_is_found() {
    let scratch = Scratch::new("dd-fit");
    let (env, private) = private_dir_for_socket_path_of(&scratch, SUN_PATH_MAX);
    let _l = UnixListener::bind(private.join("wayland-0")).unwrap();
    let (found, _) = find(scratch.path(), env).unwrap();
    assert_eq!(found.endpoint, Endpoint::Unix(private.join("wayland-0")));
}

#[test]
fn a_socket_path_longer_than_sun_path_is_skipped() {
    let scratch = Scratch::new("dd-long");
    let (env, private) = private_dir_for_socket_path_of(&scratch, SUN_PATH_MAX + 1);
    // Too long to bind by its path: bound through the directory's fd instead.
    let dir = std::fs::File::open(&private).unwrap();
    let via = format!("/proc/self/fd/{}/wayland-0", dir.as_raw_fd());
    let _l = UnixListener::bind(via).unwrap();
    assert_eq!(
        why_private_tmp(scratch.path(), env),
        "no Wayland socket in it"
    );
}

#[test]
fn a_missing_private_dir_is_named_as_missing() {
    let scratch = Scratch::new("dd-missing");
    let (env, private) = setup(scratch.path());
    std::fs::remove_dir(&private).unwrap();
    assert_eq!(
        why_private_tmp(scratch.path(), env),
        "no such file (ENOENT)"
    );
}

#[test]
fn a_symlinked_private_dir_is_never_followed() {
    // The target passes every check (ours, 0700, a live socket in it): only the symlink is
    // wrong.
    let scratch = Scratch::new("dd-symlink");
    let (env, private) = setup(scratch.path());
    let target = scratch.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    set_mode(&target, 0o700);
    let planted = UnixListener::bind(target.join("wayland-0")).unwrap();
    std::fs::remove_dir(&private).unwrap();
    std::os::unix::fs::symlink(&target, &private).unwrap();
    let why = why_private_tmp(scratch.path(), env);
    assert!(why.contains("a symlink: not followed"), "{why}");
    assert!(
        !was_dialled(&planted),
        "a socket behind a symlink was dialled"
    );
}
