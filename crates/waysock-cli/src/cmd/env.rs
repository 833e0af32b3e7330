//! `waysock env`: print the variables that reach the display, for `eval "$(waysock env)"`.

use std::fmt::Write as _;
use std::process::ExitCode;

use waysock::{Discovery, Environment};

use super::{quote, Handoff};

/// Output syntax.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// POSIX shells: `export K='v'`.
    Sh,
    /// fish: `set -gx K 'v'`.
    Fish,
    /// One JSON object.
    Json,
}

/// Arguments of `waysock env`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this display name (wayland-1) or absolute path.
    #[arg(long, value_name = "NAME")]
    display: Option<String>,
    /// Output syntax.
    #[arg(long, value_enum, default_value = "sh")]
    format: Format,
}

/// Runs `env`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let (found, _) = match Discovery::new(env.clone())
        .display(args.display)
        .state_fd(std::env::var_os("WAYSOCK_STATE_FD"))
        .find()
    {
        Ok(x) => x,
        Err(e @ waysock::discover::DiscoverError::BadDisplay { .. }) => {
            return Ok(super::usage(format!("env: {e}")))
        }
        Err(e) => {
            eprintln!("waysock env: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let endpoint = found.endpoint.clone();
    let source = found.source.clone();
    let handoff = Handoff::for_found(found, &env);
    match &handoff {
        Handoff::Socket(_) => {
            eprintln!(
                "waysock env: the display is {endpoint}, which no environment variable can \
                 name; start clients with `waysock exec -- CLIENT`"
            );
            return Ok(ExitCode::from(1));
        }
        Handoff::Inherited(n) => {
            eprintln!(
                "waysock env: WAYLAND_SOCKET={n} is already set and valid; nothing to change"
            );
            return Ok(ExitCode::SUCCESS);
        }
        Handoff::Path { .. } => {}
    }
    let vars = handoff.vars();
    let mut out = String::new();
    match args.format {
        Format::Sh => {
            for (k, v) in &vars {
                let _ = match v {
                    Some(v) => writeln!(out, "export {k}={};", quote(v)),
                    None => writeln!(out, "unset {k};"),
                };
            }
        }
        Format::Fish => {
            for (k, v) in &vars {
                let _ = match v {
                    Some(v) => writeln!(out, "set -gx {k} {};", quote(v)),
                    None => writeln!(out, "set -e {k};"),
                };
            }
        }
        Format::Json => {
            let mut map = serde_json::Map::new();
            for (k, v) in &vars {
                map.insert(
                    (*k).to_string(),
                    match v {
                        Some(v) => serde_json::Value::String(v.to_string_lossy().into_owned()),
                        None => serde_json::Value::Null,
                    },
                );
            }
            map.insert("endpoint".into(), endpoint.to_string().into());
            map.insert("source".into(), source.into());
            out = serde_json::to_string_pretty(&map)? + "\n";
        }
    }
    crate::output::print(&out)?;
    Ok(ExitCode::SUCCESS)
}
