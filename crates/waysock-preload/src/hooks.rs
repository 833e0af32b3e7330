//! The `extern "C"` hooks: convert pointers, ask the safe logic, fall back to the real call.
//!
//! Every hook follows one shape:
//! 1. resolve the real symbol once (`dlsym(RTLD_NEXT, …)` cached in an `AtomicUsize`);
//! 2. enter the thread-local re-entrancy guard, or call the real symbol at once if this thread
//!    is already inside a hook (our own logging, `memfd_create`, … must never loop back);
//! 3. run the safe decision inside `catch_unwind`: `Some(result)` means "handled",
//!    `None` (or a panic) means "bypass" and the real call runs untouched.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use libc::{mode_t, sockaddr, sockaddr_un, socklen_t};

use crate::config::{Config, Listen, Mapped, Steer};
use crate::log::Line;

/// The configuration, read once by the constructor; `None` = pass everything through.
pub(crate) static CONFIG: OnceLock<Option<Config>> = OnceLock::new();

fn config() -> Option<&'static Config> {
    CONFIG.get().and_then(Option::as_ref)
}

/// Socket activation handed on by `waysock run`, set by the constructor once the fd has been
/// checked to be that very listener ([`is_listener_at`]); `None` = no activation.
pub(crate) static LISTEN: OnceLock<Option<Listen>> = OnceLock::new();

/// Raised once the inherited listener has replaced the compositor's socket.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

fn listen() -> Option<&'static Listen> {
    LISTEN.get().and_then(Option::as_ref)
}

/// Is `l.fd` a listening socket bound to `l.path`? Only then is it the listener `run` handed
/// on: a child that inherited the variables but not the fd (its number closed or reused for
/// something else) must not take whatever has that number now.
pub(crate) fn is_listener_at(l: &Listen) -> bool {
    let mut listening: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: `listening`/`len` are a valid c_int buffer for SO_ACCEPTCONN.
    let r = unsafe {
        libc::getsockopt(
            l.fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut listening as *mut c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 || listening == 0 {
        return false;
    }
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut a: sockaddr_un = unsafe { std::mem::zeroed() };
    let mut alen = std::mem::size_of::<sockaddr_un>() as socklen_t;
    // SAFETY: `a`/`alen` describe a writable sockaddr_un buffer for getsockname.
    let r =
        unsafe { libc::getsockname(l.fd, &mut a as *mut sockaddr_un as *mut sockaddr, &mut alen) };
    // SAFETY: getsockname filled `alen` bytes of `a` (at most its size).
    let path = unsafe { unix_path(&a as *const sockaddr_un as *const sockaddr, alen) };
    r == 0 && path == Some(l.path.as_slice())
}

/// `bind` of the activated display path: the inherited listener takes the compositor's socket
/// number (`dup3`, keeping its close-on-exec and non-blocking flags), the inherited number is
/// closed, and the bind "succeeds"; the `listen` that follows succeeds on a listening socket.
/// Once only: a second bind of the path gets the real (failing) call.
///
/// # Safety
/// `addr`/`len` as for `bind(2)`.
unsafe fn hand_over(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Option<c_int> {
    let l = listen()?;
    // SAFETY: forwarded from our caller's contract.
    let path = unsafe { unix_path(addr, len) }?;
    if l.steer(path)? != Steer::Socket || HANDED_OVER.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: fcntl queries on the caller's socket; no memory is passed.
    let (fd_flags, fl_flags) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFD),
            libc::fcntl(fd, libc::F_GETFL),
        )
    };
    let cloexec = if fd_flags >= 0 && fd_flags & libc::FD_CLOEXEC != 0 {
        libc::O_CLOEXEC
    } else {
        0
    };
    // SAFETY: both are open descriptors (`l.fd` checked by the constructor); dup3 closes the
    // caller's unbound socket at `fd` and puts the listener there, which is what the caller
    // expects `fd` to be after a successful bind.
    let r = unsafe { libc::dup3(l.fd, fd, cloexec) };
    let e = errno();
    let mut line = Line::new();
    line.text("[waysock] bind(fd=");
    line.int(fd as i64);
    line.text(", unix:");
    line.bytes(path);
    if r < 0 {
        HANDED_OVER.store(false, Ordering::SeqCst);
        line.text(") = -1: cannot put the socket-activated listener there, errno ");
        line.int(e as i64);
        line.text("\n");
        line.write_to(2);
        set_errno(e);
        return Some(-1);
    }
    // SAFETY: F_GETFL on the descriptor just made.
    let now = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl_flags >= 0 && now >= 0 {
        let carried = (now & !libc::O_NONBLOCK) | (fl_flags & libc::O_NONBLOCK);
        // SAFETY: F_SETFL on our own descriptor; only O_NONBLOCK changes.
        unsafe { libc::fcntl(fd, libc::F_SETFL, carried) };
    }
    // The inherited number is not needed any more, and no child may inherit it.
    // SAFETY: `l.fd` is the inherited listener's original number, which nothing else in this
    // process owns (run handed it to us); its socket lives on at `fd`.
    unsafe { libc::close(l.fd) };
    line.text(") = 0: the socket-activated listener (inherited fd ");
    line.int(l.fd as i64);
    line.text(")\n");
    line.write_to(2);
    Some(0)
}

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Held while a hook runs its own logic on this thread.
struct Guard;

impl Guard {
    fn enter() -> Option<Guard> {
        IN_HOOK
            .try_with(|c| {
                if c.get() {
                    None
                } else {
                    c.set(true);
                    Some(Guard)
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|c| c.set(false));
    }
}

/// `wayland-UID-` (`waysock_rules::abstract_prefix`), built on the stack: no allocation in a
/// hook that runs on every accept.
fn abstract_prefix(uid: u32) -> Line {
    let mut prefix = Line::new();
    prefix.text(waysock_rules::DISPLAY_PREFIX);
    prefix.int(uid as i64);
    prefix.text("-");
    prefix
}

/// Is `fd` bound to one of the abstract names this shim hands out (`wayland-UID-…`)? That is
/// what makes a listener "mapped" for `accept`: it holds for any fd number, and a number that
/// was closed and reused for another socket no longer matches.
fn is_mapped_listener(fd: c_int, uid: u32) -> bool {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut a: sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<sockaddr_un>() as socklen_t;
    // SAFETY: `a`/`len` describe a writable sockaddr_un buffer for getsockname.
    let r = unsafe { libc::getsockname(fd, &mut a as *mut sockaddr_un as *mut sockaddr, &mut len) };
    let family = std::mem::size_of::<libc::sa_family_t>();
    if r != 0 || a.sun_family as c_int != libc::AF_UNIX || (len as usize) <= family + 1 {
        return false;
    }
    if a.sun_path[0] != 0 {
        return false;
    }
    let n = (len as usize - family - 1).min(a.sun_path.len() - 1);
    let prefix = abstract_prefix(uid);
    let want = prefix.as_slice();
    n >= want.len()
        && a.sun_path[1..1 + want.len()]
            .iter()
            .zip(want)
            .all(|(c, w)| *c as u8 == *w)
}

/// Resolves `name` in the next object after us, once.
fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    let cached = slot.load(Ordering::Acquire);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `name` is NUL-terminated (a `CStr`); RTLD_NEXT asks the loader for the next
    // definition after this library, which is libc's for every symbol we hook.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    slot.store(p, Ordering::Release);
    p
}

macro_rules! real {
    ($slot:ident, $name:literal, $ty:ty) => {{
        static $slot: AtomicUsize = AtomicUsize::new(0);
        let p = resolve(&$slot, $name);
        if p == 0 {
            None
        } else {
            // SAFETY: `p` is the address of libc's function of this exact name, whose C
            // signature is `$ty`.
            Some(unsafe { std::mem::transmute::<usize, $ty>(p) })
        }
    }};
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// Runs `f` guarded and unwind-safe; `None` means "bypass".
fn handled<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    let _g = Guard::enter()?;
    catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}

/// The path of an `AF_UNIX` address, if it is a filesystem one.
///
/// # Safety
/// `addr` must point to `len` readable bytes (or be null).
unsafe fn unix_path<'a>(addr: *const sockaddr, len: socklen_t) -> Option<&'a [u8]> {
    if addr.is_null() || (len as usize) <= std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the caller promises `len` bytes at `addr`; we read the family first.
    if unsafe { (*addr).sa_family } as c_int != libc::AF_UNIX {
        return None;
    }
    let un = addr as *const sockaddr_un;
    let max = (len as usize - std::mem::size_of::<libc::sa_family_t>()).min(108);
    // SAFETY: `max` bytes of sun_path lie within the `len` bytes the caller provided.
    let bytes = unsafe { std::slice::from_raw_parts((*un).sun_path.as_ptr() as *const u8, max) };
    if bytes.first().is_none_or(|b| *b == 0) {
        return None; // unnamed or already abstract
    }
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Some(&bytes[..end])
}

/// An abstract `sockaddr_un` for `name` and its length.
fn abstract_addr(name: &[u8]) -> (sockaddr_un, socklen_t) {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut a: sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, b) in name.iter().enumerate().take(a.sun_path.len() - 1) {
        a.sun_path[i + 1] = *b as c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len().min(a.sun_path.len() - 1);
    (a, len as socklen_t)
}

/// A NUL-terminated C path as bytes.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
unsafe fn c_path<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller promises a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type UnlinkFn = unsafe extern "C" fn(*const c_char) -> c_int;

/// The credentials of the process at the other end of connected `fd` (`SO_PEERCRED`).
fn peer_cred(fd: c_int) -> Option<libc::ucred> {
    // SAFETY: ucred is plain old data; zeroed is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as socklen_t;
    // SAFETY: `cred`/`len` are a valid buffer for SO_PEERCRED on a connected socket.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(cred)
}

/// Does the server at the other end of connected `fd` run as an allowed uid? Abstract names
/// can be bound by anyone first, so a client must not trust whoever answers.
fn peer_allowed(cfg: &Config, fd: c_int) -> (bool, i64) {
    match peer_cred(fd) {
        Some(cred) => (cfg.allows(cred.uid), cred.uid as i64),
        None => (false, -1),
    }
}

/// Shared by `bind` and `connect`: map the address, call `real` with the abstract one.
///
/// # Safety
/// `addr`/`len` as for `bind(2)`; `real` is libc's function.
unsafe fn socket_call(
    call: &str,
    real: BindFn,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<c_int> {
    let cfg = config()?;
    // SAFETY: forwarded from our caller's contract.
    let path = unsafe { unix_path(addr, len) }?;
    let name = match cfg.map(path)? {
        Mapped::Socket(name) => name,
        Mapped::Fallback(name) => {
            // The real path first: a working socket of another service stays untouched.
            // SAFETY: unchanged arguments to the real call.
            let r = unsafe { real(fd, addr, len) };
            let e = errno();
            let unusable = match call {
                "bind" => waysock_rules::bind_place_unusable(e),
                _ => waysock_rules::connect_nothing_there(e),
            };
            if r == 0 || !unusable {
                set_errno(e);
                return Some(r);
            }
            name
        }
        Mapped::Lock(_) => return None,
    };
    let (a, alen) = abstract_addr(&name);
    // SAFETY: `a` is a valid sockaddr_un of `alen` bytes; `real` is libc's bind/connect.
    let mut r = unsafe { real(fd, &a as *const sockaddr_un as *const sockaddr, alen) };
    let mut e = errno();
    let mut refused_uid = None;
    if call == "connect" && r == 0 {
        let (ok, uid) = peer_allowed(cfg, fd);
        if !ok {
            // SAFETY: shutting down the caller's own socket; it stays open for it to close.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            r = -1;
            e = libc::ECONNREFUSED;
            refused_uid = Some(uid);
        }
    }
    if cfg.debug || (refused_uid.is_some() && cfg.warn) {
        let mut l = Line::new();
        l.text("[waysock] ");
        l.text(call);
        l.text("(fd=");
        l.int(fd as i64);
        l.text(", unix:");
        l.bytes(path);
        l.text(" -> abstract:");
        l.bytes(&name);
        l.text(") = ");
        l.int(r as i64);
        if let Some(uid) = refused_uid {
            l.text(": REFUSED, served by uid ");
            l.int(uid);
        } else if r < 0 {
            l.text(" errno ");
            l.int(e as i64);
        }
        l.text("\n");
        l.write_to(2);
    }
    set_errno(e);
    Some(r)
}

/// `bind(2)`: a mapped path binds the abstract name instead.
///
/// # Safety
/// Called by C with `bind(2)`'s contract.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(real) = real!(REAL_BIND, c"bind", BindFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: our caller's bind(2) contract holds for the pointers we forward.
    if let Some(r) = handled(|| unsafe { hand_over(fd, addr, len) }) {
        return r;
    }
    // SAFETY: our caller's bind(2) contract holds for the pointers we forward.
    if let Some(r) = handled(|| unsafe { socket_call("bind", real, fd, addr, len) }) {
        return r;
    }
    // SAFETY: as above, unchanged arguments to the real bind.
    unsafe { real(fd, addr, len) }
}

/// `connect(2)`: a mapped path dials the abstract name instead.
///
/// # Safety
/// Called by C with `connect(2)`'s contract.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(real) = real!(REAL_CONNECT, c"connect", BindFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: our caller's connect(2) contract holds for the pointers we forward.
    if let Some(r) = handled(|| unsafe { socket_call("connect", real, fd, addr, len) }) {
        return r;
    }
    // SAFETY: as above, unchanged arguments to the real connect.
    unsafe { real(fd, addr, len) }
}

/// After a real accept on a mapped listener: refuse peers of other uids.
fn filter_peer(listener: c_int, fd: c_int) -> Option<c_int> {
    let cfg = config()?;
    if fd < 0 || !is_mapped_listener(listener, cfg.uid) {
        return None;
    }
    let cred = peer_cred(fd);
    let allowed = cred.is_some_and(|c| cfg.allows(c.uid));
    if cfg.debug || (!allowed && cfg.warn) {
        let mut l = Line::new();
        l.text("[waysock] accept(fd=");
        l.int(listener as i64);
        l.text(") = ");
        l.int(fd as i64);
        l.text(", peer uid ");
        l.int(cred.map_or(-1, |c| c.uid as i64));
        if allowed {
            l.text(": ok\n");
        } else {
            l.text(", pid ");
            l.int(cred.map_or(-1, |c| c.pid as i64));
            l.text(": REFUSED (not uid ");
            l.int(cfg.uid as i64);
            l.text("; waysock run --allow-uid UID admits others)\n");
        }
        l.write_to(2);
    }
    if allowed {
        return None;
    }
    // SAFETY: `fd` was just returned by accept and is owned by nobody else yet.
    unsafe { libc::close(fd) };
    set_errno(libc::ECONNABORTED);
    Some(-1)
}

/// `accept(2)`: on a mapped listener, peers of other uids are refused.
///
/// # Safety
/// Called by C with `accept(2)`'s contract.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(real) = real!(REAL_ACCEPT, c"accept", AcceptFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: unchanged arguments to the real accept.
    let r = unsafe { real(fd, addr, len) };
    let e = errno();
    match handled(|| filter_peer(fd, r)) {
        Some(refused) => refused,
        None => {
            set_errno(e);
            r
        }
    }
}

/// `accept4(2)`: as [`accept`].
///
/// # Safety
/// Called by C with `accept4(2)`'s contract.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real!(REAL_ACCEPT4, c"accept4", Accept4Fn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: unchanged arguments to the real accept4.
    let r = unsafe { real(fd, addr, len, flags) };
    let e = errno();
    match handled(|| filter_peer(fd, r)) {
        Some(refused) => refused,
        None => {
            set_errno(e);
            r
        }
    }
}

/// A mapped lock file becomes an anonymous memfd: `flock` on it always succeeds, and the
/// abstract bind is what makes the name exclusive.
fn open_lock(call: &str, path: &[u8], flags: c_int) -> Option<c_int> {
    if listen().is_some_and(|l| l.steer(path) == Some(Steer::OtherLock)) {
        // Socket activation: every other display name is "taken", so the compositor's own
        // choice lands on the activated name, whose lock is the real file.
        set_errno(libc::EADDRINUSE);
        return Some(-1);
    }
    let cfg = config()?;
    let Mapped::Lock(abs) = cfg.map(path)? else {
        return None;
    };
    // libwayland moves on to the next display number only when the *lock* fails, not when
    // the bind does (wl_display_add_socket_auto gives up then). So the lock reports a taken
    // abstract name as taken.
    let (fd, e) = if abstract_name_taken(&abs) {
        (-1, libc::EADDRINUSE)
    } else {
        let mfd_flags = if flags & libc::O_CLOEXEC != 0 {
            libc::MFD_CLOEXEC
        } else {
            0
        };
        // SAFETY: a literal NUL-terminated name; memfd_create has no other preconditions.
        let fd = unsafe { libc::memfd_create(c"waysock-lock".as_ptr(), mfd_flags) };
        (fd, errno())
    };
    if cfg.debug {
        let mut l = Line::new();
        l.text("[waysock] ");
        l.text(call);
        l.text("(");
        l.bytes(path);
        if fd >= 0 {
            l.text(") -> memfd = ");
            l.int(fd as i64);
        } else {
            l.text(") = -1: abstract:");
            l.bytes(&abs);
            l.text(" is taken");
        }
        l.text("\n");
        l.write_to(2);
    }
    set_errno(e);
    Some(fd)
}

/// Is the abstract name bound by anyone? Probed by binding it on a throwaway socket, which is
/// closed (freeing the name) at once.
fn abstract_name_taken(name: &[u8]) -> bool {
    let Some(real_bind) = real!(REAL_BIND_PROBE, c"bind", BindFn) else {
        return false;
    };
    // SAFETY: plain socket(2) call.
    let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return false;
    }
    let (a, alen) = abstract_addr(name);
    // SAFETY: `a` is a valid sockaddr_un of `alen` bytes; `s` is our own socket.
    let r = unsafe { real_bind(s, &a as *const sockaddr_un as *const sockaddr, alen) };
    let taken = r != 0 && errno() == libc::EADDRINUSE;
    // SAFETY: closing the socket we just made.
    unsafe { libc::close(s) };
    taken
}

/// Defines one `open`-family hook: a mapped lock path gets a memfd, anything else the real call.
macro_rules! open_hook {
    ($(#[$doc:meta])* $name:ident, $slot:ident, $cname:literal, ($($pre:ident: $pre_ty:ty),*)) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Called by C with this function's documented contract (`path` NUL-terminated).
        #[no_mangle]
        pub unsafe extern "C" fn $name($($pre: $pre_ty,)* path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
            type Real = unsafe extern "C" fn($($pre_ty,)* *const c_char, c_int, mode_t) -> c_int;
            let Some(real) = real!($slot, $cname, Real) else {
                set_errno(libc::ENOSYS);
                return -1;
            };
            // SAFETY: `path` is NUL-terminated per the open(2) contract.
            if let Some(r) = handled(|| open_lock(stringify!($name), unsafe { c_path(path) }?, flags)) {
                return r;
            }
            // SAFETY: unchanged arguments to the real function.
            unsafe { real($($pre,)* path, flags, mode) }
        }
    };
}

open_hook!(
    /// `open(2)`.
    ///
    /// The C prototype is variadic (`mode` only with `O_CREAT`/`O_TMPFILE`). Stable Rust cannot
    /// define variadic functions, so `mode` is declared as a third fixed argument: on the System
    /// V x86_64 and AArch64 Linux ABIs a variadic integer argument travels in the same register
    /// as a fixed one, and when the caller passed none we forward an unused value that libc
    /// ignores.
    open, REAL_OPEN, c"open", ()
);
open_hook!(
    /// `open64`: glibc's large-file alias, which libwayland calls.
    open64, REAL_OPEN64, c"open64", ()
);
open_hook!(
    /// `openat(2)`: only absolute paths can name a mapped lock file.
    openat, REAL_OPENAT, c"openat", (dirfd: c_int)
);
open_hook!(
    /// `openat64`.
    openat64, REAL_OPENAT64, c"openat64", (dirfd: c_int)
);

/// `unlink(2)`: removing a display socket or lock that only exists as an abstract name or a
/// memfd is a no-op returning 0. A real file at that path (the dir is writable after all), and
/// anything that is not a display name, go to the real `unlink`.
///
/// # Safety
/// Called by C with `unlink(2)`'s contract.
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    let Some(real) = real!(REAL_UNLINK, c"unlink", UnlinkFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let mapped = handled(|| {
        // SAFETY: `path` is NUL-terminated per unlink(2).
        let p = unsafe { c_path(path) }?;
        if listen().is_some_and(|l| l.steer(p) == Some(Steer::Socket)) {
            // The activated socket is its supervisor's: libwayland removes a display socket
            // it finds under its lock, and again when it exits; neither may take it away.
            return Some(0);
        }
        let cfg = config()?;
        if matches!(cfg.map(p)?, Mapped::Fallback(_)) {
            return None;
        }
        // A real file at a display path (a writable dir) is removed as libwayland intends.
        // SAFETY: `st` is a writable stat buffer; `path` is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::lstat(path, &mut st) } == 0 {
            return None;
        }
        if cfg.debug {
            let mut l = Line::new();
            l.text("[waysock] unlink(");
            l.bytes(p);
            l.text(") = 0 (mapped: nothing to remove)\n");
            l.write_to(2);
        }
        Some(0)
    });
    match mapped {
        Some(r) => r,
        // SAFETY: unchanged argument to the real unlink.
        None => unsafe { real(path) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_prefix_is_the_rules_prefix() {
        for uid in [0, 7, 1000, u32::MAX] {
            assert_eq!(
                abstract_prefix(uid).as_slice(),
                waysock_rules::abstract_prefix(uid).as_bytes()
            );
        }
    }
}
