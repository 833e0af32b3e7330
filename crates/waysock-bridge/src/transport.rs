//! The byte stream between two bridge ends: typed frames, and the local Unix socket I/O that
//! moves bytes together with file descriptors (`SCM_RIGHTS`).
//!
//! ```text
//! frame   := kind u8 | len u32 (little endian) | payload[len]      (len ≤ MAX_FRAME)
//! WAYLAND := nfds u16 | fd_id u32 × nfds | whole Wayland messages
//! SHM_NEW := fd_id u32 | size u64            a mirrored shared-memory object (starts zeroed)
//! SHM_PATCH:= fd_id u32 | base u64 | packing u8 | raw_len u32 | body   bring spans of it up
//!            to date; the body (packing 0: raw; 1: one LZ4 block; 2: one zstd frame; of
//!            raw_len ≤ MAX_PATCH bytes once unpacked) is the
//!            spans' bytes back to back, then (skip u32 | len u32) per span (skip: unchanged
//!            bytes since the previous span's end, or since base), then the span count u32
//! SHM_MOVE:= fd_id u32 | start u64 | rows u32 | stride u32 | width u32 | dy i32 | dx i32
//!            a scroll or a move: row r < rows (width bytes at start + r·stride) becomes the
//!            width bytes that were at start + (r + dy)·stride + dx, all read before any is
//!            written
//! SHM_SIZE:= fd_id u32 | size u64            wl_shm_pool.resize
//! MEM_NEW := fd_id u32 | bytes               a read-only copy (keymaps)
//! PIPE_NEW:= fd_id u32 | dir u8              a pipe relayed as a stream (see PipeDir)
//! PIPE_DATA:= fd_id u32 | bytes             at most PIPE_WINDOW bytes not yet acknowledged
//! PIPE_ACK := fd_id u32 | n u32            n more bytes were written into the local pipe
//! PIPE_EOF:= fd_id u32
//! SHM_DROP:= fd_id u32                      a mirrored object nobody uses any more
//! LINK_RATE:= rate u64                       the sender's large records arrive here at rate
//!            bytes/s (what it weighs compression against)
//! ```

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Largest frame accepted from the peer (garbage beyond this ends the session).
pub const MAX_FRAME: usize = 4 << 20;
/// Largest chunk of shared memory or pipe data put in one frame.
pub const CHUNK: usize = 1 << 20;
/// Largest body of one `SHM_PATCH` once decompressed.
pub const MAX_PATCH: usize = CHUNK;
/// Most bytes of one relayed pipe in flight (sent, not yet acknowledged as written into the
/// far side's local pipe). Each pipe is flow-controlled on its own, so a reader that does not
/// read holds back only its own pipe, never the Wayland messages sharing the stream.
pub const PIPE_WINDOW: u32 = 1 << 20;
/// Most descriptors in one Wayland frame (libwayland sends at most 28 per message batch).
pub const MAX_FDS: usize = 28;

/// The fixed part of an `SHM_PATCH` payload (id, base, packing, raw_len).
const PATCH_HEAD: usize = 17;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Wayland messages and the ids of the descriptors they carry.
    Wayland = 1,
    /// A new mirrored shared-memory object.
    ShmNew = 2,
    /// Changed spans of a mirrored object.
    ShmPatch = 3,
    /// A mirrored object's new size.
    ShmSize = 4,
    /// A read-only copy of a memory object.
    MemNew = 5,
    /// A new relayed pipe.
    PipeNew = 6,
    /// Bytes through a relayed pipe.
    PipeData = 7,
    /// The writer closed a relayed pipe.
    PipeEof = 8,
    /// Rows of a mirrored object moved (a scroll).
    ShmMove = 9,
    /// A mirrored object is no longer used.
    ShmDrop = 10,
    /// Bytes of a relayed pipe were delivered: the sender may send as many more.
    PipeAck = 11,
    /// How fast the far side's records arrive here.
    LinkRate = 12,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Wayland,
            2 => Kind::ShmNew,
            3 => Kind::ShmPatch,
            4 => Kind::ShmSize,
            5 => Kind::MemNew,
            6 => Kind::PipeNew,
            7 => Kind::PipeData,
            8 => Kind::PipeEof,
            9 => Kind::ShmMove,
            10 => Kind::ShmDrop,
            11 => Kind::PipeAck,
            12 => Kind::LinkRate,
            _ => return None,
        })
    }
}

/// Which way the bytes of a relayed pipe flow, seen from the end that receives `PIPE_NEW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PipeDir {
    /// Our local peer gets the write end and writes; we send the bytes back.
    PeerWrites = 0,
    /// Our local peer gets the read end; the bytes come from the other side.
    PeerReads = 1,
}

/// How an `SHM_PATCH` body crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Packing {
    /// As it is.
    Raw = 0,
    /// One LZ4 block.
    Lz4 = 1,
    /// One zstd frame.
    Zstd = 2,
}

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Wayland messages.
    Wayland {
        /// Descriptor ids, in message order.
        fds: Vec<u32>,
        /// Whole messages.
        bytes: Vec<u8>,
    },
    /// A new mirrored object of `size` bytes.
    ShmNew {
        /// Its id.
        id: u32,
        /// Its size.
        size: u64,
    },
    /// Changed spans of a mirrored object at or after `base` (the body's layout is in the
    /// module's description).
    ShmPatch {
        /// Its id.
        id: u32,
        /// Where the first span's skip counts from.
        base: u64,
        /// How the body crosses.
        packing: Packing,
        /// The body's length once unpacked (at most [`MAX_PATCH`]; for `Raw`, `bytes`'s).
        raw_len: u32,
        /// The body as it crosses.
        bytes: Vec<u8>,
    },
    /// Rows of a mirrored object moved: row `r < rows` (`width` bytes at `start + r·stride`)
    /// becomes the `width` bytes at `start + (r + dy)·stride + dx`, every row read before any
    /// is written (a scroll: `dx` 0; a moved window: both).
    ShmMove {
        /// Its id.
        id: u32,
        /// Where the first row moved to starts.
        start: u64,
        /// How many rows.
        rows: u32,
        /// Bytes from a row to the next.
        stride: u32,
        /// Bytes of each row moved.
        width: u32,
        /// Where each row comes from, in rows.
        dy: i32,
        /// And in bytes across.
        dx: i32,
    },
    /// A mirrored object's new size.
    ShmSize {
        /// Its id.
        id: u32,
        /// The new size.
        size: u64,
    },
    /// A read-only memory copy.
    MemNew {
        /// Its id.
        id: u32,
        /// The content.
        bytes: Vec<u8>,
    },
    /// A new relayed pipe.
    PipeNew {
        /// Its id.
        id: u32,
        /// Its direction.
        dir: PipeDir,
    },
    /// Pipe bytes.
    PipeData {
        /// Its id.
        id: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A mirrored object the sender no longer uses: the receiver may close its copy.
    ShmDrop {
        /// Its id.
        id: u32,
    },
    /// `n` more bytes of a relayed pipe were written into the receiver's local pipe.
    PipeAck {
        /// The pipe's id.
        id: u32,
        /// How many.
        n: u32,
    },
    /// The pipe's writer is done.
    PipeEof {
        /// Its id.
        id: u32,
    },
    /// The receiver's records from the sender of this frame arrive at `rate` bytes/s.
    LinkRate {
        /// Bytes per second.
        rate: u64,
    },
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn u32_at(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("frame too short"))
}

fn u64_at(b: &[u8], at: usize) -> io::Result<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
        .ok_or_else(|| bad("frame too short"))
}

impl Frame {
    /// Encodes the frame (header included).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(0, 0)
    }

    /// Encodes the frame after `headroom` spare bytes, with capacity for `tailroom` more: the
    /// sealed channel then seals it where it is (see `channel::SealWriter::write_sealable`).
    pub fn encode_with(&self, headroom: usize, tailroom: usize) -> Vec<u8> {
        // Header first (length patched in at the end), payload appended once: a large
        // `SHM_DATA` is copied a single time, not built apart and then copied behind the header.
        let mut p = Vec::with_capacity(headroom + 5 + 14 + self.tail_len() + tailroom);
        p.resize(headroom + 5, 0);
        let kind = match self {
            Frame::Wayland { fds, bytes } => {
                p.extend_from_slice(&(fds.len() as u16).to_le_bytes());
                for id in fds {
                    p.extend_from_slice(&id.to_le_bytes());
                }
                p.extend_from_slice(bytes);
                Kind::Wayland
            }
            Frame::ShmNew { id, size } | Frame::ShmSize { id, size } => {
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&size.to_le_bytes());
                if matches!(self, Frame::ShmNew { .. }) {
                    Kind::ShmNew
                } else {
                    Kind::ShmSize
                }
            }
            Frame::ShmPatch {
                id,
                base,
                packing,
                raw_len,
                bytes,
            } => {
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&base.to_le_bytes());
                p.push(*packing as u8);
                p.extend_from_slice(&raw_len.to_le_bytes());
                p.extend_from_slice(bytes);
                Kind::ShmPatch
            }
            Frame::MemNew { id, bytes } | Frame::PipeData { id, bytes } => {
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(bytes);
                if matches!(self, Frame::MemNew { .. }) {
                    Kind::MemNew
                } else {
                    Kind::PipeData
                }
            }
            Frame::PipeNew { id, dir } => {
                p.extend_from_slice(&id.to_le_bytes());
                p.push(*dir as u8);
                Kind::PipeNew
            }
            Frame::PipeEof { id } => {
                p.extend_from_slice(&id.to_le_bytes());
                Kind::PipeEof
            }
            Frame::ShmDrop { id } => {
                p.extend_from_slice(&id.to_le_bytes());
                Kind::ShmDrop
            }
            Frame::ShmMove {
                id,
                start,
                rows,
                stride,
                width,
                dy,
                dx,
            } => {
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&start.to_le_bytes());
                p.extend_from_slice(&rows.to_le_bytes());
                p.extend_from_slice(&stride.to_le_bytes());
                p.extend_from_slice(&width.to_le_bytes());
                p.extend_from_slice(&dy.to_le_bytes());
                p.extend_from_slice(&dx.to_le_bytes());
                Kind::ShmMove
            }
            Frame::PipeAck { id, n } => {
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&n.to_le_bytes());
                Kind::PipeAck
            }
            Frame::LinkRate { rate } => {
                p.extend_from_slice(&rate.to_le_bytes());
                Kind::LinkRate
            }
        };
        p[headroom] = kind as u8;
        let len = (p.len() - headroom - 5) as u32;
        p[headroom + 1..headroom + 5].copy_from_slice(&len.to_le_bytes());
        p
    }

    /// Length of the variable part of the payload (for sizing the encode buffer).
    fn tail_len(&self) -> usize {
        match self {
            Frame::Wayland { fds, bytes } => 4 * fds.len() + bytes.len(),
            Frame::ShmPatch { bytes, .. }
            | Frame::MemNew { bytes, .. }
            | Frame::PipeData { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }

    /// Decodes one frame's payload; every length is checked.
    pub fn decode(kind: u8, p: &[u8]) -> io::Result<Frame> {
        let kind = Kind::from_u8(kind).ok_or_else(|| bad(format!("unknown frame kind {kind}")))?;
        Ok(match kind {
            Kind::Wayland => {
                let n = p
                    .get(..2)
                    .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
                    .ok_or_else(|| bad("frame too short"))?;
                if n > MAX_FDS {
                    return Err(bad(format!(
                        "{n} descriptors in one frame (at most {MAX_FDS})"
                    )));
                }
                let fds = (0..n)
                    .map(|i| u32_at(p, 2 + 4 * i))
                    .collect::<io::Result<Vec<_>>>()?;
                Frame::Wayland {
                    fds,
                    bytes: p[2 + 4 * n..].to_vec(),
                }
            }
            Kind::ShmNew | Kind::ShmSize => {
                if p.len() != 12 {
                    return Err(bad("bad size frame"));
                }
                let (id, size) = (u32_at(p, 0)?, u64_at(p, 4)?);
                if kind == Kind::ShmNew {
                    Frame::ShmNew { id, size }
                } else {
                    Frame::ShmSize { id, size }
                }
            }
            Kind::ShmPatch => {
                let fixed = p.get(..PATCH_HEAD).ok_or_else(|| bad("frame too short"))?;
                Frame::patch(fixed, p[PATCH_HEAD..].to_vec())?
            }
            Kind::MemNew | Kind::PipeData => {
                let id = u32_at(p, 0)?;
                let bytes = p[4..].to_vec();
                if kind == Kind::MemNew {
                    Frame::MemNew { id, bytes }
                } else {
                    Frame::PipeData { id, bytes }
                }
            }
            Kind::PipeNew => {
                if p.len() != 5 {
                    return Err(bad("bad pipe frame"));
                }
                let dir = match p[4] {
                    0 => PipeDir::PeerWrites,
                    1 => PipeDir::PeerReads,
                    d => return Err(bad(format!("bad pipe direction {d}"))),
                };
                Frame::PipeNew {
                    id: u32_at(p, 0)?,
                    dir,
                }
            }
            Kind::PipeAck => {
                if p.len() != 8 {
                    return Err(bad("bad pipe ack frame"));
                }
                let n = u32_at(p, 4)?;
                if n > PIPE_WINDOW {
                    return Err(bad(format!(
                        "pipe ack of {n} bytes (at most {PIPE_WINDOW} are ever in flight)"
                    )));
                }
                Frame::PipeAck {
                    id: u32_at(p, 0)?,
                    n,
                }
            }
            Kind::ShmMove => {
                if p.len() != 32 {
                    return Err(bad("bad move frame"));
                }
                Frame::ShmMove {
                    id: u32_at(p, 0)?,
                    start: u64_at(p, 4)?,
                    rows: u32_at(p, 12)?,
                    stride: u32_at(p, 16)?,
                    width: u32_at(p, 20)?,
                    dy: u32_at(p, 24)? as i32,
                    dx: u32_at(p, 28)? as i32,
                }
            }
            Kind::LinkRate => {
                if p.len() != 8 {
                    return Err(bad("bad link rate frame"));
                }
                Frame::LinkRate {
                    rate: u64_at(p, 0)?,
                }
            }
            Kind::PipeEof | Kind::ShmDrop => {
                if p.len() != 4 {
                    return Err(bad("bad id frame"));
                }
                let id = u32_at(p, 0)?;
                if kind == Kind::PipeEof {
                    Frame::PipeEof { id }
                } else {
                    Frame::ShmDrop { id }
                }
            }
        })
    }

    /// An `SHM_PATCH` from its fixed part and its body, checked.
    fn patch(fixed: &[u8], bytes: Vec<u8>) -> io::Result<Frame> {
        let packing = match fixed[12] {
            0 => Packing::Raw,
            1 => Packing::Lz4,
            2 => Packing::Zstd,
            p => return Err(bad(format!("unknown packing {p}"))),
        };
        let raw_len = u32_at(fixed, 13)?;
        if raw_len as usize > MAX_PATCH {
            return Err(bad(format!(
                "a patch of {raw_len} bytes (at most {MAX_PATCH})"
            )));
        }
        if packing == Packing::Raw && raw_len as usize != bytes.len() {
            return Err(bad("a raw patch's length is not its body's"));
        }
        Ok(Frame::ShmPatch {
            id: u32_at(fixed, 0)?,
            base: u64_at(fixed, 4)?,
            packing,
            raw_len,
            bytes,
        })
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream.
    pub fn read(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match r.read(&mut head[..1])? {
            0 => return Ok(None),
            _ => r.read_exact(&mut head[1..])?,
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(bad(format!("frame of {len} bytes (at most {MAX_FRAME})")));
        }
        if head[0] == Kind::ShmPatch as u8 && len >= PATCH_HEAD {
            // The bulk of the traffic: read the pixels straight into the frame's own buffer
            // (no zero-filled staging buffer, no second copy in `decode`).
            let mut fixed = [0u8; PATCH_HEAD];
            r.read_exact(&mut fixed)?;
            let mut bytes = Vec::with_capacity(len - PATCH_HEAD);
            r.take((len - PATCH_HEAD) as u64).read_to_end(&mut bytes)?;
            if bytes.len() != len - PATCH_HEAD {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            return Frame::patch(&fixed, bytes).map(Some);
        }
        let mut p = vec![0u8; len];
        r.read_exact(&mut p)?;
        Frame::decode(head[0], &p).map(Some)
    }
}

/// Receives bytes and descriptors from a local Unix socket. `Ok(0)` is end of stream.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let r = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other,
        }
    }
    .map_err(io::Error::from)?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    Ok(r.bytes)
}

/// Sends all of `bytes` to a local Unix socket, the descriptors with the first part.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut sent = 0;
    let mut first = true;
    while sent < bytes.len() || (first && !fds.is_empty()) {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if first && !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(bad("too many descriptors for one message"));
        }
        let n = match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(&bytes[sent..])],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => other.map_err(io::Error::from)?,
        };
        first = false;
        sent += n;
        if n == 0 && sent < bytes.len() {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
    }
    Ok(())
}

/// A borrowed view of an owned descriptor list.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Wayland {
                fds: vec![1, 2],
                bytes: vec![1, 0, 0, 0, 0, 0, 12, 0, 2, 0, 0, 0],
            },
            Frame::ShmNew {
                id: 7,
                size: 1 << 33,
            },
            Frame::ShmPatch {
                id: 7,
                base: 4096,
                packing: Packing::Raw,
                raw_len: 100,
                bytes: vec![9; 100],
            },
            Frame::ShmSize { id: 7, size: 10 },
            Frame::ShmPatch {
                id: 7,
                base: 64,
                packing: Packing::Lz4,
                raw_len: 4096,
                bytes: vec![1, 2, 3],
            },
            Frame::MemNew {
                id: 3,
                bytes: b"xkb_keymap {}".to_vec(),
            },
            Frame::PipeNew {
                id: 5,
                dir: PipeDir::PeerReads,
            },
            Frame::PipeData {
                id: 5,
                bytes: b"hello".to_vec(),
            },
            Frame::PipeEof { id: 5 },
            Frame::ShmDrop { id: 7 },
            Frame::PipeAck { id: 5, n: 65536 },
            Frame::LinkRate { rate: 12_500_000 },
            Frame::ShmPatch {
                id: 7,
                base: 0,
                packing: Packing::Zstd,
                raw_len: 8192,
                bytes: vec![4, 5, 6],
            },
            Frame::ShmMove {
                id: 7,
                start: 640,
                rows: 1060,
                stride: 7680,
                width: 2304,
                dy: -20,
                dx: 64,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&f.encode());
        }
        let mut r = &wire[..];
        for f in &frames {
            assert_eq!(Frame::read(&mut r).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read(&mut r).unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            let _ = Frame::decode(bytes.first().copied().unwrap_or(0) % 13, &bytes);
        }
        let huge = [1u8, 0xff, 0xff, 0xff, 0x7f];
        assert!(Frame::read(&mut &huge[..]).is_err());
        assert!(Frame::decode(1, &[29, 0]).is_err());
        assert!(Frame::decode(6, &[1, 0, 0, 0, 9]).is_err());
        // A patch too large once unpacked, of an unknown packing, or raw of another length.
        let patch = |packing: u8, raw_len: u32, body: &[u8]| {
            let mut p = vec![7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, packing];
            p.extend_from_slice(&raw_len.to_le_bytes());
            p.extend_from_slice(body);
            p
        };
        assert!(Frame::decode(3, &patch(1, MAX_PATCH as u32, &[0])).is_ok());
        assert!(Frame::decode(3, &patch(1, MAX_PATCH as u32 + 1, &[0])).is_err());
        assert!(Frame::decode(3, &patch(2, 1, &[0])).is_ok());
        assert!(Frame::decode(3, &patch(3, 1, &[0])).is_err());
        assert!(Frame::decode(12, &[1, 2, 3]).is_err());
        assert!(Frame::decode(3, &patch(0, 2, &[0])).is_err());
        assert!(Frame::decode(3, &patch(0, 1, &[0])).is_ok());
        let mut wire = vec![3, 18, 0, 0, 0];
        wire.extend_from_slice(&patch(0, 2, &[0]));
        assert!(
            Frame::read(&mut &wire[..]).is_err(),
            "the same check when read"
        );
    }
}
