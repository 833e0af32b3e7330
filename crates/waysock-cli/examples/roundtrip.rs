//! The smallest Wayland client: connect the way libwayland does (`WAYLAND_SOCKET`, else
//! `WAYLAND_DISPLAY` absolute or under `XDG_RUNTIME_DIR`, default `wayland-0`), send one
//! `wl_display.sync`, wait for the callback's `done`, exit 0. No Wayland library, so its
//! start-up cost is close to nothing; `benches/exec.rs` times it with and without
//! `waysock exec`.
//!
//! ```sh
//! cargo run --example roundtrip                    # against $WAYLAND_DISPLAY
//! waysock exec -- target/debug/examples/roundtrip  # through waysock
//! ```

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[allow(dead_code)] // unused where benches/exec.rs includes this file as a module
fn main() -> ExitCode {
    match roundtrip() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects as libwayland would and does one `wl_display.sync` roundtrip (5 s limit).
pub fn roundtrip() -> io::Result<()> {
    let mut stream = connect()?;
    waysock::probe::roundtrip(&mut stream, Duration::from_secs(5))
}

fn connect() -> io::Result<UnixStream> {
    if let Some(v) = std::env::var_os("WAYLAND_SOCKET") {
        let fd: i32 = v
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad WAYLAND_SOCKET"))?;
        std::env::remove_var("WAYLAND_SOCKET");
        return Ok(adopt(fd));
    }
    let display = std::env::var_os("WAYLAND_DISPLAY").unwrap_or_else(|| "wayland-0".into());
    let path = PathBuf::from(&display);
    let path = if path.is_absolute() {
        path
    } else {
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "XDG_RUNTIME_DIR not set"))?;
        PathBuf::from(dir).join(path)
    };
    UnixStream::connect(path)
}

#[allow(unsafe_code)]
fn adopt(fd: i32) -> UnixStream {
    use std::os::fd::FromRawFd;
    // SAFETY: like libwayland, we trust WAYLAND_SOCKET to name an open, connected Unix stream
    // socket handed to us (by `waysock exec`, which validated it); nothing else in this process
    // owns that number, and it is adopted exactly once (the variable is removed above).
    unsafe { UnixStream::from_raw_fd(fd) }
}
