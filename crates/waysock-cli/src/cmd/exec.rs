//! `waysock exec`: find the display, hand the client an environment that reaches it, and
//! become the client (`execvp`), so its signals and exit status are its own.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use waysock::{Discovery, Endpoint, Environment};

use super::Handoff;

/// Arguments of `waysock exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connect to this display name (wayland-1) or absolute path only.
    #[arg(long, value_name = "NAME", conflicts_with = "endpoint")]
    display: Option<String>,
    /// Connect to exactly this endpoint (unix:/PATH, abstract:NAME, fd:N, or a display name).
    #[arg(long, value_name = "E", value_parser = super::endpoint("--endpoint"))]
    endpoint: Option<Endpoint>,
    /// With --endpoint tcp:ADDR:PORT: the token file shared with that bridge (mode 0600).
    #[arg(long, value_name = "F")]
    token_file: Option<std::path::PathBuf>,
    /// The client and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CLIENT"
    )]
    command: Vec<OsString>,
}

/// Runs `exec`: does not return on success.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let endpoint = args.endpoint;
    if let Some(Endpoint::Tcp(addr)) = &endpoint {
        return exec_over_tcp(*addr, args.token_file.as_deref(), &args.command);
    }
    let env = Environment::from_process();
    let discovery = Discovery::new(env.clone())
        .display(args.display)
        .endpoint(endpoint)
        .state_fd(std::env::var_os("WAYSOCK_STATE_FD"));
    // Each place looked at is logged as discovery records it (-vv), like doctor's attempts.
    let (found, _) = match discovery.find() {
        Ok(x) => x,
        Err(e @ waysock::discover::DiscoverError::BadDisplay { .. }) => {
            return Ok(super::usage(format!("exec: {e}")))
        }
        Err(e) => {
            eprintln!("waysock exec: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    tracing::info!(endpoint = %found.endpoint, source = %found.source, "connecting client");
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no client given"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    let endpoint = found.endpoint.clone();
    let handoff = Handoff::for_found(found, &env);
    for (k, v) in handoff.vars() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if std::env::var_os("WAYLAND_SOCKET").is_some() && !matches!(handoff, Handoff::Inherited(_)) {
        // An invalid inherited WAYLAND_SOCKET would make libwayland fail before it looks at
        // anything else: the client must not see it.
        cmd.env_remove("WAYLAND_SOCKET");
    }
    if let Handoff::Inherited(n) = handoff {
        waysock::set_inheritable_raw(n)?;
    }
    if let Handoff::Socket(stream) = handoff {
        // An abstract display: every connection the client and its children make reaches it
        // through the shim's mapping of XDG_RUNTIME_DIR/WAYLAND_DISPLAY. The connection made
        // here is handed over as WAYLAND_SOCKET only where the shim cannot reach the program
        // (static, setuid): a WAYLAND_SOCKET inherited by a shell or a test runner would be
        // taken again by each client it starts, and every one after the first would fail.
        let shim = match &endpoint {
            Endpoint::Abstract(_) => Some(if super::preload::blockers(program).is_empty() {
                super::preload::shim_path()
            } else {
                Err(format!("it cannot reach {}", program.to_string_lossy()))
            }),
            _ => None,
        };
        match shim {
            Some(Ok(shim)) => {
                let dir = super::preload::runtime_dir_for_shim(&env);
                super::display_env(&mut cmd, &endpoint, Some((&shim, &dir)), &env);
                drop(stream);
            }
            other => {
                if let Some(Err(why)) = other {
                    tracing::warn!(
                        "handing over one connection as WAYLAND_SOCKET, not the preload shim \
                         ({why}): a second connection would fail"
                    );
                }
                waysock::set_inheritable(&stream)?;
                cmd.env("WAYLAND_SOCKET", stream.as_raw_fd().to_string());
                // Stays open across exec; the client owns it from then on.
                let _ = stream.into_raw_fd();
            }
        }
    }
    let err = cmd.exec();
    eprintln!(
        "waysock exec: cannot run {}: {err}",
        program.to_string_lossy()
    );
    Ok(ExitCode::from(match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    }))
}

/// `exec --endpoint tcp:…`: the client gets one end of a socket pair as `WAYLAND_SOCKET`, and
/// this process relays the other end to the bridge at `addr` (authenticated) until the client
/// exits; its status is ours.
fn exec_over_tcp(
    addr: std::net::SocketAddr,
    token_file: Option<&std::path::Path>,
    command: &[OsString],
) -> anyhow::Result<ExitCode> {
    let Some(token_file) = token_file else {
        return Ok(super::usage(
            "--endpoint tcp:… needs --token-file F (the secret shared with the bridge)",
        ));
    };
    let token = match waysock_bridge::auth::Token::load(token_file) {
        Ok(t) => t,
        Err(e) => return Ok(super::usage(e)),
    };
    let tcp = match waysock_bridge::bridge::dial(addr, &token) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("waysock exec: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
    let stats = std::sync::Arc::new(waysock_bridge::session::Stats::default());
    std::thread::spawn(move || {
        if let Err(e) = waysock_bridge::session::run(
            mine,
            tcp,
            waysock_bridge::session::Side::Client,
            "exec",
            stats,
            waysock_bridge::session::DEFAULT_BUSY_POLL,
        ) {
            tracing::warn!("bridge session ended: {e}");
        }
    });
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no client given"))?;
    waysock::set_inheritable(&theirs)?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env("WAYLAND_SOCKET", theirs.as_raw_fd().to_string())
        .env_remove("WAYLAND_DISPLAY");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "waysock exec: cannot run {}: {e}",
                program.to_string_lossy()
            );
            return Ok(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
            ));
        }
    };
    drop(theirs);
    let status = child.wait()?;
    Ok(super::run::exit_code(status))
}
