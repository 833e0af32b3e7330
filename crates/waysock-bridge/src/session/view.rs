//! A local client's pool as the sending side reads it: mapped read-only, so that a commit's
//! damaged area is compared with the shadow where it lies instead of first copied out through
//! the kernel (a 1080p frame is 8 MB, and that copy was a third of the bridge's time per
//! scrolled frame).
//!
//! A client can shrink its pool's file at any moment, and reading a mapped page past the new
//! end raises `SIGBUS`. As libwayland does for compositors (`wl_shm_buffer_begin_access`),
//! the bridge contains it: every view is registered in a fixed table, and a `SIGBUS` whose
//! address lies in a registered view replaces that view's pages with zeros (an anonymous
//! mapping at the same address), marks the view faulted and returns, so the read goes on;
//! the session then ends, naming the pool. A `SIGBUS` anywhere else is raised again with the
//! action that was in place before, as if the bridge had never handled it.
//!
//! Only regular files (memfds, shm files) are mapped; anything else, a full table, or a
//! failed `mmap` leaves the pool read with `pread`, as before. The client may write its pool
//! while the bridge reads it (a misbehaving client tears its own frame, as with any
//! compositor); the bytes are only compared and copied.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use rustix::fs::FileType;
use rustix::mm::{MapFlags, ProtFlags};

/// Views mapped at once, all sessions.
const SLOTS: usize = 4096;

/// Pools smaller than this are read with `pread` (a mapping costs more than it saves).
pub(super) const VIEW_MIN: u64 = 64 * 1024;

/// One registered view: `[start, end)` (0, 0 when free), and whether it faulted.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // the initialiser of the array only
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

/// The `SIGBUS` action in place before ours (restored to re-raise a fault that is not ours).
static mut PREVIOUS: Option<libc::sigaction> = None;
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in &TABLE {
        let (start, end) = (
            slot.start.load(Ordering::Acquire),
            slot.end.load(Ordering::Acquire),
        );
        if start != 0 && (start..end).contains(&addr) {
            // SAFETY: `[start, end)` is a view this process mapped and still owns (a slot is
            // freed only after its view is unmapped, and a view is never unmapped while it is
            // read, which is when faults happen); replacing its pages with anonymous zeros at
            // the same address keeps every later read valid. `mmap` is async-signal-safe.
            let p = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    end - start,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                return;
            }
            break;
        }
    }
    // Not ours (or the pages could not be replaced): as if we had never been here.
    // SAFETY: PREVIOUS is written once, before the handler is installed, and only read
    // after; sigaction and raise are async-signal-safe.
    unsafe {
        match &*std::ptr::addr_of!(PREVIOUS) {
            Some(prev) => {
                libc::sigaction(sig, prev, std::ptr::null_mut());
            }
            None => {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::raise(sig);
    }
}

/// Installs the handler once per process; `false` if it could not be.
fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls on zeroed structs; PREVIOUS is written here, once,
        // before the handler that reads it is installed.
        unsafe {
            let mut prev: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut prev) != 0 {
                return;
            }
            *std::ptr::addr_of_mut!(PREVIOUS) = Some(prev);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()) == 0 {
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

/// A client's pool mapped read-only, registered so that a `SIGBUS` in it is contained.
#[derive(Debug)]
pub(super) struct View {
    ptr: NonNull<u8>,
    len: usize,
    slot: usize,
}

// SAFETY: a read-only mapping owned by this value, only read; reading it from any thread is
// what it is for (a fault in it is contained whichever thread takes it).
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

impl View {
    /// Maps the first `len` bytes of the client's pool `fd`; `None` when it should be read
    /// with `pread` instead (not a regular file, smaller than [`VIEW_MIN`], the table full,
    /// the handler not installed, or `mmap` refused).
    pub fn map(fd: BorrowedFd<'_>, len: u64) -> Option<View> {
        let st = rustix::fs::fstat(fd).ok()?;
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile
            || len < VIEW_MIN
            || !install()
        {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        let slot = TABLE.iter().position(|s| {
            s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        let free = || TABLE[slot].start.store(0, Ordering::Release);
        // SAFETY: a new read-only shared mapping chosen by the kernel (nothing replaced). Its
        // pages may stop being backed (the client shrinks the file): such a fault is contained
        // by `on_sigbus` once the view is registered below, before anything reads it.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                fd,
                0,
            )
        };
        let Some(ptr) = ptr.ok().and_then(|p| NonNull::new(p.cast::<u8>())) else {
            free();
            return None;
        };
        let s = &TABLE[slot];
        s.faulted.store(false, Ordering::Release);
        s.end.store(ptr.as_ptr() as usize + len, Ordering::Release);
        s.start.store(ptr.as_ptr() as usize, Ordering::Release);
        Some(View { ptr, len, slot })
    }

    /// The pool's bytes (zeros from where a shrunk file stopped, once [`View::faulted`]).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable for as long as `self` lives (unmapped only on
        // drop; a fault replaces pages in place, never unmaps them). The local client may
        // change them at any time; they are only compared and copied, never trusted.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Whether a read hit a page the client's file no longer has.
    pub fn faulted(&self) -> bool {
        TABLE[self.slot].faulted.load(Ordering::Acquire)
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map` (or the zeros that replaced it), of `len` bytes,
        // unmapped once; no slice from `bytes` outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        let s = &TABLE[self.slot];
        s.end.store(0, Ordering::Release);
        s.start.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pool(len: u64) -> std::os::fd::OwnedFd {
        let fd = rustix::fs::memfd_create("view-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        fd
    }

    #[test]
    fn a_pool_shrunk_under_the_reader_reads_as_zeros_and_is_named_faulted() {
        let len = 4 * VIEW_MIN;
        let fd = pool(len);
        crate::session::shm::pwrite_full(fd.as_fd(), &[7u8; 4096], len - 4096).unwrap();
        let v = View::map(fd.as_fd(), len).expect("mapped");
        assert_eq!(v.bytes()[len as usize - 1], 7);
        assert!(!v.faulted());
        // The client cuts its pool in half; reading past the cut would kill the process with
        // SIGBUS. Here it reads zeros, and the view says what happened.
        rustix::fs::ftruncate(&fd, len / 2).unwrap();
        let tail = &v.bytes()[len as usize - 4096..];
        assert!(tail.iter().all(|&b| b == 0));
        assert!(v.faulted());
        // Another view is not affected.
        let other_fd = pool(len);
        let other = View::map(other_fd.as_fd(), len).unwrap();
        assert_eq!(other.bytes()[len as usize - 1], 0);
        assert!(!other.faulted());
    }

    #[test]
    fn only_regular_files_of_some_size_are_mapped() {
        assert!(View::map(pool(VIEW_MIN - 1).as_fd(), VIEW_MIN - 1).is_none());
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(View::map(r.as_fd(), VIEW_MIN).is_none());
        // Views give their slots back.
        let fd = pool(VIEW_MIN);
        for _ in 0..2 * SLOTS {
            assert!(View::map(fd.as_fd(), VIEW_MIN).is_some());
        }
    }
}
