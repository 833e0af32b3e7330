//! The rules that the `waysock` library and `libwaysock_preload.so` must never disagree on,
//! in one place with no dependencies (the shim links only libc and stays small):
//!
//! - display names: libwayland's `wayland-0` ..= `wayland-32`, the ones stock compositors try
//!   themselves (`wayland-1` ..= `wayland-32`), and which names may be used at all;
//! - the abstract name a display of a uid lives at (`wayland-UID-N`);
//! - who may talk to a socket on an abstract name, which has no file permissions;
//! - which errors of a path `bind`/`connect` mean "this place is unusable, use the abstract
//!   name instead" (Linux errno values; the library's classifier is tested against them).

#![forbid(unsafe_code)]

/// The highest display number libwayland's `wl_display_add_socket_auto` tries.
pub const MAX_DISPLAY_NUMBER: u32 = 32;

/// The first number weston (≥ 10) and sway (≥ 1.7) try: they never pick `wayland-0`.
pub const FIRST_STOCK_NUMBER: u32 = 1;

/// The prefix of every default display name.
pub const DISPLAY_PREFIX: &str = "wayland-";

/// `wayland-N`.
pub fn display_name(n: u32) -> String {
    display_name_from(&n.to_string())
}

/// `wayland-SUFFIX`.
pub fn display_name_from(suffix: &str) -> String {
    format!("{DISPLAY_PREFIX}{suffix}")
}

/// Is `name` (a file name, no directory) one of the display sockets the shim maps: `wayland-`
/// followed by at least one byte?
pub fn is_display_name(name: &[u8]) -> bool {
    name.len() > DISPLAY_PREFIX.len() && name.starts_with(DISPLAY_PREFIX.as_bytes())
}

/// The abstract name for display `name` of `uid`: `wayland-UID-N` for `wayland-N`,
/// `wayland-UID-NAME` for any other name. Per uid, because anyone can bind any abstract name:
/// two users' displays never collide, and a client knows whose name it dials.
pub fn abstract_name(uid: u32, name: &[u8]) -> Vec<u8> {
    let suffix = name.strip_prefix(DISPLAY_PREFIX.as_bytes()).unwrap_or(name);
    let mut v = abstract_prefix(uid).into_bytes();
    v.extend_from_slice(suffix);
    v
}

/// The prefix every abstract display name of `uid` starts with (`wayland-UID-`).
pub fn abstract_prefix(uid: u32) -> String {
    format!("{DISPLAY_PREFIX}{uid}-")
}

/// The longest plain display name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// What kind of display name a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A file name, looked up in a runtime dir.
    Plain,
    /// An absolute socket path (libwayland's meaning), which must then pass the trust checks.
    Absolute,
}

/// Checks a display name (`--display`, `WAYLAND_DISPLAY`). A relative name must be a plain file
/// name: with `/` or `..` it would leave the runtime dir for wherever it points. `Err` is the
/// rule broken, in words.
pub fn check_name(name: &str) -> Result<NameKind, &'static str> {
    if name.contains('\0') {
        return Err("contains a NUL byte");
    }
    if name.starts_with('/') {
        return Ok(NameKind::Absolute);
    }
    if name.is_empty() {
        return Err("is empty");
    }
    if name == "." || name == ".." {
        return Err("is a directory reference, not a socket name");
    }
    if name.contains('/') {
        return Err(
            "contains '/': a relative name must be a plain file name in the runtime \
                    dir (like wayland-1); give an absolute path for a socket elsewhere",
        );
    }
    if name.len() > MAX_NAME_LEN {
        return Err("is longer than 64 bytes");
    }
    Ok(NameKind::Plain)
}

/// May a peer running as `peer` use a socket on an abstract name of `us`? Our own uid always
/// may; others only when listed (`waysock run --allow-uid`). Root is not special: an abstract
/// name has no permissions, so the rule is the whole protection.
pub fn peer_allowed(peer: u32, us: u32, also: &[u32]) -> bool {
    peer == us || also.contains(&peer)
}

/// Linux errno values the rules below are written in.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Read-only file system.
    pub const EROFS: i32 = 30;
    /// Connection refused.
    pub const ECONNREFUSED: i32 = 111;
}

/// Does `bind` on a display path failing with `errno` mean the directory is unusable here (so
/// the abstract name is used instead)? Any other error is the caller's to see.
pub fn bind_place_unusable(errno: i32) -> bool {
    use errno::*;
    [EROFS, EACCES, EPERM, ENOENT].contains(&errno)
}

/// Does `connect` to a display path failing with `errno` mean nothing serves that path (so the
/// abstract name is dialled instead)?
pub fn connect_nothing_there(errno: i32) -> bool {
    use errno::*;
    [ENOENT, ECONNREFUSED].contains(&errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(display_name(3), "wayland-3");
        assert!(is_display_name(b"wayland-0"));
        assert!(!is_display_name(b"wayland-"));
        assert!(!is_display_name(b"bus"));
        assert_eq!(abstract_name(1000, b"wayland-3"), b"wayland-1000-3");
        assert_eq!(abstract_name(7, b"kiosk"), b"wayland-7-kiosk");
        assert!(abstract_name(1000, b"wayland-3").starts_with(abstract_prefix(1000).as_bytes()));
    }

    #[test]
    fn name_rules() {
        assert_eq!(check_name("wayland-1"), Ok(NameKind::Plain));
        assert_eq!(check_name("/run/user/1/wayland-1"), Ok(NameKind::Absolute));
        for bad in ["", ".", "..", "../x", "a/b", "x\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"w".repeat(65)).is_err());
        assert!(check_name(&"w".repeat(64)).is_ok());
    }

    #[test]
    fn peers() {
        assert!(peer_allowed(5, 5, &[]));
        assert!(!peer_allowed(0, 5, &[]));
        assert!(peer_allowed(7, 5, &[7]));
    }
}
