//! The two ends of `waysock bridge`.
//!
//! - Client end: listens on a Wayland endpoint (`unix:`, `abstract:`) where clients connect as
//!   to any compositor, and dials the compositor end over TCP, one connection per client.
//! - Compositor end: listens on TCP, and for each authenticated connection dials the
//!   compositor's own endpoint.
//!
//! Both ends run the token handshake before any Wayland byte moves; a failed proof closes the
//! connection and is logged with the peer's address.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{self, Role, Token};
use crate::channel::{Sealed, SessionKeys};
use crate::session::{self, Side, Stats};

/// How long the whole handshake may take (one deadline, not one per read).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once on a listening end; more are closed at once, so
/// unauthenticated peers cannot pile up threads and descriptors.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

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
    let keys = auth::handshake(&mut d, token, role)?;
    tcp.set_read_timeout(None).map_err(auth::AuthError::from)?;
    tcp.set_write_timeout(None).map_err(auth::AuthError::from)?;
    Ok(keys)
}

/// Low latency, and a dead peer (unplugged, partitioned) noticed within about a minute
/// instead of never: keepalive probes after 30 s idle, and unacknowledged data times out.
fn tune(tcp: &TcpStream) -> io::Result<()> {
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
fn transient(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let transient = [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOBUFS,
        Errno::NOMEM,
        Errno::CONNABORTED,
        Errno::PROTO,
        Errno::PERM,
        Errno::INTR,
        Errno::AGAIN,
    ];
    e.raw_os_error()
        .is_some_and(|n| transient.iter().any(|t| t.raw_os_error() == n))
}

/// Dials the compositor end and authenticates: a connection ready for [`session::run`].
pub fn dial(addr: SocketAddr, token: &Token) -> io::Result<Sealed> {
    let tcp = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)?;
    tune(&tcp)?;
    let keys = authenticate(&tcp, token, Role::Connector)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, format!("tcp:{addr}: {e}")))?;
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
                    tracing::warn!("{name}: {e}");
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
/// made by `connect` (the compositor's socket).
pub fn serve_compositor(
    listener: TcpListener,
    token: Arc<Token>,
    busy_poll: Duration,
    connect: impl Fn() -> io::Result<UnixStream> + Send + Sync + 'static,
) -> io::Result<()> {
    let connect = Arc::new(connect);
    let pending = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let tcp = match conn {
            Ok(s) => s,
            Err(e) if transient(&e) => {
                tracing::warn!("accept: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
        };
        let peer = tcp
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let name = format!("tcp:{peer}");
        if pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_HANDSHAKES {
            pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                "{name}: refused: {MAX_PENDING_HANDSHAKES} handshakes already in progress"
            );
            continue;
        }
        let token = Arc::clone(&token);
        let connect = Arc::clone(&connect);
        let pending = Arc::clone(&pending);
        std::thread::spawn(move || {
            let authenticated = tune(&tcp)
                .map_err(auth::AuthError::from)
                .and_then(|()| authenticate(&tcp, &token, Role::Listener));
            pending.fetch_sub(1, Ordering::SeqCst);
            let keys = match authenticated {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!("{name}: refused: {e}");
                    return;
                }
            };
            let local = match connect() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{name}: cannot reach the compositor: {e}");
                    return;
                }
            };
            tracing::info!("{name}: authenticated, relaying to the compositor");
            let stats = Arc::new(Stats::default());
            let remote = Sealed { tcp, keys };
            match session::run(local, remote, Side::Server, &name, stats, busy_poll) {
                Ok(()) => tracing::info!("{name}: closed"),
                Err(e) => tracing::warn!("{name}: ended: {e}"),
            }
        });
    }
    Ok(())
}
