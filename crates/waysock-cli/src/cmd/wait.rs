//! `waysock wait`: block until the display answers a Wayland roundtrip — the readiness check
//! of a CI step, a Kubernetes startup probe, a script that started `run &`.
//!
//! It finds the display exactly as `exec` would (the same discovery, the same refusal to guess
//! between jobs) and then proves it with `wl_display.sync`; until then it looks again every
//! 50 ms. Exit 0 once it answers, 1 with the last reason when `--timeout` passes, 2 for a bad
//! request.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use waysock::discover::DiscoverError;
use waysock::{Discovery, Environment};

/// Arguments of `waysock wait`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Wait for this display name (wayland-1) or absolute path.
    #[arg(long, value_name = "NAME")]
    display: Option<String>,
    /// Give up after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,
}

/// Runs `wait`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        return Ok(super::usage(format!(
            "--timeout {}: give a number of seconds, 0 or more",
            args.timeout
        )));
    }
    let limit = Duration::from_secs_f64(args.timeout);
    let start = Instant::now();
    let env = Environment::from_process();
    let discovery = Discovery::new(env)
        .display(args.display)
        .state_fd(std::env::var_os("WAYSOCK_STATE_FD"));
    loop {
        let why = match discovery.find() {
            Err(e @ DiscoverError::BadDisplay { .. }) => {
                return Ok(super::usage(format!("wait: {e}")))
            }
            Err(e) => e.to_string(),
            Ok((found, _)) => match found.stream {
                Some(mut s) => match waysock::probe::roundtrip(&mut s, Duration::from_secs(2)) {
                    Ok(()) => {
                        println!("{}", found.endpoint);
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => format!("{} accepted but did not answer: {e}", found.endpoint),
                },
                // An inherited WAYLAND_SOCKET: a roundtrip on it would consume the client's
                // connection; its presence is all that can be said.
                None => {
                    println!("{}", found.endpoint);
                    return Ok(ExitCode::SUCCESS);
                }
            },
        };
        if start.elapsed() >= limit {
            eprintln!(
                "waysock wait: no display answered within {} s; last: {why}",
                args.timeout
            );
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
