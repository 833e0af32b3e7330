//! Telling a supervisor that the display is ready, the ways supervisors listen:
//! - `--ready-fd N` (s6, runit, a shell with a pipe): one line, the endpoint, then the fd is
//!   closed. A reader that sees EOF without a line knows the display never came up.
//! - `NOTIFY_SOCKET` (systemd `Type=notify`, `systemd-notify --ready`'s protocol): `READY=1`
//!   and a `STATUS=` line once the display answers a roundtrip, `STOPPING=1` at the end.
//!
//! Neither is handed on to the compositor: it is `run` that knows when the display answers.

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// The readiness channels of one `run`.
#[derive(Debug, Default)]
pub struct Notifier {
    ready_fd: Option<OwnedFd>,
    notify: Option<(OwnedFd, SocketAddrUnix)>,
}

impl Notifier {
    /// Takes `--ready-fd` (refused with the reason when it is not a descriptor we may write)
    /// and `NOTIFY_SOCKET` from the environment (a bad value is warned about and ignored, as
    /// `sd_notify` does).
    pub fn new(ready_fd: Option<i32>) -> Result<Notifier, String> {
        let ready_fd = match ready_fd {
            None => None,
            Some(n) => Some(
                waysock::adopt_inherited_fd(n)
                    .map_err(|p| format!("--ready-fd {n}: fd {n} {p}"))?,
            ),
        };
        let notify = std::env::var_os("NOTIFY_SOCKET").and_then(|v| match notify_socket(&v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={}: {e}; not notifying", v.to_string_lossy());
                None
            }
        });
        Ok(Notifier { ready_fd, notify })
    }

    /// The display answers at `endpoint`.
    pub fn ready(&mut self, endpoint: &waysock::Endpoint, status: &str) {
        if let Some(fd) = self.ready_fd.take() {
            let mut f = std::fs::File::from(fd);
            if let Err(e) = writeln!(f, "{endpoint}") {
                tracing::warn!("--ready-fd: {e}");
            }
            // Dropping `f` closes it: the reader sees the line, then EOF.
        }
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// A status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}\n"));
    }

    /// `run` is ending.
    pub fn stopping(&mut self, status: &str) {
        // A readiness fd never written to is closed now: EOF without a line means "failed".
        self.ready_fd = None;
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }

    fn send(&self, text: &str) {
        if let Some((sock, addr)) = &self.notify {
            if let Err(e) = rustix::net::sendto(sock, text.as_bytes(), SendFlags::empty(), addr) {
                tracing::warn!("NOTIFY_SOCKET: {e}");
            }
        }
    }
}

/// A datagram socket and the address `NOTIFY_SOCKET` names: a path, or `@name` for an abstract
/// one.
fn notify_socket(value: &std::ffi::OsStr) -> Result<(OwnedFd, SocketAddrUnix), String> {
    let bytes = value.as_bytes();
    let addr = match bytes.first() {
        Some(b'/') => SocketAddrUnix::new(value).map_err(|e| e.to_string())?,
        Some(b'@') => SocketAddrUnix::new_abstract_name(&bytes[1..]).map_err(|e| e.to_string())?,
        _ => return Err("neither an absolute path nor an @abstract name".into()),
    };
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok((sock, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn ready_and_stopping_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("waysock-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            ready_fd: None,
            notify: Some(notify_socket(path.as_os_str()).unwrap()),
        };
        let mut n = n;
        n.ready(&waysock::Endpoint::Abstract("wayland-0-1".into()), "up");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up\n");
        n.stopping("bye");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=bye\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_notify_values_are_refused() {
        assert!(notify_socket(std::ffi::OsStr::new("relative")).is_err());
        assert!(notify_socket(std::ffi::OsStr::new("")).is_err());
        assert!(notify_socket(std::ffi::OsStr::new("@abstract-name")).is_ok());
    }
}
