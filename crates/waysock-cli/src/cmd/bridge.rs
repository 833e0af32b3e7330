//! `waysock bridge`: Wayland across TCP, descriptors translated, both ends authenticated.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use waysock::{Endpoint, Environment};
use waysock_bridge::auth::Token;

/// Arguments of `waysock bridge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen: tcp:ADDR:PORT on the compositor's host, or unix:/PATH | abstract:NAME
    /// where clients connect.
    #[arg(long, value_name = "E", value_parser = super::endpoint("--listen"))]
    listen: Endpoint,
    /// Where to connect: the compositor's endpoint (unix:, abstract:, or a display name) when
    /// listening on TCP, or tcp:ADDR:PORT of the compositor end.
    #[arg(long, value_name = "E", value_parser = super::endpoint("--connect"))]
    connect: Endpoint,
    /// The shared secret: a file of 16+ bytes, mode 0600, the same on both ends
    /// (`head -c 32 /dev/urandom > F; chmod 600 F`).
    #[arg(long, value_name = "F")]
    token_file: PathBuf,
    /// When an answer is likely (bytes were just forwarded the other way), a relay thread
    /// polls this many µs for it before it sleeps: a shorter roundtrip for a little CPU. A poll
    /// that runs out turns polling off for that direction until answers come promptly again.
    /// 0 never polls; at most 10000.
    #[arg(long, value_name = "US", default_value_t = waysock_bridge::session::DEFAULT_BUSY_POLL.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=waysock_bridge::session::MAX_BUSY_POLL.as_micros() as u64))]
    busy_poll_us: u64,
}

/// Runs the bridge until it fails or is killed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (listen, connect) = (args.listen, args.connect);
    let token = match Token::load(&args.token_file) {
        Ok(t) => Arc::new(t),
        Err(e) => return Ok(super::usage(e)),
    };
    let busy_poll = std::time::Duration::from_micros(args.busy_poll_us);
    match (&listen, &connect) {
        (Endpoint::Tcp(addr), target) => {
            let env = Environment::from_process();
            let target = resolve_compositor(target, &env)?;
            let listener = TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen on tcp:{addr}: {e}"))?;
            if !addr.ip().is_loopback() {
                tracing::warn!("listening on {addr}, reachable from other hosts (token required)");
            }
            // A flood of unauthenticated connections is held and shed oldest first, within
            // as many descriptors as we may have.
            let fds = waysock_bridge::gate::raise_fd_limit();
            tracing::debug!("descriptor limit: {fds}");
            eprintln!("waysock bridge: tcp:{} → {target}", listener.local_addr()?);
            let t = target.clone();
            waysock_bridge::bridge::serve_compositor(listener, token, busy_poll, move || {
                waysock::discover::accepts(&t).map_err(std::io::Error::other)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        (local @ (Endpoint::Unix(_) | Endpoint::Abstract(_)), Endpoint::Tcp(remote)) => {
            let (listener, _guard) = listen_local(local)?;
            eprintln!("waysock bridge: {local} → tcp:{remote}");
            let uid = rustix::process::geteuid().as_raw();
            let is_abstract = matches!(local, Endpoint::Abstract(_));
            waysock_bridge::bridge::serve_clients(listener, *remote, token, busy_poll, move |s| {
                if !is_abstract {
                    return Ok(()); // the socket file's directory permissions apply
                }
                waysock::peer::check(s, uid, &[])
                    .map(drop)
                    .map_err(|e| e.to_string())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(super::usage(format!(
            "one end must be tcp:ADDR:PORT and the other a Wayland endpoint (unix:, abstract:); \
             got --listen {listen} --connect {connect}"
        ))),
    }
}

/// The compositor's endpoint as a dialable one (a display name is resolved like a client would).
fn resolve_compositor(target: &Endpoint, env: &Environment) -> anyhow::Result<Endpoint> {
    match target {
        Endpoint::Unix(_) | Endpoint::Abstract(_) => Ok(target.clone()),
        Endpoint::Display(_) => {
            let (found, _) = waysock::Discovery::new(env.clone())
                .endpoint(Some(target.clone()))
                .find()?;
            Ok(found.endpoint)
        }
        other => {
            anyhow::bail!("--connect {other}: the compositor end connects to unix: or abstract:")
        }
    }
}

/// Binds the client-facing Wayland socket. A path goes through waysock's lock protocol (the
/// directory must be ours and private); the guard removes socket and lock on exit.
fn listen_local(ep: &Endpoint) -> anyhow::Result<(UnixListener, Option<waysock::Bound>)> {
    match ep {
        Endpoint::Unix(path) => {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                anyhow::bail!("{ep}: not a socket path");
            };
            let mut env = Environment::from_process();
            env.xdg_runtime_dir = Some(dir.as_os_str().to_owned());
            let bound = waysock::Binder::new(env)
                .strategies(vec![waysock::Strategy::RuntimeDir])
                .display(Some(name.to_string_lossy().into_owned()))
                .bind()
                .map_err(|e| {
                    let report = e.report().map(|r| r.to_string()).unwrap_or_default();
                    anyhow::anyhow!("cannot listen on {ep}: {e}\n{report}")
                })?;
            let listener = bound.listener().try_clone()?;
            Ok((listener, Some(bound)))
        }
        Endpoint::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            Ok((UnixListener::bind_addr(&addr)?, None))
        }
        other => anyhow::bail!("cannot listen on {other}"),
    }
}
