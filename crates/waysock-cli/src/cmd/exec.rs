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
    #[arg(long, value_name = "E")]
    endpoint: Option<String>,
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
    let endpoint = match args.endpoint.as_deref().map(str::parse::<Endpoint>) {
        None => None,
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => return Ok(super::usage(format!("--endpoint: {e}"))),
    };
    let env = Environment::from_process();
    let discovery = Discovery::new(env.clone())
        .display(args.display)
        .endpoint(endpoint)
        .state_fd(std::env::var_os("WAYSOCK_STATE_FD"));
    let (found, tried) = match discovery.find() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("waysock exec: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    for t in &tried {
        tracing::debug!(place = %t.place, why = %t.why, "not there");
    }
    tracing::info!(endpoint = %found.endpoint, source = %found.source, "connecting client");
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no client given"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
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
    if let Handoff::Socket(stream) = handoff {
        waysock::set_inheritable(&stream)?;
        cmd.env("WAYLAND_SOCKET", stream.as_raw_fd().to_string());
        tracing::info!(
            "abstract display: handed over as WAYLAND_SOCKET; clients that open a second \
             connection would need the preload shim"
        );
        // Stays open across exec; the client owns it from then on.
        let _ = stream.into_raw_fd();
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
