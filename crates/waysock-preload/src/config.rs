//! What the shim maps, read once from `WAYSOCK_*` variables; pure logic, no syscalls.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// Longest abstract name that fits `sun_path` after its leading NUL.
pub const ABSTRACT_MAX: usize = 107;

/// The shim's configuration. Absent (pass-through) unless `WAYSOCK_PRELOAD_DIR` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The directory the program believes is its runtime dir (no trailing `/`).
    pub dir: Vec<u8>,
    /// Our uid: the abstract names' owner, and the peers accepted on them.
    pub uid: u32,
    /// Further peer uids to accept (`--allow-uid`).
    pub allow_uids: Vec<u32>,
    /// One line per interposed call (`WAYSOCK_LOG=debug|trace`).
    pub debug: bool,
    /// Refusals and errors (`WAYSOCK_LOG` not `off`/`error`).
    pub warn: bool,
}

/// What a path means to the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// A display socket (`wayland-*`): always this abstract name instead.
    Socket(Vec<u8>),
    /// Another socket directly in the dir (sway's IPC socket, a D-Bus socket): the real path
    /// first, this abstract name only if the real path cannot be used (read-only dir, no such
    /// file), so working sockets of other services are left alone.
    Fallback(Vec<u8>),
    /// A display socket's lock file (`wayland-*.lock`): anonymous memory, unless the display's
    /// abstract name (given) is taken, in which case the lock "fails" so libwayland moves on.
    Lock(Vec<u8>),
}

impl Config {
    /// Reads the configuration through `get`; `None` means pass everything through.
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>, uid: u32) -> Option<Config> {
        let dir = get("WAYSOCK_PRELOAD_DIR")?;
        let mut dir = dir.as_bytes().to_vec();
        while dir.len() > 1 && dir.ends_with(b"/") {
            dir.pop();
        }
        if dir.first() != Some(&b'/') {
            return None;
        }
        let level = get("WAYSOCK_LOG")
            .map(|v| v.to_string_lossy().trim().to_ascii_lowercase())
            .unwrap_or_default();
        let allow_uids = get("WAYSOCK_ALLOW_UIDS")
            .map(|v| {
                v.to_string_lossy()
                    .split(',')
                    .filter_map(|u| u.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(Config {
            dir,
            uid,
            allow_uids,
            debug: matches!(level.as_str(), "debug" | "trace"),
            warn: !matches!(level.as_str(), "off" | "error"),
        })
    }

    /// Is `uid` allowed to connect to a mapped listener?
    pub fn allows(&self, uid: u32) -> bool {
        waysock_rules::peer_allowed(uid, self.uid, &self.allow_uids)
    }

    /// What `path` maps to: only names directly inside [`Config::dir`].
    pub fn map(&self, path: &[u8]) -> Option<Mapped> {
        let rest = path.strip_prefix(self.dir.as_slice())?;
        let name = if self.dir == b"/" {
            // libwayland joins with "%s/%s": "/" + "/" + name.
            rest.strip_prefix(b"/").unwrap_or(rest)
        } else {
            rest.strip_prefix(b"/")?
        };
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return None;
        }
        let display = waysock_rules::is_display_name;
        if let Some(base) = name.strip_suffix(b".lock") {
            // Only display locks: any other lock file (xtables.lock, …) is someone else's.
            let abs = abstract_name(self.uid, base);
            return (display(base) && abs.len() <= ABSTRACT_MAX).then_some(Mapped::Lock(abs));
        }
        let abs = abstract_name(self.uid, name);
        if abs.len() > ABSTRACT_MAX {
            return None;
        }
        Some(if display(name) {
            Mapped::Socket(abs)
        } else {
            Mapped::Fallback(abs)
        })
    }
}

/// Socket activation handed on by `waysock run` (`WAYSOCK_LISTEN_FD`, `WAYSOCK_LISTEN_PATH`):
/// the compositor's bind of its display socket at [`Listen::path`] becomes the inherited
/// listener at fd [`Listen::fd`]. Independent of [`Config`] (nothing is mapped to abstract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The inherited listening socket's number.
    pub fd: i32,
    /// Its path, `DIR/NAME`: the display socket the compositor binds.
    pub path: Vec<u8>,
}

/// What a path means under socket activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// The activated display socket itself.
    Socket,
    /// The lock of another display name in the same directory: it "fails", so a compositor
    /// choosing its own name (`wl_display_add_socket_auto`) moves on to the activated one.
    OtherLock,
}

impl Listen {
    /// Reads `WAYSOCK_LISTEN_FD` and `WAYSOCK_LISTEN_PATH` (an absolute `DIR/NAME`, NAME a
    /// display name); `None` unless both are valid.
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Option<Listen> {
        let fd: i32 = get("WAYSOCK_LISTEN_FD")?.to_str()?.parse().ok()?;
        let path = get("WAYSOCK_LISTEN_PATH")?.as_bytes().to_vec();
        let l = Listen { fd, path };
        let ok = fd >= 0 && l.path.first() == Some(&b'/') && l.path.len() < 108;
        (ok && waysock_rules::is_display_name(l.name())).then_some(l)
    }

    /// The directory part, without the trailing `/` (`/` itself for a socket in `/`).
    pub fn dir(&self) -> &[u8] {
        let slash = self.path.iter().rposition(|b| *b == b'/').unwrap_or(0);
        &self.path[..slash.max(1)]
    }

    /// The display name (the last component).
    pub fn name(&self) -> &[u8] {
        let slash = self.path.iter().rposition(|b| *b == b'/').unwrap_or(0);
        &self.path[slash + 1..]
    }

    /// What `path` is to the activation, if anything.
    pub fn steer(&self, path: &[u8]) -> Option<Steer> {
        if path == self.path.as_slice() {
            return Some(Steer::Socket);
        }
        let base = path.strip_suffix(b".lock")?;
        let slash = base.iter().rposition(|b| *b == b'/')?;
        let (dir, name) = (&base[..slash.max(1)], &base[slash + 1..]);
        (dir == self.dir() && name != self.name() && waysock_rules::is_display_name(name))
            .then_some(Steer::OtherLock)
    }
}

/// The abstract name for display `name` of `uid` (the rule lives in `waysock_rules`, which the
/// library uses too).
pub use waysock_rules::abstract_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &str) -> Config {
        let dir = dir.to_string();
        Config::from_vars(
            |k| (k == "WAYSOCK_PRELOAD_DIR").then(|| OsString::from(&dir)),
            1000,
        )
        .unwrap()
    }

    #[test]
    fn maps_only_direct_children() {
        let c = cfg("/run/user/1000/");
        assert_eq!(
            c.map(b"/run/user/1000/wayland-0"),
            Some(Mapped::Socket(b"wayland-1000-0".to_vec()))
        );
        assert_eq!(
            c.map(b"/run/user/1000/wayland-0.lock"),
            Some(Mapped::Lock(b"wayland-1000-0".to_vec()))
        );
        assert_eq!(c.map(b"/run/user/1000/xtables.lock"), None);
        assert_eq!(
            c.map(b"/run/user/1000/bus"),
            Some(Mapped::Fallback(b"wayland-1000-bus".to_vec()))
        );
        assert_eq!(c.map(b"/run/user/1000/sub/wayland-0"), None);
        assert_eq!(c.map(b"/run/user/10000/wayland-0"), None);
        assert_eq!(c.map(b"/run/user/1000"), None);
        assert_eq!(c.map(b"/run/user/1000/"), None);
        assert_eq!(c.map(b"/run/user/1000/.lock"), None);
        assert_eq!(c.map(b"/etc/passwd"), None);
        let root = cfg("/");
        assert_eq!(
            root.map(b"/wayland-1"),
            Some(Mapped::Socket(b"wayland-1000-1".to_vec()))
        );
        assert_eq!(
            root.map(b"//wayland-1"),
            Some(Mapped::Socket(b"wayland-1000-1".to_vec()))
        );
    }

    #[test]
    fn pass_through_without_dir() {
        assert_eq!(Config::from_vars(|_| None, 0), None);
        assert_eq!(
            Config::from_vars(|k| (k == "WAYSOCK_PRELOAD_DIR").then(|| "rel".into()), 0),
            None
        );
    }

    #[test]
    fn same_abstract_rule_as_the_library() {
        for (uid, name) in [
            (1000, "wayland-3"),
            (0, "sway-ipc.0.1.sock"),
            (7, "wayland-"),
        ] {
            assert_eq!(
                abstract_name(uid, name.as_bytes()),
                waysock::abstract_display_name(uid, name).into_bytes()
            );
        }
        assert_eq!(abstract_name(1000, b"wayland-3"), b"wayland-1000-3");
    }

    #[test]
    fn activation_steers_only_its_directory() {
        let vars = |fd: &str, path: &str| {
            let (fd, path) = (fd.to_string(), path.to_string());
            Listen::from_vars(move |k| match k {
                "WAYSOCK_LISTEN_FD" => Some(fd.clone().into()),
                "WAYSOCK_LISTEN_PATH" => Some(path.clone().into()),
                _ => None,
            })
        };
        let l = vars("3", "/run/user/1000/wayland-5").unwrap();
        assert_eq!(
            (l.dir(), l.name()),
            (&b"/run/user/1000"[..], &b"wayland-5"[..])
        );
        assert_eq!(l.steer(b"/run/user/1000/wayland-5"), Some(Steer::Socket));
        assert_eq!(
            l.steer(b"/run/user/1000/wayland-1.lock"),
            Some(Steer::OtherLock)
        );
        // Its own lock is the real one: the lock protocol holds at the activated path.
        assert_eq!(l.steer(b"/run/user/1000/wayland-5.lock"), None);
        assert_eq!(l.steer(b"/run/user/1000/wayland-1"), None);
        assert_eq!(l.steer(b"/run/user/1000/xtables.lock"), None);
        assert_eq!(l.steer(b"/tmp/wayland-1.lock"), None);
        assert_eq!(l.steer(b"/run/user/1000/sub/wayland-1.lock"), None);
        let root = vars("4", "/wayland-1").unwrap();
        assert_eq!((root.dir(), root.name()), (&b"/"[..], &b"wayland-1"[..]));
        assert_eq!(root.steer(b"/wayland-2.lock"), Some(Steer::OtherLock));
        for (fd, path) in [
            ("x", "/a/wayland-1"),
            ("-1", "/a/wayland-1"),
            ("3", "a/wayland-1"),
        ] {
            assert_eq!(vars(fd, path), None, "{fd} {path}");
        }
        assert_eq!(vars("3", "/a/bus"), None, "not a display name");
        assert_eq!(Listen::from_vars(|_| None), None);
    }

    #[test]
    fn log_levels_and_allow_list() {
        let c = Config::from_vars(
            |k| match k {
                "WAYSOCK_PRELOAD_DIR" => Some("/x".into()),
                "WAYSOCK_LOG" => Some("DEBUG".into()),
                "WAYSOCK_ALLOW_UIDS" => Some("5, 7,bogus".into()),
                _ => None,
            },
            1,
        )
        .unwrap();
        assert!(c.debug && c.warn);
        assert!(c.allows(1) && c.allows(5) && c.allows(7) && !c.allows(6));
    }

    #[test]
    fn dot_names_are_never_mapped() {
        let c = cfg("/run/user/1000");
        assert_eq!(c.map(b"/run/user/1000/."), None);
        assert_eq!(c.map(b"/run/user/1000/.."), None);
    }

    #[test]
    fn an_abstract_name_that_fits_is_mapped_and_one_byte_more_is_not() {
        let c = cfg("/d");
        // "wayland-1000-" + rest: a display name whose abstract name is exactly ABSTRACT_MAX.
        let fits = |extra: usize| {
            let rest = "x".repeat(ABSTRACT_MAX - "wayland-1000-".len() + extra);
            format!("/d/wayland-{rest}")
        };
        assert!(
            matches!(c.map(fits(0).as_bytes()), Some(Mapped::Socket(a)) if a.len() == ABSTRACT_MAX)
        );
        assert_eq!(c.map(fits(1).as_bytes()), None);
    }

    #[test]
    fn a_listen_path_must_fit_sun_path() {
        let listen = |len: usize| {
            let path = format!("/{}/wayland-1", "d".repeat(len - "//wayland-1".len()));
            assert_eq!(path.len(), len);
            Listen::from_vars(|k| match k {
                "WAYSOCK_LISTEN_FD" => Some("3".into()),
                "WAYSOCK_LISTEN_PATH" => Some(path.clone().into()),
                _ => None,
            })
        };
        assert!(listen(107).is_some());
        assert!(listen(108).is_none());
    }
}
