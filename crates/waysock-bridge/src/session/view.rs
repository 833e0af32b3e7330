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
//! the session then ends, naming the pool. A `SIGBUS` anywhere else (or sent with `kill`) goes
//! to the handler that was in place before, with its siginfo as it came; with none, the
//! default action is restored and the faulting instruction runs again and dies of it. If
//! anything replaces the handler later, no new view is mapped.
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

/// The `SIGBUS` action in place before ours, which faults that are not ours are passed on to.
static PREVIOUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();
static INSTALL: Once = Once::new();

/// The registered view `addr` lies in: its slot and range. A slot's range is read start, end,
/// start again; a slot being taken or freed meanwhile (start changed) does not match.
fn view_at(addr: usize) -> Option<(&'static Slot, usize, usize)> {
    TABLE.iter().find_map(|slot| {
        let start = slot.start.load(Ordering::Acquire);
        let end = slot.end.load(Ordering::Acquire);
        let ok = start != 0
            && start != usize::MAX
            && (start..end).contains(&addr)
            && slot.start.load(Ordering::Acquire) == start;
        ok.then_some((slot, start, end))
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // A fault (si_code > 0), not a SIGBUS sent with kill, in one of our views.
    if code > 0 {
        if let Some((slot, start, end)) = view_at(addr) {
            // SAFETY: `[start, end)` is a view this process mapped and still holds (a slot is
            // cleared before its view is unmapped, and a view is not unmapped while it is
            // read, which is when it faults); replacing its pages with anonymous zeros at the
            // same address keeps every later read valid. `mmap` is a plain system call on
            // Linux, safe in a signal handler (libwayland does the same).
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
        }
    }
    // Not ours: to whoever handled SIGBUS before us, with the signal as it came.
    let Some(prev) = PREVIOUS.get() else {
        return default_again(sig);
    };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return default_again(sig);
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: a handler installed with SA_SIGINFO takes these three arguments, which are
        // the ones the kernel gave us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// A fault nobody handles: the default action, taken when the faulting instruction runs again
/// (so the process dies of it with the real address, and a core dump shows where).
fn default_again(sig: libc::c_int) {
    // SAFETY: signal() is async-signal-safe; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// The action `SIGBUS` has now is ours.
fn ours_installed() -> bool {
    // SAFETY: a query (no new action) into a zeroed struct.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now) == 0
            && now.sa_sigaction == on_sigbus as *const () as usize
    }
}

/// Installs the handler once per process; `false` if it is not in place (it could not be, or
/// something installed another since: then no view is mapped and pools go through `pread`).
fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls on zeroed structs; the previous action is recorded
        // before the handler that passes faults on to it is installed.
        unsafe {
            let mut prev: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut prev) != 0 {
                return;
            }
            let _ = PREVIOUS.set(prev);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
        }
    });
    ours_installed()
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
        // A file shorter than the pool it claims to be reads as zeros past its end through
        // `pread`, as before; mapped, that would end the session at once.
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile
            || len < VIEW_MIN
            || u64::try_from(st.st_size).map_or(true, |size| size < len)
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
        TABLE[slot].end.store(0, Ordering::Release);
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
        // Registered end first: a reader that sees the start sees this end.
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
        // Unregistered before it is unmapped: once the kernel may hand the addresses to
        // another view, no fault there can match this slot. The slot is held (start
        // `usize::MAX`, matching nothing) until the range is gone, then freed.
        let s = &TABLE[self.slot];
        s.start.store(usize::MAX, Ordering::Release);
        s.end.store(0, Ordering::Release);
        // SAFETY: the mapping made in `map` (or the zeros that replaced it), of `len` bytes,
        // unmapped once; no slice from `bytes` outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
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
        // Another view, mapped before the fault, holding bytes of its own.
        let other_fd = pool(len);
        crate::session::shm::pwrite_full(other_fd.as_fd(), &[9u8; 4096], len - 4096).unwrap();
        let other = View::map(other_fd.as_fd(), len).unwrap();
        assert_eq!(v.bytes()[len as usize - 1], 7);
        assert!(!v.faulted());
        // The client cuts its pool in half; reading past the cut would kill the process with
        // SIGBUS. Here it reads zeros, and the view says what happened.
        rustix::fs::ftruncate(&fd, len / 2).unwrap();
        let tail = &v.bytes()[len as usize - 4096..];
        assert!(tail.iter().all(|&b| b == 0));
        assert!(v.faulted());
        // The other view keeps its bytes and is not faulted.
        assert_eq!(other.bytes()[len as usize - 1], 9);
        assert!(!other.faulted());
    }

    /// The address the child's own fault is at, for the handlers below to check.
    static FAULT_AT: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn plain_handler(_sig: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(42) }
    }

    extern "C" fn info_handler(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the siginfo our handler passed on, as the kernel gave it.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        let intact = sig == libc::SIGBUS && code > 0 && addr == FAULT_AT.load(Ordering::Relaxed);
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(if intact { 43 } else { 44 }) }
    }

    /// In a child process (see the test below): the SIGBUS action is `how`, then our handler
    /// goes in on top (a view is mapped), then a mapping that is no view faults.
    fn sigbus_child(how: &str) -> ! {
        // SAFETY: sets this child process's SIGBUS action before anything else runs in it.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            libc::sigemptyset(&mut act.sa_mask);
            match how {
                "default" => act.sa_sigaction = libc::SIG_DFL,
                "ignored" => act.sa_sigaction = libc::SIG_IGN,
                "plain" => act.sa_sigaction = plain_handler as *const () as usize,
                _ => {
                    act.sa_sigaction = info_handler as *const () as usize;
                    act.sa_flags = libc::SA_SIGINFO;
                }
            }
            libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
        }
        let fd = pool(2 * VIEW_MIN);
        let _view = View::map(fd.as_fd(), 2 * VIEW_MIN).expect("handler installed");
        if how == "replaced" {
            // Something replaces our handler: no new view may be mapped (its faults would
            // no longer be contained).
            // SAFETY: this child's own SIGBUS action.
            unsafe {
                libc::signal(libc::SIGBUS, plain_handler as *const () as usize);
            }
            let again = View::map(fd.as_fd(), 2 * VIEW_MIN);
            // SAFETY: _exit ends this child.
            unsafe { libc::_exit(if again.is_none() { 45 } else { 46 }) }
        }
        let other = pool(VIEW_MIN);
        // SAFETY: this child's own read-only mapping of its own memfd, read after the file was
        // cut: a fault on purpose.
        unsafe {
            let p = rustix::mm::mmap(
                std::ptr::null_mut(),
                VIEW_MIN as usize,
                ProtFlags::READ,
                MapFlags::SHARED,
                &other,
                0,
            )
            .unwrap()
            .cast::<u8>();
            rustix::fs::ftruncate(&other, 0).unwrap();
            FAULT_AT.store(p.add(100) as usize, Ordering::Relaxed);
            let _ = std::ptr::read_volatile(p.add(100));
            libc::_exit(0)
        }
    }

    #[test]
    fn a_sigbus_elsewhere_goes_where_it_went_before() {
        use std::os::unix::process::ExitStatusExt;
        if let Ok(how) = std::env::var("WAYSOCK_SIGBUS_CHILD") {
            sigbus_child(&how);
        }
        // Each child: the action SIGBUS had before ours, and what must become of the process.
        for (how, want) in [
            ("default", "killed"),
            ("ignored", "killed"),
            ("plain", "exit 42"),
            ("siginfo", "exit 43"),
            ("replaced", "exit 45"),
        ] {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "session::view::tests::a_sigbus_elsewhere_goes_where_it_went_before",
                ])
                .args(["--nocapture", "--test-threads=1"])
                .env("WAYSOCK_SIGBUS_CHILD", how)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // A handler that neither handles nor passes the fault on re-faults forever.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break st;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{how}: the child hung on its SIGBUS (handled over and over)");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let got = match (status.signal(), status.code()) {
                (Some(libc::SIGBUS), _) => "killed".to_string(),
                (_, Some(c)) => format!("exit {c}"),
                _ => format!("{status:?}"),
            };
            assert_eq!(got, want, "{how}: {status:?}");
        }
    }

    #[test]
    fn a_file_shorter_than_its_pool_is_read_not_mapped() {
        let fd = pool(VIEW_MIN);
        assert!(View::map(fd.as_fd(), 2 * VIEW_MIN).is_none());
        assert!(View::map(fd.as_fd(), VIEW_MIN).is_some());
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
