//! `errno` as a typed value ([`rustix::io::Errno`] underneath): its name and message. What an
//! errno *means* for a given call is decided in one place, [`crate::classify`].

use std::fmt;

use rustix::io::Errno as E;

/// An `errno` value, printed by its C name (`EROFS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(E);

/// The C names of the values waysock meets (others print as `E<number>`).
const NAMES: &[(E, &str)] = &[
    (E::PERM, "EPERM"),
    (E::NOENT, "ENOENT"),
    (E::SRCH, "ESRCH"),
    (E::INTR, "EINTR"),
    (E::IO, "EIO"),
    (E::NXIO, "ENXIO"),
    (E::BADF, "EBADF"),
    (E::AGAIN, "EAGAIN"),
    (E::NOMEM, "ENOMEM"),
    (E::ACCESS, "EACCES"),
    (E::FAULT, "EFAULT"),
    (E::BUSY, "EBUSY"),
    (E::EXIST, "EEXIST"),
    (E::XDEV, "EXDEV"),
    (E::NODEV, "ENODEV"),
    (E::NOTDIR, "ENOTDIR"),
    (E::ISDIR, "EISDIR"),
    (E::INVAL, "EINVAL"),
    (E::NFILE, "ENFILE"),
    (E::MFILE, "EMFILE"),
    (E::TXTBSY, "ETXTBSY"),
    (E::NOSPC, "ENOSPC"),
    (E::ROFS, "EROFS"),
    (E::NAMETOOLONG, "ENAMETOOLONG"),
    (E::NOSYS, "ENOSYS"),
    (E::LOOP, "ELOOP"),
    (E::NOTSOCK, "ENOTSOCK"),
    (E::PROTOTYPE, "EPROTOTYPE"),
    (E::PROTONOSUPPORT, "EPROTONOSUPPORT"),
    (E::OPNOTSUPP, "EOPNOTSUPP"),
    (E::AFNOSUPPORT, "EAFNOSUPPORT"),
    (E::ADDRINUSE, "EADDRINUSE"),
    (E::ADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (E::CONNABORTED, "ECONNABORTED"),
    (E::CONNRESET, "ECONNRESET"),
    (E::NOBUFS, "ENOBUFS"),
    (E::ISCONN, "EISCONN"),
    (E::NOTCONN, "ENOTCONN"),
    (E::TIMEDOUT, "ETIMEDOUT"),
    (E::CONNREFUSED, "ECONNREFUSED"),
    (E::PROTO, "EPROTO"),
    (E::DQUOT, "EDQUOT"),
];

#[allow(missing_docs)] // each constant is the C name without its leading E
impl Errno {
    pub const ACCES: Errno = Errno(E::ACCESS);
    pub const PERM: Errno = Errno(E::PERM);
    pub const NOENT: Errno = Errno(E::NOENT);
    pub const ROFS: Errno = Errno(E::ROFS);
    pub const ADDRINUSE: Errno = Errno(E::ADDRINUSE);
    pub const NAMETOOLONG: Errno = Errno(E::NAMETOOLONG);
    pub const LOOP: Errno = Errno(E::LOOP);
    pub const NOTDIR: Errno = Errno(E::NOTDIR);
    pub const EXIST: Errno = Errno(E::EXIST);
    pub const WOULDBLOCK: Errno = Errno(E::WOULDBLOCK);
    pub const CONNREFUSED: Errno = Errno(E::CONNREFUSED);
    pub const INVAL: Errno = Errno(E::INVAL);
    pub const ISDIR: Errno = Errno(E::ISDIR);
    pub const NXIO: Errno = Errno(E::NXIO);
    pub const BADF: Errno = Errno(E::BADF);
    pub const MFILE: Errno = Errno(E::MFILE);
    pub const NFILE: Errno = Errno(E::NFILE);
    pub const NOMEM: Errno = Errno(E::NOMEM);
    pub const NOSPC: Errno = Errno(E::NOSPC);
    pub const DQUOT: Errno = Errno(E::DQUOT);
    pub const OPNOTSUPP: Errno = Errno(E::OPNOTSUPP);
    pub const PROTONOSUPPORT: Errno = Errno(E::PROTONOSUPPORT);
    pub const AFNOSUPPORT: Errno = Errno(E::AFNOSUPPORT);
    pub const INTR: Errno = Errno(E::INTR);
    pub const AGAIN: Errno = Errno(E::AGAIN);
    pub const NOBUFS: Errno = Errno(E::NOBUFS);
    pub const CONNABORTED: Errno = Errno(E::CONNABORTED);
    pub const PROTO: Errno = Errno(E::PROTO);
    pub const NOTSOCK: Errno = Errno(E::NOTSOCK);
}

impl Errno {
    /// The typed value.
    pub fn get(self) -> E {
        self.0
    }

    /// The raw number (for comparing with `std::io::Error::raw_os_error`).
    pub fn raw(self) -> i32 {
        self.0.raw_os_error()
    }

    /// From a raw number.
    pub fn from_raw(n: i32) -> Errno {
        Errno(E::from_raw_os_error(n))
    }

    /// From an `io::Error` (`EIO` if it carries no errno).
    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno(E::from_io_error(e).unwrap_or(E::IO))
    }

    /// `EROFS`, or `E<number>` for one without a name here.
    pub fn name(self) -> String {
        NAMES
            .iter()
            .find(|(e, _)| *e == self.0)
            .map(|(_, s)| (*s).to_string())
            .unwrap_or_else(|| format!("E{}", self.raw()))
    }

    /// By C name (`"EROFS"`).
    pub fn from_name(name: &str) -> Option<Errno> {
        NAMES
            .iter()
            .find(|(_, s)| *s == name)
            .map(|(e, _)| Errno(*e))
    }

    /// The C library's message (`Read-only file system`).
    pub fn message(self) -> String {
        let text = std::io::Error::from(self.0).to_string();
        // std appends " (os error N)"; the name already identifies it.
        match text.rfind(" (os error") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    }
}

impl From<E> for Errno {
    fn from(e: E) -> Self {
        Errno(e)
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from(e.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (e, s) in NAMES {
            assert_eq!(Errno(*e).name(), *s);
            assert_eq!(Errno::from_name(s), Some(Errno(*e)));
        }
        assert_eq!(Errno::from_raw(4095).name(), "E4095");
        assert_eq!(Errno::ROFS.raw(), 30);
    }

    #[test]
    fn message_has_no_os_error_suffix() {
        assert_eq!(Errno::ROFS.message(), "Read-only file system");
        assert_eq!(format!("{}", Errno::ROFS), "EROFS (Read-only file system)");
    }
}
