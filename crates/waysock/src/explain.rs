//! Turning a failed syscall into a cause a person understands and a remedy they can act on.

use std::path::Path;

use crate::errno::{Decision, Errno};
use crate::report::Failure;
use crate::sys::SysError;

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
        fatal: e.errno.decision() == Decision::Stop,
    }
}

fn cause_and_remedy(e: SysError, path: &Path, uid: u32) -> (String, String) {
    let p = path.display();
    let call = e.syscall;
    let writable_dir = "set XDG_RUNTIME_DIR to a writable 0700 directory of your own, \
                        or let waysock use the next candidate";
    match e.errno.name().as_str() {
        "EROFS" => (
            format!("{call} {p}: the filesystem is mounted read-only"),
            format!(
                "mount a writable tmpfs there (docker/podman: --tmpfs {}), or {writable_dir}",
                mount_hint(path)
            ),
        ),
        "EACCES" | "EPERM" => (
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
        "ENOENT" => (
            format!("{call} {p}: no such file or directory"),
            format!("create it (`mkdir -p -m 0700 {p}`), or {writable_dir}"),
        ),
        "ENOTDIR" => (
            format!("{call} {p}: a path component is not a directory"),
            format!("remove or rename what is in the way, or {writable_dir}"),
        ),
        "ELOOP" => (
            format!("{call} {p}: it is a symlink, and waysock never follows a symlink it did not create"),
            format!("remove the symlink if you did not make it yourself (`ls -l {p}`); until then waysock skips it"),
        ),
        "ENAMETOOLONG" => (
            format!("{call} {p}: the socket path is longer than sockaddr_un.sun_path (107 bytes) allows"),
            format!("use a shorter directory, or {writable_dir}"),
        ),
        "EINVAL" if call == "bind" => (
            format!("{call} {p}: the socket path is longer than sockaddr_un.sun_path (107 bytes) allows"),
            format!("use a shorter directory, or {writable_dir}"),
        ),
        "EOPNOTSUPP" | "ENXIO" | "EPROTONOSUPPORT" | "EAFNOSUPPORT" => (
            format!("{call} {p}: this filesystem or sandbox does not allow Unix sockets (e.g. 9p, some FUSE mounts, a seccomp filter)"),
            format!("put the runtime dir on a tmpfs, or {writable_dir}"),
        ),
        "ENOSPC" | "EDQUOT" => (
            format!("{call} {p}: no space or quota left on this filesystem"),
            "free some space (`df -h`, `df -i`), or let waysock use the next candidate".to_string(),
        ),
        "EMFILE" | "ENFILE" => (
            format!("{call}: this process (or the system) is out of file descriptors"),
            "raise the limit (`ulimit -n`) or close descriptors; no other candidate can help".to_string(),
        ),
        "ENOMEM" => (
            format!("{call}: out of kernel memory"),
            "free memory; no other candidate can help".to_string(),
        ),
        "EADDRINUSE" => (
            format!("{call} {p}: the address is already in use"),
            "waysock tries the next display number".to_string(),
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
}
