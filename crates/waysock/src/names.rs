//! Display names: which ones exist, which are tried in what order, and which a user may give.
//!
//! The rules themselves live in the dependency-free crate `waysock_rules`, which the preload
//! shim uses too; this module gives them the library's types.
//!
//! - A display name is either a plain file name (`wayland-1`: no `/`, not `.` or `..`, no NUL,
//!   at most 64 bytes), looked up in the runtime dir, or an absolute path with libwayland's
//!   meaning, whose every directory then passes the same trust checks as any other candidate
//!   ([`crate::trust`]). A relative name with `/` would leave the runtime dir for wherever it
//!   points, somewhere another user may have put a socket.
//! - [`DisplayNames`] is the ordered list a strategy tries: libwayland's `wayland-0..32`, the
//!   `wayland-1..32` stock compositors try themselves, or the one name asked for.

pub use waysock_rules::{NameKind, MAX_DISPLAY_NUMBER, MAX_NAME_LEN};

/// A display name that breaks the rules above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("display name {name:?} {rule}")]
pub struct BadName {
    /// The name as given.
    pub name: String,
    /// Which rule it breaks, in words (`contains '/' …`).
    pub rule: &'static str,
}

/// Checks a display name given by the user or the environment.
pub fn check(name: &str) -> Result<NameKind, BadName> {
    waysock_rules::check_name(name).map_err(|rule| BadName {
        name: name.to_string(),
        rule,
    })
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

/// The display names one attempt tries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayNames {
    /// `wayland-FIRST` ..= `wayland-32`.
    Numbered {
        /// 0 for libwayland's own order, 1 for what stock compositors try.
        first: u32,
    },
    /// Exactly this name (`--display`).
    Only(String),
}

impl DisplayNames {
    /// libwayland's `wayland-0` ..= `wayland-32`.
    pub const ALL: DisplayNames = DisplayNames::Numbered { first: 0 };
    /// `wayland-1` ..= `wayland-32`: weston ≥ 10 and sway ≥ 1.7 never try `wayland-0`
    /// (libwayland's `wl_display_add_socket_auto` starts at 0 and finds these too).
    pub const STOCK: DisplayNames = DisplayNames::Numbered {
        first: waysock_rules::FIRST_STOCK_NUMBER,
    };

    /// The one name asked for, or `default` when none was.
    pub fn asked(name: Option<&str>, default: DisplayNames) -> DisplayNames {
        match name {
            Some(n) => DisplayNames::Only(n.to_string()),
            None => default,
        }
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = String> + '_ {
        let (numbered, only) = match self {
            DisplayNames::Numbered { first } => (Some(*first..=MAX_DISPLAY_NUMBER), None),
            DisplayNames::Only(n) => (None, Some(n.clone())),
        };
        numbered
            .into_iter()
            .flatten()
            .map(waysock_rules::display_name)
            .chain(only)
    }

    /// The longest of the names (what must fit `sun_path` under a directory).
    pub fn longest(&self) -> String {
        self.iter().max_by_key(String::len).unwrap_or_default()
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The range as people read it: `wayland-0..32`, or the one name.
    pub fn describe(&self) -> String {
        match self {
            DisplayNames::Numbered { first } => {
                format!(
                    "{}{first}..{MAX_DISPLAY_NUMBER}",
                    waysock_rules::DISPLAY_PREFIX
                )
            }
            DisplayNames::Only(n) => n.clone(),
        }
    }

    /// The abstract names of `uid` for these displays, as people read them:
    /// `abstract:wayland-UID-0..32`.
    pub fn describe_abstract(&self, uid: u32) -> String {
        format!(
            "abstract:{}",
            crate::endpoint::abstract_display_name(uid, &self.describe())
        )
    }
}

/// The display name whose abstract name for `uid` is `abs` (the inverse of
/// [`crate::abstract_display_name`]): `wayland-UID-N` → `wayland-N`, `wayland-UID-NAME` →
/// `wayland-NAME` (which maps back to the same abstract name). What the shim's mapping needs
/// in `WAYLAND_DISPLAY`, and what `--display` takes to choose that display.
pub fn display_for_abstract(uid: u32, abs: &str) -> String {
    let rest = abs
        .strip_prefix(&waysock_rules::abstract_prefix(uid))
        .unwrap_or(abs);
    waysock_rules::display_name_from(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_absolute_names_pass() {
        assert_eq!(check("wayland-1"), Ok(NameKind::Plain));
        assert_eq!(check("/run/user/1000/wayland-1"), Ok(NameKind::Absolute));
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        for bad in [
            "../mal/wayland-1",
            "../../tmp/mal/wayland-1",
            "sub/wayland-1",
            "..",
            "",
        ] {
            let e = check(bad).expect_err(bad);
            assert_eq!(e.name, bad);
        }
        assert!(check_plain("/abs/wayland-1").is_err());
        assert!(check("../x")
            .unwrap_err()
            .to_string()
            .contains("contains '/'"));
    }

    #[test]
    fn ranges() {
        let all: Vec<String> = DisplayNames::ALL.iter().collect();
        assert_eq!(all.len(), 33);
        assert_eq!(all[0], "wayland-0");
        let stock: Vec<String> = DisplayNames::STOCK.iter().collect();
        assert_eq!(stock.len(), 32);
        assert_eq!(stock[0], "wayland-1");
        assert_eq!(
            DisplayNames::asked(Some("kiosk"), DisplayNames::ALL)
                .iter()
                .collect::<Vec<_>>(),
            ["kiosk"]
        );
        assert_eq!(DisplayNames::ALL.describe(), "wayland-0..32");
        for name in ["wayland-0", "wayland-32", "wayland-custom"] {
            let abs = crate::abstract_display_name(1000, name);
            assert_eq!(display_for_abstract(1000, &abs), name);
        }
        assert_eq!(
            DisplayNames::STOCK.describe_abstract(1000),
            "abstract:wayland-1000-1..32"
        );
        assert_eq!(DisplayNames::ALL.longest().len(), "wayland-10".len());
    }
}
