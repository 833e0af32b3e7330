//! `errno` as a value: names, messages, and the decision table of SPEC §2.

use std::fmt;

/// An OS error number, kept as a value so a diagnosis can tell `ENOENT` from `EACCES` from
/// `EROFS` long after the failing call returned.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// `(errno, name)` for every errno that the strategies can meet. Values are Linux's
/// (x86_64 / aarch64 share them for this set).
const NAMES: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (9, "EBADF"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (26, "ETXTBSY"),
    (28, "ENOSPC"),
    (30, "EROFS"),
    (36, "ENAMETOOLONG"),
    (38, "ENOSYS"),
    (40, "ELOOP"),
    (88, "ENOTSOCK"),
    (91, "EPROTOTYPE"),
    (93, "EPROTONOSUPPORT"),
    (95, "EOPNOTSUPP"),
    (97, "EAFNOSUPPORT"),
    (98, "EADDRINUSE"),
    (99, "EADDRNOTAVAIL"),
    (104, "ECONNRESET"),
    (106, "EISCONN"),
    (107, "ENOTCONN"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (122, "EDQUOT"),
];

impl Errno {
    /// `EACCES`.
    pub const ACCES: Errno = Errno(13);
    /// `EPERM`.
    pub const PERM: Errno = Errno(1);
    /// `ENOENT`.
    pub const NOENT: Errno = Errno(2);
    /// `EROFS`.
    pub const ROFS: Errno = Errno(30);
    /// `EADDRINUSE`.
    pub const ADDRINUSE: Errno = Errno(98);
    /// `ENAMETOOLONG`.
    pub const NAMETOOLONG: Errno = Errno(36);
    /// `ELOOP`.
    pub const LOOP: Errno = Errno(40);
    /// `ENOTDIR`.
    pub const NOTDIR: Errno = Errno(20);
    /// `EEXIST`.
    pub const EXIST: Errno = Errno(17);
    /// `EWOULDBLOCK` (= `EAGAIN` on Linux).
    pub const WOULDBLOCK: Errno = Errno(11);
    /// `ECONNREFUSED`.
    pub const CONNREFUSED: Errno = Errno(111);
    /// `EINVAL`.
    pub const INVAL: Errno = Errno(22);
    /// `EISDIR`.
    pub const ISDIR: Errno = Errno(21);
    /// `ENXIO`.
    pub const NXIO: Errno = Errno(6);
    /// `EBADF`.
    pub const BADF: Errno = Errno(9);

    /// The symbolic name (`"EROFS"`), or `"E<number>"` for one outside the table.
    pub fn name(self) -> String {
        NAMES
            .iter()
            .find(|(n, _)| *n == self.0)
            .map(|(_, s)| (*s).to_string())
            .unwrap_or_else(|| format!("E{}", self.0))
    }

    /// Looks a symbolic name up (`"EROFS"` → `Errno(30)`).
    pub fn from_name(name: &str) -> Option<Errno> {
        NAMES
            .iter()
            .find(|(_, s)| *s == name)
            .map(|(n, _)| Errno(*n))
    }

    /// The C library's message, e.g. "Read-only file system".
    pub fn message(self) -> String {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; the name already identifies it.
        match text.rfind(" (os error") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    }

    /// What the strategy chain does after this errno (SPEC §2, "errno decisions").
    pub fn decision(self) -> Decision {
        match self.0 {
            // EMFILE, ENFILE, ENOMEM: the process itself is out of resources.
            24 | 23 | 12 => Decision::Stop,
            98 => Decision::NextName,
            _ => Decision::NextCandidate,
        }
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

impl serde::Serialize for Errno {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// What to do after a failed syscall (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This candidate cannot work; try the next one.
    NextCandidate,
    /// The name is taken; try the next display number in the same place.
    NextName,
    /// No other candidate can help (out of fds or memory): stop the chain.
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (n, s) in NAMES {
            assert_eq!(Errno(*n).name(), *s);
            assert_eq!(Errno::from_name(s), Some(Errno(*n)));
        }
        assert_eq!(Errno(4095).name(), "E4095");
    }

    #[test]
    fn names_match_the_platform() {
        // The table is hand-written; check it against rustix's constants.
        use rustix::io::Errno as R;
        for (r, name) in [
            (R::ROFS, "EROFS"),
            (R::ACCESS, "EACCES"),
            (R::NAMETOOLONG, "ENAMETOOLONG"),
            (R::ADDRINUSE, "EADDRINUSE"),
            (R::CONNREFUSED, "ECONNREFUSED"),
            (R::DQUOT, "EDQUOT"),
            (R::OPNOTSUPP, "EOPNOTSUPP"),
            (R::AFNOSUPPORT, "EAFNOSUPPORT"),
            (R::LOOP, "ELOOP"),
            (R::MFILE, "EMFILE"),
        ] {
            assert_eq!(Errno::from(r).name(), name);
        }
    }

    #[test]
    fn decision_table_follows_the_spec() {
        for name in [
            "EACCES",
            "EPERM",
            "EROFS",
            "ENOENT",
            "ENAMETOOLONG",
            "EINVAL",
            "EOPNOTSUPP",
            "ENXIO",
            "EPROTONOSUPPORT",
            "EAFNOSUPPORT",
            "ENOSPC",
            "EDQUOT",
        ] {
            let e = Errno::from_name(name).unwrap();
            assert_eq!(e.decision(), Decision::NextCandidate, "{name}");
        }
        for name in ["EMFILE", "ENFILE", "ENOMEM"] {
            let e = Errno::from_name(name).unwrap();
            assert_eq!(e.decision(), Decision::Stop, "{name}");
        }
        assert_eq!(Errno::ADDRINUSE.decision(), Decision::NextName);
    }

    #[test]
    fn message_has_no_os_error_suffix() {
        assert_eq!(Errno::ROFS.message(), "Read-only file system");
        assert_eq!(format!("{}", Errno::ROFS), "EROFS (Read-only file system)");
    }
}
