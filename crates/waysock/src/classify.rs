//! The one place an errno is decided: `(syscall, errno, path)` → what to do next, the cause in
//! words a person understands, and a remedy they can act on.
//!
//! Binding (every strategy), connecting (discovery), accepting (the bridge) and the stock
//! predictions all ask [`classify`]; nothing else matches on errno values to decide. (The shim,
//! which links only libc, decides with `waysock_rules`; a test here holds the two together.)

use std::path::Path;

use crate::errno::Errno;
use crate::report::Failure;
use crate::sys::SysError;

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This candidate cannot work; try the next one.
    NextCandidate,
    /// The name is taken; try the next display number in the same place.
    NextName,
    /// No other candidate can help (out of descriptors or memory): stop the chain.
    Stop,
    /// Transient: the same call may succeed in a moment (an `accept` that hit a descriptor
    /// limit or a connection that went away before it was accepted). Wait and go on.
    Retry,
}

/// The decision for `errno` raised by `syscall`.
pub fn decision(syscall: &str, errno: Errno) -> Decision {
    use Errno as E;
    match (syscall, errno) {
        ("accept", E::MFILE | E::NFILE | E::NOBUFS | E::NOMEM) => Decision::Retry,
        ("accept", E::CONNABORTED | E::PROTO | E::PERM | E::INTR | E::AGAIN) => Decision::Retry,
        (_, E::MFILE | E::NFILE | E::NOMEM) => Decision::Stop,
        ("bind", E::ADDRINUSE) => Decision::NextName,
        _ => Decision::NextCandidate,
    }
}

/// Is an `accept` error transient (the listener is fine; wait and accept again)?
pub fn accept_is_transient(e: &std::io::Error) -> bool {
    decision("accept", Errno::from_io(e)) == Decision::Retry
}

/// Decodes `e`, raised while working on `path`, into a [`Failure`].
pub(crate) fn failure(e: SysError, path: &Path, uid: u32) -> Failure {
    let (cause, remedy) = cause_and_remedy(e, path, uid);
    Failure {
        syscall: Some(e.syscall),
        errno: Some(e.errno),
        path: Some(path.to_path_buf()),
        cause,
        remedy,
        security: e.errno == Errno::LOOP,
        fatal: decision(e.syscall, e.errno) == Decision::Stop,
    }
}

/// A person's words for a failed `connect` to a display (discovery, and what a stock client
/// would see).
pub fn connect_error(e: Errno) -> String {
    use Errno as E;
    match e {
        E::NOENT => "no such file (ENOENT)".into(),
        E::CONNREFUSED => {
            "connection refused (ECONNREFUSED): nothing listens, a stale socket".into()
        }
        E::ACCES | E::PERM => format!("permission denied ({})", e.name()),
        E::NOTDIR => "a path component is not a directory (ENOTDIR)".into(),
        E::LOOP => "a symlink: not followed (ELOOP)".into(),
        other => format!("{other}"),
    }
}

/// Does a failed `connect` only mean that nothing serves this name (so looking further is
/// normal and not worth reporting)?
pub fn nothing_there(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::CONNREFUSED)
}

fn cause_and_remedy(e: SysError, path: &Path, uid: u32) -> (String, String) {
    use Errno as E;
    let p = path.display();
    let call = e.syscall;
    let writable_dir = "set XDG_RUNTIME_DIR to a writable 0700 directory of your own, \
                        or let waysock use the next candidate";
    let too_long = || {
        (
            format!(
                "{call} {p}: the socket path is longer than sockaddr_un.sun_path (107 bytes) allows"
            ),
            format!("use a shorter directory, or {writable_dir}"),
        )
    };
    match e.errno {
        E::ROFS => (
            format!("{call} {p}: the filesystem is mounted read-only"),
            format!(
                "mount a writable tmpfs there (docker/podman: --tmpfs {}), or {writable_dir}",
                mount_hint(path)
            ),
        ),
        E::ACCES | E::PERM => (
            format!("{call} {p}: permission denied for uid {uid}"),
            if path.starts_with("/run/user") {
                format!(
                    "/run/user/{uid} is made at login by systemd-logind (pam_systemd); without a \
                     login session ask root for `install -d -m 0700 -o {uid} /run/user/{uid}`, \
                     or {writable_dir}"
                )
            } else {
                format!("use a directory owned by uid {uid}, or {writable_dir}")
            },
        ),
        E::NOENT => (
            format!("{call} {p}: no such file or directory"),
            format!("create it (`mkdir -p -m 0700 {p}`), or {writable_dir}"),
        ),
        E::NOTDIR => (
            format!("{call} {p}: a path component is not a directory"),
            format!("remove or rename what is in the way, or {writable_dir}"),
        ),
        E::LOOP => (
            format!(
                "{call} {p}: it is a symlink, and waysock never follows a symlink it did not create"
            ),
            format!(
                "remove the symlink if you did not make it yourself (`ls -l {p}`); until then \
                 waysock skips it"
            ),
        ),
        E::NAMETOOLONG => too_long(),
        E::INVAL if call == "bind" => too_long(),
        E::OPNOTSUPP | E::NXIO | E::PROTONOSUPPORT | E::AFNOSUPPORT => (
            format!(
                "{call} {p}: this filesystem or sandbox does not allow Unix sockets (e.g. 9p, \
                 some FUSE mounts, a seccomp filter)"
            ),
            format!("put the runtime dir on a tmpfs, or {writable_dir}"),
        ),
        E::NOSPC | E::DQUOT => (
            format!("{call} {p}: no space or quota left on this filesystem"),
            "free some space (`df -h`, `df -i`), or let waysock use the next candidate".into(),
        ),
        E::MFILE | E::NFILE => (
            format!("{call}: this process (or the system) is out of file descriptors"),
            "raise the limit (`ulimit -n`) or close descriptors; no other candidate can help"
                .into(),
        ),
        E::NOMEM => (
            format!("{call}: out of kernel memory"),
            "free memory; no other candidate can help".into(),
        ),
        E::ADDRINUSE => (
            format!("{call} {p}: the address is already in use"),
            "waysock tries the next display number".into(),
        ),
        _ => (
            format!("{call} {p}: {}", e.errno.message()),
            format!("check {p} by hand, or {writable_dir}"),
        ),
    }
}

/// The mount point to suggest for a path: its top-level directory (`/run/user/0` → `/run`).
fn mount_hint(path: &Path) -> String {
    let mut comps = path.components();
    comps.next();
    match comps.next() {
        Some(first) if first.as_os_str() == "dev" => "/dev/shm".to_string(),
        Some(first) => format!("/{}", first.as_os_str().to_string_lossy()),
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(errno: &str, path: &str) -> Failure {
        failure(
            SysError {
                syscall: "mkdir",
                errno: Errno::from_name(errno).unwrap(),
            },
            Path::new(path),
            1000,
        )
    }

    #[test]
    fn read_only_names_the_mount() {
        let x = f("EROFS", "/tmp/waysock-1000");
        assert!(x.cause.contains("read-only"), "{}", x.cause);
        assert!(x.remedy.contains("--tmpfs /tmp"), "{}", x.remedy);
        assert!(!x.fatal && !x.security);
        assert!(f("EROFS", "/dev/shm/waysock-1000")
            .remedy
            .contains("/dev/shm"));
    }

    #[test]
    fn user_run_permission_names_logind() {
        let x = f("EACCES", "/run/user/1000");
        assert!(x.remedy.contains("systemd-logind"), "{}", x.remedy);
    }

    #[test]
    fn resource_exhaustion_is_fatal() {
        assert!(f("EMFILE", "/tmp/x").fatal);
        assert!(f("ENOMEM", "/tmp/x").fatal);
        assert!(!f("ENOSPC", "/tmp/x").fatal);
    }

    #[test]
    fn symlink_is_a_security_refusal() {
        assert!(f("ELOOP", "/tmp/waysock-1000").security);
    }

    #[test]
    fn decision_table_follows_the_design() {
        for name in [
            "EACCES",
            "EPERM",
            "EROFS",
            "ENOENT",
            "ENAMETOOLONG",
            "EINVAL",
            "EOPNOTSUPP",
            "ENXIO",
            "EPROTONOSUPPORT",
            "EAFNOSUPPORT",
            "ENOSPC",
            "EDQUOT",
        ] {
            let e = Errno::from_name(name).unwrap();
            assert_eq!(decision("bind", e), Decision::NextCandidate, "{name}");
        }
        for name in ["EMFILE", "ENFILE", "ENOMEM"] {
            let e = Errno::from_name(name).unwrap();
            assert_eq!(decision("mkdir", e), Decision::Stop, "{name}");
            assert_eq!(decision("accept", e), Decision::Retry, "{name}");
        }
        assert_eq!(decision("bind", Errno::ADDRINUSE), Decision::NextName);
        assert_eq!(decision("accept", Errno::CONNABORTED), Decision::Retry);
        assert_eq!(decision("accept", Errno::BADF), Decision::NextCandidate);
    }

    /// The shim decides with `waysock_rules` (it cannot link this crate): what it treats as
    /// "this place is unusable, use the abstract name" must be what the chain treats as "try
    /// the next candidate", and never a name clash or a reason to stop.
    #[test]
    fn the_shims_errno_rules_agree_with_the_classifier() {
        for raw in 1..=133 {
            let e = Errno::from_raw(raw);
            if waysock_rules::bind_place_unusable(raw) {
                assert_eq!(decision("bind", e), Decision::NextCandidate, "{e:?}");
            }
            if waysock_rules::connect_nothing_there(raw) {
                assert!(nothing_there(e), "{e:?}");
            } else {
                assert!(!nothing_there(e), "{e:?}");
            }
        }
    }
}
