//! Endpoint strings (SPEC §1): one syntax for every flag, log line, registry record and JSON
//! field that names where a display lives.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Longest path (or abstract name) that fits `sockaddr_un.sun_path`: 108 bytes, one of which
/// is the terminating NUL (for abstract names, the leading NUL).
pub const SUN_PATH_MAX: usize = 107;

/// The accepted forms, quoted in every parse error.
pub const ACCEPTED_FORMS: &str = "unix:/ABS/PATH, abstract:NAME, fd:N, tcp:IPV4:PORT, \
tcp:[IPV6]:PORT, or a bare WAYLAND_DISPLAY value (NAME or /ABS/PATH)";

/// Where a Wayland display lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A filesystem Unix socket: `unix:/run/user/1000/wayland-0`.
    Unix(PathBuf),
    /// A Linux abstract-namespace Unix socket, name without the leading NUL:
    /// `abstract:wayland-1000-0`.
    Abstract(String),
    /// An inherited descriptor: a listening socket for servers, a connected one for clients.
    Fd(i32),
    /// TCP, only through the bridge: `tcp:127.0.0.1:7060`, `tcp:[::1]:7060`.
    Tcp(SocketAddr),
    /// A relative `WAYLAND_DISPLAY` name, resolved against the runtime dir: `wayland-0`.
    Display(String),
}

/// Why an endpoint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Nothing was given.
    #[error("empty endpoint; accepted forms: {ACCEPTED_FORMS}")]
    Empty,
    /// The prefix before `:` is not one we know.
    #[error("unknown endpoint kind {kind:?} in {input:?}; accepted forms: {ACCEPTED_FORMS}")]
    UnknownKind {
        /// The prefix that was given.
        kind: String,
        /// The whole input.
        input: String,
    },
    /// A `unix:` path that is not absolute.
    #[error("unix endpoint {input:?} is not an absolute path; write unix:/ABS/PATH")]
    NotAbsolute {
        /// The whole input.
        input: String,
    },
    /// A path or abstract name that does not fit `sun_path`.
    #[error(
        "{what} {name:?} is {len} bytes; sockaddr_un.sun_path holds at most {SUN_PATH_MAX}: \
         use a shorter directory or name"
    )]
    TooLong {
        /// "unix path" or "abstract name".
        what: &'static str,
        /// The offending path or name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A NUL byte, which cannot be passed to the kernel in a path.
    #[error("endpoint {input:?} contains a NUL byte")]
    Nul {
        /// The whole input.
        input: String,
    },
    /// An empty abstract name.
    #[error("abstract endpoint needs a name: abstract:NAME")]
    EmptyAbstract,
    /// `fd:` with something other than a non-negative decimal number.
    #[error("fd endpoint {input:?} is not a non-negative decimal file descriptor: write fd:N")]
    BadFd {
        /// The whole input.
        input: String,
    },
    /// `tcp:` with a bad address.
    #[error(
        "tcp endpoint {input:?} is not IPV4:PORT or [IPV6]:PORT with a numeric address \
         and port 0-65535"
    )]
    BadTcp {
        /// The whole input.
        input: String,
    },
    /// A bare display name that is neither a plain name nor an absolute path.
    #[error(
        "display name {input:?} must be a plain name like wayland-0 (no '/') or an absolute \
         path; accepted forms: {ACCEPTED_FORMS}"
    )]
    BadDisplay {
        /// The whole input.
        input: String,
    },
}

impl Endpoint {
    /// The Unix socket path this endpoint names, if it is a filesystem socket.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Endpoint::Unix(p) => Some(p),
            _ => None,
        }
    }

    /// The display name a libwayland client would put in `WAYLAND_DISPLAY` to reach this
    /// endpoint, for filesystem and relative-name endpoints.
    pub fn wayland_display(&self) -> Option<String> {
        match self {
            Endpoint::Unix(p) => Some(p.to_string_lossy().into_owned()),
            Endpoint::Display(n) => Some(n.clone()),
            _ => None,
        }
    }
}

fn check_unix_path(input: &str, path: &str) -> Result<PathBuf, EndpointError> {
    if !path.starts_with('/') {
        return Err(EndpointError::NotAbsolute {
            input: input.to_string(),
        });
    }
    if path.len() > SUN_PATH_MAX {
        return Err(EndpointError::TooLong {
            what: "unix path",
            name: path.to_string(),
            len: path.len(),
        });
    }
    Ok(PathBuf::from(path))
}

fn parse_tcp(input: &str, rest: &str) -> Result<SocketAddr, EndpointError> {
    let bad = || EndpointError::BadTcp {
        input: input.to_string(),
    };
    // Reject hostnames and bare IPv6 without brackets: SocketAddr's parser is already strict
    // about both; also refuse leading '+' or zero-padded ports it would not see.
    let addr: SocketAddr = rest.parse().map_err(|_| bad())?;
    let port_text = rest.rsplit(':').next().unwrap_or("");
    if port_text.len() > 1 && port_text.starts_with('0') {
        return Err(bad());
    }
    match (addr.ip(), rest.starts_with('[')) {
        (IpAddr::V4(_), false) | (IpAddr::V6(_), true) => Ok(addr),
        _ => Err(bad()),
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(EndpointError::Empty);
        }
        if input.contains('\0') {
            return Err(EndpointError::Nul {
                input: input.to_string(),
            });
        }
        if input.starts_with('/') {
            return check_unix_path(input, input).map(Endpoint::Unix);
        }
        let Some((kind, rest)) = input.split_once(':') else {
            if input.contains('/') || input == "." || input == ".." {
                return Err(EndpointError::BadDisplay {
                    input: input.to_string(),
                });
            }
            return Ok(Endpoint::Display(input.to_string()));
        };
        match kind {
            "unix" => check_unix_path(input, rest).map(Endpoint::Unix),
            "abstract" => {
                if rest.is_empty() {
                    return Err(EndpointError::EmptyAbstract);
                }
                if rest.len() > SUN_PATH_MAX {
                    return Err(EndpointError::TooLong {
                        what: "abstract name",
                        name: rest.to_string(),
                        len: rest.len(),
                    });
                }
                Ok(Endpoint::Abstract(rest.to_string()))
            }
            "fd" => {
                let ok = !rest.is_empty()
                    && rest.bytes().all(|b| b.is_ascii_digit())
                    && (rest == "0" || !rest.starts_with('0'));
                match rest.parse::<i32>() {
                    Ok(n) if ok => Ok(Endpoint::Fd(n)),
                    _ => Err(EndpointError::BadFd {
                        input: input.to_string(),
                    }),
                }
            }
            "tcp" => parse_tcp(input, rest).map(Endpoint::Tcp),
            _ => Err(EndpointError::UnknownKind {
                kind: kind.to_string(),
                input: input.to_string(),
            }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Abstract(n) => write!(f, "abstract:{n}"),
            Endpoint::Fd(n) => write!(f, "fd:{n}"),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
            Endpoint::Display(n) => f.write_str(n),
        }
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The abstract socket name for display `name` of `uid`: `wayland-UID-N` for `wayland-N`,
/// `wayland-UID-NAME` for any other name (the rule lives in `waysock_rules`, shared with the
/// shim).
pub fn abstract_display_name(uid: u32, name: &str) -> String {
    String::from_utf8_lossy(&waysock_rules::abstract_name(uid, name.as_bytes())).into_owned()
}

/// Builds a `unix:` endpoint from a directory and a name, checking `sun_path`.
pub fn unix_in(dir: &Path, name: &str) -> Result<Endpoint, EndpointError> {
    let path = dir.join(name);
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > SUN_PATH_MAX {
        return Err(EndpointError::TooLong {
            what: "unix path",
            name: path.to_string_lossy().into_owned(),
            len: bytes.len(),
        });
    }
    Ok(Endpoint::Unix(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "unix:/run/user/1000/wayland-0",
            "abstract:wayland-1000-0",
            "fd:0",
            "fd:3",
            "tcp:127.0.0.1:7060",
            "tcp:[::1]:7060",
            "tcp:0.0.0.0:0",
            "wayland-0",
            "sway-1",
        ] {
            let e: Endpoint = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(e.to_string(), s);
            assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
        }
    }

    #[test]
    fn bare_absolute_path_is_unix() {
        let e: Endpoint = "/tmp/x/wayland-0".parse().unwrap();
        assert_eq!(e, Endpoint::Unix("/tmp/x/wayland-0".into()));
        assert_eq!(e.to_string(), "unix:/tmp/x/wayland-0");
    }

    #[test]
    fn rejects_with_the_accepted_forms() {
        for bad in ["", "http://x", "udp:1.2.3.4:5", "vsock:3:5"] {
            let err = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(err.contains("unix:/ABS/PATH"), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "unix:relative/x",
            "unix:",
            "abstract:",
            "fd:",
            "fd:-1",
            "fd:+3",
            "fd:03",
            "fd:3x",
            "fd:99999999999",
            "tcp:localhost:7060",
            "tcp:::1:7060",
            "tcp:127.0.0.1",
            "tcp:127.0.0.1:65536",
            "tcp:127.0.0.1:070",
            "tcp:[127.0.0.1]:70",
            "a/b",
            "..",
            "wayland\0-0",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn long_paths_name_length_and_limit() {
        let long = format!("unix:/{}", "d".repeat(107));
        let err = long.parse::<Endpoint>().unwrap_err();
        assert_eq!(
            err,
            EndpointError::TooLong {
                what: "unix path",
                name: format!("/{}", "d".repeat(107)),
                len: 108
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("108 bytes") && msg.contains("107"), "{msg}");
        // Exactly at the limit is fine.
        let fits = format!("unix:/{}", "d".repeat(106));
        assert!(fits.parse::<Endpoint>().is_ok());
        let abs = format!("abstract:{}", "a".repeat(108));
        assert!(matches!(
            abs.parse::<Endpoint>(),
            Err(EndpointError::TooLong { len: 108, .. })
        ));
    }

    #[test]
    fn unix_in_checks_length() {
        assert!(unix_in(Path::new("/run/user/0"), "wayland-0").is_ok());
        let dir = PathBuf::from(format!("/{}", "x".repeat(100)));
        assert!(matches!(
            unix_in(&dir, "wayland-32"),
            Err(EndpointError::TooLong { len: 112, .. })
        ));
    }
}
