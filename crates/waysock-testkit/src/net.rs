//! Loopback ports.

/// A loopback port nobody listens on right now (another process may take it before the
/// caller binds it: retry on "in use").
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
