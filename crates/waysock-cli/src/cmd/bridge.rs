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
    /// Where to listen: tcp:ADDR:PORT on the compositor's host, or where clients connect: a
    /// display name (wayland-9, or unix:wayland-9), bound where `waysock run` would bind it
    /// (the strategy chain, WAYSOCK_STRATEGIES), or unix:/PATH | abstract:NAME exactly.
    #[arg(long, value_name = "E", value_parser = listen_endpoint)]
    listen: Endpoint,
    /// Where to connect: the compositor's endpoint (unix:, abstract:, or a display name) when
    /// listening on TCP, or tcp:ADDR:PORT of the compositor end.
    #[arg(long, value_name = "E", value_parser = super::endpoint("--connect"))]
    connect: Endpoint,
    /// The shared secret: a file of 16+ bytes, mode 0600, the same on both ends
    /// (`head -c 32 /dev/urandom > F; chmod 600 F`).
    #[arg(long, value_name = "F")]
    token_file: PathBuf,
    #[command(flatten)]
    busy_poll: super::BusyPoll,
}

/// Runs the bridge until it fails or is killed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (listen, connect) = (args.listen, args.connect);
    let token = match Token::load(&args.token_file) {
        Ok(t) => Arc::new(t),
        Err(e) => return Ok(super::usage(e)),
    };
    let busy_poll = args.busy_poll.duration();
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
        (
            local @ (Endpoint::Unix(_) | Endpoint::Abstract(_) | Endpoint::Display(_)),
            Endpoint::Tcp(remote),
        ) => {
            let (listener, bound, local) = match listen_local(local) {
                Ok(x) => x,
                Err(Listen::Usage(e)) => return Ok(super::usage(e)),
                Err(Listen::Failed(e)) => {
                    eprintln!("waysock bridge: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let hint = bound.as_ref().and_then(client_hint);
            // SIGINT, SIGTERM, SIGHUP: the socket and its lock go with us.
            let _guard = remove_on_signal(bound);
            eprintln!("waysock bridge: {local} → tcp:{remote}");
            if let Some(hint) = hint {
                eprintln!("waysock bridge: clients: {hint}");
            }
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
            "one end must be tcp:ADDR:PORT and the other a Wayland endpoint (a display name, \
             unix:, abstract:); got --listen {listen} --connect {connect}"
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

/// `--listen`: an endpoint, where `unix:NAME` without a `/` is the display name NAME (bound
/// through the strategy chain, like a bare name).
fn listen_endpoint(value: &str) -> Result<Endpoint, super::Usage> {
    match value.strip_prefix("unix:") {
        Some(name) if !name.is_empty() && !name.contains('/') => name
            .parse::<Endpoint>()
            .map_err(|e| super::Usage(format!("--listen: {e}"))),
        _ => super::endpoint("--listen")(value),
    }
}

/// Why the client-facing socket could not be bound.
enum Listen {
    /// A bad display name or chain: exit 2.
    Usage(String),
    /// Nothing could be bound: exit 1, the text says why and what to pass instead.
    Failed(String),
}

/// The socket and lock of a bound display, removed when this is dropped (also on an early
/// return) or on SIGINT, SIGTERM or SIGHUP, whichever comes first.
struct Guard(std::sync::Arc<std::sync::Mutex<Option<waysock::Bound>>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.lock() {
            b.take();
        }
    }
}

/// Removes the socket and lock of `bound` when a SIGINT, SIGTERM or SIGHUP arrives, then dies
/// of that signal (the status a shell expects); without this the bridge would leave both
/// behind, and the display name taken until someone proves it stale.
fn remove_on_signal(bound: Option<waysock::Bound>) -> Guard {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let has_files = bound.as_ref().is_some_and(|b| b.display_name().is_some());
    let guard = Guard(std::sync::Arc::new(std::sync::Mutex::new(bound)));
    if !has_files {
        return guard;
    }
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot catch SIGTERM: the socket stays behind if one comes: {e}");
            return guard;
        }
    };
    let held = std::sync::Arc::clone(&guard.0);
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let bound = held.lock().map(|mut b| b.take()).unwrap_or(None);
            if let Some(b) = &bound {
                tracing::info!("signal {sig}: removing {}", b.endpoint());
            }
            drop(bound);
            let _ = signal_hook::low_level::emulate_default_handler(sig);
            std::process::exit(128 + sig);
        }
    });
    guard
}

/// How a client reaches a display bound through the chain, when that is more than its path.
fn client_hint(bound: &waysock::Bound) -> Option<String> {
    let name = bound.display_name()?;
    Some(match bound.runtime_dir() {
        Some(dir) => format!(
            "XDG_RUNTIME_DIR={} WAYLAND_DISPLAY={name} (or waysock exec --display {name} -- CLIENT)",
            dir.display()
        ),
        None => format!("waysock exec --display {name} -- CLIENT"),
    })
}

/// Binds the client-facing Wayland socket: the socket, its guard (which removes socket and
/// lock), and the endpoint bound.
///
/// - A display name goes through the strategy chain, like `waysock run`: the runtime dir if
///   usable, else the fallbacks (WAYSOCK_STRATEGIES narrows the chain).
/// - A path goes through waysock's lock protocol in its own directory (which must be ours and
///   private); when that fails, the message says which display name to pass instead.
fn listen_local(ep: &Endpoint) -> Result<(UnixListener, Option<waysock::Bound>, Endpoint), Listen> {
    let failed = |e: waysock::BindError, what: &dyn std::fmt::Display, hint: &str| {
        let report = e.report().map(|r| r.to_string()).unwrap_or_default();
        Listen::Failed(format!("cannot listen on {what}: {e}\n{report}{hint}"))
    };
    let bound = |b: waysock::Bound| -> Result<_, Listen> {
        let listener = b
            .listener()
            .try_clone()
            .map_err(|e| Listen::Failed(format!("cannot listen on {}: {e}", b.endpoint())))?;
        let ep = b.endpoint().clone();
        Ok((listener, Some(b), ep))
    };
    match ep {
        Endpoint::Display(name) if !name.starts_with('/') => {
            let chain = waysock::Environment::strategies_from_process()
                .map_err(|e| Listen::Usage(format!("WAYSOCK_STRATEGIES: {e}")))?;
            let b = waysock::Binder::new(Environment::from_process())
                .strategies(chain)
                .display(Some(name.clone()))
                .bind()
                .map_err(|e| failed(e, &format_args!("display {name}"), ""))?;
            bound(b)
        }
        Endpoint::Unix(path) => bind_path(path, ep, failed, bound),
        Endpoint::Display(abs) => {
            let path = std::path::Path::new(abs);
            bind_path(path, ep, failed, bound)
        }
        Endpoint::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let io = |e: std::io::Error| Listen::Failed(format!("cannot listen on {ep}: {e}"));
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(io)?;
            let listener = UnixListener::bind_addr(&addr).map_err(io)?;
            Ok((listener, None, ep.clone()))
        }
        other => Err(Listen::Usage(format!("cannot listen on {other}"))),
    }
}

/// A socket path bound in its own directory through waysock's lock protocol.
fn bind_path(
    path: &std::path::Path,
    ep: &Endpoint,
    failed: impl Fn(waysock::BindError, &dyn std::fmt::Display, &str) -> Listen,
    bound: impl Fn(waysock::Bound) -> Result<(UnixListener, Option<waysock::Bound>, Endpoint), Listen>,
) -> Result<(UnixListener, Option<waysock::Bound>, Endpoint), Listen> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Listen::Usage(format!("{ep}: not a socket path")));
    };
    let name = name.to_string_lossy().into_owned();
    let mut env = Environment::from_process();
    env.xdg_runtime_dir = Some(dir.as_os_str().to_owned());
    let hint = format!(
        "pass --listen {name} to bind it where `waysock run` would (XDG_RUNTIME_DIR if usable, \
         else the fallback dirs), or --listen unix:DIR/{name} with DIR a directory of yours at \
         mode 0700"
    );
    let b = waysock::Binder::new(env)
        .strategies(vec![waysock::Strategy::RuntimeDir])
        .display(Some(name))
        .bind()
        .map_err(|e| failed(e, ep, &hint))?;
    bound(b)
}
