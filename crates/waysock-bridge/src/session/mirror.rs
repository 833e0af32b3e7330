//! A mirrored pool's memory, mapped: the memfd this side created for the far side's pool,
//! written in place (a patch's spans copied in, a scroll's rows moved within it) instead of
//! read into a buffer and written back through the kernel.
//!
//! Mapping a file is safe only while nobody can shrink it (a page past the end faults with
//! `SIGBUS`). The mirror is ours, but the local peer holds a duplicate of its descriptor, so
//! it is sealed against shrinking (`F_SEAL_SHRINK`) before it is mapped, and [`Mapped::new`]
//! checks that seal and the size itself. It can still grow (`wl_shm_pool.resize`): a new
//! mapping covers the new size, and an old one stays valid (the file never gets shorter).
//!
//! The local peer reads (and may write) the same memory at any time, so the bytes are only
//! ever reached through raw pointers, never through references to them.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::fs::SealFlags;
use rustix::mm::{MapFlags, ProtFlags};

use super::shm::Move;

/// A shared, writable mapping of all of a mirror memfd, unmapped on drop.
#[derive(Debug)]
pub(super) struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only reached through
// the raw-pointer copies below, which any thread may do (the bytes are shared with another
// process anyway, so no thread relies on them staying put).
unsafe impl Send for Mapped {}
// SAFETY: as above; `&Mapped` only allows those copies.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` bytes of `fd`, which must be sealed against shrinking and hold at
    /// least `len` bytes.
    pub fn new(fd: BorrowedFd<'_>, len: u64) -> io::Result<Mapped> {
        let seals = rustix::fs::fcntl_get_seals(fd)?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(io::Error::other(
                "a mirror must be sealed against shrinking before it is mapped",
            ));
        }
        let size = rustix::fs::fstat(fd)?.st_size;
        if u64::try_from(size).map_or(true, |s| s < len) {
            return Err(io::Error::other(format!(
                "a mirror of {size} bytes cannot be mapped as {len}"
            )));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("mirror too large"))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: NonNull::dangling(),
                len: 0,
            });
        }
        // SAFETY: a new mapping chosen by the kernel (no address given, so nothing else is
        // replaced) of `len` bytes of a file that holds at least `len` bytes and can never
        // shrink (sealed, checked above), so every page of it stays backed; it is unmapped
        // once, on drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Mapped { ptr, len })
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies `bytes` in at offset `at`; `false` (and nothing written) if they do not fit.
    pub fn write(&self, at: u64, bytes: &[u8]) -> bool {
        let Some(at) = usize::try_from(at)
            .ok()
            .filter(|&a| a.checked_add(bytes.len()).is_some_and(|e| e <= self.len))
        else {
            return false;
        };
        if bytes.is_empty() {
            return true;
        }
        // SAFETY: `at + bytes.len() ≤ len` (checked above), so the destination lies within the
        // mapping; `bytes` is ordinary memory of this process, never part of a mapping made
        // here, so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(at), bytes.len());
        }
        true
    }

    /// Reads `len` bytes at offset `at` (`None` if they are not all mapped).
    pub fn read(&self, at: usize, len: usize) -> Option<Vec<u8>> {
        if at.checked_add(len).is_none_or(|e| e > self.len) {
            return None;
        }
        let mut out = vec![0u8; len];
        if len > 0 {
            // SAFETY: `[at, at + len)` lies within the mapping (checked above); `out` is a
            // fresh allocation of `len` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(at), out.as_mut_ptr(), len);
            }
        }
        Some(out)
    }

    /// Applies a move (as [`super::shm::apply_move`] does to a buffer, rows in the same
    /// order); `false` (and nothing moved) if any byte it reads or writes lies outside the
    /// mapping.
    pub fn move_rows(&self, m: &Move) -> bool {
        if m.extent().is_none_or(|(_, hi)| hi > self.len) {
            return false;
        }
        if m.rows == 0 || m.width == 0 || (m.dy == 0 && m.dx == 0) {
            return true;
        }
        let base = self.ptr.as_ptr();
        let copy = |r: usize, len: usize| {
            let (at, from) = m.row(r);
            // SAFETY: `Move::row` puts row `r < rows` (written at `at`, read from `from`, `len`
            // bytes: `width`, or every row for a block) inside `Move::extent`, computed
            // without wrapping, and that lies inside the mapping (checked above);
            // `ptr::copy` allows the two to overlap.
            unsafe { std::ptr::copy(base.add(from), base.add(at), len) }
        };
        if m.is_block() {
            copy(0, m.rows * m.stride);
        } else if m.bottom_up() {
            (0..m.rows).rev().for_each(|r| copy(r, m.width));
        } else {
            (0..m.rows).for_each(|r| copy(r, m.width));
        }
        true
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, of `len` bytes, unmapped only here; no
            // reference into it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::shm::apply_move;
    use std::os::fd::{AsFd, OwnedFd};

    fn memfd(len: u64, seal: bool) -> OwnedFd {
        let fd = rustix::fs::memfd_create(
            "mirror-test",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        if seal {
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
        }
        fd
    }

    fn contents(fd: BorrowedFd<'_>, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        crate::session::shm::pread_full(fd, &mut v, 0).unwrap();
        v
    }

    #[test]
    fn an_unsealed_or_short_file_is_never_mapped() {
        let open = memfd(4096, false);
        let e = Mapped::new(open.as_fd(), 4096).unwrap_err();
        assert!(e.to_string().contains("sealed against shrinking"), "{e}");
        let short = memfd(4096, true);
        let e = Mapped::new(short.as_fd(), 8192).unwrap_err();
        assert!(e.to_string().contains("4096 bytes"), "{e}");
        // Sealed, the peer's duplicate can no longer cut the mapping short.
        assert!(rustix::fs::ftruncate(&short, 0).is_err());
    }

    #[test]
    fn writes_land_in_the_file_and_never_past_the_mapping() {
        let fd = memfd(1000, true);
        let m = Mapped::new(fd.as_fd(), 1000).unwrap();
        assert_eq!(m.len(), 1000);
        assert!(m.write(10, b"abc"));
        assert!(m.write(997, b"xyz"));
        assert!(!m.write(998, b"xyz"));
        assert!(!m.write(u64::MAX, b"x"));
        let c = contents(fd.as_fd(), 1000);
        assert_eq!(&c[10..13], b"abc");
        assert_eq!(&c[997..], b"xyz");
        assert_eq!(c.iter().filter(|&&b| b != 0).count(), 6);
        assert_eq!(m.read(10, 3).as_deref(), Some(&b"abc"[..]));
        assert_eq!(m.read(998, 3), None);
    }

    #[test]
    fn moves_match_the_buffer_version_and_stay_within_the_mapping() {
        let (stride, rows) = (64usize, 40usize);
        let len = stride * rows;
        let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + i / stride) as u8).collect();
        for m in [
            Move {
                start: 0,
                rows: 39,
                stride,
                width: stride,
                dy: 1,
                dx: 0,
            },
            Move {
                start: stride * 5,
                rows: 30,
                stride,
                width: stride,
                dy: -5,
                dx: 0,
            },
            Move {
                start: 8,
                rows: 20,
                stride,
                width: 40,
                dy: 3,
                dx: 0,
            },
            Move {
                start: stride * 10 + 4,
                rows: 20,
                stride,
                width: 32,
                dy: -7,
                dx: 0,
            },
        ] {
            let fd = memfd(len as u64, true);
            crate::session::shm::pwrite_full(fd.as_fd(), &pattern, 0).unwrap();
            let map = Mapped::new(fd.as_fd(), len as u64).unwrap();
            assert!(map.move_rows(&m), "{m:?}");
            let mut want = pattern.clone();
            apply_move(&mut want, &m);
            assert_eq!(contents(fd.as_fd(), len), want, "{m:?}");
        }
        let fd = memfd(len as u64, true);
        crate::session::shm::pwrite_full(fd.as_fd(), &pattern, 0).unwrap();
        let map = Mapped::new(fd.as_fd(), len as u64).unwrap();
        for bad in [
            Move {
                start: 0,
                rows: 40,
                stride,
                width: stride,
                dy: 1,
                dx: 0,
            },
            Move {
                start: 0,
                rows: 10,
                stride,
                width: stride,
                dy: -1,
                dx: 0,
            },
            Move {
                start: stride * 39,
                rows: 2,
                stride,
                width: stride,
                dy: 0,
                dx: 0,
            },
        ] {
            assert!(!map.move_rows(&bad), "{bad:?}");
        }
        assert_eq!(contents(fd.as_fd(), len), pattern);
    }

    #[test]
    fn an_old_mapping_stays_valid_when_the_file_grows() {
        let fd = memfd(4096, true);
        let old = Mapped::new(fd.as_fd(), 4096).unwrap();
        rustix::fs::ftruncate(&fd, 3 * 4096).unwrap();
        let new = Mapped::new(fd.as_fd(), 3 * 4096).unwrap();
        assert!(old.write(4090, b"end"));
        assert!(new.write(3 * 4096 - 1, b"!"));
        assert_eq!(new.read(4090, 3).as_deref(), Some(&b"end"[..]));
    }
}
