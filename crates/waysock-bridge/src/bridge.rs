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

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, Role, Token};
use crate::channel::Sealed;
use crate::display_error;
use crate::gate::{self, Limits};
use crate::session::Side;
use crate::stream::{self, Stream};

pub use crate::gate::MAX_PENDING_HANDSHAKES;

/// How long the connector's whole handshake may take (one deadline, not one per read); the
/// listening end allows [`gate::HANDSHAKE_DEADLINE`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Dials the compositor end and authenticates: a connection ready for [`crate::session::run`].
pub fn dial(addr: SocketAddr, token: &Token) -> Result<Sealed, DialError> {
    let tcp = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)
        .map_err(|e| DialError::connect(addr, e))?;
    tune(&tcp).map_err(|e| DialError::connect(addr, e))?;
    let keys = stream::authenticate(&tcp, token, Role::Connector, HANDSHAKE_TIMEOUT)
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
    stream::accept_each(&listener, "refused a local client", accept, |n, local| {
        let token = Arc::clone(&token);
        std::thread::spawn(move || {
            let name = format!("client #{n}");
            let Sealed { tcp, keys } = match dial(remote, &token) {
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
            let tcp = Stream::Tcp(tcp);
            stream::relay(local, tcp, keys, Side::Client, &name, busy_poll, ended);
        });
    })
}

/// Logs a session's error end: over TCP every one is worth a warning.
fn ended(name: &str, e: &io::Error) {
    tracing::warn!("{name}: ended: {e}");
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
    gate::run(listener, &token, limits, |Sealed { tcp, keys }, name| {
        let connect = Arc::clone(&connect);
        std::thread::spawn(move || {
            let tcp = Stream::Tcp(tcp);
            stream::relay_to_compositor(&*connect, tcp, keys, &name, busy_poll, ended);
        });
    })
}
