//! Finding out whether a compositor is really there: a Wayland roundtrip on a connection, who
//! holds a lock (`/proc/locks`), and process ancestry.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Sends `wl_display.sync` and waits for the callback's `done`: proof that a Wayland server
/// is running its event loop on this connection, not just that the kernel queued a connect.
pub fn roundtrip(stream: &mut UnixStream, timeout: Duration) -> io::Result<()> {
    const DISPLAY: u32 = 1;
    const CALLBACK: u32 = 2;
    let mut msg = Vec::with_capacity(12);
    msg.extend_from_slice(&DISPLAY.to_ne_bytes());
    msg.extend_from_slice(&(12u32 << 16).to_ne_bytes()); // size 12 << 16 | opcode 0 (sync)
    msg.extend_from_slice(&CALLBACK.to_ne_bytes());
    stream.write_all(&msg)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no wl_callback.done in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let mut header = [0u8; 8];
        stream.read_exact(&mut header)?;
        let object = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
        let word = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
        let (size, opcode) = ((word >> 16) as usize, word & 0xffff);
        if !(8..=4096).contains(&size) || size % 4 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a Wayland server: bad message size {size}"),
            ));
        }
        let mut body = vec![0u8; size - 8];
        stream.read_exact(&mut body)?;
        match (object, opcode) {
            (CALLBACK, 0) => return Ok(()),
            (DISPLAY, 0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server sent wl_display.error",
                ))
            }
            _ => {} // delete_id and anything else: keep reading
        }
    }
}

/// The pid holding a `flock` on the file with this device and inode, from `/proc/locks`.
pub fn flock_holder(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    for line in text.lines() {
        // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"; blocked waiters start "1: ->".
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let mut id = f[5].split(':');
        let (Some(a), Some(b), Some(i)) = (id.next(), id.next(), id.next()) else {
            continue;
        };
        let same = u32::from_str_radix(a, 16).ok() == Some(maj)
            && u32::from_str_radix(b, 16).ok() == Some(min)
            && i.parse::<u64>().ok() == Some(ino);
        if same {
            return f[4].parse().ok();
        }
    }
    None
}

/// The pid of the process that created the listening socket at the other end of `stream`
/// (`SO_PEERCRED` on a client socket).
pub fn server_pid(stream: &UnixStream) -> Option<u32> {
    rustix::net::sockopt::socket_peercred(stream)
        .ok()
        .map(|c| c.pid.as_raw_nonzero().get() as u32)
}

/// Is `pid` the process `ancestor` or one of its descendants?
pub fn is_same_or_descendant(pid: u32, ancestor: u32) -> bool {
    lineage(pid).any(|p| p == ancestor)
}

/// `pid`, its parent, its grandparent … up to pid 1 (at most 64 generations).
pub fn ancestors(pid: u32) -> Vec<u32> {
    lineage(pid).collect()
}

/// How closely `pid` is related to the process whose ancestors are `line` (itself first):
/// the place in `line` of the nearest of `pid`'s own ancestors that is in it. 0: `pid` is that
/// process or one of its descendants; 1: a descendant of its parent (a sibling's); and so on.
/// `None` when they share no ancestor we can see.
pub fn kinship(line: &[u32], pid: u32) -> Option<usize> {
    lineage(pid).find_map(|a| line.iter().position(|l| *l == a))
}

/// [`ancestors`], read from `/proc` one generation at a time, only as far as it is asked.
fn lineage(pid: u32) -> impl Iterator<Item = u32> {
    let up = |&p: &u32| {
        (p > 1)
            .then(|| parent_of(p))
            .flatten()
            .filter(|&pp| pp != 0)
    };
    std::iter::successors(Some(pid), up).take(64)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_flock() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::temp_dir().join(format!("waysock-probe-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let md = f.metadata().unwrap();
        assert_eq!(flock_holder(md.dev(), md.ino()), Some(std::process::id()));
        drop(f);
        assert_eq!(flock_holder(md.dev(), md.ino()), None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn ancestry() {
        let me = std::process::id();
        assert!(is_same_or_descendant(me, me));
        assert!(!is_same_or_descendant(1, me));
        let line = ancestors(me);
        assert_eq!(line[0], me);
        assert_eq!(kinship(&line, me), Some(0));
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(kinship(&line, child.id()), Some(0), "a child is ours");
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        if line.len() > 1 {
            assert_eq!(kinship(&line, line[1]), Some(1), "our parent");
        }
    }

    #[test]
    fn roundtrip_rejects_a_non_wayland_peer() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 12];
            let _ = b.read_exact(&mut buf);
            let _ = b.write_all(&[0xff; 16]);
        });
        let e = roundtrip(&mut a, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}

/// Who holds an abstract socket name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbstractName {
    /// Nobody: it can be bound.
    Free,
    /// A socket is bound to it; `uid` is its creator's when it listens (`SO_PEERCRED` on a
    /// connection), `None` when it does not (bound, never listening: it cannot be asked).
    Held {
        /// The uid that created the listening socket.
        uid: Option<u32>,
    },
}

/// Finds out, without keeping anything, whether abstract `name` is free and who holds it.
///
/// The name is bound for a moment (and released at once) because a socket that is bound but
/// never listens refuses connections exactly like a free name would.
pub fn abstract_name(name: &str) -> AbstractName {
    use crate::sys::{self, UnixAddr};
    let bound = sys::unix_stream_socket()
        .and_then(|fd| sys::bind(&fd, UnixAddr::Abstract(name.as_bytes())));
    match bound {
        // Any other error is the compositor's own bind's to report.
        Ok(()) => AbstractName::Free,
        Err(e) if e.errno != crate::Errno::ADDRINUSE => AbstractName::Free,
        Err(_) => AbstractName::Held {
            uid: sys::unix_connect(UnixAddr::Abstract(name.as_bytes()))
                .ok()
                .and_then(|fd| sys::peer_uid(&fd).ok()),
        },
    }
}
