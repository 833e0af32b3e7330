//! Display names: what `--display`, `WAYLAND_DISPLAY` and `run --display` may hold.
//!
//! libwayland joins a relative `WAYLAND_DISPLAY` onto `XDG_RUNTIME_DIR`, so `../x/wayland-1`
//! leaves the runtime dir for wherever the name points: somewhere another user may have put a
//! socket. waysock accepts exactly two forms:
//! - a plain name (`wayland-1`): no `/`, not `.` or `..`, no NUL, at most
//!   [`MAX_NAME_LEN`] bytes, looked up in the runtime dir;
//! - an absolute path (`/run/user/1000/wayland-1`), with libwayland's meaning, whose every
//!   directory then passes the same trust checks as any other candidate ([`crate::trust`]).

/// The longest plain display name accepted (a socket name must also fit `sun_path` under its
/// directory, which is checked where the directory is known).
pub const MAX_NAME_LEN: usize = 64;

/// A display name that breaks the rules above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("display name {name:?} {rule}")]
pub struct BadName {
    /// The name as given.
    pub name: String,
    /// Which rule it breaks, in words (`contains '/' …`).
    pub rule: &'static str,
}

/// What kind of display name this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A file name, looked up in a runtime dir.
    Plain,
    /// An absolute socket path.
    Absolute,
}

/// Checks a display name given by the user or the environment.
pub fn check(name: &str) -> Result<NameKind, BadName> {
    let bad = |rule| {
        Err(BadName {
            name: name.to_string(),
            rule,
        })
    };
    if name.contains('\0') {
        return bad("contains a NUL byte");
    }
    if name.starts_with('/') {
        return Ok(NameKind::Absolute);
    }
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("is a directory reference, not a socket name");
    }
    if name.contains('/') {
        return bad(
            "contains '/': a relative name must be a plain file name in the runtime dir \
             (like wayland-1); give an absolute path for a socket elsewhere",
        );
    }
    if name.len() > MAX_NAME_LEN {
        return bad("is longer than 64 bytes");
    }
    Ok(NameKind::Plain)
}

/// Checks a name that must be plain (a compositor binds it inside a runtime dir).
pub fn check_plain(name: &str) -> Result<(), BadName> {
    match check(name)? {
        NameKind::Plain => Ok(()),
        NameKind::Absolute => Err(BadName {
            name: name.to_string(),
            rule: "is a path: a compositor binds a plain name (like wayland-1) in its runtime dir",
        }),
    }
}

/// The names stock compositors pick for themselves, in their order: `wayland-1` to
/// `wayland-32` (weston ≥ 10 and sway ≥ 1.7 start at 1; libwayland's own
/// `wl_display_add_socket_auto` starts at 0 and also finds any of these).
pub fn stock_names() -> impl Iterator<Item = String> {
    (1..=crate::MAX_DISPLAY_NUMBER).map(|n| format!("wayland-{n}"))
}

/// Every default name, `wayland-0` to `wayland-32`, in libwayland's order.
pub fn default_names() -> impl Iterator<Item = String> {
    (0..=crate::MAX_DISPLAY_NUMBER).map(|n| format!("wayland-{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_absolute_names_pass() {
        assert_eq!(check("wayland-1"), Ok(NameKind::Plain));
        assert_eq!(check("/run/user/1000/wayland-1"), Ok(NameKind::Absolute));
        assert_eq!(check(&"w".repeat(64)), Ok(NameKind::Plain));
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        for bad in [
            "../mal/wayland-1",
            "../../tmp/mal/wayland-1",
            "sub/wayland-1",
            "wayland-1/",
            "..",
            ".",
            "",
            "way\0land",
        ] {
            let e = check(bad).expect_err(bad);
            assert_eq!(e.name, bad);
        }
        assert!(check(&"w".repeat(65)).is_err());
        assert!(check_plain("/abs/wayland-1").is_err());
        assert!(check("../x")
            .unwrap_err()
            .to_string()
            .contains("contains '/'"));
    }

    #[test]
    fn stock_names_skip_zero() {
        let v: Vec<String> = stock_names().collect();
        assert_eq!(v.first().map(String::as_str), Some("wayland-1"));
        assert_eq!(v.len(), 32);
        assert_eq!(default_names().count(), 33);
    }
}
