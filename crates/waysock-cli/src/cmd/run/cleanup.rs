//! The one guard that removes what `run` created, whichever way `run` ends.

use std::path::PathBuf;

use super::publish::Published;
use crate::cmd::envfile::EnvFile;

/// Owns everything `run` made from the moment it exists; its `Drop` removes it all, in order:
/// 1. the registry record (withdrawn),
/// 2. in a directory `run` created: the display's leftovers if the compositor died without
///    removing them (only a dead socket, under its lock: [`waysock::remove_stale_display`]),
///    then the directories `run` created, innermost first, if empty,
/// 3. the `--print-env` file, if it is still the one we wrote ([`EnvFile`]'s own `Drop`).
///
/// Abstract sockets leave nothing behind.
#[derive(Debug)]
pub struct Cleanup {
    record: Option<Published>,
    /// The compositor's directory and the directories created for it.
    created: Option<(PathBuf, Vec<PathBuf>)>,
    /// Our share in the compositor's directory: the last job to let go removes it if empty.
    hold: Option<waysock::DirHold>,
    /// The display the compositor brought up there.
    display: Option<String>,
    env_file: Option<EnvFile>,
}

impl Cleanup {
    /// A guard that so far owns the `--print-env` file (not written yet).
    pub fn new(env_file: Option<EnvFile>) -> Cleanup {
        Cleanup {
            record: None,
            created: None,
            hold: None,
            display: None,
            env_file,
        }
    }

    /// The directories created for the compositor's `dir` (outermost first).
    pub fn created(&mut self, dir: PathBuf, created: Vec<PathBuf>) {
        self.created = Some((dir, created));
    }

    /// Our share in the compositor's directory (see [`waysock::DirHold`]).
    pub fn hold(&mut self, hold: Option<waysock::DirHold>) {
        self.hold = hold;
    }

    /// The display the compositor brought up.
    pub fn display(&mut self, name: &str) {
        self.display = Some(name.to_string());
    }

    /// The registry record written for it.
    pub fn published(&mut self, record: Published) {
        self.record = Some(record);
    }

    /// The `--print-env` file, to write.
    pub fn env_file(&mut self) -> Option<&mut EnvFile> {
        self.env_file.as_mut()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.withdraw();
        }
        let shared = self.hold.is_some();
        if let Some((dir, created)) = self.created.take().filter(|(_, c)| shared || !c.is_empty()) {
            if let Some(name) = self.display.take() {
                match waysock::remove_stale_display(&dir, &name) {
                    Ok(true) => {
                        tracing::info!("removed the dead {name} the compositor left behind")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!("could not clean {name}: {e}"),
                }
            }
            // The last job in a shared private dir removes it when empty; then whatever this
            // job created above it (`$HOME/.local`), innermost first, if empty.
            if let Some(hold) = self.hold.take() {
                hold.release();
            }
            for d in created.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        // `env_file` is dropped next, after this: EnvFile's Drop removes what it wrote.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_directories_go_innermost_first_and_only_if_empty() {
        let base = std::env::temp_dir().join(format!("waysock-cleanup-{}", std::process::id()));
        let inner = base.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        {
            let mut guard = Cleanup::new(None);
            guard.created(inner.clone(), vec![base.clone(), inner.clone()]);
            guard.display("wayland-1"); // nothing there: nothing to remove
        }
        assert!(!base.exists(), "both removed");

        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("keep"), "").unwrap();
        {
            let mut guard = Cleanup::new(None);
            guard.created(inner.clone(), vec![base.clone(), inner.clone()]);
        }
        assert!(inner.join("keep").exists(), "a directory in use stays");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_directory_run_did_not_create_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("waysock-cleanup2-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        {
            let mut guard = Cleanup::new(None);
            guard.created(dir.clone(), Vec::new());
        }
        assert!(dir.exists());
        std::fs::remove_dir(&dir).unwrap();
    }
}
