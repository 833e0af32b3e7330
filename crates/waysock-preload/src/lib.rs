//! `libwaysock_preload.so`: an `LD_PRELOAD` shim that lets an unmodified libwayland compositor
//! and its clients use abstract sockets when no directory is writable.
//!
//! How it works:
//! - Configured only through variables that `waysock run`/`waysock exec` set:
//!   `WAYSOCK_PRELOAD_DIR` (the directory the program believes is its runtime dir; without it
//!   the shim passes every call through), `WAYSOCK_ALLOW_UIDS` and
//!   `WAYSOCK_LOG`. They are read once, by a constructor that runs after libc is initialised;
//!   the hooks never allocate and never touch the environment.
//! - `bind`/`connect` on `DIR/wayland-N` use the abstract name `wayland-UID-N` instead: the
//!   bind itself gives exclusivity, so no lock file is needed. Other sockets directly in `DIR`
//!   (sway's IPC socket) try the real path first and go abstract (`wayland-UID-NAME`) only
//!   if the directory cannot hold them.
//! - `connect` through a mapping checks who serves the name (`SO_PEERCRED`): anyone can bind
//!   an abstract name first, so a server of another uid is refused (`ECONNREFUSED`).
//! - `open`/`open64`/`openat`/`openat64` of `DIR/wayland-N.lock` return an anonymous memfd, so
//!   libwayland's `flock` succeeds with nothing written to the filesystem; if the abstract
//!   name is already bound the open fails instead, so libwayland tries the next number.
//! - `unlink` of a display socket or lock that has no real file is a no-op returning 0.
//! - `accept`/`accept4` on a listener bound to `wayland-UID-…` check `SO_PEERCRED`: a peer of
//!   another uid (abstract sockets have no file permissions) is closed and the call fails
//!   with `ECONNABORTED`, which libwayland logs and survives.
//! - Socket activation (`WAYSOCK_LISTEN_FD`/`WAYSOCK_LISTEN_PATH`, set by `waysock run`
//!   when it was started with `LISTEN_FDS`): `bind` of that display path `dup3`s the inherited
//!   listener over the compositor's socket and succeeds; locks of other display names in that
//!   directory fail (so `wl_display_add_socket_auto` lands on the activated name, whose lock
//!   is the real file); `unlink` of the activated socket is a no-op. Ignored unless the fd
//!   really is a listener bound to that path.
//! - Nothing on the data path (`sendmsg`, `recvmsg`, `read`, `write`) is interposed.
//! - Real symbols come from `dlsym(RTLD_NEXT)`, resolved once; a thread-local guard stops the
//!   shim from re-entering itself; every hook body runs in `catch_unwind` and falls back to the
//!   real call.
//!
//! It cannot help static binaries, setuid or file-capability programs (the loader ignores
//! `LD_PRELOAD` for them), or compositors that make raw syscalls without libc (e.g.
//! wayland-backend's pure-Rust socket code): those should use the `waysock` library instead.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod hooks;
mod log;

/// Reads the configuration once, when the loader initialises this library (after libc).
extern "C" fn init() {
    let cfg = config::Config::from_vars(|k| std::env::var_os(k), geteuid());
    let _ = hooks::CONFIG.set(cfg);
    let listen = config::Listen::from_vars(|k| std::env::var_os(k)).filter(hooks::is_listener_at);
    let _ = hooks::LISTEN.set(listen);
}

#[allow(unsafe_code)]
fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Registers [`init`] as an ELF constructor.
#[allow(unsafe_code)]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
