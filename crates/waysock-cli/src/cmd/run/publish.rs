//! Telling the world the display is up: the registry record (or, where the registry cannot be
//! used, the `WAYSOCK_STATE_FD` record the compositor's children inherit), the export lines on
//! stderr, and `--print-env FILE`.

use std::path::Path;

use waysock::registry::{Registry, RegistryError, StateFd};
use waysock::{Endpoint, Record, Strategy};

use super::plan::Plan;
use super::ready::Up;
use crate::cmd::envfile::EnvFile;
use crate::cmd::quote;

/// Where the display's record goes.
pub struct Publisher {
    registry: Registry,
    /// The record for the compositor's children, when the registry cannot be used.
    state_fd: Option<StateFd>,
}

/// A record in the registry, to withdraw when `run` ends (a `WAYSOCK_STATE_FD` record needs
/// no withdrawing: it goes with the processes that hold it).
#[derive(Debug)]
pub struct Published {
    registry: Registry,
    holder: u32,
}

impl Published {
    /// Removes the record.
    pub fn withdraw(&self) {
        if let Err(e) = self.registry.withdraw(self.holder) {
            tracing::warn!("could not withdraw the registry record: {e}");
        }
    }
}

impl Publisher {
    /// Checks `uid`'s registry before the compositor starts; where it cannot be used, makes
    /// the `WAYSOCK_STATE_FD` memfd its children inherit instead.
    pub fn prepare(uid: u32) -> Publisher {
        let registry = Registry::for_uid(uid);
        let state_fd = match registry.usable() {
            Ok(()) => None,
            Err(e) => {
                match &e {
                    // Someone else's file where ours should be: the user must hear of it.
                    RegistryError::Unsafe { .. } => tracing::warn!(
                        "registry {e}; the display is published to children only \
                         (WAYSOCK_STATE_FD)"
                    ),
                    _ => tracing::info!("registry unusable ({e}); children get WAYSOCK_STATE_FD"),
                }
                match StateFd::create() {
                    Ok(fd) => Some(fd),
                    Err(e) => {
                        tracing::warn!(
                            "no registry and no memfd ({e}): the display is not published"
                        );
                        None
                    }
                }
            }
        };
        Publisher { registry, state_fd }
    }

    /// The variables the compositor must inherit (`WAYSOCK_STATE_FD`, when used).
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        self.state_fd
            .iter()
            .map(|fd| ("WAYSOCK_STATE_FD", fd.raw().to_string()))
            .collect()
    }

    /// Publishes `up`; `Some` when a registry record was written that must be withdrawn.
    /// A failure is only logged: the display works without its record.
    pub fn publish(&self, up: &Up, strategy: Strategy) -> Option<Published> {
        let Some(rec) =
            Record::for_process(&up.display, up.endpoint.clone(), up.holder, Some(strategy))
        else {
            tracing::warn!("compositor pid {} vanished before publishing", up.holder);
            return None;
        };
        let result = match &self.state_fd {
            Some(fd) => fd.publish(&rec).map_err(|e| e.to_string()),
            None => self.registry.publish(&rec).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) if self.state_fd.is_some() => None,
            Ok(()) => Some(Published {
                registry: self.registry.clone(),
                holder: up.holder,
            }),
            Err(e) => {
                tracing::warn!("could not publish {}: {e}", up.endpoint);
                None
            }
        }
    }
}

/// The lines that point a shell at `endpoint`.
pub fn exports(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Unix(socket) => format!(
            "export XDG_RUNTIME_DIR={}\nexport WAYLAND_DISPLAY={}\n",
            quote(socket.parent().unwrap_or(Path::new("/")).as_os_str()),
            quote(socket.as_os_str())
        ),
        _ => format!("# {endpoint} has no path: start clients with `waysock exec -- CLIENT`\n"),
    }
}

/// Says on stderr that the display is up, prints the export lines on stdout (so that
/// `eval "$(waysock run … &)"`-style captures see only them), and writes them to the
/// `--print-env` file.
pub fn announce(plan: &Plan, up: &Up, env_file: Option<&mut EnvFile>) {
    use std::io::Write as _;
    let exports = exports(&up.endpoint);
    eprintln!(
        "waysock: {} is up on {} ({}{})",
        plan.name(),
        up.endpoint,
        plan.strategy,
        plan.place.how()
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(exports.as_bytes()).and_then(|()| out.flush());
    if let Some(file) = env_file {
        if let Err(e) = file.write(&exports) {
            eprintln!("waysock run: --print-env {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_point_at_the_socket_quoted() {
        let ep = Endpoint::Unix("/tmp/it's/wayland-1".into());
        assert_eq!(
            exports(&ep),
            "export XDG_RUNTIME_DIR='/tmp/it'\\''s'\nexport WAYLAND_DISPLAY='/tmp/it'\\''s/wayland-1'\n"
        );
        let ep = Endpoint::Abstract("wayland-1000-1".into());
        assert!(exports(&ep).starts_with("# abstract:wayland-1000-1 has no path"));
    }
}
