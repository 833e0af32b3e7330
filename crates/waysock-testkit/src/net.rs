//! Loopback ports.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::proc::Proc;

/// A loopback port nobody listens on right now (another process may take it before the
/// caller binds it: retry on "in use").
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `command(port)` on a free loopback port as a [`Proc`] named `what` (logging to
/// `log`) and waits at most `limit` until its log shows `ready`. A start whose log says the
/// port is "in use" (another process took it between the probe and the bind) is tried again
/// on another port, five times at most. Panics with the log when it does not start.
pub fn spawn_on_free_port(
    what: &str,
    log: &Path,
    ready: &str,
    limit: Duration,
    command: impl Fn(u16) -> Command,
) -> (Proc, u16) {
    for _attempt in 0..5 {
        let port = free_port().expect("a free loopback port");
        let mut p = Proc::spawn(what, command(port), log);
        match p.log_shows(ready, limit) {
            Ok(()) => return (p, port),
            Err(_) if p.log().contains("in use") => continue,
            Err(why) => panic!("{what} did not start: {why}"),
        }
    }
    panic!("no free loopback port for {what} in 5 attempts")
}
