//! The encoded side of a bridge over any byte stream: TCP (`waysock bridge`) or a Unix stream
//! (`waysock ssh`, where OpenSSH carries a forwarded Unix socket between the two ends).
//!
//! [`Stream`] is what a session relays over; [`dial_unix`], [`serve_compositor_unix`] and
//! [`serve_clients_unix`] are the two ends of [`crate::bridge`] with a Unix socket instead of
//! TCP. They run the same handshake and the same sealed channel: the socket's directory
//! permissions and the peer's uid keep other users out, the handshake proves the far end holds
//! this session's token.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{self, AuthError, Role, Token};
use crate::channel::SessionKeys;
use crate::session::{self, Side, Stats};

/// A connected byte stream between two bridge ends.
#[derive(Debug)]
pub enum Stream {
    /// TCP (`waysock bridge`).
    Tcp(TcpStream),
    /// A Unix stream (`waysock ssh`: a socket OpenSSH forwards).
    Unix(UnixStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

impl Stream {
    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// `TCP_NODELAY` on TCP; a Unix stream has no Nagle to turn off.
    pub fn set_nodelay(&self, yes: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(yes),
            Stream::Unix(_) => Ok(()),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&mut &*s).read(buf),
            Stream::Unix(s) => (&mut &*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&mut &*s).write(buf),
            Stream::Unix(s) => (&mut &*s).write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&mut &*s).write_vectored(bufs),
            Stream::Unix(s) => (&mut &*s).write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket whose reads and writes all share one deadline.
struct Deadline<'a, S> {
    stream: &'a S,
    until: Instant,
}

/// Sets (`None`: clears) both timeouts of the socket `s`.
fn set_timeouts(s: impl AsFd, t: Option<Duration>) -> io::Result<()> {
    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    set_socket_timeout(&s, Timeout::Recv, t)?;
    set_socket_timeout(&s, Timeout::Send, t)?;
    Ok(())
}

impl<S: AsFd> Deadline<'_, S> {
    fn arm(&self) -> io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake took too long",
            ));
        }
        set_timeouts(self.stream, Some(left))
    }
}

impl<S: AsFd> Read for Deadline<'_, S>
where
    for<'s> &'s S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.read(buf)
    }
}

impl<S: AsFd> Write for Deadline<'_, S>
where
    for<'s> &'s S: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the handshake on `stream` (a [`Stream`], or a TCP or Unix stream itself) within
/// `limit` overall (one deadline, not one per read), then clears the timeouts: the keys of a
/// connection ready for [`session::run_over`].
pub fn authenticate<S: AsFd>(
    stream: &S,
    token: &Token,
    role: Role,
    limit: Duration,
) -> Result<SessionKeys, AuthError>
where
    for<'s> &'s S: Read + Write,
{
    let mut d = Deadline {
        stream,
        until: Instant::now() + limit,
    };
    let keys = auth::handshake(&mut d, token, role).map_err(|e| match e {
        // The socket's timeout (EAGAIN) or the deadline itself: say what it is.
        AuthError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            AuthError::TimedOut(limit)
        }
        other => other,
    })?;
    set_timeouts(stream, None)?;
    Ok(keys)
}

/// Dials the compositor end at the Unix socket `path` and authenticates as the connector.
/// Errors name the socket.
pub fn dial_unix(path: &Path, token: &Token) -> io::Result<(Stream, SessionKeys)> {
    let unix = UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("unix:{}: {e}", path.display())))?;
    let stream = Stream::Unix(unix);
    let keys = authenticate(
        &stream,
        token,
        Role::Connector,
        crate::bridge::HANDSHAKE_TIMEOUT,
    )
    .map_err(|e| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("unix:{}: {e}", path.display()),
        )
    })?;
    Ok((stream, keys))
}

/// Logs a session's error end: a peer that went away mid-write (a client that exits while
/// events are still on their way to it) is how sessions often end, not worth a warning on the
/// user's terminal (`waysock ssh` shares it).
fn ended(name: &str, e: &io::Error) {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            tracing::info!("{name}: ended: {e}")
        }
        _ => tracing::warn!("{name}: ended: {e}"),
    }
}

/// The sessions a serve function runs, counted, so that the end of a process can wait until
/// they have closed cleanly instead of cutting them (the far end would report a cut).
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<(Mutex<usize>, Condvar)>);

/// One counted session: uncounted on drop.
struct Counted(Sessions);

impl Drop for Counted {
    fn drop(&mut self) {
        let (n, idle) = &*self.0 .0;
        let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        idle.notify_all();
    }
}

impl Sessions {
    fn count(&self) -> Counted {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Counted(self.clone())
    }

    /// How many sessions are running.
    pub fn active(&self) -> usize {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no session runs, at most `limit`: `true` if none does.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let (n, idle) = &*self.0;
        let n = n.lock().unwrap_or_else(|p| p.into_inner());
        let (n, _) = idle
            .wait_timeout_while(n, limit, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *n == 0
    }
}

/// Accepts on `listener` until it fails (an error about the moment, see
/// [`crate::bridge::transient`], is waited out): each connection `accept` allows goes to
/// `each` with its number; one it refuses is logged after `refused`.
pub(crate) fn accept_each(
    listener: &UnixListener,
    refused: &str,
    accept: impl Fn(&UnixStream) -> Result<(), String>,
    mut each: impl FnMut(usize, UnixStream),
) -> io::Result<()> {
    for (n, conn) in listener.incoming().enumerate() {
        let local = match conn {
            Ok(s) => s,
            Err(e) if crate::bridge::transient(&e) => {
                tracing::warn!("accept: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
        };
        match accept(&local) {
            Ok(()) => each(n, local),
            Err(why) => tracing::warn!("{refused}: {why}"),
        }
    }
    Ok(())
}

/// Relays `local` over the authenticated `remote` as `side` until the session ends, and logs
/// how: closed, or its error through `ended`.
pub(crate) fn relay(
    local: UnixStream,
    remote: Stream,
    keys: SessionKeys,
    side: Side,
    name: &str,
    busy_poll: Duration,
    ended: fn(&str, &io::Error),
) {
    let stats = Arc::new(Stats::default());
    match session::run_over(local, remote, keys, side, name, stats, busy_poll) {
        Ok(()) => tracing::info!("{name}: closed"),
        Err(e) => ended(name, &e),
    }
}

/// The compositor end of one authenticated connection: a fresh connection to the compositor
/// made by `connect`, relayed over `remote` (see [`relay`]).
pub(crate) fn relay_to_compositor(
    connect: &dyn Fn() -> io::Result<UnixStream>,
    remote: Stream,
    keys: SessionKeys,
    name: &str,
    busy_poll: Duration,
    ended: fn(&str, &io::Error),
) {
    let local = match connect() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{name}: cannot reach the compositor: {e}");
            return;
        }
    };
    tracing::info!("{name}: authenticated, relaying to the compositor");
    relay(local, remote, keys, Side::Server, name, busy_poll, ended);
}

/// The client end over a Unix socket: every connection accepted on `listener` (and allowed by
/// `accept`) is relayed, authenticated, to the compositor end listening at `remote`, each on a
/// thread of its own, counted in `sessions`. Runs until the listener fails.
pub fn serve_clients_unix(
    listener: UnixListener,
    remote: PathBuf,
    token: Arc<Token>,
    busy_poll: Duration,
    sessions: Sessions,
    accept: impl Fn(&UnixStream) -> Result<(), String>,
) -> io::Result<()> {
    accept_each(&listener, "refused a local client", accept, |n, local| {
        let token = Arc::clone(&token);
        let remote = remote.clone();
        let counted = sessions.count();
        std::thread::spawn(move || {
            let _counted = counted;
            let name = format!("client #{n}");
            let (stream, keys) = match dial_unix(&remote, &token) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{name}: {e}");
                    return;
                }
            };
            tracing::info!("{name}: relaying to unix:{}", remote.display());
            relay(local, stream, keys, Side::Client, &name, busy_poll, ended);
        });
    })
}

/// The compositor end over a Unix socket: every connection accepted on `listener` that
/// `accept` allows (e.g. `SO_PEERCRED` is our uid) and that proves the token within
/// [`crate::bridge::HANDSHAKE_TIMEOUT`] is relayed to a fresh connection made by `connect`
/// (the compositor's socket), each on a thread of its own. Runs until the listener fails.
pub fn serve_compositor_unix(
    listener: UnixListener,
    token: Arc<Token>,
    busy_poll: Duration,
    accept: impl Fn(&UnixStream) -> Result<(), String>,
    connect: impl Fn() -> io::Result<UnixStream> + Send + Sync + 'static,
) -> io::Result<()> {
    let connect = Arc::new(connect);
    accept_each(&listener, "refused a connection", accept, |n, unix| {
        let token = Arc::clone(&token);
        let connect = Arc::clone(&connect);
        std::thread::spawn(move || {
            let name = format!("connection #{n}");
            let stream = Stream::Unix(unix);
            let keys = match authenticate(
                &stream,
                &token,
                Role::Listener,
                crate::bridge::HANDSHAKE_TIMEOUT,
            ) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!("{name}: handshake failed: {e}");
                    return;
                }
            };
            relay_to_compositor(&*connect, stream, keys, &name, busy_poll, ended);
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_stream_authenticates_and_carries_bytes_both_ways() {
        let (a, b) = UnixStream::pair().unwrap();
        let token = Token::from_bytes(&[7u8; 32]).unwrap();
        let other = Token::from_bytes(&[7u8; 32]).unwrap();
        let t = std::thread::spawn(move || {
            let s = Stream::from(b);
            let k = authenticate(&s, &other, Role::Listener, Duration::from_secs(5)).unwrap();
            (s, k)
        });
        let s = Stream::from(a);
        let mine = authenticate(&s, &token, Role::Connector, Duration::from_secs(5)).unwrap();
        let (peer, theirs) = t.join().unwrap();
        assert_eq!(mine.send, theirs.receive);
        assert_eq!(mine.receive, theirs.send);
        (&s).write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        (&peer).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        s.set_nodelay(true).unwrap(); // a no-op on a Unix stream, not an error
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!((&peer).read(&mut got).unwrap(), 0);
    }

    #[test]
    fn a_wrong_token_or_a_silent_peer_fails_the_handshake() {
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let s = Stream::from(b);
            let other = Token::from_bytes(&[9u8; 32]).unwrap();
            authenticate(&s, &other, Role::Listener, Duration::from_secs(5)).is_err()
        });
        let token = Token::from_bytes(&[7u8; 32]).unwrap();
        let s = Stream::from(a);
        assert!(authenticate(&s, &token, Role::Connector, Duration::from_secs(5)).is_err());
        assert!(t.join().unwrap());

        let (a, _silent) = UnixStream::pair().unwrap();
        let s = Stream::from(a);
        let e = authenticate(&s, &token, Role::Connector, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, AuthError::TimedOut(_)), "{e}");
    }

    #[test]
    fn sessions_are_counted_until_they_end() {
        let sessions = Sessions::default();
        assert!(sessions.wait_idle(Duration::ZERO));
        let one = sessions.count();
        let two = sessions.count();
        assert_eq!(sessions.active(), 2);
        assert!(!sessions.wait_idle(Duration::from_millis(10)));
        drop(one);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(two);
        });
        assert!(sessions.wait_idle(Duration::from_secs(10)));
        t.join().unwrap();
    }

    #[test]
    fn dialling_a_missing_socket_names_it() {
        let token = Token::from_bytes(&[7u8; 32]).unwrap();
        let e = dial_unix(Path::new("/nonexistent/waysock-test.sock"), &token).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unix:/nonexistent/waysock-test.sock: "),
            "{e}"
        );
    }
}
