//! Who is at the other end of a socket (`SO_PEERCRED`), and may they be? An abstract name has
//! no file permissions, so this is its whole protection, on both sides: a compositor accepts
//! only clients of allowed uids, a client talks only to a server of its own uid. The rule
//! itself is `waysock_rules::peer_allowed`, which the shim uses too.

use std::os::fd::AsFd;

use crate::errno::Errno;
use crate::sys;

/// A peer that may not use the socket, or could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// It runs as a uid that is neither ours nor allowed.
    #[error("peer uid {uid} is neither ours ({us}) nor allowed")]
    Refused {
        /// The peer's uid.
        uid: u32,
        /// Ours.
        us: u32,
    },
    /// `SO_PEERCRED` failed.
    #[error("cannot read the peer's credentials: {0}")]
    Unknown(Errno),
}

/// The peer's uid if it may use the socket: ours, or one of `also`.
pub fn check(fd: impl AsFd, us: u32, also: &[u32]) -> Result<u32, PeerError> {
    let uid = sys::peer_uid(fd).map_err(|e| PeerError::Unknown(e.errno))?;
    if waysock_rules::peer_allowed(uid, us, also) {
        Ok(uid)
    } else {
        Err(PeerError::Refused { uid, us })
    }
}
