//! Waiting until the compositor answers, and what is listening on the abstract names.
//!
//! In a directory, a display counts as the compositor's when
//! 1. `NAME.lock` is `flock`ed by the compositor or one of its descendants (read from
//!    `/proc/locks`, which names the holder's pid: a compositor starting at the same time in a
//!    shared runtime dir is not mistaken for ours), and
//! 2. a real Wayland roundtrip (`wl_display.sync` → `wl_callback.done`) succeeds on it.
//!
//! On abstract sockets it is the first `wayland-UID-N` whose listening socket was created by
//! the compositor or a descendant (`SO_PEERCRED` on a connection to it) and that answers a
//! roundtrip.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use waysock::names::DisplayNames;
use waysock::Endpoint;

use super::launch::Launched;
use super::plan::Place;

/// The compositor's display, once it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Up {
    /// The display name it bound (`wayland-1`).
    pub display: String,
    /// The process that holds it (the compositor or a descendant).
    pub holder: u32,
    /// Where clients reach it.
    pub endpoint: Endpoint,
}

/// How waiting ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// The display answers.
    Up(Up),
    /// The compositor exited first.
    Exited,
    /// Nothing answered within the limit (the compositor still runs).
    TimedOut,
}

/// How often [`wait`] looks: a compositor's display comes up some tens of milliseconds after
/// its start, and until a socket appears a look is one directory listing, so readiness is
/// seen within 5 ms of the first look that could succeed.
const POLL: Duration = Duration::from_millis(5);

/// Looks every [`POLL`] (5 ms) until the compositor's display answers at `place`, it exits,
/// or `limit` passes.
pub fn wait(
    child: &mut Launched,
    place: &Place,
    uid: u32,
    want: Option<&str>,
    limit: Duration,
) -> Ready {
    let start = Instant::now();
    let pid = child.pid();
    loop {
        if child.has_exited() {
            return Ready::Exited;
        }
        if start.elapsed() > limit {
            return Ready::TimedOut;
        }
        let found = match place {
            Place::Dir { dir, .. } => up_in_dir(dir, want, pid),
            Place::Abstract { .. } => up_abstract(uid, want, pid),
        };
        if let Some(up) = found {
            return Ready::Up(up);
        }
        std::thread::sleep(POLL);
    }
}

/// The names of the sockets in `dir` now.
fn sockets_in(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut names = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let (Ok(md), Some(n)) = (e.path().symlink_metadata(), e.file_name().to_str()) {
                if md.file_type().is_socket() {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

/// A socket in `dir` whose lock the child (or a descendant) holds, answering a roundtrip.
/// (Holding the lock is what makes it the child's: no inode bookkeeping is needed, so a
/// reused inode number cannot fool it.)
fn up_in_dir(dir: &Path, want: Option<&str>, pid: u32) -> Option<Up> {
    for name in sockets_in(dir) {
        if want.is_some_and(|w| w != name) {
            continue;
        }
        let Ok(mut s) = UnixStream::connect(dir.join(&name)) else {
            continue;
        };
        // Whose is it? The listener's creator (SO_PEERCRED) answers at once; only when that is
        // not the child (a socket handed down by a parent: socket activation) is the lock's
        // holder asked, through /proc/locks, whose first read can take tens of milliseconds.
        let holder = match waysock::probe::server_pid(&s)
            .filter(|p| waysock::probe::is_same_or_descendant(*p, pid))
        {
            Some(p) => p,
            None => {
                let Ok(md) = std::fs::symlink_metadata(dir.join(format!("{name}.lock"))) else {
                    continue;
                };
                match waysock::probe::flock_holder(md.dev(), md.ino()) {
                    Some(h) if waysock::probe::is_same_or_descendant(h, pid) => h,
                    _ => continue,
                }
            }
        };
        if waysock::probe::roundtrip(&mut s, Duration::from_secs(2)).is_ok() {
            let endpoint = Endpoint::Unix(dir.join(&name));
            return Some(Up {
                display: name,
                holder,
                endpoint,
            });
        }
    }
    None
}

/// An abstract `wayland-UID-N` whose listener the child (or a descendant) created.
fn up_abstract(uid: u32, want: Option<&str>, pid: u32) -> Option<Up> {
    for name in DisplayNames::asked(want, DisplayNames::ALL).iter() {
        let endpoint = Endpoint::Abstract(waysock::abstract_display_name(uid, &name));
        let Ok(mut s) = waysock::discover::accepts(&endpoint) else {
            continue;
        };
        let Some(holder) = waysock::probe::server_pid(&s) else {
            continue;
        };
        if !waysock::probe::is_same_or_descendant(holder, pid) {
            continue;
        }
        if waysock::probe::roundtrip(&mut s, Duration::from_secs(2)).is_ok() {
            return Some(Up {
                display: name,
                holder,
                endpoint,
            });
        }
    }
    None
}

/// Is one of the abstract names a stock compositor would try (`wayland-UID-1..32`, or the one
/// asked for) free or ours? `Err` names who holds them when none is left.
pub fn abstract_names_free(uid: u32, want: Option<&str>) -> Result<(), String> {
    use waysock::probe::AbstractName;
    let names: Vec<String> = DisplayNames::asked(want, DisplayNames::STOCK)
        .iter()
        .collect();
    let mut holders: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for name in &names {
        let abs = waysock::abstract_display_name(uid, name);
        match waysock::probe::abstract_name(&abs) {
            AbstractName::Free => return Ok(()),
            AbstractName::Held { uid: Some(u) } if u == uid => holders
                .entry(format!("by us (uid {u}): our own displays"))
                .or_default(),
            AbstractName::Held { uid: Some(u) } => holders
                .entry(format!("by uid {u}, another user"))
                .or_default(),
            AbstractName::Held { uid: None } => holders
                .entry("by a socket that does not listen (its owner cannot be asked)".into())
                .or_default(),
        }
        .push(abs);
    }
    let range = match want {
        Some(_) => format!(
            "the abstract name {}",
            waysock::abstract_display_name(uid, &names[0])
        ),
        None => format!(
            "every abstract name the compositor would try (wayland-{uid}-1..{}) is taken",
            waysock::MAX_DISPLAY_NUMBER
        ),
    };
    let who: Vec<String> = holders
        .iter()
        .map(|(who, list)| format!("{} held {who}", count(list.len())))
        .collect();
    Err(format!("{range}: {}", who.join("; ")))
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 is".into()
    } else {
        format!("{n} are")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1), "1 is");
        assert_eq!(count(32), "32 are");
    }

    #[test]
    fn only_sockets_are_candidates() {
        let dir = std::env::temp_dir().join(format!("waysock-ready-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("wayland-1"), "").unwrap();
        let _l = std::os::unix::net::UnixListener::bind(dir.join("wayland-2")).unwrap();
        assert_eq!(sockets_in(&dir), ["wayland-2"]);
        // No lock held by us: not ours, whatever listens there.
        assert_eq!(up_in_dir(&dir, None, std::process::id()), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
