//! The two ends of `waysock bridge`.
//!
//! - Client end: listens on a Wayland endpoint (`unix:`, `abstract:`) where clients connect as
//!   to any compositor, and dials the compositor end over TCP, one connection per client.
//! - Compositor end: listens on TCP, and for each authenticated connection dials the
//!   compositor's own endpoint.
//!
//! Both ends run the token handshake before any Wayland byte moves; a failed proof closes the
//! connection and is logged with the peer's address. On the listening end, unauthenticated
//! connections wait in [`crate::gate`] (one poll loop, bounded, oldest shed first) and only an
//! authenticated one gets a thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{self, Role, Token};
use crate::channel::{Sealed, SessionKeys};
use crate::display_error;
use crate::gate::{self, Limits};
use crate::session::{self, Side, Stats};

pub use crate::gate::MAX_PENDING_HANDSHAKES;

/// How long the connector's whole handshake may take (one deadline, not one per read); the
/// listening end allows [`gate::HANDSHAKE_DEADLINE`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP stream whose reads and writes all share one deadline.
struct Deadline<'a> {
    tcp: &'a TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn arm(&self) -> io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake took too long",
            ));
        }
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.set_write_timeout(Some(left))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        (&mut &*self.tcp).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        (&mut &*self.tcp).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the handshake within [`HANDSHAKE_TIMEOUT`] overall, then clears the timeouts.
fn authenticate(
    tcp: &TcpStream,
    token: &Token,
    role: Role,
) -> Result<SessionKeys, auth::AuthError> {
    let mut d = Deadline {
        tcp,
        until: Instant::now() + HANDSHAKE_TIMEOUT,
    };
    let keys = auth::handshake(&mut d, token, role).map_err(|e| match e {
        // The socket's timeout (EAGAIN) or the deadline itself: say what it is.
        auth::AuthError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            auth::AuthError::TimedOut(HANDSHAKE_TIMEOUT)
        }
        other => other,
    })?;
    tcp.set_read_timeout(None).map_err(auth::AuthError::from)?;
    tcp.set_write_timeout(None).map_err(auth::AuthError::from)?;
    Ok(keys)
}

/// Low latency, and a dead peer (unplugged, partitioned) noticed within about a minute
/// instead of never: keepalive probes after 30 s idle, and unacknowledged data times out.
pub(crate) fn tune(tcp: &TcpStream) -> io::Result<()> {
    use rustix::net::sockopt;
    tcp.set_nodelay(true)?;
    sockopt::set_socket_keepalive(tcp, true)?;
    sockopt::set_tcp_keepidle(tcp, Duration::from_secs(30))?;
    sockopt::set_tcp_keepintvl(tcp, Duration::from_secs(10))?;
    sockopt::set_tcp_keepcnt(tcp, 3)?;
    sockopt::set_tcp_user_timeout(tcp, 60_000)?;
    Ok(())
}

/// Is this `accept` error about the moment (out of descriptors or memory, an aborted
/// connection) rather than the listener? Then the bridge waits and goes on: no peer can make
/// it exit.
pub(crate) fn transient(e: &io::Error) -> bool {
    waysock::classify::accept_is_transient(e)
}

/// Why the compositor end could not be dialled; every message names it (`tcp:ADDR:PORT`).
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Nothing listens there: the host answered with a reset.
    #[error(
        "tcp:{addr} refused the connection (is `waysock bridge --listen tcp:…` running there?)"
    )]
    Refused {
        /// The compositor end.
        addr: SocketAddr,
    },
    /// No answer within [`HANDSHAKE_TIMEOUT`].
    #[error(
        "tcp:{addr} did not answer within {} s (host down, or a firewall drops the packets)",
        HANDSHAKE_TIMEOUT.as_secs()
    )]
    TimedOut {
        /// The compositor end.
        addr: SocketAddr,
    },
    /// Any other failure to connect (no route, network down…).
    #[error("tcp:{addr} cannot be reached: {source}")]
    Connect {
        /// The compositor end.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Connected, but the handshake failed (a different token, another version, busy…).
    #[error("tcp:{addr}: {source}")]
    Handshake {
        /// The compositor end.
        addr: SocketAddr,
        /// Why.
        source: auth::AuthError,
    },
}

impl DialError {
    fn connect(addr: SocketAddr, e: io::Error) -> DialError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => DialError::Refused { addr },
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => DialError::TimedOut { addr },
            _ => DialError::Connect { addr, source: e },
        }
    }
}

/// Dials the compositor end and authenticates: a connection ready for [`session::run`].
pub fn dial(addr: SocketAddr, token: &Token) -> Result<Sealed, DialError> {
    let tcp = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)
        .map_err(|e| DialError::connect(addr, e))?;
    tune(&tcp).map_err(|e| DialError::connect(addr, e))?;
    let keys = authenticate(&tcp, token, Role::Connector)
        .map_err(|source| DialError::Handshake { addr, source })?;
    Ok(Sealed { tcp, keys })
}

/// The client end: every connection accepted on `listener` is relayed to `remote`.
/// `accept` decides whether a local peer may use the bridge (e.g. `SO_PEERCRED` on an abstract
/// socket). Runs until the listener fails.
pub fn serve_clients(
    listener: UnixListener,
    remote: SocketAddr,
    token: Arc<Token>,
    busy_poll: Duration,
    accept: impl Fn(&UnixStream) -> Result<(), String>,
) -> io::Result<()> {
    for (n, conn) in listener.incoming().enumerate() {
        let local = match conn {
            Ok(s) => s,
            Err(e) if transient(&e) => {
                tracing::warn!("accept: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Err(why) = accept(&local) {
            tracing::warn!("refused a local client: {why}");
            continue;
        }
        let token = Arc::clone(&token);
        std::thread::spawn(move || {
            let name = format!("client #{n}");
            let tcp = match dial(remote, &token) {
                Ok(t) => t,
                Err(e) => {
                    // The client hears why, as from a compositor, and ends with the reason.
                    tracing::warn!("{name}: {e}");
                    display_error::tell(
                        &local,
                        display_error::IMPLEMENTATION,
                        &format!("waysock bridge: {e}"),
                    );
                    return;
                }
            };
            tracing::info!("{name}: relaying to tcp:{remote}");
            let stats = Arc::new(Stats::default());
            match session::run(local, tcp, Side::Client, &name, stats, busy_poll) {
                Ok(()) => tracing::info!("{name}: closed"),
                Err(e) => tracing::warn!("{name}: ended: {e}"),
            }
        });
    }
    Ok(())
}

/// The compositor end: every authenticated TCP connection is relayed to a fresh connection
/// made by `connect` (the compositor's socket). Handshakes run in [`gate`] within
/// [`Limits::for_this_process`] (call [`gate::raise_fd_limit`] first to hold more); each
/// authenticated connection gets a thread of its own.
pub fn serve_compositor(
    listener: TcpListener,
    token: Arc<Token>,
    busy_poll: Duration,
    connect: impl Fn() -> io::Result<UnixStream> + Send + Sync + 'static,
) -> io::Result<()> {
    serve_compositor_within(
        listener,
        token,
        Limits::for_this_process(),
        busy_poll,
        connect,
    )
}

/// [`serve_compositor`] with the handshake stage's limits given.
pub fn serve_compositor_within(
    listener: TcpListener,
    token: Arc<Token>,
    limits: Limits,
    busy_poll: Duration,
    connect: impl Fn() -> io::Result<UnixStream> + Send + Sync + 'static,
) -> io::Result<()> {
    tracing::debug!(
        "handshakes: at most {} pending ({} per source), {} s each",
        limits.max_pending,
        limits.per_source,
        limits.deadline.as_secs_f32()
    );
    let connect = Arc::new(connect);
    gate::run(listener, &token, limits, |remote, name| {
        let connect = Arc::clone(&connect);
        std::thread::spawn(move || {
            let local = match connect() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{name}: cannot reach the compositor: {e}");
                    return;
                }
            };
            tracing::info!("{name}: authenticated, relaying to the compositor");
            let stats = Arc::new(Stats::default());
            match session::run(local, remote, Side::Server, &name, stats, busy_poll) {
                Ok(()) => tracing::info!("{name}: closed"),
                Err(e) => tracing::warn!("{name}: ended: {e}"),
            }
        });
    })
}
