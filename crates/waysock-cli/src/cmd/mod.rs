//! One module per subcommand, and the little they share.

pub mod bridge;
pub mod completions;
pub mod doctor;
pub mod env;
pub mod envfile;
pub mod exec;
pub mod headless;
pub mod ls;
pub mod manpage;
pub mod preload;
pub mod run;
pub mod ssh;
pub mod wait;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use waysock::{Endpoint, Environment, Found, Strategy};

/// A value refused by one of our clap `value_parser`s. `main` prints it as `waysock: TEXT`
/// and exits 2 before any subcommand runs; the text names the flag (`--strategy: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The strategy order given with `--strategy a,b` (a newtype, so that clap takes the list as
/// one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain(pub Vec<Strategy>);

/// clap `value_parser` of `--strategy`.
pub fn parse_chain(list: &str) -> Result<Chain, Usage> {
    Strategy::parse_list(list)
        .map(Chain)
        .map_err(|e| Usage(format!("--strategy: {e}")))
}

/// A clap `value_parser` for an endpoint flag: its errors name `flag` (`--listen: …`).
pub fn endpoint(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Endpoint, Usage> + Clone + Send + Sync + 'static {
    move |value| {
        value
            .parse::<Endpoint>()
            .map_err(|e| Usage(format!("{flag}: {e}")))
    }
}

/// The chain to use: `--strategy` if given, else `WAYSOCK_STRATEGIES` (checked here, at the
/// start of the subcommand: a bad list is a usage error; the `Err` is the exit code to
/// return, after the message was printed), else the full chain.
pub fn strategies(flag: Option<Chain>) -> Result<Vec<Strategy>, ExitCode> {
    match flag {
        Some(Chain(chain)) => Ok(chain),
        None => waysock::Environment::strategies_from_process()
            .map_err(|e| usage(format!("WAYSOCK_STRATEGIES: {e}"))),
    }
}

/// The variables that make a client reach exactly the display at `endpoint`: for a path, its
/// absolute `WAYLAND_DISPLAY` and its directory as `XDG_RUNTIME_DIR`; for an abstract name, the
/// shim (`shim` = the shim and the runtime dir it maps from, else found the usual way) and the
/// display name it maps, so that every connection the client and its children make lands there
/// (`headless`, `ssh`'s remote side, `exec` where the shim reaches the program). Any inherited
/// `WAYLAND_SOCKET` is removed.
pub fn display_env(
    cmd: &mut std::process::Command,
    endpoint: &Endpoint,
    shim: Option<(&Path, &Path)>,
    env: &Environment,
) {
    cmd.env_remove("WAYLAND_SOCKET");
    match endpoint {
        Endpoint::Unix(p) => {
            let dir = p.parent().unwrap_or(Path::new("/"));
            cmd.env("XDG_RUNTIME_DIR", dir).env("WAYLAND_DISPLAY", p);
        }
        Endpoint::Abstract(abs) => {
            match shim {
                Some((shim, dir)) => preload::apply(cmd, shim, dir, &[]),
                None => match preload::shim_path() {
                    Ok(shim) => {
                        preload::apply(cmd, &shim, &preload::runtime_dir_for_shim(env), &[])
                    }
                    Err(why) => tracing::warn!("an abstract display without the shim: {why}"),
                },
            }
            cmd.env(
                "WAYLAND_DISPLAY",
                waysock::names::display_for_abstract(env.uid, abs),
            );
        }
        other => tracing::warn!("{other}: no variable can name it"),
    }
}

/// `--busy-poll-us`, shared by `bridge` and `ssh`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BusyPoll {
    /// When an answer is likely (bytes were just forwarded the other way), a relay thread
    /// polls this many µs for it before it sleeps: a shorter roundtrip for a little CPU. A poll
    /// that runs out turns polling off for that direction until answers come promptly again.
    /// 0 never polls; at most 10000.
    #[arg(long, value_name = "US", default_value_t = waysock_bridge::session::DEFAULT_BUSY_POLL.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=waysock_bridge::session::MAX_BUSY_POLL.as_micros() as u64))]
    pub busy_poll_us: u64,
}

impl BusyPoll {
    /// As a duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.busy_poll_us)
    }
}

/// A usage error: printed, exit 2.
pub fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("waysock: {msg}");
    ExitCode::from(2)
}

/// `'text'` for sh and fish: single quotes, with embedded quotes escaped.
pub fn quote(text: &OsStr) -> String {
    let t = text.to_string_lossy();
    format!("'{}'", t.replace('\'', r"'\''"))
}

/// How a found display is handed to a client through its environment.
#[derive(Debug)]
pub enum Handoff {
    /// A filesystem socket: `WAYLAND_DISPLAY` as an absolute path and a usable
    /// `XDG_RUNTIME_DIR`; `WAYLAND_SOCKET` removed.
    Path {
        /// Absolute socket path.
        display: PathBuf,
        /// The runtime dir to hand on (the current one if usable, else the socket's dir).
        runtime_dir: PathBuf,
    },
    /// A connection made here, passed as `WAYLAND_SOCKET`.
    Socket(std::os::unix::net::UnixStream),
    /// An inherited connected fd (`WAYLAND_SOCKET`, or `--endpoint fd:N`), validated: handed
    /// on as `WAYLAND_SOCKET=N` (and made inheritable).
    Inherited(i32),
}

impl Handoff {
    /// Decides the handoff for `found`.
    pub fn for_found(found: Found, env: &Environment) -> Handoff {
        match (&found.endpoint, found.stream) {
            (Endpoint::Unix(p), _) => {
                let parent = p.parent().unwrap_or(Path::new("/")).to_path_buf();
                let runtime_dir = match &env.xdg_runtime_dir {
                    Some(x) if waysock::discover::usable_runtime_dir(Path::new(x), env.uid) => {
                        PathBuf::from(x)
                    }
                    _ => parent,
                };
                Handoff::Path {
                    display: p.clone(),
                    runtime_dir,
                }
            }
            (Endpoint::Fd(n), None) => Handoff::Inherited(*n),
            (_, Some(stream)) => Handoff::Socket(stream),
            (ep, None) => unreachable_handoff(ep),
        }
    }

    /// The variables to set (`Some`) or remove (`None`).
    pub fn vars(&self) -> Vec<(&'static str, Option<OsString>)> {
        match self {
            Handoff::Path {
                display,
                runtime_dir,
            } => vec![
                (
                    "XDG_RUNTIME_DIR",
                    Some(runtime_dir.clone().into_os_string()),
                ),
                ("WAYLAND_DISPLAY", Some(display.clone().into_os_string())),
                ("WAYLAND_SOCKET", None),
            ],
            Handoff::Inherited(n) => vec![("WAYLAND_SOCKET", Some(n.to_string().into()))],
            Handoff::Socket(_) => Vec::new(),
        }
    }
}

fn unreachable_handoff(ep: &Endpoint) -> Handoff {
    // Discovery only returns a stream-less Found for an inherited fd.
    panic!("waysock: discovery returned {ep} without a connection (bug)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_are_refused_with_the_flag_named() {
        assert_eq!(
            parse_chain("private-tmp, abstract"),
            Ok(Chain(vec![Strategy::PrivateTmp, Strategy::Abstract]))
        );
        let e = parse_chain("bogus").unwrap_err().0;
        assert!(e.starts_with("--strategy: "), "{e}");
        assert!(e.contains("unknown strategy"), "{e}");
        let parse = endpoint("--listen");
        assert!(parse("abstract:wayland-7").is_ok());
        let e = parse("bogus:x").unwrap_err().0;
        assert!(e.starts_with("--listen: "), "{e}");
    }
}
