//! The two ends of `waysock bridge`.
//!
//! - Client end: listens on a Wayland endpoint (`unix:`, `abstract:`) where clients connect as
//!   to any compositor, and dials the compositor end over TCP, one connection per client.
//! - Compositor end: listens on TCP, and for each authenticated connection dials the
//!   compositor's own endpoint.
//!
//! Both ends run the token handshake before any Wayland byte moves; a failed proof closes the
//! connection and is logged with the peer's address.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, Role, Token};
use crate::session::{self, Side, Stats};

/// How long the handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials the compositor end and authenticates: a stream ready for [`session::run`].
pub fn dial(addr: SocketAddr, token: &Token) -> io::Result<TcpStream> {
    let mut tcp = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    auth::handshake(&mut tcp, token, Role::Connector)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, format!("tcp:{addr}: {e}")))?;
    tcp.set_read_timeout(None)?;
    Ok(tcp)
}

/// The client end: every connection accepted on `listener` is relayed to `remote`.
/// `accept` decides whether a local peer may use the bridge (e.g. `SO_PEERCRED` on an abstract
/// socket). Runs until the listener fails.
pub fn serve_clients(
    listener: UnixListener,
    remote: SocketAddr,
    token: Arc<Token>,
    accept: impl Fn(&UnixStream) -> Result<(), String>,
) -> io::Result<()> {
    for (n, conn) in listener.incoming().enumerate() {
        let local = match conn {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
            match session::run(local, tcp, Side::Client, &name, Arc::new(Stats::default())) {
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
    connect: impl Fn() -> io::Result<UnixStream> + Send + Sync + 'static,
) -> io::Result<()> {
    let connect = Arc::new(connect);
    for conn in listener.incoming() {
        let mut tcp = match conn {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let token = Arc::clone(&token);
        let connect = Arc::clone(&connect);
        std::thread::spawn(move || {
            let peer = tcp
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            let name = format!("tcp:{peer}");
            let _ = tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
            if let Err(e) = auth::handshake(&mut tcp, &token, Role::Listener) {
                tracing::warn!("{name}: refused: {e}");
                return;
            }
            let _ = tcp.set_read_timeout(None);
            let local = match connect() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{name}: cannot reach the compositor: {e}");
                    return;
                }
            };
            tracing::info!("{name}: authenticated, relaying to the compositor");
            match session::run(local, tcp, Side::Server, &name, Arc::new(Stats::default())) {
                Ok(()) => tracing::info!("{name}: closed"),
                Err(e) => tracing::warn!("{name}: ended: {e}"),
            }
        });
    }
    Ok(())
}
