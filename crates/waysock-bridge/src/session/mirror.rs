//! A far pool's copy on this side (a mirror): a memfd this side creates, hands duplicates of
//! to the local peer, and writes the far side's updates into: a patch's spans copied in, a
//! scroll's rows moved within it.
//!
//! A mirror of [`MAP_MIN`] bytes or more is mapped and written in place, instead of read into
//! a buffer and written back through the kernel. Mapping a file is safe only while nobody can
//! shrink it (a page past the end faults with `SIGBUS`), and the local peer holds a duplicate
//! of the descriptor: so the memfd is sealed against shrinking (`F_SEAL_SHRINK`) before it is
//! mapped, and only memfds made here (plain shmem, never hugetlb) are ever mapped. It can
//! still grow (`wl_shm_pool.resize`): a new mapping covers the new size, and an old one stays
//! valid (the file never gets shorter). A peer that seals it against writes cannot take the
//! mapping's pages away either (`F_SEAL_WRITE` fails while a writable mapping exists).
//!
//! Mappings are counted process-wide and capped at [`MAP_MAX`] (the kernel's per-process map
//! count is about 65,000, shared with the allocator and thread stacks): small mirrors, and
//! mirrors past the cap, go through `pread`/`pwrite`, as every mirror did before.
//!
//! The local peer reads (and may write) the same memory at any time, so the bytes are only
//! ever reached through raw pointers, never through references to them. Within this process,
//! the pool-update worker writes a mirror while the outgoing thread may read another part of
//! it (a capture's buffer sent back); both touch the same bytes only if the far client
//! rewrites a buffer while the compositor fills it, and then the pixels it gets are its own
//! doing: an accepted exception, with plain copies.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::error::SessionError;
use super::shm::{self, Move};

/// Mirrors at least this large are mapped.
pub(super) const MAP_MIN: u64 = 64 * 1024;

/// Mappings this process holds at most at once (all sessions).
pub(super) const MAP_MAX: usize = 4096;

/// Mappings held now.
static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// A far pool's copy here: its memfd (sealed against shrinking) and, when large enough and
/// under the cap, a mapping of all of it.
#[derive(Debug)]
pub(super) struct Mirror {
    fd: std::sync::Arc<OwnedFd>,
    len: u64,
    map: Option<Mapped>,
}

impl Mirror {
    /// A new mirror of `size` zero bytes.
    pub fn create(size: u64) -> io::Result<Mirror> {
        let fail = |what: &str, e: rustix::io::Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mirror of {size} bytes: {what}: {e}"),
            )
        };
        let fd = rustix::fs::memfd_create(
            "waysock-shm",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| fail("memfd_create", e))?;
        rustix::fs::ftruncate(&fd, size).map_err(|e| fail("ftruncate", e))?;
        // The local peer gets a duplicate; sealed, it can never cut a mapping short.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK)
            .map_err(|e| fail("sealing against shrinking", e))?;
        Mirror::over(std::sync::Arc::new(fd), size)
    }

    /// `fd` (made by [`Mirror::create`]) as `size` bytes, mapped if it should be.
    fn over(fd: std::sync::Arc<OwnedFd>, size: u64) -> io::Result<Mirror> {
        let map = if size >= MAP_MIN {
            Mapped::new(fd.as_fd(), size)?
        } else {
            None
        };
        Ok(Mirror { fd, len: size, map })
    }

    /// The same memfd grown to `size` bytes (already that large if the peer grew it), as a
    /// new mirror; this one stays valid for whoever still holds it.
    pub fn grown(&self, size: u64) -> io::Result<Mirror> {
        let now = rustix::fs::fstat(&*self.fd)?.st_size;
        if u64::try_from(now).map_or(true, |n| n < size) {
            rustix::fs::ftruncate(&*self.fd, size).map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("growing a mirror from {} to {size} bytes: {e}", self.len),
                )
            })?;
        }
        Mirror::over(std::sync::Arc::clone(&self.fd), size)
    }

    /// Its descriptor (to hand a duplicate to the local peer).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Its size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is mapped (else written through the kernel).
    #[cfg(test)]
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Writes `bytes` at `at`, all within the mirror.
    pub fn write(&self, at: u64, bytes: &[u8]) -> Result<(), SessionError> {
        if at
            .checked_add(bytes.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(SessionError::BeyondPool);
        }
        match &self.map {
            Some(m) if m.write(at, bytes) => Ok(()),
            Some(_) => Err(SessionError::BeyondPool),
            None => Ok(shm::pwrite_full(self.fd(), bytes, at)?),
        }
    }

    /// Reads `len` bytes at `at`, all within the mirror.
    pub fn read(&self, at: usize, len: usize) -> Result<Vec<u8>, SessionError> {
        if (at as u64)
            .checked_add(len as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(SessionError::BeyondPool);
        }
        match &self.map {
            Some(m) => m.read(at, len).ok_or(SessionError::BeyondPool),
            None => {
                let mut out = vec![0u8; len];
                shm::pread_full(self.fd(), &mut out, at as u64)?;
                Ok(out)
            }
        }
    }

    /// Applies a move (as [`shm::apply_move`] does to a buffer), every byte it touches within
    /// the mirror; `buf` holds what it touches when the mirror is not mapped.
    pub fn move_rows(&self, m: &Move, buf: &mut Vec<u8>) -> Result<(), SessionError> {
        let beyond = || SessionError::BadMove {
            start: m.start as u64,
            rows: m.rows,
            stride: m.stride,
            width: m.width,
            dy: m.dy,
            dx: m.dx,
            size: self.len,
        };
        let (lo, hi) = m
            .extent()
            .filter(|&(lo, hi)| lo <= hi && hi as u64 <= self.len)
            .ok_or_else(beyond)?;
        match &self.map {
            Some(map) if map.move_rows(m) => Ok(()),
            Some(_) => Err(beyond()),
            None => {
                buf.clear();
                buf.resize(hi - lo, 0);
                shm::pread_full(self.fd(), buf, lo as u64)?;
                let here = Move {
                    start: m.start - lo,
                    ..*m
                };
                if !shm::apply_move(buf, &here) {
                    return Err(beyond());
                }
                Ok(shm::pwrite_full(self.fd(), buf, lo as u64)?)
            }
        }
    }
}

/// A shared, writable mapping of all of a mirror memfd, unmapped on drop.
#[derive(Debug)]
struct Mapped {
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
    /// least `len` bytes; `None` when the process holds [`MAP_MAX`] mappings already.
    fn new(fd: BorrowedFd<'_>, len: u64) -> io::Result<Option<Mapped>> {
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
            return Ok(None);
        }
        if MAPPED.fetch_add(1, Ordering::Relaxed) >= MAP_MAX {
            MAPPED.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
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
        };
        let ptr = match ptr.map(|p| NonNull::new(p.cast::<u8>())) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => {
                MAPPED.fetch_sub(1, Ordering::Relaxed);
                // The kernel's map count or the address space ran out: the mirror goes
                // through `pread`/`pwrite` instead.
                return Ok(None);
            }
        };
        Ok(Some(Mapped { ptr, len }))
    }

    /// Copies `bytes` in at offset `at`; `false` (and nothing written) if they do not fit.
    fn write(&self, at: u64, bytes: &[u8]) -> bool {
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
    fn read(&self, at: usize, len: usize) -> Option<Vec<u8>> {
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
    fn move_rows(&self, m: &Move) -> bool {
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
            MAPPED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::shm::apply_move;

    fn contents(m: &Mirror) -> Vec<u8> {
        let mut v = vec![0u8; m.len() as usize];
        shm::pread_full(m.fd(), &mut v, 0).unwrap();
        v
    }

    /// A mirror holding `pattern`, mapped (if large enough) or not.
    fn filled(pattern: &[u8], mapped: bool) -> Mirror {
        let mut m = Mirror::create(pattern.len() as u64).unwrap();
        if !mapped {
            m.map = None;
        }
        shm::pwrite_full(m.fd(), pattern, 0).unwrap();
        assert_eq!(m.is_mapped(), mapped && pattern.len() as u64 >= MAP_MIN);
        m
    }

    #[test]
    fn only_a_sealed_file_of_ours_is_mapped_and_nobody_can_shrink_it() {
        let fd =
            rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, MAP_MIN).unwrap();
        let e = Mapped::new(fd.as_fd(), MAP_MIN).unwrap_err();
        assert!(e.to_string().contains("sealed against shrinking"), "{e}");
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
        let e = Mapped::new(fd.as_fd(), 2 * MAP_MIN).unwrap_err();
        assert!(e.to_string().contains(&format!("{MAP_MIN} bytes")), "{e}");
        let m = Mirror::create(MAP_MIN).unwrap();
        assert!(m.is_mapped());
        // The peer's duplicate cannot cut the mapping short, nor seal it against our writes.
        let dup = rustix::io::dup(m.fd()).unwrap();
        assert!(rustix::fs::ftruncate(&dup, 0).is_err());
        assert!(rustix::fs::fcntl_add_seals(&dup, SealFlags::WRITE).is_err());
        // Small mirrors, and empty ones, are not mapped.
        assert!(!Mirror::create(MAP_MIN - 1).unwrap().is_mapped());
        assert!(!Mirror::create(0).unwrap().is_mapped());
    }

    #[test]
    fn writes_and_reads_reach_the_last_byte_and_never_past_it() {
        for len in [1000usize, MAP_MIN as usize + 1000] {
            for mapped in [true, false] {
                let m = filled(&vec![0u8; len], mapped);
                m.write(10, b"abc").unwrap();
                m.write(len as u64 - 3, b"xyz").unwrap();
                for (at, bytes) in [
                    (len as u64 - 2, &b"xyz"[..]),
                    (u64::MAX, b"x"),
                    (len as u64 + 1, b""),
                ] {
                    assert!(
                        matches!(m.write(at, bytes), Err(SessionError::BeyondPool)),
                        "{at}"
                    );
                }
                let c = contents(&m);
                assert_eq!(&c[10..13], b"abc");
                assert_eq!(&c[len - 3..], b"xyz");
                assert_eq!(c.iter().filter(|&&b| b != 0).count(), 6);
                assert_eq!(m.read(len - 3, 3).unwrap(), b"xyz");
                assert_eq!(m.read(len, 0).unwrap(), b"");
                assert!(m.read(len - 2, 3).is_err());
                assert!(m.read(usize::MAX, 2).is_err());
            }
        }
    }

    #[test]
    fn moves_land_where_they_say_mapped_or_not_and_never_outside() {
        let (stride, rows) = (64usize, 1100usize);
        let len = stride * rows;
        assert!(len as u64 >= MAP_MIN);
        let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + i / stride) as u8).collect();
        for m in [
            Move {
                start: 0,
                rows: 1099,
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
                dx: 12,
            },
            Move {
                start: stride * 10 + 20,
                rows: 20,
                stride,
                width: 32,
                dy: -7,
                dx: -16,
            },
            // Near the end: nothing may be written past it (the file must not grow).
            Move {
                start: stride * (rows - 10),
                rows: 9,
                stride,
                width: stride,
                dy: 1,
                dx: 0,
            },
            Move {
                start: stride * 40 + 4,
                rows: 9,
                stride,
                width: 40,
                dy: 0,
                dx: 8,
            },
        ] {
            // What the move means, byte by byte, from the pattern as it was.
            let mut want = pattern.clone();
            for r in 0..m.rows {
                let to = m.start + r * stride;
                let from = (to as isize + m.dy * stride as isize + m.dx) as usize;
                want[to..to + m.width].copy_from_slice(&pattern[from..from + m.width]);
            }
            let mut buf = pattern.clone();
            assert!(apply_move(&mut buf, &m));
            assert_eq!(buf, want, "{m:?} on a buffer");
            for mapped in [true, false] {
                let mirror = filled(&pattern, mapped);
                mirror.move_rows(&m, &mut Vec::new()).unwrap();
                assert_eq!(contents(&mirror), want, "{m:?}, mapped: {mapped}");
                let size = rustix::fs::fstat(mirror.fd()).unwrap().st_size;
                assert_eq!(size as usize, len, "{m:?}, mapped: {mapped}: the file grew");
            }
        }
        let big = u32::MAX as usize;
        for bad in [
            Move {
                start: 0,
                rows,
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
                start: 0,
                rows: 10,
                stride,
                width: stride,
                dy: 0,
                dx: -4,
            },
            Move {
                start: stride * (rows - 1),
                rows: 2,
                stride,
                width: stride,
                dy: 0,
                dx: 0,
            },
            Move {
                start: len - 8,
                rows: 1,
                stride,
                width: 8,
                dy: 0,
                dx: 4,
            },
            Move {
                start: 3900,
                rows: 2,
                stride: 0xFFFF_FF00,
                width: 600,
                dy: 1,
                dx: 0,
            },
            Move {
                start: 0,
                rows: big,
                stride: big,
                width: big,
                dy: i32::MIN as isize,
                dx: i32::MAX as isize,
            },
            Move {
                start: usize::MAX - 8,
                rows: 1,
                stride,
                width: 16,
                dy: 0,
                dx: 0,
            },
        ] {
            let mut buf = pattern.clone();
            assert!(!apply_move(&mut buf, &bad), "{bad:?}");
            for mapped in [true, false] {
                let mirror = filled(&pattern, mapped);
                let e = mirror.move_rows(&bad, &mut Vec::new()).unwrap_err();
                assert!(e.to_string().contains("beyond"), "{e}");
                assert_eq!(contents(&mirror), pattern, "{bad:?} moved something");
            }
        }
    }

    #[test]
    fn mirrors_give_their_mappings_back() {
        // More mirrors than the cap, one after another: each is mapped, because each one
        // dropped unmapped itself and left the count.
        for i in 0..MAP_MAX + 16 {
            let m = Mirror::create(MAP_MIN).unwrap();
            assert!(m.is_mapped(), "mirror {i} not mapped: mappings leaked");
        }
    }

    #[test]
    fn a_grown_mirror_keeps_its_bytes_and_the_old_mapping_stays_valid() {
        let old = Mirror::create(MAP_MIN).unwrap();
        old.write(MAP_MIN - 3, b"end").unwrap();
        let new = old.grown(3 * MAP_MIN).unwrap();
        assert!(old.is_mapped() && new.is_mapped());
        old.write(MAP_MIN - 6, b"old").unwrap();
        new.write(3 * MAP_MIN - 1, b"!").unwrap();
        assert_eq!(new.read(MAP_MIN as usize - 6, 6).unwrap(), b"oldend");
        // The peer grew the file further already: growing to less than it holds is fine.
        rustix::fs::ftruncate(new.fd(), 5 * MAP_MIN).unwrap();
        let again = new.grown(4 * MAP_MIN).unwrap();
        assert_eq!(again.len(), 4 * MAP_MIN);
        assert_eq!(again.read(3 * MAP_MIN as usize - 1, 1).unwrap(), b"!");
    }
}
